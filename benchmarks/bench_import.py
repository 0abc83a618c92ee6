"""Import side: ADTS index building, import throughput per core, size on disk.

(a) ``aacdata._adts.parse_adts`` on an hour of 160 kbit/s stereo ADTS, against a plain
    Python walk over the frame lengths and PyAV's ADTS demuxer (baselines, same run);
(b) ``import_audio(..., workers=0)`` of music-like 44.1 kHz stereo FLAC (transcoded) and
    of the same audio as .m4a (passthrough), against PyAV doing only the codec work
    (decode + encode, or demux); FLAC also with ``workers=2``;
(c) ``du`` of a store holding an hour of audio over its ADTS payload, and the size of
    its ``/index``.

Sources are synthetic (``aacdata._synth``), built on first use and cached under
``--workdir``; see benchmarks/README.md.

    .venv/bin/python benchmarks/bench_import.py            # full run
    .venv/bin/python benchmarks/bench_import.py --quick    # smoke test, < 30 s
"""

from __future__ import annotations

import argparse
import gc
import io
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's aacdata, installed or not

import av
import numpy as np
from _common import (
    Contention,
    SegmentPool,
    Summary,
    aacdata_fingerprint,
    cached,
    disk_usage,
    header,
    info_line,
    mark_built,
    parallel_map,
    print_table,
    ratio_line,
)

import aacdata
from aacdata import _adts, _synth, _transcode

SAMPLE_RATE = 44_100
BITRATE = 160_000


@dataclass(frozen=True, slots=True)
class Config:
    """Sizes of one run; ``FULL`` is the default, ``QUICK`` the smoke test."""

    tag: str
    index_seconds: float  # encoded once ...
    index_copies: int  # ... and concatenated this many times
    index_reps: int
    import_files: int
    import_seconds: float  # per file
    import_reps: int
    disk_files: int
    disk_seconds: float  # per file
    pool_segments: int  # distinct 10 s music segments


FULL = Config(
    tag="full",
    index_seconds=60.0,
    index_copies=60,
    index_reps=15,
    import_files=4,
    import_seconds=45.0,
    import_reps=3,
    disk_files=60,
    disk_seconds=60.0,
    pool_segments=6,
)
QUICK = Config(
    tag="quick",
    index_seconds=20.0,
    index_copies=30,
    index_reps=3,
    import_files=2,
    import_seconds=15.0,
    import_reps=1,
    disk_files=6,
    disk_seconds=60.0,
    pool_segments=2,
)


# ---------------------------------------------------------------------- sources


@dataclass(frozen=True, slots=True)
class Sources:
    adts: Path  # index_seconds of music, transcoded by aacdata
    flac: list[Path]  # import_files x import_seconds
    m4a: list[Path]  # the same audio, AAC-LC .m4a
    disk: list[Path]  # disk_files x disk_seconds, AAC-LC .m4a


_POOL: SegmentPool | None = None  # set before forking the writers, inherited by them


def _write(seed: int, num_samples: int, paths: tuple[Path, ...]) -> None:
    assert _POOL is not None
    audio = _POOL.compose("music", num_samples, seed)
    for p in paths:
        _synth.write_audio(p, audio, sample_rate=SAMPLE_RATE, bitrate=BITRATE)


