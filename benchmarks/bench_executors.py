"""Import throughput on executors, against baselines measured in the same run.

(a) transcode throughput: the same corpus imported through a Dask ``LocalCluster``
    (2 worker processes, 1 thread each) and through the local process pool
    (``workers=2``); target: Dask >= 0.9x the local pool.
(b) per-file overhead: N one-second 16 kHz mono WAV files imported (local pool, and Dask)
    against the same files merely decoded and encoded in memory by a pool of the same
    size (no store, no checksum, batches of the same size, only sizes sent back); target:
    import >= 0.8x that rate.

Methods run interleaved, ``--repeat`` times each; the table shows the median and the
best run, and the CPU seconds of every process involved (this one, the pools' processes,
the cluster's nannies and workers, idle or not): on a shared machine whose other load
varies, the CPU ratio is the steadier measure of the work each method adds. Cluster
start-up and a warm-up run (workers importing aacdata) are not timed.

    .venv/bin/python benchmarks/bench_executors.py            # full: 10,000 files
    .venv/bin/python benchmarks/bench_executors.py --quick    # 1,000 files, 2 runs (minutes)
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import contextlib
import multiprocessing
import os
import platform
import resource
import shutil
import statistics
import sys
import tempfile
import time
import wave
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's aacdata

import aacdata
from aacdata.audio._audiofile import write_audio
from aacdata.audio._transcode import transcode
from aacdata.importer import _BATCH_FILES
from aacdata.testing import signal


def _write_wav(path: Path, seed: int, sample_rate: int = 16_000) -> None:
    rng = np.random.default_rng(seed)
    t = np.arange(sample_rate) / sample_rate
    x = 0.3 * np.sin(2 * np.pi * rng.uniform(100, 3000) * t) + 0.05 * rng.standard_normal(sample_rate)
    pcm = np.clip(x * 32767, -32768, 32767).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(sample_rate)
        w.writeframes(pcm.tobytes())


def short_files(root: Path, count: int) -> Path:
    folder = root / f"short-{count}"
    marker = folder / ".complete"
    if not marker.exists():
        shutil.rmtree(folder, ignore_errors=True)
        for i in range(count):
            sub = folder / f"{i // 1000:03d}"
            sub.mkdir(parents=True, exist_ok=True)
            _write_wav(sub / f"{i:05d}.wav", i)
        marker.touch()
    return folder


def long_files(root: Path, count: int, seconds: float) -> Path:
    folder = root / f"long-{count}-{seconds:g}"
    marker = folder / ".complete"
    if not marker.exists():
        shutil.rmtree(folder, ignore_errors=True)
        kinds = ("music", "speech", "chirp", "noise")
        for i in range(count):
            n = int(seconds * 44_100)
            audio = signal(kinds[i % 4], n, sample_rate=44_100, num_channels=2, seed=i)
            write_audio(folder / f"{i:03d}.flac", audio, sample_rate=44_100)
        marker.touch()
    return folder


def _encode_only(paths: list[str]) -> int:
    """The baseline task: decode and encode in memory, send back only the sizes."""
    return sum(len(transcode(p).adts) for p in paths)


def encode_in_memory(files: list[str], pool: cf.Executor, batch: int) -> None:
    futures = [pool.submit(_encode_only, files[a : a + batch]) for a in range(0, len(files), batch)]
    for f in futures:
        f.result()


def cpu_seconds() -> float:
    """CPU time of this process, its finished children and its live descendants (a Dask
    cluster's nannies and workers), user + system."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    done = resource.getrusage(resource.RUSAGE_CHILDREN)
    total = own.ru_utime + own.ru_stime + done.ru_utime + done.ru_stime
    for child in psutil.Process().children(recursive=True):
        with contextlib.suppress(psutil.Error):
            t = child.cpu_times()
            total += t.user + t.system
    return total


def timed(fn: Callable[[], Any]) -> tuple[float, float]:
    """Wall seconds and CPU seconds (every process involved) of one call."""
    c0, t0 = cpu_seconds(), time.perf_counter()
    fn()
    return time.perf_counter() - t0, cpu_seconds() - c0


def run(methods: dict[str, Callable[[], Any]], repeat: int) -> dict[str, list[tuple[float, float]]]:
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in methods}
    names = list(methods)
    for r in range(repeat):
        k = r % len(names)
        for name in names[k:] + names[:k]:  # interleaved, each method first in turn
            times[name].append(timed(methods[name]))
            wall, cpu = times[name][-1]
            print(f"  {name}: {wall:.2f} s wall, {cpu:.2f} s CPU", file=sys.stderr)
    return times


