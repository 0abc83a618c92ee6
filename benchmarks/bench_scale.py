"""Scale: a store of 10,000 short recordings and a store of >= 10 hours, each against a
small store measured in the same run.

(1) ``AACStore.open`` + ``AACSegmentDataset(...)`` construction in fresh subprocesses;
(2) resident memory of a ``DataLoader`` worker after serving many random windows, with the
    default ``index_cache_bytes`` and with a small one (is the cache bound kept?);
(3) random 1 s windows (``AACStore.read``, index cached, page cache warm): big store / small
    store.

Stores are built from raw ADTS cut from (or concatenated from) one encoded stream,
imported as passthrough, and cached under ``--workdir``; see benchmarks/README.md.

    .venv/bin/python benchmarks/bench_scale.py            # full run
    .venv/bin/python benchmarks/bench_scale.py --quick    # smoke test, < 40 s
"""

from __future__ import annotations

import argparse
import gc
import json
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's aacdata, installed or not

import numpy as np
import torch
from _common import (
    MUSIC_RATE,
    Contention,
    Summary,
    build_repeated_stores,
    build_short_speech,
    header,
    info_line,
    memory_kib,
    music_segment,
    print_table,
    ratio_line,
    time_rounds,
    warm_page_cache,
)

import aacdata
from aacdata import AACSegmentDataset, AACStore, _bytes
from aacdata.store import DEFAULT_INDEX_CACHE_BYTES

ROOT = Path(__file__).resolve().parents[1]
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
    round_size: int


FULL = Config(
    tag="full",
    num_many=10_000,
    long_seconds=1800.0,
    num_long=20,
    open_runs=5,
    rss_windows=8192,
    windows=400,
    warmup=40,
    round_size=20,
)
QUICK = Config(
    tag="quick",
    num_many=300,
    long_seconds=300.0,
    num_long=4,
    open_runs=1,
    rss_windows=512,
    windows=40,
    warmup=10,
    round_size=10,
)
CHUNK_CACHE_ALLOWANCE = 15 * MiB
"""What aacdata documents on top of ``index_cache_bytes``: up to 32 decoded index chunks."""


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
    segment = music_segment(workdir, seed=seed)
    long = build_repeated_stores(
        workdir / f"scale-long-{cfg.tag}",
        segment,
        {"long": [cfg.long_seconds] * cfg.num_long, "small": [120.0]},
        seed,
    )
    with AACStore.open(long["long"]) as st:
        minutes = sum(r.duration_seconds for r in st.recordings) / 60
    return [
        Pair("many", many, one, 16_000, f"{cfg.num_many:,} x 3-5 s", "1 x 2 min", 2 * MiB),
        Pair(
            "long",
            long["long"],
            long["small"],
            MUSIC_RATE,
            f"{cfg.num_long} x {minutes / cfg.num_long:.1f} min ({minutes / 60:.1f} h)",
            "1 x 2 min",
            8 * MiB,
        ),
    ]


# ---------------------------------------------------------------------- (1) open + dataset

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


