"""Scale: a store of 10,000 short recordings and one of >= 10 hours, each against a small
store measured in the same run: (1) ``AACStore.open`` + ``AACSegmentDataset(...)`` in fresh
interpreters; (2) a ``DataLoader`` worker's resident memory with the default and with a
small ``index_cache_bytes``; (3) random 1 s windows, big store / small store. See
benchmarks/README.md.

    .venv/bin/python benchmarks/bench_scale.py            # full run
    .venv/bin/python benchmarks/bench_scale.py --quick    # smoke test, < 40 s
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from _corpus import MUSIC_RATE, build_repeated_stores, build_short_speech, music_segment, warm_page_cache
from _harness import ROOT, Method, Report, Summary, memory_kib, parser

import aacdata
from aacdata import AACSegmentDataset, AACStore
from aacdata.store import DEFAULT_INDEX_CACHE_BYTES

MiB = 1 << 20


@dataclass(frozen=True, slots=True)
class Config:
    """Sizes of one run; ``FULL`` is the default, ``QUICK`` the smoke test."""

    tag: str
    num_many: int  # recordings of 3-5 s, 16 kHz mono
    long_seconds: float  # each long recording lasts at least this, 44.1 kHz stereo
    num_long: int
    open_runs: int  # fresh subprocesses per store
    rss_windows: int  # windows served by the DataLoader worker before its RSS is read
    windows: int  # timed AACStore.read windows per store
    warmup: int


FULL = Config("full", 10_000, 1800.0, 20, 5, 8192, 400, 40)
QUICK = Config("quick", 300, 300.0, 4, 1, 512, 40, 10)
SLACK = 15 * MiB
"""Allowed on top of ``index_cache_bytes`` in a worker's RSS growth: decoders, allocator."""


@dataclass(frozen=True, slots=True)
class Pair:
    """A big store and a small one of the same kind of audio."""

    name: str
    big: Path
    small: Path
    sample_rate: int
    big_label: str
    small_label: str
    small_cache: int  # an index_cache_bytes that holds only part of the big store's rows


def build(workdir: Path, cfg: Config, seed: int) -> list[Pair]:
    one, many = build_short_speech(workdir, cfg.num_many, seed)
    stores = {"long": [cfg.long_seconds] * cfg.num_long, "small": [120.0]}
    long = build_repeated_stores(workdir / f"scale-long-{cfg.tag}", music_segment(workdir, seed=seed), stores, seed)
    with AACStore.open(long["long"]) as st:
        minutes = sum(r.duration_seconds for r in st.recordings) / 60
    label = f"{cfg.num_long} x {minutes / cfg.num_long:.1f} min ({minutes / 60:.1f} h)"
    return [
        Pair("many", many, one, 16_000, f"{cfg.num_many:,} x 3-5 s", "1 x 2 min", 2 * MiB),
        Pair("long", long["long"], long["small"], MUSIC_RATE, label, "1 x 2 min", 8 * MiB),
    ]


_OPEN_SCRIPT = """
import json, sys, time
t0 = time.perf_counter()
sys.path.insert(0, {root!r})
import aacdata
t1 = time.perf_counter()
store = aacdata.AACStore.open({path!r})
n = len(store)
t2 = time.perf_counter()
ds = aacdata.AACSegmentDataset({path!r}, window_seconds=1.0, sample_rate={rate}, num_channels=1)
t3 = time.perf_counter()
ds[0]
t4 = time.perf_counter()
print(json.dumps({{"import": t1 - t0, "open": t2 - t1, "dataset": t3 - t2, "first_item": t4 - t3, "n": n}}))
"""


def bench_open(report: Report, pairs: Sequence[Pair], cfg: Config) -> None:
    """Median of ``cfg.open_runs`` fresh interpreters per store, stores interleaved."""
    stores = {
        f"{p.name}: {label}": (path, p.sample_rate)
        for p in pairs
        for label, path in ((p.small_label, p.small), (p.big_label, p.big))
    }

    def run(path: Path, rate: int) -> dict[str, float]:
        code = _OPEN_SCRIPT.format(root=str(ROOT), path=str(path), rate=rate)
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
        return json.loads(out.stdout.strip().splitlines()[-1])

    runs: dict[str, list[dict[str, float]]] = {name: [] for name in stores}
    calls: dict[str, Method] = {k: (lambda _, k=k: runs[k].append(run(*stores[k]))) for k in stores}
    report.compare("(1) a fresh interpreter's wall time", lambda: calls, range(cfg.open_runs), unit="s", scale=1.0)
    rows = []
    for name, rs in runs.items():
        both = Summary.of([(x["open"] + x["dataset"]) * 1e3 for x in rs])
        med = {k: float(np.median([x[k] for x in rs])) * 1e3 for k in ("open", "dataset", "first_item", "import")}
        rows.append([name, med["open"], med["dataset"], both.median, both.p90, med["first_item"], med["import"]])
        if name.endswith(next(p.big_label for p in pairs if name.startswith(p.name))):
            report.target(f"(1) [{name.split(':')[0]}] open + dataset, s", both.median / 1e3, "<=", 1.0)
    report.table(
        f"(1) AACStore.open + AACSegmentDataset(path, window_seconds=1.0, sample_rate=, num_channels=1), fresh "
        f"interpreter, {cfg.open_runs} run(s) per store, median ms",
        ["store", "open", "dataset", "both", "both p90", "1st item", "import aacdata"],
        rows,
    )


_INIT_MEMORY: dict[str, int] = {}


def _probe_init(worker_id: int) -> None:
    _INIT_MEMORY.update(memory_kib())


