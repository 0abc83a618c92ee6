"""aacdata against its peers on .m4a files with and without perceptual noise substitution
(PNS): a random 1 s window of 44.1 kHz stereo music-like audio through ``AACStore.read``
(the baseline), torchcodec with a decoder kept open per file and with a decoder made per
window, soundfile on the same audio as FLAC (kept open) and the naive PyAV loop on the
.m4a (kept open, seek + decode), every window visiting the methods in a random order; then
items/s through ``DataLoader(batch_size=32, num_workers=2, persistent_workers=True)``:
``AACSegmentDataset`` against Datasets that make a torchcodec decoder per item or keep one
per worker, trials interleaved.

    .venv/bin/python benchmarks/bench_peers.py --out benchmarks/results   # full run
    .venv/bin/python benchmarks/bench_peers.py --quick                    # smoke test, < 60 s
"""

from __future__ import annotations

import gc
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av
import numpy as np
import soundfile as sf
import torch
from _corpus import (
    MUSIC_RATE,
    TORCHCODEC_MISSING,
    AudioDecoder,
    ContainerSeek,
    SoundfileReader,
    TorchcodecReader,
    aacdata_fingerprint,
    cached,
    check_stores,
    mark_built,
    parallel_map,
    torchcodec_version,
)
from _harness import Contention, Method, Report, Summary, measure, parser

import aacdata
from aacdata import AACSegmentDataset, AACStore, testing
from aacdata.audio import _audiofile
from aacdata.codecs._decoder import DecoderPool
from aacdata.codecs._fast import fastaac
from aacdata.dataset import Window

BATCH = 32
WORKERS = 2
BITRATE = 128_000
TARGET_TORCHCODEC = "0.17"  # the version the targets are stated for

AACDATA = "aacdata store.read"
AACDATA_PURE = "aacdata store.read, pure Python (as AACDATA_PURE_PYTHON=1)"
TC_OPEN = "torchcodec, decoder kept open"
TC_PER_WINDOW = "torchcodec, decoder per window"
SOUNDFILE = "soundfile, .flac kept open"
NAIVE = "naive PyAV loop (.m4a kept open, seek + decode)"

DS_AACDATA = "aacdata AACSegmentDataset"
DS_TC_PER_ITEM = "torchcodec, decoder per item"
DS_TC_PER_WORKER = "torchcodec, decoder kept open per worker"


@dataclass(frozen=True, slots=True)
class FileSet:
    """The same audio as .m4a (PNS on or off), imported into ``store`` (recording ``i`` is
    ``m4a[i]``), and as 16-bit FLAC."""

    name: str
    pns: bool
    store: Path
    m4a: list[Path]
    flac: list[Path]


def _write_files(i: int, num_samples: int, seed: int, root: Path) -> None:
    audio = testing.signal("music", num_samples, sample_rate=MUSIC_RATE, num_channels=2, seed=seed)
    _audiofile.write_audio(root / "flac" / f"r{i:02d}.flac", audio, sample_rate=MUSIC_RATE)
    for pns in (False, True):
        path = root / ("pns" if pns else "plain") / f"r{i:02d}.m4a"
        _audiofile.write_audio(path, audio, sample_rate=MUSIC_RATE, bitrate=BITRATE, pns=pns)