def bench_open(pairs: Sequence[Pair], cfg: Config) -> list[str]:
    """Median of ``cfg.open_runs`` fresh interpreters per store, stores interleaved."""
    stores = [
        (f"{p.name}: {label}", path, p.sample_rate)
        for p in pairs
        for label, path in ((p.small_label, p.small), (p.big_label, p.big))
    ]
    runs: dict[str, list[dict[str, float]]] = {name: [] for name, _, _ in stores}
    contention = Contention()
    for r in range(cfg.open_runs):
        for name, path, rate in stores[r % len(stores) :] + stores[: r % len(stores)]:
            code = _OPEN_SCRIPT.format(root=str(ROOT), path=str(path), rate=rate)
            out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
            runs[name].append(json.loads(out.stdout.strip().splitlines()[-1]))
    print(
        f"\n(1) AACStore.open + AACSegmentDataset(path, window_seconds=1.0, sample_rate=, num_channels=1), "
        f"fresh interpreter, {cfg.open_runs} run(s) per store, ms"
    )
    width = max(len(n) for n in runs)
    cols = ("open", "dataset", "both", "both p90", "1st item")
    print(f"  {'store':<{width}}  " + "  ".join(f"{c:>8}" for c in cols) + f"  {'import aacdata':>14}")
    both: dict[str, Summary] = {}
    for name, rs in runs.items():
        o = Summary.of([x["open"] * 1e3 for x in rs])
        d = Summary.of([x["dataset"] * 1e3 for x in rs])
        both[name] = b = Summary.of([(x["open"] + x["dataset"]) * 1e3 for x in rs])
        first = Summary.of([x["first_item"] * 1e3 for x in rs])
        imp = Summary.of([x["import"] * 1e3 for x in rs])
        print(
            f"  {name:<{width}}  {o.median:8.1f}  {d.median:8.1f}  {b.median:8.1f}  {b.p90:8.1f}  "
            f"{first.median:8.1f}  {imp.median:14.0f}"
        )
    print(f"  {contention.note()}")
    lines = ["(1) open + dataset construction (median, fresh process)"]
    for p in pairs:
        big, small = both[f"{p.name}: {p.big_label}"], both[f"{p.name}: {p.small_label}"]
        lines.append(ratio_line(f"[{p.name}] open + dataset, s", big.median / 1e3, "<=", 1.0))
        lines.append(info_line(f"[{p.name}] open + dataset, big / small store", big.median / small.median))
    return lines


# ---------------------------------------------------------------------- (2) worker memory

_INIT_MEMORY: dict[str, int] = {}


def _probe_init(worker_id: int) -> None:
    _INIT_MEMORY.update(memory_kib())


def _cache_internals(ds: AACSegmentDataset) -> tuple[int, int] | None:
    """Bytes of decoded /index and /frame_crc chunks that the worker's stores keep (their
    private ``_ChunkCache``), and bytes of other chunk arrays that cached rows still point
    into (views keep a whole chunk alive); None if this aacdata has no such internals."""
    try:
        stores = list(ds._state.stores.values())  # type: ignore[union-attr]
        chunks = [c for s in stores for cache in (s._index_chunks, s._crc_chunks) for c in cache._chunks.values()]
        entries = [a for s in stores for entry in s._offsets.values() for a in entry]
    except AttributeError:
        return None
    kept = {id(c if c.base is None else c.base) for c in chunks}
    pinned = {id(a.base): a.base.nbytes for a in entries if a.base is not None and id(a.base) not in kept}
    return sum(c.nbytes for c in chunks), sum(pinned.values())


def _probe_collate(batch: list[torch.Tensor]) -> tuple[torch.Tensor, dict[str, Any]]:
    """default_collate, plus the worker's memory and cache counters after this batch."""
    info = torch.utils.data.get_worker_info()
    assert info is not None
    ds = info.dataset
    probe: dict[str, Any] = {**ds.stats(), **memory_kib(), "init_rss": _INIT_MEMORY.get("VmRSS", 0)}
    if probe["windows_served"] >= len(ds):  # the last batch: look inside the caches once
        probe["internals"] = _cache_internals(ds)
    return torch.utils.data.default_collate(batch), probe


def worker_memory(path: Path, rate: int, num_windows: int, cache_bytes: int, seed: int) -> dict[str, Any]:
    """Serve ``num_windows`` random 1 s windows through one DataLoader worker; its memory
    and counters after the first and after the last batch."""
    batch = 32
    ds = AACSegmentDataset(
        str(path),
        window_seconds=1.0,
        sample_rate=rate,
        num_channels=1,
        num_windows=num_windows,
        seed=seed,
        index_cache_bytes=cache_bytes,
    )
    loader = torch.utils.data.DataLoader(
        ds, batch_size=batch, num_workers=1, collate_fn=_probe_collate, worker_init_fn=_probe_init
    )
    it = iter(loader)
    _, first = next(it)
    t0 = time.perf_counter()
    last = first
    served = 0
    for _, probe in it:
        last = probe
        served += batch
    elapsed = time.perf_counter() - t0
    del it
    return {"first": first, "last": last, "rate": served / elapsed if elapsed > 0 else 0.0}


