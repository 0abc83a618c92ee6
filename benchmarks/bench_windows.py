"""Random 1 s windows: ``AACStore.read`` and ``AACSegmentDataset`` against the naive PyAV
decode loop (the baseline, measured in the same run) and against peers: soundfile on
FLAC, PyAV container seek and torchcodec on .m4a. Then position independence, corpus-size
independence and DataLoader scaling from one to two workers.

Corpora are synthetic (``aacdata._synth``), built on first use and cached under
``--workdir``; see benchmarks/README.md for what each number means.

    .venv/bin/python benchmarks/bench_windows.py            # full run
    .venv/bin/python benchmarks/bench_windows.py --quick    # smoke test, < 30 s
"""

from __future__ import annotations

import argparse
import gc
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's aacdata, installed or not

import av
import numpy as np
import torch
from _common import (
    Contention,
    SegmentPool,
    Summary,
    aacdata_fingerprint,
    build_short_speech,
    cached,
    check_stores,
    header,
    info_line,
    mark_built,
    parallel_map,
    print_table,
    ratio_line,
    time_rounds,
)

import aacdata
from aacdata import _adts, _synth
from aacdata.dataset import AACSegmentDataset, Window

SAMPLE_RATE = 44_100
WINDOW = 44_100  # 1 s
BITRATE = 160_000  # import_audio's default, also used for the .m4a peers
FRAME = _adts.SAMPLES_PER_FRAME
MINUTE = 60 * SAMPLE_RATE

try:
    import soundfile as sf
except ImportError:  # an optional peer
    sf = None

try:
    from torchcodec.decoders import AudioDecoder
except (ImportError, OSError, RuntimeError) as _e:  # missing wheel or FFmpeg libraries
    AudioDecoder = None
    TORCHCODEC_MISSING = f"{type(_e).__name__}: {_e}".splitlines()[0]
else:
    TORCHCODEC_MISSING = ""


@dataclass(frozen=True, slots=True)
class Config:
    """Sizes of one run; ``FULL`` is the default, ``QUICK`` the smoke test."""

    tag: str
    long_seconds: float  # recordings used for the position test
    num_long: int
    num_short: int
    short_seconds: tuple[float, float]
    pool_segments: int  # distinct 10 s segments per signal kind
    windows: int  # timed windows per method
    warmup: int
    round_size: int
    num_many: int  # recordings of the many-recordings store
    loader_batches: int  # timed batches per DataLoader trial
    loader_trials: int


FULL = Config(
    tag="full",
    long_seconds=480.0,
    num_long=2,
    num_short=18,
    short_seconds=(40.0, 65.0),
    pool_segments=6,
    windows=400,
    warmup=40,
    round_size=20,
    num_many=10_000,
    loader_batches=30,
    loader_trials=5,
)
QUICK = Config(
    tag="quick",
    long_seconds=125.0,
    num_long=1,
    num_short=3,
    short_seconds=(8.0, 12.0),
    pool_segments=2,
    windows=40,
    warmup=5,
    round_size=10,
    num_many=300,
    loader_batches=4,
    loader_trials=1,
)

CORPORA = {"music": ("music",), "sparse": ("tone", "speech")}
"""Corpus name -> signal kinds, alternating over its recordings."""


# ---------------------------------------------------------------------- corpora


@dataclass(frozen=True, slots=True)
class Corpus:
    """A store and the same audio as 16-bit FLAC and as .m4a, by store recording index."""

    name: str
    store: Path
    flac: list[Path]
    m4a: list[Path]


_POOL: SegmentPool | None = None  # set before forking the writers, inherited by them


def _write_recording(kind: str, num_samples: int, seed: int, flac: Path, m4a: Path) -> None:
    assert _POOL is not None
    audio = _POOL.compose(kind, num_samples, seed)
    _synth.write_audio(flac, audio, sample_rate=SAMPLE_RATE)
    _synth.write_audio(m4a, audio, sample_rate=SAMPLE_RATE, bitrate=BITRATE)


