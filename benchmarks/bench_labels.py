"""Labelled windows: what labels add to a dataset item, and the labels of a window alone.

(a) Items through ``ds[i]``: three datasets over one store read the same windows
    (``EventWindows`` around annotated events plus background, same seed): no labels,
    ``labels="clip"`` and ``labels="frames"``. Each window goes through the three in turn
    (interleaved window by window, the first dataset rotating), after a warm-up pass.
    The store: 12 recordings of 30 s, mono, 16 kHz (``--sample-rate``; the cheapest reads,
    so the largest share for labels), speech-like and noise, 40 events each (0.1 to 2 s,
    5 classes). Target: median labelled / unlabelled ≤ 1.05.
(b) The labels of a window alone, against the lookup they start from (``events_in``),
    with the set that ``bench_annotations.py`` builds: 1,000,000 events over 100,000
    recordings (48 kHz); random 1 s windows of random recordings. Target: ≤ 20 µs median
    for clip and frame targets.

    .venv/bin/python benchmarks/bench_labels.py            # full run
    .venv/bin/python benchmarks/bench_labels.py --quick    # smoke test
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's aacdata, installed or not
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np
import torch
from bench_annotations import synthetic

import aacdata
from aacdata import AACSegmentDataset, AACStore, Annotations, EventWindows
from aacdata.audio._audiofile import write_audio
from aacdata.data._labels import WindowLabels
from aacdata.testing import signal

RATE = 16_000
CLASSES = ("alpha", "beta", "gamma", "delta", "epsilon")


def build_store(root: Path, *, recordings: int, seconds: float, events: int, rate: int = RATE) -> Path:
    """Import ``recordings`` synthetic recordings and store ``events`` events of each as ``calls``."""
    rng = np.random.default_rng(0)
    records = []
    for k in range(recordings):
        kind = ("speech", "noise")[k % 2]
        name = f"{kind}_{k:02d}.flac"
        audio = signal(kind, int(seconds * rate), sample_rate=rate, seed=k)
        write_audio(root / "audio" / name, audio, sample_rate=rate)
        for _ in range(events):
            length = rng.uniform(0.1, 2.0)
            start = rng.uniform(0, seconds - length)
            records.append({"id": name, "start": start, "end": start + length, "label": str(rng.choice(CLASSES))})
    store_path = root / "labels.zarr"
    aacdata.import_audio(root / "audio", store_path, workers=0, progress=False)
    with AACStore.open(store_path, "a") as store:
        store.write_annotations(Annotations.from_records(records), "calls")
    return store_path


def interleaved(methods: dict[str, Callable[[int], object]], items: Sequence[int]) -> dict[str, np.ndarray]:
    """Seconds per call of each method on each item; item ``i`` goes through every method
    before item ``i + 1``, starting with method ``i mod m``."""
    names = list(methods)
    out = {name: np.empty(len(items)) for name in names}
    clock = time.perf_counter
    for i, item in enumerate(items):
        for j in range(len(names)):
            name = names[(i + j) % len(names)]
            t0 = clock()
            methods[name](item)
            out[name][i] = clock() - t0
    return out


def table(rows: list[tuple[str, int, np.ndarray, float]], unit: float, unit_name: str) -> str:
    lines = [
        f"| method | calls | median ({unit_name}) | p90 ({unit_name}) | median vs baseline |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for name, n, t, base in rows:
        med, p90 = np.median(t) / unit, np.quantile(t, 0.9) / unit
        lines.append(f"| {name} | {n:,} | {med:.2f} | {p90:.2f} | {np.median(t) / base:.3f}x |")
    return "\n".join(lines)


def part_a(args: argparse.Namespace) -> list[str]:
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        store = build_store(
            Path(tmp), recordings=args.recordings, seconds=args.seconds, events=args.events, rate=args.sample_rate
        )
        print(
            f"# store: {args.recordings} recordings of {args.seconds:g} s at {args.sample_rate} Hz, mono, "
            f"built in {time.perf_counter() - t0:.0f} s"
        )
        common: dict[str, Any] = {"seed": 0, "min_overlap_fraction": 0.5}

        def dataset(labels: str | None) -> AACSegmentDataset:
            plan = EventWindows("calls", window_seconds=1.0, negatives=0.5)
            return AACSegmentDataset(store, plan=plan, labels=labels, **common)  # type: ignore[arg-type]

        datasets = {"no labels": dataset(None), 'labels="clip"': dataset("clip"), 'labels="frames"': dataset("frames")}
        plain = datasets["no labels"]
        n = len(plain)
        for ds in datasets.values():  # the same windows, and the items agree
            assert [ds.window(i) for i in range(n)] == [plain.window(i) for i in range(n)]
        clip_audio, clip_target = datasets['labels="clip"'][0]
        assert torch.equal(clip_audio, plain[0]) and clip_target.shape == (len(CLASSES),)
        methods = {name: ds.__getitem__ for name, ds in datasets.items()}
        for i in range(n):  # warm-up: decoders, index cache, event lookups
            for fn in methods.values():
                fn(i)
        items = [i for _ in range(args.passes) for i in range(n)]
        times = interleaved(methods, items)
    base = float(np.median(times["no labels"]))
    rows = [(name, len(t), t, base) for name, t in times.items()]
    out = [
        f"(a) dataset items ds[i], {n} EventWindows windows of 1 s at {args.sample_rate} Hz x {args.passes} passes, "
        "interleaved",
        "",
        table(rows, 1e-6, "µs"),
        "",
    ]
    for name in ('labels="clip"', 'labels="frames"'):
        ratio = float(np.median(times[name])) / base
        out.append(f"{name}: {ratio:.3f}x unlabelled: {'meets' if ratio <= 1.05 else 'MISSES'} the target (≤ 1.05x)")
    return out


def part_b(args: argparse.Namespace) -> list[str]:
    t0 = time.perf_counter()
    events = synthetic(args.label_recordings, args.label_events)
    labels = WindowLabels(
        events,
        classes=None,
        sample_rate=48_000,
        min_overlap_fraction=0.5,
        label_hop_seconds=0.02,
    )
    events.events_in(0, 0, 1)  # builds the lookup outside the timing
    print(f"# {events!r}, built in {time.perf_counter() - t0:.1f} s")
    rng = np.random.default_rng(1)
    rows = rng.integers(0, args.label_recordings, args.windows)
    last = np.zeros(args.label_recordings, dtype=np.int64)
    np.maximum.at(last, events.recording, events.stop)
    a = (rng.random(args.windows) * np.maximum(last[rows] - 48_000, 1)).astype(np.int64)
    windows = list(zip(rows.tolist(), a.tolist(), (a + 48_000).tolist(), strict=True))
    methods: dict[str, Callable[[Any], object]] = {
        "baseline: events_in": lambda w: events.events_in(*w),
        "clip target (K,)": lambda w: labels.clip(*w),
        "frame target (K, 50)": lambda w: labels.frames(*w),
        "events of the window (return_info)": lambda w: labels.window_events(*w),
    }
    for w in windows[:1000]:
        for fn in methods.values():
            fn(w)
    times = interleaved(methods, windows)  # type: ignore[arg-type]
    found = float(np.mean([len(events.events_in(*w)) for w in windows[:5000]]))
    base = float(np.median(times["baseline: events_in"]))
    out = [
        f"(b) labels of a window alone: {len(events):,} events over {args.label_recordings:,} recordings, "
        f"{args.windows:,} random 1 s windows ({found:.2f} events per window on average), interleaved",
        "",
        table([(name, len(t), t, base) for name, t in times.items()], 1e-6, "µs"),
        "",
    ]
    for name in ("clip target (K,)", "frame target (K, 50)"):
        med = float(np.median(times[name]))
        out.append(f"{name}: {med * 1e6:.1f} µs median: {'meets' if med <= 20e-6 else 'MISSES'} the target (≤ 20 µs)")
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="a smaller store and set, fewer windows")
    p.add_argument("--recordings", type=int, default=12)
    p.add_argument("--seconds", type=float, default=30.0)
    p.add_argument("--events", type=int, default=40, help="events per recording in (a)")
    p.add_argument("--passes", type=int, default=4, help="passes over the windows in (a)")
    p.add_argument("--sample-rate", type=int, default=RATE, help="rate of the recordings in (a)")
    p.add_argument("--label-recordings", type=int, default=100_000)
    p.add_argument("--label-events", type=int, default=1_000_000)
    p.add_argument("--windows", type=int, default=50_000, help="windows in (b)")
    args = p.parse_args()
    if args.quick:
        args.recordings, args.seconds, args.events, args.passes = 4, 10.0, 10, 2
        args.label_recordings, args.label_events, args.windows = 10_000, 100_000, 5_000
    torch.set_num_threads(1)
    began = time.time()
    print("# bench_labels: labelled dataset items, labels of a window")
    print(f"# {datetime.now(UTC):%Y-%m-%d %H:%M:%S} UTC  cores={os.cpu_count()}  command: {' '.join(sys.argv)}")
    print(
        f"# aacdata {aacdata.__version__}, torch {torch.__version__}, numpy {np.__version__}, "
        f"Python {platform.python_version()}; load average {os.getloadavg()[0]:.2f} (1 min)"
    )
    lines = [*part_a(args), "", *part_b(args)]
    print()
    print("\n".join(lines))
    print(f"# total {time.time() - began:.0f} s; load average {os.getloadavg()[0]:.2f} (1 min)")


if __name__ == "__main__":
    main()