def bench_memory(pairs: Sequence[Pair], cfg: Config, seed: int) -> list[str]:
    print(
        f"\n(2) DataLoader(batch_size=32, num_workers=1): the worker's memory after {cfg.rss_windows:,} random 1 s "
        "windows (mono), MiB"
    )
    cols = ("RSS init", "1st batch", "end", "growth", "peak", "tracked", "chunks", "pinned", "recs", "misses", "win/s")
    widths = [max(6, len(c)) for c in cols]
    print(f"  {'store':<22} {'budget':>7}  " + " ".join(f"{c:>{w}}" for c, w in zip(cols, widths, strict=True)))
    lines = ["(2) worker memory"]
    contention = Contention()
    for p in pairs:
        for budget in (DEFAULT_INDEX_CACHE_BYTES, p.small_cache):
            r = worker_memory(p.big, p.sample_rate, cfg.rss_windows, budget, seed)
            a, b = r["first"], r["last"]
            growth = (b["VmRSS"] - a["VmRSS"]) / 1024
            internals = b.get("internals")
            chunks, pinned = ("n/a", "n/a") if internals is None else (f"{x / MiB:.1f}" for x in internals)
            values = (
                f"{a['init_rss'] / 1024:.1f}",
                f"{a['VmRSS'] / 1024:.1f}",
                f"{b['VmRSS'] / 1024:.1f}",
                f"{growth:.1f}",
                f"{b['VmHWM'] / 1024:.1f}",
                f"{b['index_cache_bytes'] / MiB:.1f}",
                chunks,
                pinned,
                f"{b['index_cache_recordings']:,}",
                f"{b['index_cache_misses']:,}",
                f"{r['rate']:.0f}",
            )
            row = " ".join(f"{v:>{w}}" for v, w in zip(values, widths, strict=True))
            print(f"  {p.big_label:<22} {budget / MiB:>3.0f} MiB  {row}")
            tag = f"[{p.name}] {budget / MiB:.0f} MiB cache"
            lines.append(ratio_line(f"{tag}: tracked rows / budget", b["index_cache_bytes"] / budget, "<=", 1.0))
            if budget == p.small_cache:  # the documented bound: the budget plus the decoded-chunk cache
                bound = (budget + CHUNK_CACHE_ALLOWANCE) / MiB
                lines.append(ratio_line(f"{tag}: RSS growth / {bound:.0f} MiB", growth / bound, "<=", 1.0))
            else:
                lines.append(info_line(f"{tag}: RSS growth, MiB", growth))
            lines.append(info_line(f"{tag}: windows/s (1 worker)", r["rate"]))
    print(
        "  growth: RSS after the last batch minus after the first; tracked: index rows counted against the budget\n"
        "  (index_cache_bytes); chunks: decoded /index and /frame_crc chunks cached besides (private _ChunkCache, not\n"
        "  counted); pinned: other chunk arrays kept alive by cached rows that are views into them (not counted);\n"
        "  recs: recordings with cached rows; misses: index loads. Checked below: growth with the small budget <=\n"
        f"  budget + {CHUNK_CACHE_ALLOWANCE / MiB:.0f} MiB (the decoded chunks aacdata documents on top of the budget)"
    )
    print(f"  {contention.note()}")
    return lines


# ---------------------------------------------------------------------- (3) read cost


def bench_reads(pairs: Sequence[Pair], cfg: Config, seed: int) -> list[str]:
    lines = ["(3) random 1 s windows, AACStore.read (index cached)"]
    for p in pairs:
        lines += bench_reads_pair(p, cfg, seed)
    return lines


