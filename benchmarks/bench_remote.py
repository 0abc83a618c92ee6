"""Object storage, against the same local store read directly (the baseline, same run):
(i) one 1 s window and ``read_many`` of 32 from a bucket of moto's S3 server on 127.0.0.1;
(ii) ``DataLoader(batch_size=32, num_workers=8)`` windows/s over the bucket and over zarr's
``LatencyStore`` (20 ms per get); (iii) ``read_many`` in 8 forked processes over the
``LatencyStore``; (iv) zarr's ``FsspecStore`` (s3fs) against ``ObjectStore`` (obstore), and
whether each works in a forked child. See benchmarks/README.md.

    .venv/bin/python benchmarks/bench_remote.py            # full run
    .venv/bin/python benchmarks/bench_remote.py --quick    # smoke test, < 60 s
"""

from __future__ import annotations

import asyncio
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

import numpy as np
import torch
import zarr
from _corpus import MUSIC_RATE, build_repeated_stores, music_segment
from _harness import Contention, Report, Summary, measure, own_cpu, parser, process_cpu
from zarr.abc.store import RangeByteRequest
from zarr.core.buffer import default_buffer_prototype
from zarr.core.sync import sync
from zarr.testing.store import LatencyStore

import aacdata
from aacdata import AACSegmentDataset, AACStore
from aacdata.store._copy import copy_store

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
    batches: int  # (i) timed read_many batches per method; (iii) per process
    loader_batches: int  # (ii) timed batches per trial
    loader_trials: int
    client_reads: int  # (iv) single range reads per client
    client_batches: int  # (iv) batches of 32 concurrent range reads per client
    hang_seconds: float  # (iv) a forked child that has not answered by then counts as hung


FULL = Config("full", 20, 150.0, 200, 20, 20, 120, 3, 100, 20, 10.0)
QUICK = Config("quick", 20, 20.0, 30, 5, 4, 24, 1, 20, 4, 5.0)


@dataclass(frozen=True, slots=True)
class Server:
    endpoint: str
    pid: int


@contextmanager
def moto_server() -> Iterator[Server]:
    """moto's ``ThreadedMotoServer`` on a free port of 127.0.0.1 in its own process (not
    sharing this one's GIL); the standard AWS variables point at it while it runs."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    code = (
        "import sys\nfrom moto.server import ThreadedMotoServer\n"
        f"server = ThreadedMotoServer(ip_address='127.0.0.1', port={port}, verbose=False)\n"
        "server.start()\nprint('ready', flush=True)\nsys.stdin.read()\nserver.stop()\n"
    )
    pipe, keys = subprocess.PIPE, ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION")
    proc = subprocess.Popen([sys.executable, "-c", code], stdin=pipe, stdout=pipe, stderr=subprocess.DEVNULL, text=True)
    assert proc.stdout is not None and proc.stdin is not None
    saved = {k: os.environ.get(k) for k in keys}
    try:
        if proc.stdout.readline().strip() != "ready":
            raise RuntimeError("moto's S3 server did not start")
        endpoint = f"http://127.0.0.1:{port}"
        os.environ.update(zip(keys, (endpoint, "testing", "testing", "us-east-1"), strict=True))
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


def bench_latency(report: Report, local: AACStore, remote: AACStore, cfg: Config, seed: int, server: Server) -> None:
    for store in (local, remote):
        warm(store, seed + 1, cfg.warmup)
    wins = random_windows(local, cfg.windows, seed + 2)
    calls: dict[str, Callable[[int], Any]] = {
        "local, AACStore.read": lambda i: local.read(*wins[i]),
        "s3, AACStore.read": lambda i: remote.read(*wins[i]),
    }
    stats = report.compare(
        f"(i) one random 1 s window (44.1 kHz stereo), index cached: local store vs the same store in the bucket, "
        f"{cfg.windows} windows",
        lambda: calls,
        range(cfg.windows),
        baseline="local, AACStore.read",
    )
    batches = [random_windows(local, BATCH, seed + 100 + b) for b in range(cfg.batches)]
    many: dict[str, Callable[[int], Any]] = {
        "local, read_many(32) per window": lambda i: local.read_many(batches[i]),
        "s3, read_many(32) per window": lambda i: remote.read_many(batches[i]),
    }
    stats.update(
        report.compare(
            f"(i) read_many, {cfg.batches} batches of {BATCH}",
            lambda: many,
            range(1, cfg.batches),
            warmup=[0],
            baseline="local, read_many(32) per window",
            scale=1e6 / BATCH,
        )
    )
    here, there = cpu_per_call(calls["s3, AACStore.read"], cfg.windows, server)
    local_cpu, _ = cpu_per_call(calls["local, AACStore.read"], cfg.windows, server)
    print(
        f"\nCPU per window: local {local_cpu * 1e3:.2f} ms; s3 {here * 1e3:.2f} ms in this process "
        f"+ {there * 1e3:.2f} ms in the S3 server (whose CPU counts as ours in the contention lines)"
    )
    base = stats["local, AACStore.read"]
    report.info("(i) s3 / local, AACStore.read (median)", stats["s3, AACStore.read"].median / base.median)
    report.info("(i) s3 / local, AACStore.read (p90)", stats["s3, AACStore.read"].p90 / base.p90)
    ratio = stats["s3, read_many(32) per window"].median / stats["local, read_many(32) per window"].median
    report.info("(i) s3 / local, read_many(32) per window", ratio)


def latency_store(path: Path, latency: float) -> LatencyStore:
    return LatencyStore(zarr.storage.LocalStore(str(path), read_only=True), get_latency=latency)


def _stamped_collate(batch: list[torch.Tensor]) -> tuple[torch.Tensor, tuple[int, float, float]]:
    """default_collate, plus the worker's pid, the (shared) monotonic clock and its CPU seconds."""
    return torch.utils.data.default_collate(batch), (os.getpid(), time.monotonic(), time.process_time())


