"""Object storage: a store in an S3 bucket (moto's S3 server on 127.0.0.1) and a local
store behind 20 ms of added latency per request, against the same local store read
directly (the baseline, measured in the same run).

(i)   one 1 s window, ``AACStore.read``, s3 vs local (and ``read_many`` of 32 windows);
(ii)  ``DataLoader(batch_size=32, num_workers=8)`` windows/s over the bucket vs local, and
      over zarr's ``LatencyStore`` (20 ms per get) when the dataset accepts a zarr Store;
(iii) ``AACStore.read_many`` of 32 windows per batch in 8 forked processes over the
      ``LatencyStore``, aggregate windows/s;
(iv)  zarr's ``FsspecStore`` (s3fs) vs ``ObjectStore`` (obstore): range-read latency, 32
      concurrent range reads, and whether each works in a forked child.

The local store is built from one encoded ADTS segment, concatenated (cached under
``--workdir``); the bucket lives in moto's memory and is filled on every run.

    .venv/bin/python benchmarks/bench_remote.py            # full run
    .venv/bin/python benchmarks/bench_remote.py --quick    # smoke test, < 60 s
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import multiprocessing
import os
import resource
import socket
import subprocess
import sys
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's aacdata, installed or not

import numpy as np
import torch
import zarr
from _common import (
    MUSIC_RATE,
    Contention,
    Summary,
    build_repeated_stores,
    header,
    info_line,
    music_segment,
    own_cpu,
    print_table,
    process_cpu,
    ratio_line,
    time_rounds,
)
from zarr.abc.store import RangeByteRequest
from zarr.core.buffer import default_buffer_prototype
from zarr.core.sync import sync
from zarr.testing.store import LatencyStore

import aacdata
from aacdata import AACSegmentDataset, AACStore
from aacdata._copy import copy_store

try:
    import obstore
    from obstore.store import S3Store
except ImportError as _e:  # optional: pip install obstore
    obstore = None
    OBSTORE_MISSING = str(_e)
else:
    OBSTORE_MISSING = ""

BUCKET = "aacdata-bench"
WINDOW = MUSIC_RATE  # 1 s
LATENCY = 0.02  # seconds added to every get by LatencyStore
WORKERS = 8
BATCH = 32


@dataclass(frozen=True, slots=True)
class Config:
    """Sizes of one run; ``FULL`` is the default, ``QUICK`` the smoke test."""

    tag: str
    num_recordings: int
    recording_seconds: float  # at least; plus up to one segment
    windows: int  # (i) timed single reads per method
    warmup: int
    round_size: int
    batches: int  # (i) timed read_many batches per method; (iii) per process
    loader_batches: int  # (ii) timed batches per trial
    loader_trials: int
    client_reads: int  # (iv) single range reads per client
    client_batches: int  # (iv) batches of 32 concurrent range reads per client
    hang_seconds: float  # (iv) a forked child that has not answered by then counts as hung


FULL = Config(
    tag="full",
    num_recordings=20,
    recording_seconds=150.0,
    windows=200,
    warmup=20,
    round_size=20,
    batches=20,
    loader_batches=120,  # a multiple of WORKERS
    loader_trials=3,
    client_reads=100,
    client_batches=20,
    hang_seconds=10.0,
)
QUICK = Config(
    tag="quick",
    num_recordings=20,
    recording_seconds=20.0,
    windows=30,
    warmup=5,
    round_size=10,
    batches=4,
    loader_batches=24,  # a multiple of WORKERS
    loader_trials=1,
    client_reads=20,
    client_batches=4,
    hang_seconds=5.0,
)


# ---------------------------------------------------------------------- the S3 server


@dataclass(frozen=True, slots=True)
class Server:
    endpoint: str
    pid: int


@contextmanager
def moto_server() -> Iterator[Server]:
    """moto's ``ThreadedMotoServer`` on a free port of 127.0.0.1, in its own process (so
    that its request handling does not share this process's GIL with the DataLoader's
    main loop); the standard AWS variables point at it while it runs."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    code = (
        "import sys\nfrom moto.server import ThreadedMotoServer\n"
        f"server = ThreadedMotoServer(ip_address='127.0.0.1', port={port}, verbose=False)\n"
        "server.start()\nprint('ready', flush=True)\nsys.stdin.read()\nserver.stop()\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert proc.stdout is not None and proc.stdin is not None
    saved = {
        k: os.environ.get(k) for k in ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION")
    }
    try:
        if proc.stdout.readline().strip() != "ready":
            raise RuntimeError("moto's S3 server did not start")
        endpoint = f"http://127.0.0.1:{port}"
        os.environ.update(
            AWS_ENDPOINT_URL=endpoint,
            AWS_ACCESS_KEY_ID="testing",
            AWS_SECRET_ACCESS_KEY="testing",
            AWS_REGION="us-east-1",
        )
        yield Server(endpoint, proc.pid)
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        proc.stdin.close()  # the server stops when its stdin ends
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def fill_bucket(local: Path) -> tuple[str, int, float]:
    """Create the bucket and copy the local store into it; ``(url, bytes, seconds)``."""
    import boto3

    boto3.client("s3").create_bucket(Bucket=BUCKET)
    url = f"s3://{BUCKET}/corpus.zarr"
    t0 = time.perf_counter()
    copied = copy_store(local, url)
    return url, copied, time.perf_counter() - t0