def table(title: str, times: dict[str, list[tuple[float, float]]], unit: str, amount: float, baseline: str) -> str:
    ref_wall = statistics.median(w for w, _ in times[baseline])
    ref_cpu = statistics.median(c for _, c in times[baseline])
    lines = [
        title,
        "",
        f"| method | wall median (s) | wall best (s) | {unit} (wall median) | wall vs baseline "
        f"| CPU median (s) | CPU vs baseline |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, ts in times.items():
        wall = statistics.median(w for w, _ in ts)
        cpu = statistics.median(c for _, c in ts)
        lines.append(
            f"| {name} | {wall:.2f} | {min(w for w, _ in ts):.2f} | {amount / wall:,.0f} | {ref_wall / wall:.2f}x "
            f"| {cpu:.2f} | {ref_cpu / cpu:.2f}x |"
        )
    return "\n".join(lines)


def ratios(times: dict[str, list[tuple[float, float]]], name: str, baseline: str) -> tuple[float, float]:
    """Throughput of ``name`` relative to ``baseline``: by wall time, and by CPU time."""
    wall = statistics.median(w for w, _ in times[baseline]) / statistics.median(w for w, _ in times[name])
    cpu = statistics.median(c for _, c in times[baseline]) / statistics.median(c for _, c in times[name])
    return wall, cpu


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--files", type=int, default=10_000, help="one-second files for (b)")
    p.add_argument("--repeat", type=int, default=3, help="runs of each method in (a)")
    p.add_argument("--repeat-files", type=int, default=None, help="runs of each method in (b) (default: --repeat)")
    p.add_argument("--quick", action="store_true", help="1,000 files, 2 repetitions")
    p.add_argument("--only", choices=("a", "b"), default=None, help="run only part (a) or (b)")
    p.add_argument("--workdir", default=os.path.join(tempfile.gettempdir(), "aacdata-bench-executors"))
    args = p.parse_args()
    if args.quick:
        args.files, args.repeat = 1000, 2
    repeat_b = args.repeat if args.repeat_files is None else args.repeat_files
    import distributed

    started = time.perf_counter()
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    longs = long_files(work, 16, 20.0)
    shorts = short_files(work, args.files) if args.only != "a" else work
    audio_seconds = 16 * 20.0
    store = work / "s.zarr"

    def fresh_import(src: Path, **kwargs: Any) -> Callable[[], Any]:
        def go() -> None:
            shutil.rmtree(store, ignore_errors=True)
            report = aacdata.import_audio(src, store, progress=False, **kwargs)
            assert report.ok and report.imported, report

        return go

    print(
        f"# bench_executors  {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}  cores={os.cpu_count()}  "
        f"command: benchmarks/bench_executors.py {' '.join(sys.argv[1:])}"
    )
    print(
        f"# aacdata {aacdata.__version__}, distributed {distributed.__version__}, Python {platform.python_version()}; "
        f"load average {os.getloadavg()[0]:.2f} (1 min)"
    )
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None, silence_logs=40
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        fresh_import(longs, executor=client)()  # warm-up: workers import aacdata
        a = b = None
        if args.only != "b":
            print("(a) transcode throughput", file=sys.stderr)
            a = run(
                {
                    "local pool (workers=2)": fresh_import(longs, workers=2),
                    "Dask LocalCluster (2 processes x 1 thread)": fresh_import(longs, executor=client),
                },
                args.repeat,
            )
        if args.only != "a":
            batch = min(_BATCH_FILES, -(-args.files // 16))
            files = sorted(str(f) for f in shorts.rglob("*.wav"))
            ctx = multiprocessing.get_context("fork")
            with cf.ProcessPoolExecutor(2, mp_context=ctx) as pool:
                encode_in_memory(files[:64], pool, 32)  # warm-up
                print("(b) one-second files", file=sys.stderr)
                b = run(
                    {
                        "decode + encode in memory (2 processes)": lambda: encode_in_memory(files, pool, batch),
                        "import, local pool (workers=2)": fresh_import(shorts, workers=2),
                        "import, Dask LocalCluster": fresh_import(shorts, executor=client),
                    },
                    repeat_b,
                )
    if a is not None:
        print()
        print(
            table(
                f"(a) {len(list(longs.glob('*.flac')))} FLAC files, 20 s each, 44.1 kHz stereo "
                f"({audio_seconds:.0f} s of audio), {args.repeat} runs",
                a,
                "x realtime",
                audio_seconds,
                "local pool (workers=2)",
            )
        )
        wall_a, cpu_a = ratios(a, "Dask LocalCluster (2 processes x 1 thread)", "local pool (workers=2)")
        print(f"\nDask / local pool: {wall_a:.2f}x by wall time, {cpu_a:.2f}x by CPU time (target >= 0.9x)")
    if b is not None:
        print()
        print(
            table(
                f"(b) {args.files:,} one-second 16 kHz mono WAV files, {repeat_b} runs",
                b,
                "files/s",
                args.files,
                "decode + encode in memory (2 processes)",
            )
        )
        for name in ("import, local pool (workers=2)", "import, Dask LocalCluster"):
            wall, cpu = ratios(b, name, "decode + encode in memory (2 processes)")
            print(f"\n{name} / in memory: {wall:.2f}x by wall time, {cpu:.2f}x by CPU time (target >= 0.8x)")
    print(f"\n# total {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