def build_inputs(workdir: Path, files: int, seconds: float, seed: int) -> list[FileSet]:
    """``files`` recordings of ``seconds`` (plus < 1 s) of music-like 44.1 kHz stereo audio,
    each written as FLAC and as .m4a at 128 kbit/s with PNS off and on; each .m4a imported
    (passthrough) into the store of its set (cached under ``workdir``)."""
    rng = np.random.default_rng(seed)
    lengths = [round(seconds * MUSIC_RATE) + int(rng.integers(MUSIC_RATE)) for _ in range(files)]
    root = workdir / f"peers-{files}-{round(seconds)}"
    sets = {"PNS-free": (False, root / "plain"), "PNS": (True, root / "pns")}
    stores = [d / "store.zarr" for _, d in sets.values()]
    params = {"lengths": lengths, "seed": seed, "bitrate": BITRATE, "aacdata": aacdata_fingerprint()}
    if not cached(root, params, check_stores(*stores)):
        t0 = time.perf_counter()
        parallel_map(_write_files, [(i, n, seed * 7919 + i, root) for i, n in enumerate(lengths)])
        for _, d in sets.values():
            for m4a in sorted(d.glob("*.m4a")):
                report = aacdata.import_audio(m4a, d / "store.zarr", workers=0, progress=False)
                if not report.ok:
                    raise RuntimeError(f"import of {m4a} failed: {report.failed}")
        mark_built(root, params)
        print(
            f"built {files} files x {seconds:.0f} s (FLAC, .m4a with and without PNS) "
            f"in {time.perf_counter() - t0:.0f} s"
        )
    out = []
    for name, (pns, d) in sets.items():
        names = [f"r{i:02d}" for i in range(files)]
        fs = FileSet(
            name, pns, d / "store.zarr", [d / f"{n}.m4a" for n in names], [root / "flac" / f"{n}.flac" for n in names]
        )
        with AACStore.open(fs.store) as store:
            assert list(store.ids) == [p.name for p in fs.m4a], store.ids
            # PNS detected on import: the PNS set's windows are read with a fresh decoder each
            assert all(r.pns == pns for r in store.recordings), [(r.id, r.pns) for r in store.recordings]
        out.append(fs)
    return out


def random_windows(store: AACStore, count: int, seed: int) -> list[Window]:
    """``count`` random 1 s windows: a recording uniformly, then a start uniformly."""
    rng = np.random.default_rng(seed)
    lengths = [r.num_samples for r in store.recordings]
    out = []
    for _ in range(count):
        r = int(rng.integers(len(lengths)))
        out.append(Window(r, int(rng.integers(0, lengths[r] - MUSIC_RATE + 1)), MUSIC_RATE))
    return out


# -- (a) one window at a time --------------------------------------------------------------


def window_methods(sets: Sequence[FileSet], stores: Mapping[str, AACStore]) -> dict[str, Method]:
    """Every method on every set, files opened here and kept open for the pass."""
    out: dict[str, Method] = {}
    for fs in sets:
        store = stores[fs.name]
        out[f"[{fs.name}] {AACDATA}"] = lambda w, s=store: s.read(w.recording, w.start, w.num_samples)
        if fastaac is not None:  # the same store, read without the compiled decoder and frame check
            pure = AACStore.open(fs.store)
            pure._decoders = DecoderPool(compiled=False)
            out[f"[{fs.name}] {AACDATA_PURE}"] = lambda w, s=pure: s.read(w.recording, w.start, w.num_samples)
        if AudioDecoder is not None:
            out[f"[{fs.name}] {TC_OPEN}"] = TorchcodecReader(fs.m4a, sample_rate=MUSIC_RATE).read
            out[f"[{fs.name}] {TC_PER_WINDOW}"] = TorchcodecReader(fs.m4a, sample_rate=MUSIC_RATE, per_window=True).read
        out[f"[{fs.name}] {SOUNDFILE}"] = SoundfileReader(fs.flac).read
        out[f"[{fs.name}] {NAIVE}"] = ContainerSeek(fs.m4a).read
    return out


def bench_windows(
    report: Report, sets: Sequence[FileSet], stores: Mapping[str, AACStore], windows: Sequence[Window], warmup: int
) -> dict[str, dict[str, Summary]]:
    """Both sets' methods in one run, every window visiting all of them (both sets: the
    same window of the same audio) in a random order; a table per set. The stats of the
    shuffled order, by set and method."""
    timed, warm = list(windows[warmup:]), list(windows[:warmup])
    first: dict[str, dict[str, Summary]] = {}
    for how in ["shuffled", *report.orders[1:]]:
        methods = window_methods(sets, stores)
        gc.collect()
        probe = Contention()
        times = measure(methods, timed, warmup=warm, order=how, seed=report.args.seed)
        note = probe.note()
        by_set: dict[str, dict[str, Summary]] = {}
        for fs in sets:
            tag = f"[{fs.name}] "
            stats = {k.removeprefix(tag): Summary.of(v * 1e6) for k, v in times.items() if k.startswith(tag)}
            files = f"{len(fs.m4a)} files of {stores[fs.name].recording(0).num_samples / MUSIC_RATE:.0f}+ s"
            title = f"[{fs.name}] random 1 s stereo windows, 44.1 kHz, {files}, {len(timed)} windows ({how} order)"
            report.timings(title, stats, AACDATA, note=f"methods of both sets in one run; {note}")
            by_set[fs.name] = stats
        first = first or by_set
    return first


