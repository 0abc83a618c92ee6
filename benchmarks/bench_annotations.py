"""Annotations: loading a stored set and finding the events of a window.

A synthetic set of 1,000,000 events over 100,000 recordings (48 kHz, 10 to 120 s each, 0
to 20 events per recording, 0.05 to 5 s long, 50 classes, one event in ten with extra
columns) is written with ``aacdata.store._annotation_store.write_set`` into a zarr group on
local disk (no audio: the set's arrays are all the lookup reads). Then:

(a) Loading: ``read_set`` (reads and checks the eight arrays against their CRC-32s) and
    building the lookup (per-recording row ranges, running maximum of stops), each timed
    over repetitions with a freshly opened group. Target: ≤ 2 s together.
(b) ``events_in(row, a, b)`` for random 1 s windows of random recordings, and the window's
    labels (``ann.label[rows]``), against two baselines measured in the same run: a scan
    of the recording's rows (``for_recording``'s range, masked) and a scan of the whole
    table. Target: ≤ 20 µs median.

    .venv/bin/python benchmarks/bench_annotations.py            # full run
    .venv/bin/python benchmarks/bench_annotations.py --quick    # smoke test, ~10 s
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's aacdata, installed or not

import numpy as np
import zarr

import aacdata
from aacdata import Annotations
from aacdata.store._annotation_store import read_set, write_set

RATE = 48_000


def synthetic(num_recordings: int, num_events: int, seed: int = 0) -> Annotations:
    """A resolved table: ``num_events`` events spread over ``num_recordings`` recordings."""
    rng = np.random.default_rng(seed)
    length = rng.integers(10 * RATE, 120 * RATE, num_recordings)
    recording = np.sort(rng.integers(0, num_recordings, num_events))
    duration = rng.integers(RATE // 20, 5 * RATE, num_events)
    start = (rng.random(num_events) * (length[recording] - duration)).astype(np.int64)
    stop = start + duration
    order = np.lexsort((stop, start, recording))
    extra = np.full(num_events, "{}", dtype=object)
    tagged = rng.random(num_events) < 0.1
    extra[tagged] = [json.dumps({"Selection": str(i), "Notes": "faint"}) for i in np.flatnonzero(tagged)]
    return Annotations(
        recording=recording[order],
        start=start[order],
        stop=stop[order],
        label=rng.integers(0, 50, num_events).astype(np.int32),
        classes=tuple(f"species_{k:02d}" for k in range(50)),
        low_hz=rng.uniform(100, 4000, num_events).astype(np.float32),
        high_hz=rng.uniform(4000, 12000, num_events).astype(np.float32),
        channel=np.full(num_events, -1, dtype=np.int16),
        extra=extra[order],
        sources=("synthetic",),
    )


def timed(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def stats(seconds: np.ndarray, unit: float) -> tuple[str, str]:
    return f"{np.median(seconds) / unit:.2f}", f"{np.quantile(seconds, 0.9) / unit:.2f}"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="10,000 recordings, 100,000 events, fewer repetitions")
    p.add_argument("--recordings", type=int, default=100_000)
    p.add_argument("--events", type=int, default=1_000_000)
    p.add_argument("--windows", type=int, default=100_000)
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args()
    if args.quick:
        args.recordings, args.events, args.windows, args.repeats = 10_000, 100_000, 10_000, 2
    began = time.time()
    print("# bench_annotations: loading a set, events of a window")
    print(f"# {datetime.now(UTC):%Y-%m-%d %H:%M:%S} UTC  cores={os.cpu_count()}  command: {' '.join(sys.argv)}")
    print(
        f"# aacdata {aacdata.__version__}, zarr {zarr.__version__}, numpy {np.__version__}, "
        f"Python {platform.python_version()}; load average {os.getloadavg()[0]:.2f} (1 min)"
    )
    ann = synthetic(args.recordings, args.events)
    print(f"# {ann!r}")
    with tempfile.TemporaryDirectory() as tmp:
        group = zarr.open_group(tmp, mode="a")
        write_seconds = timed(lambda: write_set(group, "default", ann))
        size = sum(f.stat().st_size for f in Path(tmp).rglob("*") if f.is_file())
        print(f"# write_set: {write_seconds:.2f} s, {size / 1e6:.1f} MB on disk")

        # (a) loading
        load, build = [], []
        loaded = ann
        for _ in range(args.repeats):
            fresh = zarr.open_group(tmp, mode="r")
            t0 = time.perf_counter()
            loaded = read_set(fresh, "default")
            t1 = time.perf_counter()
            loaded.rows_of(0)  # builds the lookup
            t2 = time.perf_counter()
            load.append(t1 - t0)
            build.append(t2 - t1)
        assert np.array_equal(loaded.stop, ann.stop) and np.array_equal(loaded.extra, ann.extra)
    load_s, build_s = np.array(load), np.array(build)
    total = load_s + build_s

    # (b) windows: random recordings (with or without events), random 1 s windows in them
    rng = np.random.default_rng(1)
    rows = rng.integers(0, args.recordings, args.windows)
    last = np.zeros(args.recordings, dtype=np.int64)
    np.maximum.at(last, loaded.recording, loaded.stop)
    a = (rng.random(args.windows) * np.maximum(last[rows] - RATE, 1)).astype(np.int64)
    b = a + RATE
    windows = list(zip(rows.tolist(), a.tolist(), b.tolist(), strict=True))

    def lookup(w: tuple[int, int, int]) -> object:
        return loaded.events_in(*w)

    def labels(w: tuple[int, int, int]) -> object:
        return loaded.label[loaded.events_in(*w)]

    def scan_recording(w: tuple[int, int, int]) -> object:
        r, lo, hi = w
        i, j = loaded.rows_of(r)
        s, e = loaded.start[i:j], loaded.stop[i:j]
        return np.flatnonzero((s < hi) & ((e > lo) | ((e == s) & (s >= lo)))) + i

    def scan_table(w: tuple[int, int, int]) -> object:
        r, lo, hi = w
        s, e = loaded.start, loaded.stop
        return np.flatnonzero((loaded.recording == r) & (s < hi) & ((e > lo) | ((e == s) & (s >= lo))))

    methods: dict[str, tuple[Callable[[tuple[int, int, int]], object], int]] = {
        "events_in": (lookup, args.windows),
        "labels (events_in + label[rows])": (labels, args.windows),
        "baseline: scan the recording's rows": (scan_recording, args.windows),
        "baseline: scan the whole table": (scan_table, min(args.windows, 300)),
    }
    found = sum(len(loaded.events_in(*w)) for w in windows)
    for w in windows[:2000]:  # the lookup agrees with the scans
        assert np.array_equal(lookup(w), scan_recording(w)) and np.array_equal(lookup(w), scan_table(w))
    clock = time.perf_counter
    times: dict[str, np.ndarray] = {}
    for name, (fn, count) in methods.items():
        for w in windows[:1000]:  # warm-up
            fn(w)
        out = np.empty(count)
        for i, w in enumerate(windows[:count]):
            t0 = clock()
            fn(w)
            out[i] = clock() - t0
        times[name] = out

    print()
    print(f"(a) loading {len(loaded):,} events of {args.recordings:,} recordings, {args.repeats} repetitions")
    print()
    print("| step | median (s) | p90 (s) |")
    print("| --- | ---: | ---: |")
    for name, t in (("read_set (8 arrays, CRC-32s)", load_s), ("build the lookup", build_s), ("total", total)):
        print(f"| {name} | {np.median(t):.3f} | {np.quantile(t, 0.9):.3f} |")
    ok = "meets" if np.median(total) <= 2.0 else "MISSES"
    print(f"\ntotal median {np.median(total):.3f} s: {ok} the target (≤ 2 s)")
    print()
    print(f"(b) random 1 s windows: {args.windows:,}, {found / args.windows:.2f} events per window on average")
    print()
    base = float(np.median(times["events_in"]))
    print("| method | windows | median (µs) | p90 (µs) | median vs events_in |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for name, t in times.items():
        med, p90 = stats(t, 1e-6)
        print(f"| {name} | {len(t):,} | {med} | {p90} | {np.median(t) / base:.1f}x |")
    ok = "meets" if np.median(times["labels (events_in + label[rows])"]) <= 20e-6 else "MISSES"
    print(f"\nlabels of a window: {ok} the target (≤ 20 µs median)")
    print(f"# total {time.time() - began:.0f} s")


if __name__ == "__main__":
    main()