def loader_rate(source: Any, cfg: Config, seed: int, server: Server) -> dict[str, float]:
    """``DataLoader(batch_size=32, num_workers=8)``: windows/s from the workers' own
    completion stamps (finished batches wait in the in-order buffer, so arrival times
    overstate a short span), leaving out the first and last ``WORKERS`` (start-up,
    draining); CPU per window (workers, main process, S3 server); seconds to batch 1."""
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


def bench_loader(report: Report, local_path: Path, url: str, cfg: Config, seed: int, server: Server) -> None:
    sources: dict[str, Any] = {"local path": str(local_path), "s3 (moto)": url}
    sources["LatencyStore 20 ms (Store object)"] = latency_store(local_path, LATENCY)
    results: dict[str, list[dict[str, float]]] = {k: [] for k in sources}

    def trial(name: str) -> Callable[[int], float]:
        def run(t: int) -> float:
            contention = Contention([server.pid])
            results[name].append({**loader_rate(sources[name], cfg, seed + 10 * t, server)})
            results[name][-1]["other"] = contention.cores()
            return 0.0

        return run

    measure({k: trial(k) for k in sources}, range(cfg.loader_trials), self_timed=True)
    rows, stats = [], {}
    for name, rs in results.items():
        stats[name] = Summary.of([r["rate"] for r in rs])
        med = {k: float(np.median([r[k] for r in rs])) for k in rs[0]}
        ceiling = (os.cpu_count() or 1) / (med["cpu"] + med["server_cpu"])
        trials = ", ".join(f"{r['rate']:.0f}" for r in rs)
        row = [name, stats[name].median, trials, med["startup"], med["cpu"] * 1e3, med["server_cpu"] * 1e3]
        rows.append([*row, ceiling, max(r["other"] for r in rs)])
    report.table(
        f"(ii) DataLoader(batch_size={BATCH}, num_workers={WORKERS}), 1 s windows (44.1 kHz stereo), "
        f"{cfg.loader_batches} batches per trial, {cfg.loader_trials} trial(s), sources interleaved",
        ["source", "windows/s", "trials", "1st batch s", "CPU ms/window", "S3 server CPU ms", "CPU ceiling", "other"],
        rows,
        "CPU ms/window: the workers' and the main process's; CPU ceiling: the windows/s that CPU allows on "
        f"{os.cpu_count()} cores (with the S3 server's); other: cores other processes used",
    )
    base = stats["local path"].median
    report.info("(ii) s3 windows/s, 8 workers", stats["s3 (moto)"].median)
    report.info("(ii) s3 / local path, windows/s", stats["s3 (moto)"].median / base)
    lat = stats["LatencyStore 20 ms (Store object)"].median
    report.target("(ii) LatencyStore 20 ms, dataset, windows/s", lat, ">=", 250)
    report.info("(ii) LatencyStore 20 ms / local path, windows/s", lat / base)


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