def bench_reads_pair(p: Pair, cfg: Config, seed: int) -> list[str]:
    """Interleaved 1 s reads from the small and the big store, after the first read of
    every recording of the big one (timed separately) and a warm-up."""
    rng = np.random.default_rng(seed + 7)
    warmed = {which: warm_page_cache(which) for which in (p.small, p.big)}
    small, big = AACStore.open(p.small), AACStore.open(p.big)
    n = p.sample_rate  # 1 s

    def draw(store: AACStore, count: int) -> list[tuple[int, int]]:
        recs = rng.integers(0, len(store), count)
        lengths = store.column("num_samples")
        return [(int(r), int(rng.integers(0, int(lengths[r]) - n))) for r in recs]

    contention = Contention()
    # The first read of each recording loads its index rows (then cached): for information.
    lengths = big.column("num_samples")
    first = np.empty(len(big))
    for j, r in enumerate(rng.permutation(len(big)).tolist()):
        s = int(rng.integers(0, int(lengths[r]) - n))
        t = time.perf_counter_ns()
        big.read(r, s, n)
        first[j] = time.perf_counter_ns() - t
    for store in (small, big):
        for r, s in draw(store, cfg.warmup):
            store.read(r, s, n)
    win_small, win_big = draw(small, cfg.windows), draw(big, cfg.windows)
    calls: dict[str, Callable[[int], Any]] = {
        p.small_label: lambda i: small.read(win_small[i][0], win_small[i][1], n),
        p.big_label: lambda i: big.read(win_big[i][0], win_big[i][1], n),
    }
    gc.collect()
    times = time_rounds(calls, cfg.windows, cfg.round_size)
    stats = {k: Summary.of(v / 1e3) for k, v in times.items()}
    first_label = f"{p.big_label}, first read of each"
    stats[first_label] = Summary.of(first / 1e3)
    rec = big.recording(0)
    print_table(
        f"(3) [{p.name}] random 1 s windows of {rec.sample_rate / 1000:g} kHz, {rec.num_channels} channel(s): "
        f"{p.small_label} vs {p.big_label}",
        list(stats.items()),
        baseline=p.small_label,
    )
    print(f"  {contention.note()}")
    chunk_files = sum(1 for _ in (p.big / "adts" / "c").iterdir())
    print(
        f"  page cache warmed: {warmed[p.big][0] / MiB:,.0f} MiB in {warmed[p.big][1]:.1f} s; /adts chunk files "
        f"{chunk_files:,}, kept open per process {_bytes._MAX_OPEN_FILES}; "
        f"index cache {big.cache_info()['index_cache_bytes'] / MiB:.1f} MiB for {len(big):,} recordings"
    )
    small.close()
    big.close()
    base = stats[p.small_label].median
    return [
        ratio_line(f"[{p.name}] big / small store", stats[p.big_label].median / base, "<=", 1.2),
        info_line(f"[{p.name}] first read of each / small store", stats[first_label].median / base),
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
        help="cache of stores (default: %(default)s)",
    )
    parser.add_argument("--quick", action="store_true", help="small stores and few repetitions (smoke test, < 40 s)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the synthetic audio and the windows")
    parser.add_argument(
        "--only", choices=("open", "memory", "reads"), nargs="+", default=["open", "memory", "reads"], help="sections"
    )
    args = parser.parse_args(argv)
    cfg = QUICK if args.quick else FULL
    header(
        "bench_scale: many recordings, many hours", [Path(sys.argv[0]).name, *(sys.argv[1:] if argv is None else argv)]
    )
    print(f"# aacdata {aacdata.__version__}, torch {torch.__version__}, numpy {np.__version__}")
    torch.set_num_threads(1)
    started = time.perf_counter()
    pairs = build(args.workdir, cfg, args.seed)
    summary: list[str] = []
    if "open" in args.only:
        summary += bench_open(pairs, cfg)
    if "memory" in args.only:
        summary += bench_memory(pairs, cfg, args.seed)
    if "reads" in args.only:
        summary += bench_reads(pairs, cfg, args.seed)
    print("\nSummary")
    if args.quick:
        summary.append("(--quick: a smoke test on small stores; the targets are for the full run)")
    print("\n".join(summary))
    print(f"\n# total {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