def summarize_windows(report: Report, stats: Mapping[str, Mapping[str, Summary]]) -> None:
    """One table of both sets, and the targets."""
    free, pns = stats["PNS-free"], stats["PNS"]
    rows = []
    for m in free:
        a, b = free[m], pns[m]
        rows.append(
            [m, a.median, a.p90, a.median / free[AACDATA].median, b.median, b.p90, b.median / pns[AACDATA].median]
        )
    cols = ["method", "PNS-free median µs", "p90", "/ aacdata", "PNS median µs", "p90", "/ aacdata"]
    report.table("1 s windows, both sets (shuffled order, medians)", cols, rows)
    for name, s in stats.items():
        read = s[AACDATA].median
        if TC_OPEN in s:
            report.target(f"[{name}] aacdata / torchcodec kept open (window)", read / s[TC_OPEN].median, "<=", 0.67)
        report.target(f"[{name}] aacdata / naive PyAV loop (window)", read / s[NAIVE].median, "<=", 0.9)
    report.target("aacdata window, PNS / PNS-free", pns[AACDATA].median / free[AACDATA].median, "<=", 1.2)
    if AACDATA_PURE in free:
        for name, s in stats.items():
            report.info(f"[{name}] aacdata compiled / pure Python (window)", s[AACDATA].median / s[AACDATA_PURE].median)
        report.info("aacdata pure Python window, PNS / PNS-free", pns[AACDATA_PURE].median / free[AACDATA_PURE].median)
    if AudioDecoder is None:
        print(f"\ntorchcodec rows and targets left out: {TORCHCODEC_MISSING}")
    for name, s in stats.items():
        for m in (TC_PER_WINDOW, SOUNDFILE):
            if m in s:
                report.info(f"[{name}] aacdata / {m} (window)", s[AACDATA].median / s[m].median)


# -- (b) correctness -----------------------------------------------------------------------


def best_offset(store: AACStore, w: Window, y: np.ndarray, span: int = 2048, m: int = 1024) -> tuple[int, float]:
    """The shift ``o`` in ``[-span, span]`` for which the peer's ``m`` samples in the middle
    of the window, ``y[:, h : h + m]``, are closest to aacdata's ``[start + h + o, ... + m)``,
    and the max |diff| there."""
    total, h = store.recording(w.recording).num_samples, w.num_samples // 2
    lo, hi = max(w.start + h - span, 0), min(w.start + h + span + m, total)
    x = store.read(w.recording, lo, hi - lo)
    err = np.abs(np.lib.stride_tricks.sliding_window_view(x, m, axis=1) - y[:, None, h : h + m]).max(axis=(0, 2))
    j = int(np.argmin(err))
    return lo + j - (w.start + h), float(err[j])


def check_samples(
    report: Report, sets: Sequence[FileSet], stores: Mapping[str, AACStore], windows: Sequence[Window]
) -> None:
    """torchcodec's and the naive loop's samples against aacdata's, window by window
    (reported, not asserted: PNS noise depends on the decoder's state, and the naive loop
    decodes the first frame after a seek without its pre-roll)."""
    rows = []
    for fs in sets:
        store = stores[fs.name]
        peers: dict[str, Callable[[Window], Any]] = {}
        if AudioDecoder is not None:
            peers["torchcodec, kept open"] = TorchcodecReader(fs.m4a, sample_rate=MUSIC_RATE).read
        peers["naive PyAV loop"] = ContainerSeek(fs.m4a).read
        for name, read in peers.items():
            lengths = exact = 0
            whole, tail, rel, offsets = [], [], [], set()
            for w in windows:
                x = store.read(w.recording, w.start, w.num_samples)
                y = np.asarray(read(w), dtype=np.float32)
                lengths += y.shape[1] == w.num_samples
                n = min(y.shape[1], w.num_samples)
                d = np.abs(x[:, :n] - y[:, :n])
                exact += y.shape[1] == w.num_samples and not d.any()
                whole.append(float(d.max()))
                tail.append(float(d[:, 1024:].max()))
                rel.append(float(np.sqrt(np.mean(d**2)) / max(float(np.sqrt(np.mean(x**2))), 1e-12)))
                h = w.num_samples // 2
                if not fs.pns and d[:, h : h + 1024].max() >= 1e-3:
                    offsets.add(best_offset(store, w, y)[0])
                elif not fs.pns:
                    offsets.add(0)
            off = "not searched (PNS)" if fs.pns else ", ".join(f"{o:+d}" for o in sorted(offsets))
            diffs = [f"{max(v):.1e}" for v in (whole, tail, rel)]
            rows.append([fs.name, name, len(windows), lengths, exact, *diffs, off])
    cols = [
        "set",
        "peer",
        "windows",
        "length == 44100",
        "bit-exact",
        "max abs diff",
        "max abs diff from sample 1024",
        "max rms(diff) / rms",
        "offset",
    ]
    report.table(
        "samples against aacdata's, same windows",
        cols,
        rows,
        "offset: the shift of aacdata's timeline that best matches the peer's 1024 samples in the middle of the "
        "window (searched over +-2048 where they differ by >= 1e-3; 0 otherwise)",
    )