def build_corpus(workdir: Path, name: str, cfg: Config, seed: int) -> Corpus:
    """Write the corpus's FLAC and .m4a files and import the FLAC files (cached)."""
    global _POOL
    kinds = CORPORA[name]
    rng = np.random.default_rng(seed)
    seconds = [cfg.long_seconds] * cfg.num_long + list(rng.uniform(*cfg.short_seconds, cfg.num_short))
    lengths = [round(s * SAMPLE_RATE) + int(rng.integers(FRAME)) for s in seconds]
    names = [f"r{i:02d}_{kinds[i % len(kinds)]}" for i in range(len(lengths))]
    root = workdir / f"{name}-{cfg.tag}"
    params = {"kinds": kinds, "lengths": lengths, "seed": seed, "bitrate": BITRATE, "aacdata": aacdata_fingerprint()}
    store = root / "store.zarr"
    if not cached(root, params, check_stores(store)):
        t0 = time.perf_counter()
        _POOL = SegmentPool(
            kinds,
            segments=cfg.pool_segments,
            segment_seconds=10.0,
            sample_rate=SAMPLE_RATE,
            num_channels=2,
            seed=seed,
        )
        jobs = [
            (kinds[i % len(kinds)], n, seed * 7919 + i, root / "flac" / f"{s}.flac", root / "m4a" / f"{s}.m4a")
            for i, (n, s) in enumerate(zip(lengths, names, strict=True))
        ]
        parallel_map(_write_recording, sorted(jobs, key=lambda j: -j[1]))  # longest first: balanced workers
        _POOL = None
        report = aacdata.import_audio(root / "flac", store, workers=2, progress=False)
        if not report.ok or len(report.imported) != len(lengths):
            raise RuntimeError(f"import of the {name} corpus failed: {report} {report.failed}")
        mark_built(root, params)
        print(
            f"built the {name} corpus: {len(lengths)} recordings, {sum(lengths) / MINUTE:.1f} min, "
            f"in {time.perf_counter() - t0:.0f} s (import {report.realtime_factor:.0f}x realtime, 2 workers)"
        )
    with aacdata.AACStore.open(store) as st:
        ids = list(st.ids)
    return Corpus(
        name,
        store,
        [root / "flac" / i for i in ids],
        [root / "m4a" / Path(i).with_suffix(".m4a").name for i in ids],
    )


# ---------------------------------------------------------------------- methods


class NaiveLoop:
    """The baseline: one ``av.Packet`` per frame into a kept, flushed decoder,
    ``to_ndarray`` per frame, ``np.concatenate``, slice. The frames' bytes are cut out of
    the store beforehand (not timed)."""

    def __init__(self, store: aacdata.AACStore) -> None:
        self.store = store
        self.ctx = av.CodecContext.create("aac", "r")
        self._rows: dict[int, np.ndarray] = {}
        self._bytes: dict[int, bytes] = {}

    def prepare(self, w: Window) -> tuple[list[bytes], int, int]:
        """The frames (pre-roll k0-1 through k1) and where the window starts in their output."""
        rec = self.store.recording(w.recording)
        if w.recording not in self._rows:
            self._rows[w.recording] = self.store.frame_index(w.recording).astype(np.int64)
            self._bytes[w.recording] = self.store.adts_bytes(w.recording)
        rows, data = self._rows[w.recording], self._bytes[w.recording]
        base = int(rows[0, 0])
        d = w.start + rec.encoder_delay  # decoded position of the window's first sample
        k0, k1 = d // FRAME, (d + w.num_samples - 1) // FRAME
        kp = max(k0 - 1, 0)
        frames = [data[int(o) - base : int(o) - base + int(n)] for o, n in rows[kp : k1 + 1, :2]]
        return frames, d - kp * FRAME, w.num_samples

    def make(self, windows: Sequence[Window]) -> Callable[[int], np.ndarray]:
        jobs = [self.prepare(w) for w in windows]
        ctx = self.ctx

        def call(i: int) -> np.ndarray:
            frames, skip, n = jobs[i]
            ctx.flush_buffers()
            parts = []
            for b in frames:
                for f in ctx.decode(av.Packet(b)):
                    parts.append(f.to_ndarray())
            return np.concatenate(parts, axis=1)[:, skip : skip + n]

        return call