def _probe_collate(batch: list[torch.Tensor]) -> tuple[torch.Tensor, dict[str, Any]]:
    """default_collate, plus the worker's memory and cache counters after this batch."""
    info = torch.utils.data.get_worker_info()
    assert info is not None
    probe = {**info.dataset.stats(), **memory_kib(), "init_rss": _INIT_MEMORY.get("VmRSS", 0)}
    return torch.utils.data.default_collate(batch), probe


def worker_memory(path: Path, rate: int, num_windows: int, cache_bytes: int, seed: int) -> dict[str, Any]:
    """Serve ``num_windows`` random 1 s windows through one DataLoader worker; its memory
    and counters after the first and after the last batch, and its windows/s."""
    ds = AACSegmentDataset(
        str(path),
        window_seconds=1.0,
        sample_rate=rate,
        num_channels=1,
        num_windows=num_windows,
        seed=seed,
        index_cache_bytes=cache_bytes,
    )
    kw: dict[str, Any] = {"collate_fn": _probe_collate, "worker_init_fn": _probe_init}
    it = iter(torch.utils.data.DataLoader(ds, batch_size=32, num_workers=1, **kw))
    _, first = next(it)
    t0 = time.perf_counter()
    last, served = first, 0
    for _, probe in it:
        last, served = probe, served + 32
    rate_ = served / (time.perf_counter() - t0)
    del it
    return {"first": first, "last": last, "rate": rate_}


def bench_memory(report: Report, pairs: Sequence[Pair], cfg: Config, seed: int) -> None:
    rows = []
    for p in pairs:
        for budget in (DEFAULT_INDEX_CACHE_BYTES, p.small_cache):
            r = worker_memory(p.big, p.sample_rate, cfg.rss_windows, budget, seed)
            a, b = r["first"], r["last"]
            growth = (b["VmRSS"] - a["VmRSS"]) / 1024
            mem = [a["init_rss"], a["VmRSS"], b["VmRSS"], b["VmRSS"] - a["VmRSS"], b["VmHWM"]]
            held = b.get("index_cache_chunks", b.get("index_cache_recordings", 0))  # what the cache holds
            cache = [b["index_cache_bytes"] / MiB, held, b["index_cache_misses"], r["rate"]]
            rows.append([p.big_label, f"{budget / MiB:.0f} MiB", *(m / 1024 for m in mem), *cache])
            tag = f"(2) [{p.name}] {budget / MiB:.0f} MiB cache"
            report.target(f"{tag}: tracked / budget", b["index_cache_bytes"] / budget, "<=", 1.0)
            if budget == p.small_cache:  # the budget must bound the growth
                bound = (budget + SLACK) / MiB
                report.target(f"{tag}: RSS growth / {bound:.0f} MiB", growth / bound, "<=", 1.0)
            else:
                report.info(f"{tag}: RSS growth, MiB", growth)
    report.table(
        f"(2) DataLoader(batch_size=32, num_workers=1): the worker's memory (MiB) after {cfg.rss_windows:,} random "
        "1 s windows (mono)",
        ["store", "budget", "RSS init", "1st batch", "end", "growth", "peak", "tracked", "held", "misses", "win/s"],
        rows,
        "growth: RSS after the last batch minus after the first; tracked: what the store counts against the budget "
        "(`index_cache_bytes`); held: index chunks (or, in older stores, recordings) it holds; misses: index loads "
        f"(`ds.stats()`). Checked: growth with the small budget <= budget + {SLACK / MiB:.0f} MiB (decoders etc.).",
    )


def bench_reads(report: Report, p: Pair, cfg: Config, seed: int) -> None:
    """Interleaved 1 s reads from the small and the big store, index rows cached (every
    recording of the big store read once, untimed), page cache warm."""
    rng = np.random.default_rng(seed + 7)
    for path in (p.small, p.big):
        warm_page_cache(path)
    small, big = AACStore.open(p.small), AACStore.open(p.big)
    n = p.sample_rate  # 1 s
    lengths = big.column("num_samples")
    big.read_many([(r, int(rng.integers(0, int(lengths[r]) - n)), n) for r in range(len(big))])

    def draw(store: AACStore) -> tuple[int, int]:
        r = int(rng.integers(0, len(store)))
        return r, int(rng.integers(0, int(store.column("num_samples")[r]) - n))

    pairs = [(draw(small), draw(big)) for _ in range(cfg.warmup + cfg.windows)]
    methods: Mapping[str, Method] = {
        p.small_label: lambda w: small.read(*w[0], n),
        p.big_label: lambda w: big.read(*w[1], n),
    }
    stats = report.compare(
        f"(3) [{p.name}] random 1 s windows, AACStore.read: {p.small_label} vs {p.big_label}",
        lambda: methods,
        pairs[cfg.warmup :],
        warmup=pairs[: cfg.warmup],
        baseline=p.small_label,
    )
    report.target(
        f"(3) [{p.name}] big / small store", stats[p.big_label].median / stats[p.small_label].median, "<=", 1.2
    )
    small.close()
    big.close()


def main() -> None:
    p = parser(__doc__, "< 40 s")
    p.add_argument("--only", choices=("open", "memory", "reads"), nargs="+", default=["open", "memory", "reads"])
    args = p.parse_args()
    cfg = QUICK if args.quick else FULL
    report = Report(
        "bench_scale: many recordings, many hours",
        args,
        f"aacdata {aacdata.__version__}, torch {torch.__version__}, numpy {np.__version__}",
    )
    torch.set_num_threads(1)
    pairs = build(args.workdir, cfg, args.seed)
    if "open" in args.only:
        bench_open(report, pairs, cfg)
    if "memory" in args.only:
        bench_memory(report, pairs, cfg, args.seed)
    if "reads" in args.only:
        for pair in pairs:
            bench_reads(report, pair, cfg, args.seed)
    report.finish()


if __name__ == "__main__":
    main()
