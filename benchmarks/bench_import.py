"""Import side: (a) ADTS index building (``aacdata.codecs._adts.parse_adts`` on an hour of ADTS)
against a Python walk over the frame lengths and PyAV's ADTS demuxer; (b) ``import_audio``
of FLAC (transcoded; ``workers=0`` and ``2``) and of .m4a (passthrough) against PyAV doing
only the codec work; (c) ``du`` of a store of an hour of audio over its ADTS payload.
Synthetic sources, cached under ``--workdir``; see benchmarks/README.md.

    .venv/bin/python benchmarks/bench_import.py            # full run
    .venv/bin/python benchmarks/bench_import.py --quick    # smoke test, < 30 s
"""

from __future__ import annotations

import io
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from _corpus import SegmentPool, aacdata_fingerprint, cached, disk_usage, mark_built, parallel_map
from _harness import Report, parser

import aacdata
from aacdata.audio import _audiofile, _transcode
from aacdata.codecs import _adts

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


FULL = Config("full", 60.0, 60, 7, 4, 45.0, 3, 60, 60.0, 6)
QUICK = Config("quick", 20.0, 30, 3, 2, 15.0, 1, 6, 60.0, 2)


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
        _audiofile.write_audio(p, audio, sample_rate=SAMPLE_RATE, bitrate=BITRATE)


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
    _POOL = SegmentPool(["music"], segments=cfg.pool_segments, seconds=10.0, rate=SAMPLE_RATE, channels=2, seed=seed)
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


def bench_index(report: Report, src: Sources, cfg: Config) -> None:
    one = src.adts.read_bytes()
    data = one * cfg.index_copies  # concatenated ADTS streams are one valid ADTS stream
    frames = len(_adts.parse_adts(data))
    hours = frames * _adts.SAMPLES_PER_FRAME / SAMPLE_RATE / 3600
    methods: dict[str, Callable[[int], int]] = {
        "parse_adts": lambda _: len(_adts.parse_adts(data)),
        "Python walk over lengths": lambda _: python_walk(data),
        "PyAV ADTS demuxer": lambda _: pyav_demux(data),
    }
    for name, fn in methods.items():  # every method finds the same frames
        if (got := fn(0)) != frames:
            raise RuntimeError(f"{name} found {got} frames, parse_adts {frames}")
    stats = report.compare(
        f"(a) index building: {frames:,} frames ({hours:.2f} h stereo 44.1 kHz, {len(data) / 1e6:.0f} MB, "
        f"{len(one) * 8 / cfg.index_seconds / 1000:.0f} kbit/s)",
        lambda: methods,
        range(cfg.index_reps),
        baseline="Python walk over lengths",
        unit="ms/stream",
        scale=1e3,
    )
    rate = frames / stats["parse_adts"].median * 1e3 / 1e6
    report.target("(a) parse_adts, million frames/s", rate, ">=", 2.0)
    ratio = stats["parse_adts"].median / stats["Python walk over lengths"].median
    report.info("(a) parse_adts / Python walk (time)", ratio)


def encode_only(path: Path) -> int:
    """Baseline: PyAV decode + resample + AAC encode (same options), nothing stored."""
    with av.open(str(path)) as c:
        s = c.streams.audio[0]
        enc = av.CodecContext.create("aac", "w")
        enc.sample_rate, enc.layout, enc.format, enc.bit_rate = SAMPLE_RATE, "stereo", "fltp", BITRATE
        enc.time_base, enc.thread_count, enc.options = Fraction(1, SAMPLE_RATE), 1, dict(_transcode.ENCODER_OPTIONS)
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


