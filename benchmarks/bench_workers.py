"""Windows per second through ``DataLoader(batch_size=32)``: against the number of workers
(0, 1, 2; 1 s windows) and against the window length (0.25 to 4 s), for
``AACSegmentDataset``, soundfile on FLAC (files kept open per worker) and the naive PyAV
loop, all on the same windows of the music-like corpus of bench_windows.py. Trials of
every configuration are interleaved; plot.py draws the two series.

    .venv/bin/python benchmarks/bench_workers.py --out benchmarks/results   # full run
    .venv/bin/python benchmarks/bench_workers.py --quick                    # smoke test, < 30 s
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import soundfile as sf
import torch
from _corpus import Corpus, build_corpus
from _harness import Contention, Report, Summary, measure, parser
from bench_windows import NaiveLoop

import aacdata
from aacdata import AACSegmentDataset, AACStore
from aacdata.dataset import Window

BATCH = 32
LENGTHS = (0.25, 0.5, 1.0, 2.0, 4.0)
WORKERS = (0, 1, 2)


class FlacWindows(torch.utils.data.Dataset):
    """The same windows through soundfile; each process opens the FLAC files once."""

    def __init__(self, corpus: Corpus, windows: Sequence[Window]) -> None:
        self.paths, self.windows = [str(p) for p in corpus.flac], list(windows)
        self._files: tuple[int, list[Any]] = (-1, [])

    def __len__(self) -> int:
        return len(self.windows)

    def __getitem__(self, i: int) -> torch.Tensor:
        if self._files[0] != os.getpid():
            self._files = (os.getpid(), [sf.SoundFile(p) for p in self.paths])
        w = self.windows[i]
        f = self._files[1][w.recording]
        f.seek(w.start)
        return torch.from_numpy(f.read(w.num_samples, dtype="float32", always_2d=True).T)


class NaiveWindows(torch.utils.data.Dataset):
    """The same windows through the naive loop; frames cut in the main process beforehand
    (as in bench_windows.py), one decoder per process."""

    def __init__(self, loop: NaiveLoop, windows: Sequence[Window]) -> None:
        self.loop, self.jobs = loop, [loop.prepare(w) for w in windows]
        self._pid = os.getpid()

    def __len__(self) -> int:
        return len(self.jobs)

    def __getitem__(self, i: int) -> torch.Tensor:
        if self._pid != os.getpid():  # a worker: a decoder of its own
            self._pid, self.loop.ctx = os.getpid(), type(self.loop.ctx).create("aac", "r")
        return torch.from_numpy(self.loop.decode(self.jobs[i]))


def trial(
    corpus: Corpus, loop: NaiveLoop, method: str, workers: int, seconds: float, batches: int
) -> Callable[[int], float]:
    """A trial (its index seeds the windows): seconds per window over ``batches`` batches,
    after the first batch and what the workers prefetched meanwhile (untimed)."""

    def run(t: int) -> float:
        skip = 1 + 2 * workers  # the first batch, and prefetch_factor=2 batches per worker
        ds: Any = AACSegmentDataset(
            str(corpus.store), window_seconds=seconds, seed=1000 * t + workers, num_windows=BATCH * (skip + batches)
        )
        if method != "aacdata":
            wins = [ds.window(i) for i in range(len(ds))]
            ds = FlacWindows(corpus, wins) if method == "soundfile (FLAC)" else NaiveWindows(loop, wins)
        it = iter(torch.utils.data.DataLoader(ds, batch_size=BATCH, num_workers=workers))
        for _ in range(skip):
            next(it)
        t0 = time.perf_counter()
        for _ in range(batches):
            next(it)
        elapsed = time.perf_counter() - t0
        del it
        return elapsed / (BATCH * batches)

    return run


def sweep(
    report: Report, title: str, configs: dict[tuple[str, float], Callable[[int], float]], trials: int, x_label: str
) -> None:
    """Interleaved trials of every configuration; a table and a series of windows/s."""
    probe = Contention()
    times = measure(configs, range(trials), self_timed=True)
    rates = {k: Summary.of(1.0 / v) for k, v in times.items()}
    xs = sorted({x for _, x in configs})
    methods = list(dict.fromkeys(m for m, _ in configs))
    rows = []
    for (m, x), s in rates.items():
        base = rates["naive PyAV loop", x].median
        rows.append([m, x, s.median, float(np.min(1.0 / times[m, x])), s.count, s.median / base])
    cols = ["method", x_label, "windows/s (median)", "slowest trial", "trials", "/ naive PyAV loop"]
    report.table(title, cols, sorted(rows, key=lambda r: (r[1], methods.index(r[0]))), probe.note())
    report.add_series(title, x_label, xs, "windows/s", {m: [rates[m, x].median for x in xs] for m in methods})
    for x in xs:
        ratio = rates["aacdata", x].median / rates["naive PyAV loop", x].median
        report.info(f"aacdata / naive loop, windows/s, {x_label} {x:g}", ratio)


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--length-workers", type=int, default=0, help="DataLoader workers of the length sweep (default 0)")
    args = p.parse_args()
    report = Report(
        "bench_workers: DataLoader windows/s against workers and window length",
        args,
        f"aacdata {aacdata.__version__}, torch {torch.__version__}, soundfile {sf.__version__}",
    )
    torch.set_num_threads(1)
    if args.quick:
        seconds, batches, trials = [125.0, 8.0, 10.0, 12.0], 2, 1
    else:
        seconds, batches, trials = [480.0] * 2 + list(np.random.default_rng(args.seed).uniform(40, 65, 18)), 20, 5
    corpus = build_corpus(args.workdir, "music", seconds, args.seed, pool_segments=2 if args.quick else 6)
    store = AACStore.open(corpus.store)
    loop = NaiveLoop(store)
    methods = ("aacdata", "soundfile (FLAC)", "naive PyAV loop")
    by_workers = {(m, w): trial(corpus, loop, m, w, 1.0, batches) for w in WORKERS for m in methods}
    sweep(report, "1 s windows, windows/s against DataLoader workers", by_workers, trials, "workers")
    lw = args.length_workers
    by_length = {(m, s): trial(corpus, loop, m, lw, s, batches) for s in LENGTHS for m in methods}
    sweep(report, f"windows/s against window length, {lw} workers", by_length, max(trials - 2, 1), "window s")
    ws = report.series[0]["y"]["aacdata"]
    report.target("aacdata, 2 workers / 1 worker (windows/s)", ws[2] / ws[1], ">=", 1.8)
    store.close()
    report.finish()


if __name__ == "__main__":
    main()