def build_sources(workdir: Path, cfg: Config, seed: int) -> Sources:
    global _POOL
    root = workdir / f"import-{cfg.tag}"
    n_import, n_disk = round(cfg.import_seconds * SAMPLE_RATE), round(cfg.disk_seconds * SAMPLE_RATE)
    src = Sources(
        adts=root / "index.aac",
        flac=[root / "flac" / f"m{i:02d}.flac" for i in range(cfg.import_files)],
        m4a=[root / "m4a" / f"m{i:02d}.m4a" for i in range(cfg.import_files)],
        disk=[root / "disk" / f"d{i:02d}.m4a" for i in range(cfg.disk_files)],
    )
    params = {
        "cfg": [cfg.index_seconds, cfg.import_files, cfg.import_seconds, cfg.disk_files, cfg.disk_seconds],
        "segments": cfg.pool_segments,
        "seed": seed,
        "aacdata": aacdata_fingerprint(),
    }
    if cached(root, params):
        return src
    t0 = time.perf_counter()
    _POOL = SegmentPool(
        ["music"], segments=cfg.pool_segments, segment_seconds=10.0, sample_rate=SAMPLE_RATE, num_channels=2, seed=seed
    )
    index_flac = root / "index-source.flac"
    jobs = [(seed, round(cfg.index_seconds * SAMPLE_RATE), (index_flac,))]
    jobs += [(seed + 1 + i, n_import, (src.flac[i], src.m4a[i])) for i in range(cfg.import_files)]
    jobs += [(seed + 100 + i, n_disk, (src.disk[i],)) for i in range(cfg.disk_files)]
    parallel_map(_write, jobs)
    _POOL = None
    src.adts.write_bytes(_transcode.transcode(index_flac, bitrate=BITRATE).adts)
    mark_built(root, params)
    print(f"built the import sources in {time.perf_counter() - t0:.0f} s")
    return src


# ---------------------------------------------------------------------- (a) index


def python_walk(data: bytes) -> int:
    """Baseline: follow the 13-bit frame lengths in a Python loop, checking each sync word;
    returns the frame count."""
    pos, count, n = 0, 0, len(data)
    while pos < n:
        if data[pos] != 0xFF or data[pos + 1] & 0xF6 != 0xF0:
            raise ValueError(f"no ADTS sync word at byte {pos}")
        pos += ((data[pos + 3] & 0x03) << 11) | (data[pos + 4] << 3) | (data[pos + 5] >> 5)
        count += 1
    return count


def pyav_demux(data: bytes) -> int:
    """Baseline: FFmpeg's ADTS demuxer through PyAV (packet positions and sizes)."""
    count = 0
    with av.open(io.BytesIO(data), format="aac") as c:
        for packet in c.demux(audio=0):
            if packet.size:
                count += 1
    return count


def bench_index(src: Sources, cfg: Config) -> list[str]:
    one = src.adts.read_bytes()
    data = one * cfg.index_copies  # concatenated ADTS streams are one valid ADTS stream
    frames = len(_adts.parse_adts(data))
    hours = frames * _adts.SAMPLES_PER_FRAME / SAMPLE_RATE / 3600
    methods: dict[str, Callable[[], int]] = {
        "parse_adts": lambda: len(_adts.parse_adts(data)),
        "Python walk over lengths": lambda: python_walk(data),
        "PyAV ADTS demuxer": lambda: pyav_demux(data),
    }
    reps = {"parse_adts": cfg.index_reps, "Python walk over lengths": 3, "PyAV ADTS demuxer": 3}
    times: dict[str, list[float]] = {k: [] for k in methods}
    contention = Contention()
    for name, fn in methods.items():  # warm-up, and every method finds the same frames
        got = fn()
        if got != frames:
            raise RuntimeError(f"{name} found {got} frames, parse_adts {frames}")
    gc.collect()
    for r in range(max(reps.values())):
        for name, fn in methods.items():
            if r < reps[name]:
                t0 = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - t0)
    stats = {k: Summary.of(np.asarray(v) * 1e3) for k, v in times.items()}
    print_table(
        f"(a) index building: {frames:,} frames ({hours:.2f} h stereo 44.1 kHz, {len(data) / 1e6:.0f} MB, "
        f"{len(one) * 8 / cfg.index_seconds / 1000:.0f} kbit/s)",
        list(stats.items()),
        baseline="Python walk over lengths",
        unit="ms/stream",
    )
    for name, s in stats.items():
        print(f"  {name:<26} {frames / s.median * 1e3 / 1e6:8.2f} million frames/s")
    print(f"  {contention.note()}")
    return [
        "(a) index building",
        ratio_line("parse_adts, million frames/s", frames / stats["parse_adts"].median * 1e3 / 1e6, ">=", 2.0),
        info_line(
            "parse_adts / Python walk (time)",
            stats["parse_adts"].median / stats["Python walk over lengths"].median,
        ),
    ]


# ---------------------------------------------------------------------- (b) import throughput