def bench_read_many_processes(report: Report, local_path: Path, cfg: Config, seed: int) -> None:
    cases = [(p, latency) for p in (1, WORKERS) for latency in (0.0, LATENCY)]
    rates: dict[tuple[int, float], list[float]] = {c: [] for c in cases}
    per_process: dict[tuple[int, float], list[float]] = {c: [] for c in cases}

    def trial(case: tuple[int, float]) -> Callable[[int], float]:
        def run(t: int) -> float:
            rate, each = read_many_rate(local_path, case[1], cfg, seed + 10 * t, case[0])
            rates[case].append(rate)
            per_process[case] += each
            return 0.0

        return run

    contention = Contention()
    measure({c: trial(c) for c in cases}, range(max(cfg.loader_trials, 1)), self_timed=True)
    rows = [
        [f"{p} process(es), {lat * 1e3:.0f} ms per get", np.median(rs), ", ".join(f"{r:.0f}" for r in rs), np.median(e)]
        for ((p, lat), rs), e in zip(rates.items(), per_process.values(), strict=True)
    ]
    report.table(
        f"(iii) AACStore.open(LatencyStore(LocalStore(path))).read_many({BATCH} windows) in forked processes, "
        f"{cfg.batches} batches each",
        ["processes, latency", "windows/s (all)", "trials", "windows/s per process"],
        rows,
        contention.note(),
    )
    med = {c: float(np.median(rs)) for c, rs in rates.items()}
    report.target("(iii) 8 processes, 20 ms per get, windows/s", med[WORKERS, LATENCY], ">=", 250)
    report.info("(iii) 8 processes, 20 ms / 0 ms per get", med[WORKERS, LATENCY] / med[WORKERS, 0.0])
    report.info("(iii) 1 process, 20 ms / 0 ms per get", med[1, LATENCY] / med[1, 0.0])


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
    """A range read in a forked child with the parent's store object and with its own; a
    child that has not answered after ``timeout`` is killed."""
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
        done[kind, inherited] = seconds
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
    """``AACSegmentDataset(store object)`` through one forked worker: a batch within ``timeout``?"""
    try:
        ds = AACSegmentDataset(store, window_seconds=1.0, num_windows=BATCH)
    except ValueError as e:  # the dataset refuses store objects that workers cannot share
        return f"refused: {e}"
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