# -- (c) DataLoader ------------------------------------------------------------------------


class TorchcodecWindows(torch.utils.data.Dataset):  # type: ignore[type-arg]
    """Windows through torchcodec: a new ``AudioDecoder`` per item (``keep=False``, a
    Dataset that holds no state) or one per file and worker process, kept (``keep=True``);
    float32 ``(C, T)`` items."""

    def __init__(self, paths: Sequence[Path], windows: Sequence[Window], *, keep: bool) -> None:
        self.paths, self.windows, self.keep = [str(p) for p in paths], list(windows), keep
        self._decoders: tuple[int, list[Any]] = (-1, [])

    def __len__(self) -> int:
        return len(self.windows)

    def __getitem__(self, i: int) -> torch.Tensor:
        w = self.windows[i]
        if self.keep:
            if self._decoders[0] != os.getpid():
                self._decoders = (os.getpid(), [AudioDecoder(p) for p in self.paths])
            d = self._decoders[1][w.recording]
        else:
            d = AudioDecoder(self.paths[w.recording])
        a = w.start / MUSIC_RATE
        return d.get_samples_played_in_range(a, a + w.num_samples / MUSIC_RATE).data[:, : w.num_samples]


class Slice(torch.utils.data.Sampler[int]):
    """The indices of one trial; set ``indices`` before each pass (the DataLoader reads its
    sampler in the main process, so persistent workers need not restart)."""

    def __init__(self) -> None:
        self.indices: Sequence[int] = ()

    def __iter__(self) -> Any:
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)


def loader_trial(ds: torch.utils.data.Dataset, per_trial: int) -> Callable[[int], float]:  # type: ignore[type-arg]
    """Trial ``t``: items ``[t * per_trial, (t + 1) * per_trial)`` through one DataLoader
    whose workers persist across trials; seconds per item over the whole pass (the
    pipeline's fill included; the workers' start is in the untimed warm-up trial)."""
    sampler = Slice()
    loader = torch.utils.data.DataLoader(
        ds, batch_size=BATCH, sampler=sampler, num_workers=WORKERS, persistent_workers=True
    )

    def run(t: int) -> float:
        sampler.indices = range(t * per_trial, (t + 1) * per_trial)
        t0 = time.perf_counter()
        n = sum(int(batch.shape[0]) for batch in loader)
        elapsed = time.perf_counter() - t0
        if n != per_trial:
            raise RuntimeError(f"trial {t}: {n} items, expected {per_trial}")
        return elapsed / n

    return run