class ContainerSeek:
    """PyAV on .m4a: one open container per file, ``seek`` to the window, decode until it
    is covered (no pre-roll: the first frame after a seek decodes inexactly)."""

    def __init__(self, paths: Sequence[Path]) -> None:
        self.containers = [av.open(str(p)) for p in paths]

    def read(self, rec: int, start: int, n: int) -> np.ndarray:
        c = self.containers[rec]
        s = c.streams.audio[0]
        tb = s.time_base
        c.seek(start * tb.denominator // (SAMPLE_RATE * tb.numerator), stream=s)
        parts: list[np.ndarray] = []
        first = -1
        pos = 0
        for packet in c.demux(s):
            for f in packet.decode():
                if first < 0:
                    first = pos = int(f.pts * f.time_base * SAMPLE_RATE)
                    if first > start:
                        raise RuntimeError(f"seek to sample {start} landed at {first}")
                parts.append(f.to_ndarray())
                pos += f.samples
            if first >= 0 and pos >= start + n:
                break
        return np.concatenate(parts, axis=1)[:, start - first : start - first + n]

    def close(self) -> None:
        for c in self.containers:
            c.close()


Factory = Callable[[Sequence[Window], int], Callable[[int], Any]]
"""``make(windows, epoch) -> call(i)``: a method set up to read ``windows[i]``."""


def make_methods(corpus: Corpus, ds: AACSegmentDataset, store: aacdata.AACStore) -> dict[str, Factory]:
    """Every method, by name. The dataset reads its own windows (those of ``epoch``),
    which are the ``windows`` passed with it."""
    naive = NaiveLoop(store)
    seek = ContainerSeek(corpus.m4a)
    methods: dict[str, Factory] = {}

    def make_read(wins: Sequence[Window], epoch: int) -> Callable[[int], Any]:
        return lambda i: store.read(wins[i].recording, wins[i].start, wins[i].num_samples)

    def make_dataset(wins: Sequence[Window], epoch: int) -> Callable[[int], Any]:
        ds.set_epoch(epoch)
        it = iter(torch.utils.data.DataLoader(ds, batch_size=None, num_workers=0))
        return lambda i: next(it)  # item i, since calls come in order 0, 1, 2, ...

    methods["AACStore.read"] = make_read
    methods["AACSegmentDataset+DataLoader"] = make_dataset
    methods["naive PyAV loop"] = lambda wins, epoch: naive.make(wins)
    if sf is not None:
        flac = [str(p) for p in corpus.flac]
        methods["soundfile (FLAC)"] = lambda wins, epoch: (
            lambda i: sf.read(
                flac[wins[i].recording],
                start=wins[i].start,
                frames=wins[i].num_samples,
                dtype="float32",
                always_2d=True,
            )
        )
    methods["PyAV container seek (m4a)"] = lambda wins, epoch: (
        lambda i: seek.read(wins[i].recording, wins[i].start, wins[i].num_samples)
    )
    if AudioDecoder is not None:
        decoders = [AudioDecoder(str(p)) for p in corpus.m4a]
        methods["torchcodec (m4a)"] = lambda wins, epoch: (
            lambda i: decoders[wins[i].recording].get_samples_played_in_range(
                wins[i].start / SAMPLE_RATE, (wins[i].start + wins[i].num_samples) / SAMPLE_RATE
            )
        )
    return methods


def run_methods(
    methods: dict[str, Factory], timed: Sequence[Window], warm: Sequence[Window], cfg: Config
) -> dict[str, Summary]:
    """Warm every method up on other windows, then time all on ``timed`` in rounds."""
    for make in methods.values():
        call = make(warm, 1)
        for i in range(len(warm)):
            call(i)
    calls = {name: make(timed, 0) for name, make in methods.items()}
    gc.collect()
    times = time_rounds(calls, len(timed), cfg.round_size)
    return {name: Summary.of(t / 1e3) for name, t in times.items()}


def plan(ds: AACSegmentDataset, epoch: int, count: int) -> list[Window]:
    ds.set_epoch(epoch)
    return [ds.window(i) for i in range(count)]


# ---------------------------------------------------------------------- sections


def bench_corpus(corpus: Corpus, cfg: Config, seed: int) -> list[str]:
    """Main table for one corpus, exactness check, position test, DataLoader scaling."""
    store = aacdata.AACStore.open(corpus.store)
    ds = AACSegmentDataset(str(corpus.store), window_seconds=1.0, seed=seed, num_windows=cfg.windows)
    timed = plan(ds, 0, cfg.windows)
    warm = plan(ds, 1, cfg.warmup)
    methods = make_methods(corpus, ds, store)
    contention = Contention()
    stats = run_methods(methods, timed, warm, cfg)
    busy = contention.note()
    minutes = sum(r.num_samples for r in store.recordings) / MINUTE
    rows = list(stats.items())
    print_table(
        f"[{corpus.name}] random 1 s windows, {len(store)} recordings, {minutes:.1f} min, 44.1 kHz stereo, "
        f"{cfg.windows} windows per method",
        rows,
        baseline="naive PyAV loop",
    )
    # The contract: read() equals the naive loop's output, bit for bit (every window has pre-roll).
    naive = NaiveLoop(store).make(timed)
    same = sum(np.array_equal(store.read(w.recording, w.start, w.num_samples), naive(i)) for i, w in enumerate(timed))
    print(f"  {busy}")
    print(f"  AACStore.read == naive loop, bit for bit: {same}/{len(timed)} windows")
    if AudioDecoder is None:
        print(f"  torchcodec skipped: {TORCHCODEC_MISSING}")

    read, base = stats["AACStore.read"].median, stats["naive PyAV loop"].median
    lines = [
        f"[{corpus.name}]",
        ratio_line("AACStore.read / naive loop", read / base, "<=", 0.9),
        ratio_line("AACSegmentDataset / naive loop", stats["AACSegmentDataset+DataLoader"].median / base, "<=", 1.0),
    ]
    if "soundfile (FLAC)" in stats:
        lines.append(ratio_line("soundfile / AACStore.read", stats["soundfile (FLAC)"].median / read, ">=", 1.6))
    lines.append(info_line("PyAV container seek / AACStore.read", stats["PyAV container seek (m4a)"].median / read))
    if "torchcodec (m4a)" in stats:
        lines.append(info_line("torchcodec / AACStore.read", stats["torchcodec (m4a)"].median / read))
    lines += bench_position(corpus, store, cfg, seed)
    lines += bench_loader(corpus, cfg, seed)
    store.close()
    return lines


def bench_position(corpus: Corpus, store: aacdata.AACStore, cfg: Config, seed: int) -> list[str]:
    """The same read cost in the last minute of a long recording as in its first."""
    longs = [r.index for r in store.recordings if r.num_samples >= 2 * MINUTE]
    rng = np.random.default_rng(seed + 1)
    first, last = [], []
    for _ in range(cfg.windows):
        rec = store.recording(int(rng.choice(longs)))
        first.append(Window(rec.index, int(rng.integers(0, MINUTE - WINDOW)), WINDOW))
        last.append(Window(rec.index, int(rng.integers(rec.num_samples - MINUTE, rec.num_samples - WINDOW)), WINDOW))
    calls: dict[str, Callable[[int], Any]] = {
        "AACStore.read, first minute": lambda i: store.read(first[i].recording, first[i].start, WINDOW),
        "AACStore.read, last minute": lambda i: store.read(last[i].recording, last[i].start, WINDOW),
    }
    contention = Contention()
    for i in range(cfg.warmup):
        calls["AACStore.read, first minute"](i)
        calls["AACStore.read, last minute"](i)
    times = time_rounds(calls, cfg.windows, cfg.round_size)
    stats = {k: Summary.of(v / 1e3) for k, v in times.items()}
    # Peers, fewer windows: torchcodec's cost grows with the position in the file.
    few = max(cfg.windows // 10, 10)
    seek = ContainerSeek(corpus.m4a)
    peers: dict[str, Callable[[int], Any]] = {
        "PyAV container seek, first minute": lambda i: seek.read(first[i].recording, first[i].start, WINDOW),
        "PyAV container seek, last minute": lambda i: seek.read(last[i].recording, last[i].start, WINDOW),
    }
    if AudioDecoder is not None:
        dec = {r: AudioDecoder(str(corpus.m4a[r])) for r in longs}
        for tag, wins in (("first", first), ("last", last)):
            peers[f"torchcodec, {tag} minute"] = lambda i, w=wins: dec[w[i].recording].get_samples_played_in_range(
                w[i].start / SAMPLE_RATE, (w[i].start + WINDOW) / SAMPLE_RATE
            )
    for call in peers.values():
        call(0)
    stats.update({k: Summary.of(v / 1e3) for k, v in time_rounds(peers, few, max(few // 5, 1)).items()})
    seek.close()
    minutes = min(store.recording(r).num_samples for r in longs) / MINUTE
    print_table(
        f"[{corpus.name}] position: windows in the first vs the last minute of {len(longs)} recording(s) "
        f"of >= {minutes:.1f} min",
        list(stats.items()),
        baseline="AACStore.read, first minute",
    )
    print(f"  {contention.note()}")
    out = [
        ratio_line(
            "AACStore.read last / first minute",
            stats["AACStore.read, last minute"].median / stats["AACStore.read, first minute"].median,
            "<=",
            1.1,
        )
    ]
    for peer in ("PyAV container seek", "torchcodec"):
        if f"{peer}, last minute" in stats:
            ratio = stats[f"{peer}, last minute"].median / stats[f"{peer}, first minute"].median
            out.append(info_line(f"{peer} last / first minute", ratio))
    return out


def bench_loader(corpus: Corpus, cfg: Config, seed: int) -> list[str]:
    """Windows per second through ``DataLoader(batch_size=32)`` with 0, 1 and 2 workers.

    A trial during which other processes took more than a quarter of a core is reported
    but left out of the median (2 workers need both cores), unless no trial was clean.
    """
    batch = 32
    trials: dict[int, list[tuple[float, float]]] = {0: [], 1: [], 2: []}  # (windows/s, other cores)
    for trial in range(cfg.loader_trials):
        order = [1, 2, 0] if trial % 2 == 0 else [2, 1, 0]
        for workers in order:
            # Untimed: the first batch (workers fork, open the store) and what the workers
            # prefetched meanwhile (prefetch_factor=2 batches each).
            skip = 1 + 3 * workers
            ds = AACSegmentDataset(
                str(corpus.store),
                window_seconds=1.0,
                seed=seed + 100 * trial + workers,
                num_windows=batch * (skip + cfg.loader_batches),
            )
            contention = Contention()
            it = iter(torch.utils.data.DataLoader(ds, batch_size=batch, num_workers=workers))
            for _ in range(skip):
                next(it)
            t0 = time.perf_counter()
            for _ in range(cfg.loader_batches):
                next(it)
            rate = cfg.loader_batches * batch / (time.perf_counter() - t0)
            del it  # joins the workers, so their CPU time counts as ours
            trials[workers].append((rate, contention.cores()))
    print(f"\n[{corpus.name}] DataLoader(batch_size=32), windows/s, {cfg.loader_batches} batches per trial")
    stats = {}
    for w, results in trials.items():
        clean = [r for r, other in results if other <= 0.25]
        stats[w] = Summary.of(clean or [r for r, _ in results])
        shown = ", ".join(
            f"{r:.0f}" + ("" if other <= 0.25 else f" (other: {other:.1f} cores)") for r, other in results
        )
        used = f"median of {len(clean)} clean" if clean else f"median of all {len(results)}, none clean"
        print(f"  {w} worker{'s' if w != 1 else ' '}  {stats[w].median:8.0f} windows/s   {used}; trials: {shown}")
    return [
        ratio_line("DataLoader 2 workers / 1 worker", stats[2].median / stats[1].median, ">=", 1.8),
        info_line("DataLoader 1 worker / 0 workers", stats[1].median / stats[0].median),
    ]


# ---------------------------------------------------------------------- many recordings


def build_many(workdir: Path, cfg: Config, seed: int) -> tuple[Path, Path]:
    """The stores of 1 recording (120 s) and of ``cfg.num_many`` of 3-5 s, 16 kHz mono
    (``_common.build_short_speech``, shared with bench_scale.py)."""
    return build_short_speech(workdir, cfg.num_many, seed)


def bench_many(workdir: Path, cfg: Config, seed: int) -> list[str]:
    """Read cost of 1 s windows in a store of one recording vs one of many short ones."""
    one_path, many_path = build_many(workdir, cfg, seed)
    t0 = time.perf_counter()
    many = aacdata.AACStore.open(many_path)
    open_many = time.perf_counter() - t0
    t0 = time.perf_counter()
    one = aacdata.AACStore.open(one_path)
    open_one = time.perf_counter() - t0
    n = 16_000
    rng = np.random.default_rng(seed + 2)
    len_one = one.recording(0).num_samples
    lengths = many.column("num_samples")

    def draw(count: int) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
        a = [(0, int(rng.integers(0, len_one - n))) for _ in range(count)]
        recs = rng.integers(0, len(many), count)
        b = [(int(r), int(rng.integers(0, int(lengths[r]) - n))) for r in recs]
        return a, b

    contention = Contention()
    # Cold: the first read of each recording loads its index rows (then cached).
    cold = np.empty(len(many))
    for j, r in enumerate(rng.permutation(len(many))):
        s = int(rng.integers(0, int(lengths[r]) - n))
        t = time.perf_counter_ns()
        many.read(int(r), s, n)
        cold[j] = time.perf_counter_ns() - t
    win_one, win_many = draw(cfg.windows)
    for r, s in draw(cfg.warmup)[0]:
        one.read(r, s, n)
    label = f"{len(many):,} recordings, index cached"
    calls: dict[str, Callable[[int], Any]] = {
        "1 recording": lambda i: one.read(win_one[i][0], win_one[i][1], n),
        label: lambda i: many.read(win_many[i][0], win_many[i][1], n),
    }
    times = time_rounds(calls, cfg.windows, cfg.round_size)
    stats = {k: Summary.of(v / 1e3) for k, v in times.items()}
    stats[f"{len(many):,} recordings, first read of each"] = Summary.of(cold / 1e3)
    print_table(
        f"corpus size: 1 s windows of 16 kHz mono, a store of 1 recording (120 s) vs {len(many):,} of 3-5 s",
        list(stats.items()),
        baseline="1 recording",
    )
    print(f"  {contention.note()}")
    print(
        f"  AACStore.open: {open_one * 1e3:.1f} ms (1 recording), {open_many * 1e3:.1f} ms ({len(many):,} recordings)"
    )
    one.close()
    many.close()
    base = stats["1 recording"].median
    return [
        "[corpus size]",
        ratio_line(f"{len(many):,} / 1 recordings (index cached)", stats[label].median / base, "<=", 1.2),
        info_line(
            f"{len(many):,} / 1 recordings (first read of each)",
            stats[f"{len(many):,} recordings, first read of each"].median / base,
            "(one-time index load per recording and worker)",
        ),
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
        help="cache of corpora and stores (default: %(default)s)",
    )
    parser.add_argument("--quick", action="store_true", help="small corpora and few repetitions (smoke test, < 30 s)")
    parser.add_argument("--windows", type=int, help="timed windows per method (default: 400, quick: 40)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the synthetic audio and the windows")
    parser.add_argument("--corpora", nargs="+", choices=list(CORPORA), default=list(CORPORA))
    parser.add_argument("--skip-many", action="store_true", help="skip the 1 vs 10,000 recordings test")
    args = parser.parse_args(argv)
    cfg = QUICK if args.quick else FULL
    if args.windows:
        cfg = Config(**{**{f: getattr(cfg, f) for f in cfg.__dataclass_fields__}, "windows": args.windows})
    header("bench_windows: random 1 s windows", [Path(sys.argv[0]).name, *(sys.argv[1:] if argv is None else argv)])
    print(
        f"# aacdata {aacdata.__version__}, PyAV {av.__version__}, torch {torch.__version__}, "
        f"soundfile {getattr(sf, '__version__', 'missing')}, torchcodec "
        f"{'missing' if AudioDecoder is None else __import__('torchcodec').__version__}"
    )
    torch.set_num_threads(1)
    started = time.perf_counter()
    summary: list[str] = []
    for name in args.corpora:
        corpus = build_corpus(args.workdir, name, cfg, args.seed)
        summary += bench_corpus(corpus, cfg, args.seed)
    if not args.skip_many:
        summary += bench_many(args.workdir, cfg, args.seed)
    print("\nSummary (ratios of medians)")
    if args.quick:
        summary.append("(--quick: a smoke test on small inputs; the targets are for the full run)")
    print("\n".join(summary))
    print(f"\n# total {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