def bench_clients(report: Report, url: str, cfg: Config, seed: int, server: Server) -> None:
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
    for st in aac.values():
        warm(st, seed, 4)
    single = {name: (lambda i, s=store: _get(s, *ranges[i])) for name, store in stores.items()}
    batch = {
        f"{name}, 32 concurrent": (lambda i, s=store: _get_many(s, ranges[i * BATCH : (i + 1) * BATCH]))
        for name, store in stores.items()
    }
    via_store = {
        f"{name}, AACStore.read_many(32)": (lambda i, s=store: s.read_many(windows[i])) for name, store in aac.items()
    }
    version = getattr(obstore, "__version__", "missing")
    stats = report.compare(
        f"(iv) zarr FsspecStore (s3fs) vs ObjectStore (obstore {version}) on the moto server: one 20,000-byte "
        f"range read of an /adts chunk, {cfg.client_reads} per client",
        lambda: single,
        range(1, cfg.client_reads),
        warmup=[0],
        baseline="fsspec (s3fs)",
        unit="ms/call",
        scale=1e3,
    )
    stats |= report.compare(
        f"(iv) {BATCH} range reads in flight together (asyncio.gather through zarr), and AACStore.read_many of "
        f"{BATCH} windows over each client, {cfg.client_batches} batches",
        lambda: {**batch, **via_store},
        range(1, cfg.client_batches),
        warmup=[0],
        baseline="fsspec (s3fs), 32 concurrent",
        unit="ms/batch",
        scale=1e3,
    )
    rows = []
    for name in stores:
        one = cpu_per_call(single[name], cfg.client_reads, server)
        many = cpu_per_call(batch[f"{name}, 32 concurrent"], max(cfg.client_batches // 2, 2), server)
        rows.append([name, one[0] * 1e3, one[1] * 1e3, many[0] * 1e3 / BATCH, many[1] * 1e3 / BATCH])
    cols = ["client", "single: client", "single: server", "32 concurrent: client", "32 concurrent: server"]
    report.table("(iv) CPU per range request, ms, in this process (client) and in the S3 server", cols, rows)
    for st in aac.values():
        st.close()
    checks = fork_check(url, stores, cfg.hang_seconds)
    for name, store in stores.items():
        checks.append((f"AACSegmentDataset({name} object), 1 worker", dataset_check(store, cfg.hang_seconds)))
    report.table(
        "(iv) a range read in a forked child (fork start method, as DataLoader workers on Linux; the parent used "
        "the client before)",
        ["what", "outcome"],
        checks,
    )
    if "obstore" in stores:
        for label, key in (("single range read", ""), ("32 concurrent", ", 32 concurrent")):
            ratio = stats[f"obstore{key}"].median / stats[f"fsspec (s3fs){key}"].median
            report.info(f"(iv) obstore / fsspec, {label}", ratio)
        ratio = stats["obstore, AACStore.read_many(32)"].median / stats["fsspec (s3fs), AACStore.read_many(32)"].median
        report.info("(iv) obstore / fsspec, AACStore.read_many(32)", ratio)


def main() -> None:
    p = parser(__doc__, "< 60 s")
    sections = ("latency", "loader", "processes", "clients")
    p.add_argument("--only", choices=sections, nargs="+", default=list(sections), help="sections")
    args = p.parse_args()
    cfg = QUICK if args.quick else FULL
    # 8 workers on 2 cores is the point of (ii); aiohttp's "Unclosed client session" comes from
    # s3fs sessions of stores that workers never close (they exit with the DataLoader).
    warnings.filterwarnings("ignore", message="This DataLoader will create")
    logging.getLogger("asyncio").setLevel(logging.CRITICAL)
    import moto
    import s3fs

    report = Report(
        "bench_remote: object storage",
        args,
        f"aacdata {aacdata.__version__}, zarr {zarr.__version__}, torch {torch.__version__}, s3fs {s3fs.__version__}, "
        f"moto {moto.__version__}, obstore {getattr(obstore, '__version__', 'missing')}",
    )
    torch.set_num_threads(1)
    segment = music_segment(args.workdir, seed=args.seed)
    local_path = build_repeated_stores(
        args.workdir / f"remote-{cfg.tag}", segment, {"store": [cfg.recording_seconds] * cfg.num_recordings}, args.seed
    )["store"]
    with moto_server() as server:
        report.ours = [server.pid]  # the S3 server's CPU counts as ours in the contention lines
        url, copied, seconds = fill_bucket(local_path)
        t0 = time.perf_counter()
        local = AACStore.open(local_path)
        t1 = time.perf_counter()
        remote = AACStore.open(url)
        t2 = time.perf_counter()
        minutes = sum(r.duration_seconds for r in local.recordings) / 60
        print(
            f"\nstore: {len(local)} recordings, {minutes:.1f} min of 44.1 kHz stereo, copied to {url} "
            f"({copied / 1e6:.1f} MB in {seconds:.1f} s, moto server at {server.endpoint}, pid {server.pid}); "
            f"AACStore.open: local {(t1 - t0) * 1e3:.0f} ms, s3 {(t2 - t1) * 1e3:.0f} ms (first open)"
        )
        if "latency" in args.only:
            bench_latency(report, local, remote, cfg, args.seed, server)
        local.close()
        remote.close()
        if "loader" in args.only:
            bench_loader(report, local_path, url, cfg, args.seed, server)
        if "processes" in args.only:
            bench_read_many_processes(report, local_path, cfg, args.seed)
        if "clients" in args.only:  # last: obstore's runtime, once started, is not fork-safe
            bench_clients(report, url, cfg, args.seed, server)
    report.finish()


if __name__ == "__main__":
    main()