# ---------------------------------------------------------------------- windows


def random_windows(store: AACStore, count: int, seed: int) -> list[tuple[int, int, int]]:
    """``count`` random 1 s windows ``(recording, start, num_samples)``, uniform over recordings."""
    rng = np.random.default_rng(seed)
    lengths = store.column("num_samples")
    recs = rng.integers(0, len(store), count)
    return [(int(r), int(rng.integers(0, int(lengths[r]) - WINDOW)), WINDOW) for r in recs]


def warm(store: AACStore, seed: int, extra: int) -> None:
    """Load every recording's index rows (one window each), then ``extra`` more windows."""
    store.read_many([(r, 0, WINDOW) for r in range(len(store))])
    store.read_many(random_windows(store, extra, seed))


def cpu_per_call(call: Callable[[int], Any], count: int, server: Server) -> tuple[float, float]:
    """CPU seconds per call spent in this process (all threads) and in the S3 server."""
    own, srv = own_cpu(), process_cpu(server.pid)
    for i in range(count):
        call(i)
    return (own_cpu() - own) / count, (process_cpu(server.pid) - srv) / count


# ---------------------------------------------------------------------- (i) latency


def bench_latency(local: AACStore, remote: AACStore, cfg: Config, seed: int, server: Server) -> list[str]:
    for store in (local, remote):
        warm(store, seed + 1, cfg.warmup)
    wins = random_windows(local, cfg.windows, seed + 2)
    calls: dict[str, Callable[[int], Any]] = {
        "local, AACStore.read": lambda i: local.read(*wins[i]),
        "s3, AACStore.read": lambda i: remote.read(*wins[i]),
    }
    contention = Contention([server.pid])
    gc.collect()
    stats = {k: Summary.of(v / 1e3) for k, v in time_rounds(calls, cfg.windows, cfg.round_size).items()}
    batches = [random_windows(local, BATCH, seed + 100 + b) for b in range(cfg.batches)]
    many: dict[str, Callable[[int], Any]] = {
        "local, read_many(32) per window": lambda i: local.read_many(batches[i]),
        "s3, read_many(32) per window": lambda i: remote.read_many(batches[i]),
    }
    for call in many.values():
        call(0)
    for k, v in time_rounds(many, cfg.batches, max(cfg.batches // 4, 1)).items():
        stats[k] = Summary.of(v / 1e3 / BATCH)
    print_table(
        f"(i) one random 1 s window (44.1 kHz stereo), index cached: local store vs the same store in the bucket, "
        f"{cfg.windows} windows; read_many: {cfg.batches} batches of {BATCH}",
        list(stats.items()),
        baseline="local, AACStore.read",
    )
    print(f"  {contention.note()} (the S3 server's CPU counts as ours)")
    here, there = cpu_per_call(calls["s3, AACStore.read"], cfg.windows, server)
    local_cpu, _ = cpu_per_call(calls["local, AACStore.read"], cfg.windows, server)
    print(
        f"  CPU per window: local {local_cpu * 1e3:.2f} ms; s3 {here * 1e3:.2f} ms in this process "
        f"+ {there * 1e3:.2f} ms in the S3 server"
    )
    base = stats["local, AACStore.read"].median
    return [
        "(i) latency of one window",
        info_line("s3 / local, AACStore.read (median)", stats["s3, AACStore.read"].median / base),
        info_line(
            "s3 / local, AACStore.read (p90)", stats["s3, AACStore.read"].p90 / stats["local, AACStore.read"].p90
        ),
        info_line(
            "s3 / local, read_many(32) per window",
            stats["s3, read_many(32) per window"].median / stats["local, read_many(32) per window"].median,
        ),
        info_line("s3 AACStore.read, median ms", stats["s3, AACStore.read"].median / 1e3),
    ]


# ---------------------------------------------------------------------- (ii) DataLoader


def latency_store(path: Path, latency: float) -> LatencyStore:
    return LatencyStore(zarr.storage.LocalStore(str(path), read_only=True), get_latency=latency)


def dataset_takes_store_objects(path: Path) -> str:
    """'' if ``AACSegmentDataset`` accepts a zarr Store object, else why not."""
    try:
        ds = AACSegmentDataset(latency_store(path, 0.0), window_seconds=1.0, num_windows=2)
        ds[0]
    except (TypeError, ValueError, aacdata.AACDataError) as e:
        return f"{type(e).__name__}: {e}"
    return ""


def _stamped_collate(batch: list[torch.Tensor]) -> tuple[torch.Tensor, tuple[int, float, float]]:
    """default_collate, plus which worker made the batch, when it finished (monotonic
    clock, shared by all processes) and the CPU seconds that worker had used by then."""
    return torch.utils.data.default_collate(batch), (os.getpid(), time.monotonic(), time.process_time())


def loader_rate(source: Any, cfg: Config, seed: int, server: Server) -> dict[str, float]:
    """``DataLoader(batch_size=32, num_workers=8)``: windows/s, CPU per window (workers,
    main process, S3 server) and seconds to the first batch.

    The rate comes from the workers' own completion times, not from when the main process
    receives batches: batches are handed over in order, so with 8 workers sharing 2 cores
    up to ~16 finished batches can wait in the reorder buffer, which would make a short
    timed span look faster than the workers are. The first ``WORKERS`` completions
    (start-up) and the last ``WORKERS`` (draining) are left out."""
    total = WORKERS + cfg.loader_batches + WORKERS
    ds = AACSegmentDataset(source, window_seconds=1.0, seed=seed, num_windows=BATCH * total)
    loader = torch.utils.data.DataLoader(ds, batch_size=BATCH, num_workers=WORKERS, collate_fn=_stamped_collate)

    def main_cpu() -> tuple[float, float, float]:
        me = resource.getrusage(resource.RUSAGE_SELF)
        return me.ru_utime + me.ru_stime, process_cpu(server.pid), time.monotonic()

    t0 = time.perf_counter()
    it = iter(loader)
    stamps = [next(it)[1]]
    startup = time.perf_counter() - t0
    marks = {}
    for i in range(1, total):
        if i in (WORKERS, total - WORKERS):
            marks[i] = main_cpu()
        stamps.append(next(it)[1])
    del it
    done = sorted(stamps, key=lambda x: x[1])
    a, b = WORKERS, total - 1 - WORKERS
    rate = (b - a) * BATCH / (done[b][1] - done[a][1])
    # Each worker's CPU from its first to its last completion in the span, over the batches in between.
    per_worker: dict[int, list[float]] = {}
    for pid, _, cpu in done[a : b + 1]:
        per_worker.setdefault(pid, []).append(cpu)
    worker_cpu = sum(c[-1] - c[0] for c in per_worker.values())
    worker_batches = sum(len(c) - 1 for c in per_worker.values())
    (m0, s0, t0m), (m1, s1, t1m) = marks[WORKERS], marks[total - WORKERS]
    received = (total - 2 * WORKERS) * BATCH
    return {
        "rate": rate,
        "startup": startup,
        "cpu": worker_cpu / max(worker_batches, 1) / BATCH + (m1 - m0) / received,
        "server_cpu": (s1 - s0) / received,
        "server_cores": (s1 - s0) / (t1m - t0m),
    }


def bench_loader(local_path: Path, url: str, cfg: Config, seed: int, server: Server) -> list[str]:
    sources: dict[str, Any] = {"local path": str(local_path), "s3 (moto)": url}
    why_not = dataset_takes_store_objects(local_path)
    if not why_not:
        sources["LatencyStore 20 ms (Store object)"] = latency_store(local_path, LATENCY)
    results: dict[str, list[dict[str, float]]] = {k: [] for k in sources}
    names = list(sources)
    for trial in range(cfg.loader_trials):
        for name in names[trial % len(names) :] + names[: trial % len(names)]:
            contention = Contention([server.pid])
            r = loader_rate(sources[name], cfg, seed + 10 * trial, server)
            results[name].append({**r, "other": contention.cores()})
    print(
        f"\n(ii) DataLoader(batch_size={BATCH}, num_workers={WORKERS}), 1 s windows (44.1 kHz stereo), windows/s "
        f"over {cfg.loader_batches} batches per trial, {cfg.loader_trials} trial(s)"
    )
    stats = {}
    for name, rs in results.items():
        stats[name] = Summary.of([r["rate"] for r in rs])
        med = {k: float(np.median([r[k] for r in rs])) for k in rs[0]}
        trials = ", ".join(f"{r['rate']:.0f}" for r in rs)
        server = (
            f" + {med['server_cpu'] * 1e3:.2f} ms in the S3 server ({med['server_cores']:.2f} cores)"
            if name.startswith("s3")
            else ""
        )
        ceiling = (os.cpu_count() or 1) / (med["cpu"] + med["server_cpu"])
        print(
            f"  {name:<34} {stats[name].median:6.0f} windows/s   trials: {trials}; first batch after "
            f"{med['startup']:.1f} s\n  {'':<34} CPU per window {med['cpu'] * 1e3:.2f} ms (main + workers){server}"
            f" -> {ceiling:.0f} windows/s on {os.cpu_count()} cores; other processes "
            f"{max(r['other'] for r in rs):.2f} cores"
        )
    if why_not:
        print(f"  LatencyStore through AACSegmentDataset: not measured, the dataset takes no Store object ({why_not})")
    base = stats["local path"].median
    lines = [
        "(ii) DataLoader, 8 workers",
        info_line("s3 windows/s", stats["s3 (moto)"].median),
        info_line("s3 / local path", stats["s3 (moto)"].median / base),
    ]
    if not why_not:
        lat = stats["LatencyStore 20 ms (Store object)"].median
        lines.append(ratio_line("LatencyStore 20 ms, dataset, windows/s", lat, ">=", 250))
        lines.append(info_line("LatencyStore 20 ms, dataset / local path", lat / base))
    return lines


# ---------------------------------------------------------------------- (iii) read_many in processes


def _read_many_worker(path: str, latency: float, seed: int, cfg: Config, barrier: Any, queue: Any) -> None:
    store = AACStore.open(latency_store(Path(path), latency))
    warm(store, seed, BATCH)
    batches = [random_windows(store, BATCH, seed + 1 + b) for b in range(cfg.batches)]
    barrier.wait()
    t0 = time.monotonic()
    for b in batches:
        store.read_many(b)
    queue.put((t0, time.monotonic(), len(batches) * BATCH))


def read_many_rate(path: Path, latency: float, cfg: Config, seed: int, processes: int) -> tuple[float, list[float]]:
    """Aggregate windows/s of forked processes each reading ``cfg.batches`` batches of 32
    with ``read_many`` (all start together after their warm-up); and each one's rate."""
    ctx = multiprocessing.get_context("fork")
    barrier, queue = ctx.Barrier(processes), ctx.Queue()
    procs = [
        ctx.Process(target=_read_many_worker, args=(str(path), latency, seed + 1000 * w, cfg, barrier, queue))
        for w in range(processes)
    ]
    for p in procs:
        p.start()
    results = [queue.get(timeout=300) for _ in procs]
    for p in procs:
        p.join()
    start, end = min(r[0] for r in results), max(r[1] for r in results)
    return sum(r[2] for r in results) / (end - start), [r[2] / (r[1] - r[0]) for r in results]


def bench_read_many_processes(local_path: Path, cfg: Config, seed: int) -> list[str]:
    print(
        f"\n(iii) AACStore.open(LatencyStore(LocalStore(path))).read_many({BATCH} windows) in forked processes, "
        f"{cfg.batches} batches each, aggregate windows/s"
    )
    cases = [(p, latency) for p in (1, WORKERS) for latency in (0.0, LATENCY)]
    rates: dict[tuple[int, float], list[float]] = {c: [] for c in cases}
    per_process: dict[tuple[int, float], list[float]] = {c: [] for c in cases}
    contention = Contention()
    for trial in range(max(cfg.loader_trials, 1)):
        for processes, latency in cases if trial % 2 == 0 else cases[::-1]:
            rate, each = read_many_rate(local_path, latency, cfg, seed + 10 * trial, processes)
            rates[processes, latency].append(rate)
            per_process[processes, latency] += each
    for (processes, latency), rs in rates.items():
        print(
            f"  {processes} process{'es' if processes > 1 else '  '}, get latency {latency * 1e3:2.0f} ms  "
            f"{np.median(rs):6.0f} windows/s   trials: "
            + ", ".join(f"{r:.0f}" for r in rs)
            + f"; per process: median {np.median(per_process[processes, latency]):.0f}"
        )
    print(f"  {contention.note()}")
    med = {c: float(np.median(rs)) for c, rs in rates.items()}
    return [
        "(iii) read_many(32) in processes over LatencyStore",
        ratio_line("8 processes, 20 ms per get, windows/s", med[WORKERS, LATENCY], ">=", 250),
        info_line("8 processes, 20 ms / 0 ms per get", med[WORKERS, LATENCY] / med[WORKERS, 0.0]),
        info_line("1 process, 20 ms / 0 ms per get", med[1, LATENCY] / med[1, 0.0]),
    ]


# ---------------------------------------------------------------------- (iv) obstore vs fsspec


def client_stores(url: str) -> dict[str, Any]:
    prefix = url.split(f"s3://{BUCKET}/", 1)[1]
    stores: dict[str, Any] = {"fsspec (s3fs)": zarr.storage.FsspecStore.from_url(url, read_only=True)}
    if obstore is not None:
        s3 = S3Store(BUCKET, prefix=prefix, client_options={"allow_http": True})
        stores["obstore"] = zarr.storage.ObjectStore(s3, read_only=True)
    return stores


def _get(store: Any, key: str, a: int, b: int) -> bytes:
    buf = sync(store.get(key, default_buffer_prototype(), RangeByteRequest(a, b)))
    assert buf is not None
    return buf.to_bytes()


def _get_many(store: Any, ranges: Sequence[tuple[str, int, int]]) -> list[bytes]:
    async def fetch() -> list[Any]:
        proto = default_buffer_prototype()
        return list(await asyncio.gather(*(store.get(k, proto, RangeByteRequest(a, b)) for k, a, b in ranges)))

    return [b.to_bytes() for b in sync(fetch())]


def _child_read(kind: str, url: str, inherited: Any, queue: Any) -> None:
    t0 = time.perf_counter()
    store = inherited if inherited is not None else client_stores(url)[kind]
    _get(store, "adts/c/0", 0, 20_000)
    queue.put((kind, inherited is not None, time.perf_counter() - t0))


def fork_check(url: str, stores: dict[str, Any], timeout: float) -> list[tuple[str, str]]:
    """For each client: a range read in a forked child, with the parent's store object and
    with one made in the child; a child that has not answered after ``timeout`` is killed."""
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    procs = {}
    for kind, store in stores.items():
        for inherited in (store, None):
            p = ctx.Process(target=_child_read, args=(kind, url, inherited, queue))
            p.start()
            procs[(kind, inherited is not None)] = p
    deadline = time.monotonic() + timeout
    for p in procs.values():
        p.join(max(0.0, deadline - time.monotonic()))
    done = {}
    while not queue.empty():
        kind, inherited, seconds = queue.get()
        done[(kind, inherited)] = seconds
    out = []
    for (kind, inherited), p in procs.items():
        what = f"{kind}, the {'parent' if inherited else 'child'}'s store object"
        if p.is_alive():
            p.kill()
            p.join()
            out.append((what, f"HUNG: no answer after {timeout:.0f} s (killed)"))
        elif (kind, inherited) in done:
            out.append((what, f"ok, {done[(kind, inherited)] * 1e3:.0f} ms"))
        else:
            out.append((what, f"failed, exit code {p.exitcode}"))
    return out


def dataset_check(store: Any, timeout: float) -> str:
    """``AACSegmentDataset(store object)`` through one forked DataLoader worker: does the
    first batch come within ``timeout``?"""
    ds = AACSegmentDataset(store, window_seconds=1.0, num_windows=BATCH)
    t0 = time.perf_counter()
    it = iter(torch.utils.data.DataLoader(ds, batch_size=BATCH, num_workers=1, timeout=timeout))
    try:
        next(it)
    except Exception as e:  # noqa: BLE001 - report whatever the worker died of
        message = str(e).strip().splitlines()[-1][:100]
        if "attached to a different loop" in str(e):
            message += " ... attached to a different loop"
        outcome = f"FAILED after {time.perf_counter() - t0:.1f} s: {message}"
    else:
        outcome = f"ok, first batch after {time.perf_counter() - t0:.1f} s"
    del it
    return outcome


def bench_clients(url: str, cfg: Config, seed: int, server: Server) -> list[str]:
    stores = client_stores(url)
    if obstore is None:
        print(f"\n(iv) obstore not installed ({OBSTORE_MISSING}); pip install obstore to compare")
    with AACStore.open(url) as st:
        chunk = int(zarr.open_array(st.zarr_store, path="adts", mode="r").chunks[0])
        num_chunks = -(-st.counts.num_bytes // chunk)
        rng = np.random.default_rng(seed + 5)
        ranges = []
        for _ in range(max(cfg.client_reads, cfg.client_batches * BATCH)):
            ci = int(rng.integers(0, num_chunks - 1))  # the last chunk may be short
            a = int(rng.integers(0, chunk - 20_000))
            ranges.append((f"adts/c/{ci}", a, a + 20_000))  # ~ one 1 s window of 160 kbit/s
        windows = [random_windows(st, BATCH, seed + 200 + b) for b in range(cfg.client_batches)]
    aac = {name: AACStore.open(store) for name, store in stores.items()}
    single = {name: (lambda i, s=store: _get(s, *ranges[i])) for name, store in stores.items()}
    batch = {
        f"{name}, 32 concurrent": (lambda i, s=store: _get_many(s, ranges[i * BATCH : (i + 1) * BATCH]))
        for name, store in stores.items()
    }
    via_store = {
        f"{name}, AACStore.read_many(32)": (lambda i, s=store: s.read_many(windows[i])) for name, store in aac.items()
    }
    for name, st in aac.items():
        warm(st, seed, 4)
        single[name](0)
        batch[f"{name}, 32 concurrent"](0)
    contention = Contention([server.pid])
    stats = {k: Summary.of(v / 1e6) for k, v in time_rounds(single, cfg.client_reads, cfg.round_size).items()}
    both = {**batch, **via_store}
    stats.update({k: Summary.of(v / 1e6) for k, v in time_rounds(both, cfg.client_batches, 1).items()})
    print_table(
        f"(iv) zarr FsspecStore (s3fs) vs ObjectStore (obstore {getattr(obstore, '__version__', 'missing')}) on the "
        f"moto server: one 20,000-byte range read of an /adts chunk, {cfg.client_reads} per client",
        [(k, v) for k, v in stats.items() if k in single],
        baseline="fsspec (s3fs)",
        unit="ms/call",
    )
    print_table(
        f"(iv) {BATCH} range reads in flight together (asyncio.gather through zarr), and AACStore.read_many of "
        f"{BATCH} windows over each client, {cfg.client_batches} batches",
        [(k, v) for k, v in stats.items() if k not in single],
        baseline="fsspec (s3fs), 32 concurrent",
        unit="ms/batch",
    )
    print(f"  {contention.note()} (the S3 server's CPU counts as ours)")
    print("  CPU per range request, ms: in this process (client) + in the S3 server")
    for name in stores:
        count = max(cfg.client_batches // 2, 2)
        one = cpu_per_call(single[name], cfg.client_reads, server)
        many = cpu_per_call(batch[f"{name}, 32 concurrent"], count, server)
        print(
            f"    {name:<16} single {one[0] * 1e3:5.2f} + {one[1] * 1e3:5.2f}   "
            f"32 concurrent {many[0] * 1e3 / BATCH:5.2f} + {many[1] * 1e3 / BATCH:5.2f}"
        )
    for st in aac.values():
        st.close()
    print("  a range read in a forked child (fork start method, as DataLoader workers on Linux; the parent used")
    print("  the client before):")
    checks = fork_check(url, stores, cfg.hang_seconds)
    for name, store in stores.items():
        checks.append((f"AACSegmentDataset({name} object), 1 worker", dataset_check(store, cfg.hang_seconds)))
    for what, outcome in checks:
        print(f"    {what:<44} {outcome}")
    lines = ["(iv) obstore vs fsspec"]
    if "obstore" in stores:
        for label, key in (
            ("single range read", ""),
            ("32 concurrent range reads", ", 32 concurrent"),
            ("AACStore.read_many(32)", ", AACStore.read_many(32)"),
        ):
            ratio = stats[f"obstore{key}"].median / stats[f"fsspec (s3fs){key}"].median
            lines.append(info_line(f"obstore / fsspec, {label}", ratio))
    for what, outcome in checks:
        lines.append(f"  in a forked child, {what}: {outcome}")
    return lines


# ---------------------------------------------------------------------- main


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument(
        "--workdir",
        type=Path,
        default=Path("/tmp/aacdata-bench"),
        help="cache of the local store (default: %(default)s)",
    )
    parser.add_argument("--quick", action="store_true", help="a small store and few repetitions (smoke test, < 60 s)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the store's lengths and of the windows")
    parser.add_argument(
        "--only",
        choices=("latency", "loader", "processes", "clients"),
        nargs="+",
        default=["latency", "loader", "processes", "clients"],
        help="sections",
    )
    args = parser.parse_args(argv)
    cfg = QUICK if args.quick else FULL
    # 8 workers on 2 cores is the point of (ii); aiohttp's "Unclosed client session" comes from
    # s3fs sessions of stores that workers never close (they exit with the DataLoader).
    warnings.filterwarnings("ignore", message="This DataLoader will create")
    logging.getLogger("asyncio").setLevel(logging.CRITICAL)
    header("bench_remote: object storage", [Path(sys.argv[0]).name, *(sys.argv[1:] if argv is None else argv)])
    import moto
    import s3fs

    print(
        f"# aacdata {aacdata.__version__}, zarr {zarr.__version__}, torch {torch.__version__}, "
        f"s3fs {s3fs.__version__}, moto {moto.__version__}, obstore {getattr(obstore, '__version__', 'missing')}"
    )
    torch.set_num_threads(1)
    started = time.perf_counter()
    segment = music_segment(args.workdir, seed=args.seed)
    local_path = build_repeated_stores(
        args.workdir / f"remote-{cfg.tag}", segment, {"store": [cfg.recording_seconds] * cfg.num_recordings}, args.seed
    )["store"]
    summary: list[str] = []
    with moto_server() as server:
        url, copied, seconds = fill_bucket(local_path)
        t0 = time.perf_counter()
        local = AACStore.open(local_path)
        t1 = time.perf_counter()
        remote = AACStore.open(url)
        t2 = time.perf_counter()
        minutes = sum(r.duration_seconds for r in local.recordings) / 60
        print(
            f"\nstore: {len(local)} recordings, {minutes:.1f} min of 44.1 kHz stereo, copied to {url} "
            f"({copied / 1e6:.1f} MB in {seconds:.1f} s, moto server at {server.endpoint}, pid {server.pid})"
        )
        print(
            f"AACStore.open: local {(t1 - t0) * 1e3:.0f} ms, s3 {(t2 - t1) * 1e3:.0f} ms (first open in this process)"
        )
        if "latency" in args.only:
            summary += bench_latency(local, remote, cfg, args.seed, server)
        local.close()
        remote.close()
        if "loader" in args.only:
            summary += bench_loader(local_path, url, cfg, args.seed, server)
        if "processes" in args.only:
            summary += bench_read_many_processes(local_path, cfg, args.seed)
        if "clients" in args.only:  # last: obstore's runtime, once started, is not fork-safe
            summary += bench_clients(url, cfg, args.seed, server)
    print("\nSummary")
    if args.quick:
        summary.append("(--quick: a smoke test on a small store; the targets are for the full run)")
    print("\n".join(summary))
    print(f"\n# total {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