def encode_only(path: Path) -> int:
    """Baseline: PyAV decode + resample + AAC encode (same options), nothing stored."""
    with av.open(str(path)) as c:
        s = c.streams.audio[0]
        enc = av.CodecContext.create("aac", "w")
        enc.sample_rate = SAMPLE_RATE
        enc.layout = "stereo"
        enc.format = "fltp"
        enc.bit_rate = BITRATE
        enc.time_base = Fraction(1, SAMPLE_RATE)
        enc.thread_count = 1
        enc.options = dict(_transcode.ENCODER_OPTIONS)
        enc.open()
        resampler = av.AudioResampler(format="fltp", layout="stereo", rate=SAMPLE_RATE)
        nbytes = pts = 0
        frames = list(c.decode(s))
        for frame in [*frames, None]:
            if frame is not None:
                frame.pts = None
            for f in resampler.resample(frame):
                f.pts = pts
                pts += f.samples
                nbytes += sum(p.size for p in enc.encode(f))
        nbytes += sum(p.size for p in enc.encode(None))
    return nbytes


def demux_only(path: Path) -> int:
    """Baseline: PyAV demux of every packet of the .m4a (what passthrough must read)."""
    with av.open(str(path)) as c:
        return sum(len(bytes(p)) for p in c.demux(audio=0) if p.size)


def bench_throughput(src: Sources, workdir: Path, cfg: Config) -> list[str]:
    seconds = len(src.flac) * round(cfg.import_seconds * SAMPLE_RATE) / SAMPLE_RATE
    stores = workdir / f"import-{cfg.tag}" / "stores"

    def importer(sources: Sequence[Path], workers: int, name: str) -> Callable[[], None]:
        def run() -> None:
            out = stores / f"{name}.zarr"
            shutil.rmtree(out, ignore_errors=True)
            report = aacdata.import_audio(sources, out, workers=workers, progress=False)
            if not report.ok or len(report.imported) != len(sources):
                raise RuntimeError(f"import failed: {report.failed[:3]}")
            if (report.passthrough == len(sources)) != (name == "m4a"):
                raise RuntimeError(f"{name}: {report.passthrough} of {len(sources)} passed through")

        return run

    methods: dict[str, Callable[[], object]] = {
        "import FLAC, workers=0": importer(src.flac, 0, "flac0"),
        "PyAV decode+encode only": lambda: [encode_only(p) for p in src.flac],
        "import FLAC, workers=2": importer(src.flac, 2, "flac2"),
        "import m4a passthrough, workers=0": importer(src.m4a, 0, "m4a"),
        "PyAV demux m4a only": lambda: [demux_only(p) for p in src.m4a],
    }
    # Passthrough runs take a fraction of a second: repeat them more.
    reps = {k: cfg.import_reps * (5 if "m4a" in k else 1) for k in methods}
    contention = Contention()
    for fn in methods.values():  # warm-up: imports, codecs, page cache
        fn()
    times: dict[str, list[float]] = {k: [] for k in methods}
    names = list(methods)
    for r in range(max(reps.values())):
        k = r % len(names)
        for name in names[k:] + names[:k]:
            if len(times[name]) < reps[name]:
                gc.collect()
                t0 = time.perf_counter()
                methods[name]()
                times[name].append(time.perf_counter() - t0)
    stats = {k: Summary.of(v) for k, v in times.items()}
    print(f"\n(b) import throughput: {len(src.flac)} files, {seconds:.0f} s of 44.1 kHz stereo music-like audio")
    width = max(map(len, stats))
    print(f"  {'method':<{width}}  {'median s':>9}  {'p90 s':>7}  {'n':>3}  {'x realtime':>10}")
    for name, s in stats.items():
        print(f"  {name:<{width}}  {s.median:9.3f}  {s.p90:7.3f}  {s.count:>3}  {seconds / s.median:10.0f}")
    print(f"  {contention.note()}")
    rt = {k: seconds / s.median for k, s in stats.items()}
    return [
        "(b) import throughput",
        ratio_line("import FLAC, workers=0, x realtime", rt["import FLAC, workers=0"], ">=", 40),
        ratio_line("import m4a passthrough, workers=0, x realtime", rt["import m4a passthrough, workers=0"], ">=", 500),
        info_line("import FLAC, workers=2, x realtime", rt["import FLAC, workers=2"]),
        info_line(
            "import FLAC workers=2 / workers=0 (speed)", rt["import FLAC, workers=2"] / rt["import FLAC, workers=0"]
        ),
        info_line(
            "import FLAC / PyAV decode+encode (time)",
            stats["import FLAC, workers=0"].median / stats["PyAV decode+encode only"].median,
        ),
        info_line(
            "import m4a / PyAV demux (time)",
            stats["import m4a passthrough, workers=0"].median / stats["PyAV demux m4a only"].median,
        ),
    ]


