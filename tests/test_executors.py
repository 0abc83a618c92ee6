"""import_audio(executor=...): thread and process pools, a real Dask cluster, engine errors,
duplicate results, interrupts, killed workers and a killed importing process."""

from __future__ import annotations

import concurrent.futures as cf
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import env_with_package, make_file

import aacdata
import aacdata.importer
from aacdata import AACStore, ImportInterruptedError

KINDS = ("tone", "chirp", "speech", "noise", "music")


def _corpus(root: Path, count: int, *, num_samples: int = 12_000, sample_rate: int = 16_000) -> Path:
    for i in range(count):
        kind = KINDS[i % len(KINDS)]
        make_file(
            root / f"d{i % 3}" / f"{i:03d}_{kind}.wav",
            kind,
            num_samples + 97 * i,
            sample_rate=sample_rate,
            num_channels=1 + i % 2,
            seed=i,
        )
    return root


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _corpus(tmp_path_factory.mktemp("corpus"), 14)


@pytest.fixture(scope="module")
def reference(corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    store = tmp_path_factory.mktemp("ref") / "ref.zarr"
    report = aacdata.import_audio(corpus, store, workers=0, progress=False)
    assert report.ok and len(report.imported) == 14
    return store


def _same_by_id(path: Path, reference: Path) -> None:
    """Same recordings (ids, stored bytes, index rows relative to each recording, every
    table value but the placement), in whatever order they were appended; verify passes."""
    with AACStore.open(path) as a, AACStore.open(reference) as b:
        assert len(a.ids) == len(set(a.ids))
        assert sorted(a.ids) == sorted(b.ids)
        placement = {"index", "frame_start", "byte_start"}
        for rid in b.ids:
            ra, rb = a.recording(rid), b.recording(rid)
            for name in ra.__dataclass_fields__:
                if name not in placement:
                    assert getattr(ra, name) == getattr(rb, name), (rid, name)
            assert a.adts_bytes(rid) == b.adts_bytes(rid)
            ia, ib = a.frame_index(rid), b.frame_index(rid)
            assert np.array_equal(ia[:, 1:], ib[:, 1:])
            assert np.array_equal(ia[:, 0] - ra.byte_start, ib[:, 0] - rb.byte_start)
            ka, kb = a.index_of(rid), b.index_of(rid)
            assert a.column("flags")[ka] == b.column("flags")[kb]
        assert a.counts.num_bytes == b.counts.num_bytes and a.counts.num_frames == b.counts.num_frames
        assert a.verify().ok


# ---------------------------------------------------------------------- concurrent.futures


@pytest.mark.parametrize("kind", ["threads", "processes"])
def test_futures_executor_gives_the_same_store(kind: str, corpus: Path, reference: Path, tmp_path: Path) -> None:
    pool: cf.Executor = cf.ThreadPoolExecutor(2) if kind == "threads" else cf.ProcessPoolExecutor(2)
    with pool:
        report = aacdata.import_audio(corpus, tmp_path / "s.zarr", executor=pool, progress=False)
    assert report.ok
    assert sorted(report.imported) == sorted(AACStore.open(reference).ids)
    _same_by_id(tmp_path / "s.zarr", reference)
    with cf.ThreadPoolExecutor(2) as pool:  # resumes: everything is there
        again = aacdata.import_audio(corpus, tmp_path / "s.zarr", executor=pool, progress=False)
    assert again.imported == () and len(again.skipped) == 14


def test_bad_source_fails_alone_on_an_executor(tmp_path: Path) -> None:
    src = _corpus(tmp_path / "src", 5)
    (src / "broken.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk")
    with cf.ThreadPoolExecutor(2) as pool:
        report = aacdata.import_audio(src, tmp_path / "s.zarr", executor=pool, progress=False)
    assert len(report.imported) == 5
    assert [Path(f.source).name for f in report.failed] == ["broken.wav"]
    assert "executor" not in report.failed[0].reason  # the file's own error, not a retry


class _FlakyExecutor(cf.Executor):
    """Runs tasks on threads; the first ``failures`` submissions, and every task holding
    ``poison``, fail as an engine would (a lost worker), without running."""

    def __init__(self, failures: int = 0, poison: str | None = None, echo: bool = False) -> None:
        self._pool = cf.ThreadPoolExecutor(2)
        self._failures = failures
        self._poison = poison
        self._echo = echo
        self._previous: list[Any] = []
        self.submitted: list[list[str]] = []

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> cf.Future[Any]:
        ids = [rid for _, rid, _ in args[0]]
        self.submitted.append(ids)
        if self._failures > 0 or (self._poison is not None and self._poison in ids):
            self._failures -= 1
            fut: cf.Future[Any] = cf.Future()
            fut.set_exception(ConnectionResetError("worker lost"))
            return fut
        if not self._echo:
            return self._pool.submit(fn, *args, **kwargs)
        previous = self._previous

        def twice() -> Any:  # at-least-once delivery: this task's results and the last task's again
            return [*fn(*args, **kwargs), *previous]

        fut = self._pool.submit(twice)
        fut.add_done_callback(lambda f: self._previous.extend(f.result()))
        return fut

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        self._pool.shutdown(wait=wait, cancel_futures=cancel_futures)


def test_engine_errors_are_retried(corpus: Path, reference: Path, tmp_path: Path) -> None:
    with _FlakyExecutor(failures=3) as pool:
        report = aacdata.import_audio(corpus, tmp_path / "s.zarr", executor=pool, progress=False)
    assert report.ok and len(report.imported) == 14
    _same_by_id(tmp_path / "s.zarr", reference)


def test_a_task_that_always_fails_fails_its_file_alone(corpus: Path, tmp_path: Path) -> None:
    # Invariant: after the retries, only the source whose own task keeps failing is lost.
    poison = "d1/004_music.wav"
    with _FlakyExecutor(poison=poison) as pool:
        report = aacdata.import_audio(corpus, tmp_path / "s.zarr", executor=pool, progress=False)
    assert len(report.imported) == 13 and poison not in report.imported
    assert len(report.failed) == 1
    assert report.failed[0].source.endswith(poison)
    assert "failed to convert this file 3 times" in report.failed[0].reason
    assert "ConnectionResetError: worker lost" in report.failed[0].reason
    assert pool.submitted.count([poison]) == 3


def test_a_result_delivered_twice_is_committed_once(corpus: Path, reference: Path, tmp_path: Path) -> None:
    with _FlakyExecutor(echo=True) as pool:
        report = aacdata.import_audio(corpus, tmp_path / "s.zarr", executor=pool, progress=False)
    assert report.ok
    assert len(report.imported) == len(set(report.imported)) == 14
    _same_by_id(tmp_path / "s.zarr", reference)


def test_batches_bound_bytes_and_files(tmp_path: Path) -> None:
    from aacdata.importer import _BATCH_FILES, Source, _batches

    small = [Source(str(tmp_path / f"{i}.wav"), f"{i}.wav") for i in range(2000)]
    for src in small[:10]:
        Path(src.path).write_bytes(b"x" * 100)
    batches = list(_batches(small, total=len(small), parallelism=2))
    assert [s for b in batches for s in b] == small  # every source once, in order
    assert max(len(b) for b in batches) == min(_BATCH_FILES, 2000 // 16)
    big = tmp_path / "big.wav"
    with open(big, "wb") as f:
        f.truncate(aacdata.importer._BATCH_BYTES + 1)  # sparse: a huge file goes alone
    mixed = [small[0], Source(str(big), "big.wav"), small[1]]
    assert [len(b) for b in _batches(mixed, total=3, parallelism=1)] == [1, 1, 1]


def test_executor_and_workers_are_exclusive(corpus: Path, tmp_path: Path) -> None:
    with cf.ThreadPoolExecutor(1) as pool, pytest.raises(ValueError, match="not both"):
        aacdata.import_audio(corpus, tmp_path / "s.zarr", executor=pool, workers=2, progress=False)
    with pytest.raises(TypeError, match="Executor or a Dask distributed"):
        aacdata.import_audio(corpus, tmp_path / "s.zarr", executor=object(), progress=False)


def test_interrupt_with_an_executor_commits_and_releases(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Invariant: SIGINT ends the import with what is converted committed, the tasks still
    # queued cancelled, and the lock released (the same import then finishes the rest).
    src = _corpus(tmp_path / "src", 24, num_samples=40_000)
    monkeypatch.setattr(aacdata.importer, "_COMMIT_RECORDINGS", 1)
    monkeypatch.setattr(aacdata.importer, "_BATCH_FILES", 1)
    store = tmp_path / "s.zarr"

    def interrupt_after_first_commit() -> None:
        deadline = time.monotonic() + 60
        while _committed(store) == 0 and time.monotonic() < deadline:
            time.sleep(0.005)
        os.kill(os.getpid(), signal.SIGINT)

    killer = threading.Thread(target=interrupt_after_first_commit)
    with cf.ThreadPoolExecutor(1) as pool:
        killer.start()
        with pytest.raises(ImportInterruptedError, match="interrupted by SIGINT"):
            aacdata.import_audio(src, store, executor=pool, progress=False)
        killer.join()
        done = _committed(store)
        assert 0 < done < 24
        report = aacdata.import_audio(src, store, executor=pool, progress=False)
    assert len(report.skipped) == done and len(report.imported) == 24 - done
    with AACStore.open(store) as st:
        assert len(set(st.ids)) == 24
        assert st.verify().ok


def _committed(store: Path) -> int:
    try:
        return int(json.loads((store / "zarr.json").read_text())["attributes"]["aacdata"]["num_recordings"])
    except (OSError, ValueError, KeyError):
        return 0


# ---------------------------------------------------------------------- Dask distributed


@pytest.fixture(scope="module")
def client() -> Iterator[Any]:
    distributed = pytest.importorskip("distributed")
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None, silence_logs=40
        ) as cluster,
        distributed.Client(cluster) as c,
    ):
        yield c


def test_dask_gives_the_same_store(client: Any, corpus: Path, reference: Path, tmp_path: Path) -> None:
    report = aacdata.import_audio(corpus, tmp_path / "s.zarr", executor=client, progress=False)
    assert report.ok and len(report.imported) == 14
    _same_by_id(tmp_path / "s.zarr", reference)


def test_dask_worker_killed_mid_import(client: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Invariant: a worker process killed while it converts costs nothing but time: every
    # file is imported exactly once.
    src = _corpus(tmp_path / "src", 12, num_samples=120_000, sample_rate=44_100)
    ref = tmp_path / "ref.zarr"
    assert aacdata.import_audio(src, ref, workers=0, progress=False).ok
    monkeypatch.setattr(aacdata.importer, "_BATCH_FILES", 2)
    pids = client.run(os.getpid)
    killed: list[int] = []

    def kill_a_busy_worker() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            busy = [addr for addr, keys in client.processing().items() if keys and addr in pids]
            if busy:
                os.kill(pids[busy[0]], signal.SIGKILL)
                killed.append(pids[busy[0]])
                return
            time.sleep(0.01)

    killer = threading.Thread(target=kill_a_busy_worker)
    killer.start()
    report = aacdata.import_audio(src, tmp_path / "s.zarr", executor=client, progress=False)
    killer.join()
    assert killed, "no worker was busy"
    assert report.ok, report.failed
    assert len(report.imported) == len(set(report.imported)) == 12
    _same_by_id(tmp_path / "s.zarr", ref)
    client.wait_for_workers(2, timeout=60)


@pytest.mark.slow
def test_dask_client_killed_mid_import_resumes(client: Any, tmp_path: Path) -> None:
    # Invariant: SIGKILL of the importing process (the Dask client) leaves the committed
    # recordings readable; the next run skips them and converts only the rest.
    src = _corpus(tmp_path / "src", 30, num_samples=150_000, sample_rate=44_100)
    store = tmp_path / "s.zarr"
    script = (
        "import sys, distributed, aacdata, aacdata.importer\n"
        "aacdata.importer._COMMIT_RECORDINGS = 1\n"
        "aacdata.importer._BATCH_FILES = 1\n"
        "with distributed.Client(sys.argv[1]) as c:\n"
        "    aacdata.import_audio(sys.argv[2], sys.argv[3], executor=c, progress=False)\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", script, client.scheduler.address, str(src), str(store)],
        env=env_with_package(),
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 120
    while _committed(store) == 0 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    running = proc.poll() is None
    proc.send_signal(signal.SIGKILL)
    _, err = proc.communicate()
    assert running, f"the import finished before it could be killed: {err!r}"
    done = _committed(store)
    assert 0 < done < 30
    report = aacdata.import_audio(src, store, executor=client, progress=False)
    assert report.ok
    assert len(report.skipped) == done and len(report.imported) == 30 - done
    ref = tmp_path / "ref.zarr"
    assert aacdata.import_audio(src, ref, workers=0, progress=False).ok
    _same_by_id(store, ref)


def test_cli_dask_option(client: Any, corpus: Path, reference: Path, tmp_path: Path) -> None:
    from aacdata.cli import main

    store = tmp_path / "s.zarr"
    assert main(["import", str(corpus), "-o", str(store), "--dask", client.scheduler.address, "--no-progress"]) == 0
    _same_by_id(store, reference)
    assert main(["import", str(corpus), "-o", str(store), "--dask", "tcp://x:1", "--workers", "2"]) == 2