def bench_loader(
    report: Report,
    sets: Sequence[FileSet],
    stores: Mapping[str, AACStore],
    windows: Sequence[Window],
    trials: int,
    batches: int,
) -> None:
    per_trial = BATCH * batches
    if (trials + 1) * per_trial > len(windows):
        raise ValueError(
            f"{trials} trials + 1 warm-up of {per_trial} items need {(trials + 1) * per_trial} windows; "
            f"got {len(windows)} (pass --windows)"
        )
    configs: dict[str, Callable[[int], float]] = {}
    for fs in sets:
        ids = stores[fs.name].ids
        plan = [(ids[w.recording], w.start, w.num_samples) for w in windows]
        configs[f"[{fs.name}] {DS_AACDATA}"] = loader_trial(AACSegmentDataset(str(fs.store), windows=plan), per_trial)
        if AudioDecoder is not None:
            configs[f"[{fs.name}] {DS_TC_PER_ITEM}"] = loader_trial(
                TorchcodecWindows(fs.m4a, windows, keep=False), per_trial
            )
            configs[f"[{fs.name}] {DS_TC_PER_WORKER}"] = loader_trial(
                TorchcodecWindows(fs.m4a, windows, keep=True), per_trial
            )
    gc.collect()
    probe = Contention()
    # trial t of every configuration, then t + 1; the last slice of windows warms up (starts the workers)
    times = measure(configs, range(trials), warmup=[trials], self_timed=True)
    rates = {k: 1.0 / v for k, v in times.items()}
    rows = []
    for fs in sets:
        base = float(np.median(rates[f"[{fs.name}] {DS_AACDATA}"]))
        for m in (DS_AACDATA, DS_TC_PER_ITEM, DS_TC_PER_WORKER):
            if f"[{fs.name}] {m}" in rates:
                r = rates[f"[{fs.name}] {m}"]
                rows.append([fs.name, m, float(np.median(r)), float(np.min(r)), r.size, base / float(np.median(r))])
    title = (
        f"items/s through DataLoader(batch_size={BATCH}, num_workers={WORKERS}, persistent_workers=True), "
        f"1 s stereo windows, {per_trial} items per trial, trials interleaved"
    )
    cols = ["set", "Dataset", "items/s (median)", "slowest trial", "trials", "aacdata / this"]
    report.table(title, cols, rows, probe.note())
    if AudioDecoder is None:
        print(f"\ntorchcodec rows and targets left out: {TORCHCODEC_MISSING}")
    for row in rows:
        if row[1] == DS_TC_PER_ITEM:
            report.target(f"[{row[0]}] DataLoader items/s, aacdata / torchcodec per item", row[5], ">=", 1.5)
        elif row[1] == DS_TC_PER_WORKER:
            report.info(f"[{row[0]}] DataLoader items/s, aacdata / torchcodec kept open per worker", row[5])


def main() -> None:
    p = parser(__doc__, quick="< 60 s")
    p.add_argument("--files", type=int, default=4, help="recordings per set (default %(default)s)")
    p.add_argument("--windows", type=int, help="timed windows (default 2000, quick 200)")
    args = p.parse_args()
    report = Report(
        "bench_peers: aacdata against torchcodec, soundfile and the naive PyAV loop, .m4a with and without PNS",
        args,
        f"aacdata {aacdata.__version__}, PyAV {av.__version__} (FFmpeg {av.ffmpeg_version_info}), "
        f"torch {torch.__version__}, soundfile {sf.__version__}, torchcodec {torchcodec_version(ffmpeg=True)}",
    )
    if AudioDecoder is None:
        print(f"# torchcodec rows left out: {TORCHCODEC_MISSING}")
    else:
        print(
            f"# the torchcodec targets are stated for torchcodec {TARGET_TORCHCODEC}; this run used "
            f"torchcodec {torchcodec_version()} (the CPU build that installs here)"
        )
    torch.set_num_threads(1)
    seconds, windows, warmup, trials, batches = (10.0, 200, 20, 2, 2) if args.quick else (60.0, 2000, 100, 5, 10)
    windows = args.windows or windows
    sets = build_inputs(args.workdir, args.files, seconds, args.seed)
    stores = {fs.name: AACStore.open(fs.store) for fs in sets}
    # The two stores hold the same audio at the same lengths: one list of windows for both.
    lengths = {name: [r.num_samples for r in st.recordings] for name, st in stores.items()}
    assert lengths["PNS"] == lengths["PNS-free"], lengths
    plan = random_windows(stores["PNS-free"], warmup + windows, args.seed)
    stats = bench_windows(report, sets, stores, plan, warmup)
    summarize_windows(report, stats)
    check_samples(report, sets, stores, plan[warmup : warmup + (8 if args.quick else 20)])
    bench_loader(report, sets, stores, plan[warmup:], trials, batches)
    for s in stores.values():
        s.close()
    report.finish()


if __name__ == "__main__":
    main()