# ---------------------------------------------------------------------- (c) size on disk


def bench_disk(src: Sources, workdir: Path, cfg: Config) -> list[str]:
    out = workdir / f"import-{cfg.tag}" / "stores" / "disk.zarr"
    shutil.rmtree(out, ignore_errors=True)
    report = aacdata.import_audio(src.disk, out, workers=2, progress=False)
    if not report.ok or report.passthrough != len(src.disk):
        raise RuntimeError(f"import failed or re-encoded: {report}")
    with aacdata.AACStore.open(out) as st:
        payload = st.counts.num_bytes
        frames = st.counts.num_frames
    total = disk_usage(out)
    parts = {p.name: disk_usage(out, p.name) for p in sorted(out.iterdir()) if p.is_dir()}
    hours = report.audio_seconds / 3600
    print(
        f"\n(c) size on disk: {len(src.disk)} recordings, {hours:.2f} h, {frames:,} frames, "
        f"ADTS payload {payload:,} bytes ({payload * 8 / report.audio_seconds / 1000:.1f} kbit/s)"
    )
    print(f"  {'part':<12} {'apparent bytes':>15} {'allocated bytes':>16} {'allocated / payload':>20}")
    top = (total[0] - sum(a for a, _ in parts.values()), total[1] - sum(b for _, b in parts.values()))
    for name, (apparent, allocated) in [*parts.items(), ("top files", top), ("whole store", total)]:
        print(f"  {name:<12} {apparent:>15,} {allocated:>16,} {allocated / payload:>20.4f}")
    return [
        f"(c) size on disk ({hours:.2f} h)",
        ratio_line("du (allocated) / ADTS payload", total[1] / payload, "<=", 1.03),
        info_line("apparent size / ADTS payload", total[0] / payload),
        info_line("/index, % of payload (allocated)", 100 * parts["index"][1] / payload),
        info_line("/index, % of payload (apparent)", 100 * parts["index"][0] / payload),
    ]


# ---------------------------------------------------------------------- main


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument(
        "--workdir",
        type=Path,
        default=Path("/tmp/aacdata-bench"),
        help="cache of sources and stores (default: %(default)s)",
    )
    parser.add_argument("--quick", action="store_true", help="small sources and few repetitions (smoke test, < 30 s)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the synthetic audio and the windows")
    parser.add_argument(
        "--only", nargs="+", choices=("index", "throughput", "disk"), default=("index", "throughput", "disk")
    )
    args = parser.parse_args(argv)
    cfg = QUICK if args.quick else FULL
    header(
        "bench_import: index building, import throughput, size on disk",
        [Path(sys.argv[0]).name, *(sys.argv[1:] if argv is None else argv)],
    )
    print(f"# aacdata {aacdata.__version__}, PyAV {av.__version__}, numpy {np.__version__}")
    started = time.perf_counter()
    src = build_sources(args.workdir, cfg, args.seed)
    summary: list[str] = []
    if "index" in args.only:
        summary += bench_index(src, cfg)
    if "throughput" in args.only:
        summary += bench_throughput(src, args.workdir, cfg)
    if "disk" in args.only:
        summary += bench_disk(src, args.workdir, cfg)
    print("\nSummary")
    if args.quick:
        summary.append("(--quick: a smoke test on small inputs; the targets are for the full run)")
    print("\n".join(summary))
    print(f"\n# total {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
