"""A cold window (the first read of its recording in this process: its index rows are not
cached yet) against a warm one (a recording read before), ``AACStore.read``, interleaved
pair by pair; in a store of 10,000 short clips and in a store of long recordings.

Target: cold <= 1.1 x warm, so that a DataLoader worker's first epoch over a large corpus
costs what the later ones cost. Page cache warm: this is the process's own work.

    .venv/bin/python benchmarks/bench_cold.py            # full run
    .venv/bin/python benchmarks/bench_cold.py --quick    # smoke test, < 30 s
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
from _corpus import build_repeated_stores, build_short_speech, music_segment, warm_page_cache
from _harness import Method, Report, parser

import aacdata
from aacdata import AACStore


class Plan:
    """Cold and warm 1 s windows of one store, ``(handle, recording, start)`` each.

    A recording is cold once per store handle, so the cold windows go through as many
    handles as they need (opened beforehand, not timed). Each handle first reads a window of
    its recording 0, which is left out of its cold windows, so that it holds open files
    and a decoder as a worker does after its first window."""

    def __init__(self, path: Path, count: int, seed: int) -> None:
        rng = np.random.default_rng(seed)
        self.main = AACStore.open(path)
        self.rate = self.main.recording(0).sample_rate
        lengths = self.main.column("num_samples").astype(np.int64)
        n = len(lengths)

        def start(r: int) -> int:
            return int(rng.integers(0, lengths[r] - self.rate))

        self.cold = []
        h = 0
        while len(self.cold) < count:
            self.cold += [(h, int(r), 0) for r in rng.permutation(np.arange(1, n))[: count - len(self.cold)]]
            h += 1
        self.cold = [(h, r, start(r)) for h, r, _ in self.cold]
        self.handles = [AACStore.open(path) for _ in range(h)]
        for s in self.handles:
            s.read(0, 0, self.rate)
        recs = rng.integers(0, n, count)
        self.warm = [(-1, int(r), start(int(r))) for r in recs]
        for r in set(recs.tolist()):  # the warm windows' recordings, read once (untimed)
            self.main.read(r, start(r), self.rate)

    def store(self, h: int) -> AACStore:
        return self.main if h < 0 else self.handles[h]

    def close(self) -> None:
        for s in [self.main, *self.handles]:
            s.close()


def bench_store(report: Report, name: str, label: str, path: Path, windows: int, warmup: int, seed: int) -> None:
    warm_page_cache(path)
    plans: list[Plan] = []

    def make() -> Mapping[str, Method]:  # each order needs recordings still cold: a plan of its own
        plan = Plan(path, warmup + windows, seed + len(plans))
        plans.append(plan)
        read = lambda w: plan.store(w[0]).read(w[1], w[2], plan.rate)  # noqa: E731
        return {"cold (first read)": lambda i: read(plan.cold[i]), "warm": lambda i: read(plan.warm[i])}

    s = report.compare(
        f"[{name}] 1 s windows of {label}", make, range(warmup, warmup + windows), warmup=range(warmup), baseline="warm"
    )
    for order, plan in zip(report.orders, plans, strict=True):
        misses = sum(h.cache_info()["index_cache_misses"] for h in plan.handles)
        print(
            f"\n{order} order: {len(plan.handles)} store handle(s); index loads: {misses:,} "
            f"({len(plan.cold):,} cold windows, one first read per handle)"
        )
        plan.close()
    report.target(f"[{name}] cold / warm window (median)", s["cold (first read)"].median / s["warm"].median, "<=", 1.1)
    report.info(f"[{name}] cold / warm window (p90)", s["cold (first read)"].p90 / s["warm"].p90)


def main() -> None:
    args = parser(__doc__).parse_args()
    report = Report(
        "bench_cold: the first window of a recording against a warm one", args, f"aacdata {aacdata.__version__}"
    )
    num_many, long_seconds, num_long, tag = (300, 300.0, 4, "quick") if args.quick else (10_000, 1800.0, 20, "full")
    windows, warmup = (30, 4) if args.quick else (400, 20)
    _, many = build_short_speech(args.workdir, num_many, args.seed)
    segment = music_segment(args.workdir, seed=args.seed)
    stores = {"long": [long_seconds] * num_long, "small": [120.0]}  # the stores of bench_scale.py
    long = build_repeated_stores(args.workdir / f"scale-long-{tag}", segment, stores, args.seed)["long"]
    bench_store(report, "many", f"16 kHz mono, {num_many:,} clips of 3-5 s", many, windows, warmup, args.seed)
    minutes = f"{num_long} recordings of {long_seconds / 60:.0f}+ min"
    bench_store(report, "long", f"44.1 kHz stereo, {minutes}", long, windows // 2, warmup // 2, args.seed)
    report.finish()


if __name__ == "__main__":
    main()