def bench_throughput(report: Report, src: Sources, workdir: Path, cfg: Config) -> None:
    seconds = len(src.flac) * round(cfg.import_seconds * SAMPLE_RATE) / SAMPLE_RATE
    stores = workdir / f"import-{cfg.tag}" / "stores"

    def importer(sources: Sequence[Path], workers: int, name: str) -> Callable[[], None]:
        def run() -> None:
            out = stores / f"{name}.zarr"
            shutil.rmtree(out, ignore_errors=True)
            done = aacdata.import_audio(sources, out, workers=workers, progress=False)
            if not done.ok or len(done.imported) != len(sources):
                raise RuntimeError(f"import failed: {done.failed[:3]}")
            if (done.passthrough == len(sources)) != (name == "m4a"):
                raise RuntimeError(f"{name}: {done.passthrough} of {len(sources)} passed through")

        return run

    methods: dict[str, Callable[[], object]] = {
        "import FLAC, workers=0": importer(src.flac, 0, "flac0"),
        "PyAV decode+encode only": lambda: [encode_only(p) for p in src.flac],
        "import FLAC, workers=2": importer(src.flac, 2, "flac2"),
        "import m4a passthrough, workers=0": importer(src.m4a, 0, "m4a"),
        "PyAV demux m4a only": lambda: [demux_only(p) for p in src.m4a],
    }
    stats = report.compare(
        f"(b) import throughput: {len(src.flac)} files, {seconds:.0f} s of 44.1 kHz stereo music-like audio",
        lambda: {k: (lambda _, f=f: f()) for k, f in methods.items()},
        range(cfg.import_reps),
        warmup=[0],
        unit="s",
        scale=1.0,
    )
    rt = {k: seconds / s.median for k, s in stats.items()}
    report.table("(b) import throughput, x realtime (audio s / wall s)", ["method", "x realtime"], list(rt.items()))
    f0, f2, m4a = rt["import FLAC, workers=0"], rt["import FLAC, workers=2"], rt["import m4a passthrough, workers=0"]
    report.target("(b) import FLAC, workers=0, x realtime", f0, ">=", 40)
    report.target("(b) import m4a passthrough, workers=0, x realtime", m4a, ">=", 500)
    report.info("(b) import FLAC, workers=2, x realtime", f2)
    report.info("(b) import FLAC / PyAV decode+encode (time)", rt["PyAV decode+encode only"] / f0)
    report.info("(b) import m4a / PyAV demux (time)", rt["PyAV demux m4a only"] / m4a)


def bench_disk(report: Report, src: Sources, workdir: Path, cfg: Config) -> None:
    out = workdir / f"import-{cfg.tag}" / "stores" / "disk.zarr"
    shutil.rmtree(out, ignore_errors=True)
    imported = aacdata.import_audio(src.disk, out, workers=2, progress=False)
    if not imported.ok or imported.passthrough != len(src.disk):
        raise RuntimeError(f"import failed or re-encoded: {imported}")
    with aacdata.AACStore.open(out) as st:
        payload, frames = st.counts.num_bytes, st.counts.num_frames
    total = disk_usage(out)
    parts = {p.name: disk_usage(out, p.name) for p in sorted(out.iterdir()) if p.is_dir()}
    top = (total[0] - sum(a for a, _ in parts.values()), total[1] - sum(b for _, b in parts.values()))
    hours = imported.audio_seconds / 3600
    report.table(
        f"(c) size on disk: {len(src.disk)} recordings, {hours:.2f} h, {frames:,} frames, ADTS payload "
        f"{payload:,} bytes ({payload * 8 / imported.audio_seconds / 1000:.1f} kbit/s)",
        ["part", "apparent bytes", "allocated bytes", "allocated / payload"],
        [[k, a, b, f"{b / payload:.4f}"] for k, (a, b) in [*parts.items(), ("top files", top), ("whole store", total)]],
    )
    report.target("(c) du (allocated) / ADTS payload", total[1] / payload, "<=", 1.03)
    report.info("(c) apparent size / ADTS payload", total[0] / payload)
    report.info("(c) /index, % of payload (allocated)", 100 * parts["index"][1] / payload)


def main() -> None:
    p = parser(__doc__)
    p.add_argument(
        "--only", nargs="+", choices=("index", "throughput", "disk"), default=("index", "throughput", "disk")
    )
    args = p.parse_args()
    cfg = QUICK if args.quick else FULL
    report = Report(
        "bench_import: index building, import throughput, size on disk",
        args,
        f"aacdata {aacdata.__version__}, PyAV {av.__version__}, numpy {np.__version__}",
    )
    src = build_sources(args.workdir, cfg, args.seed)
    if "index" in args.only:
        bench_index(report, src, cfg)
    if "throughput" in args.only:
        bench_throughput(report, src, args.workdir, cfg)
    if "disk" in args.only:
        bench_disk(report, src, args.workdir, cfg)
    report.finish()


if __name__ == "__main__":
    main()
