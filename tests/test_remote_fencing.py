"""Fenced writes in S3 (moto's server): an import paused past its lease, wherever it is
paused, cannot overwrite what the import that took the store over committed; imports
racing to create a store never build it over each other; and stores that cannot refuse a
stale writer's writes are not written to.

An import is paused by stopping its own process (SIGSTOP) just before a chosen S3 request
(a hook on aiobotocore's client, below aacdata), and resumed (SIGCONT) after another
import has taken the expired lease over and committed."""

from __future__ import annotations

import json
import multiprocessing
import os
import random
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import make_file

import aacdata
from aacdata import AACStore, StoreLockedError, StoreWriteError

pytest.importorskip("s3fs")
boto3 = pytest.importorskip("boto3")
pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="process state is read from /proc")

_FORK = multiprocessing.get_context("fork")
LEASE = 1.0
"""Lease of the paused import, in seconds (the default is a minute)."""


def _sources(root: Path, prefix: str, count: int = 1) -> Path:
    for i in range(count):
        make_file(root / f"{prefix}{i}.wav", ("chirp", "tone")[i % 2], 8_000 + 700 * i, seed=i)
    return root


def _import(sources: Path, url: str, **kwargs: Any) -> aacdata.ImportReport:
    return aacdata.import_audio(sources, url, workers=0, progress=False, **kwargs)


def _contents(url: str) -> dict[str, bytes]:
    with AACStore.open(url) as store:
        assert store.verify().ok
        return {rid: store.adts_bytes(rid) for rid in store.ids}


def _stopped(pid: int, seconds: float = 20.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        stat = Path(f"/proc/{pid}/stat").read_text()
        if stat[stat.rindex(")") + 2] == "T":
            return True
        time.sleep(0.01)
    return False


Match = Callable[[str, dict[str, Any]], bool]


def _put_of(suffix: str, root_recordings: int | None = None) -> Match:
    """A PutObject of a key ending in ``suffix`` (for the root: one that commits
    ``root_recordings`` recordings)."""

    def match(operation: str, params: dict[str, Any]) -> bool:
        if operation != "PutObject" or not str(params.get("Key", "")).endswith(suffix):
            return False
        if root_recordings is None:
            return True
        meta = json.loads(bytes(params["Body"]))
        return bool(meta.get("attributes", {}).get("aacdata", {}).get("num_recordings") == root_recordings)

    return match


def _paused_import(sources: Path, url: str, match: Match, conn: Any, metadata: Any = None) -> None:
    """Import with a short lease, stopping this process before the first request that
    ``match`` accepts (after telling the parent); report the outcome."""
    from aiobotocore.client import AioBaseClient

    from aacdata.store import _lock

    _lock.LEASE_SECONDS = LEASE
    call = AioBaseClient._make_api_call
    state = {"paused": False}

    async def hooked(self: Any, operation: str, params: dict[str, Any]) -> Any:
        if not state["paused"] and match(operation, params):
            state["paused"] = True
            conn.send("paused")
            # aimed at this thread: the whole process stops before this thread goes on
            signal.pthread_kill(threading.get_ident(), signal.SIGSTOP)
        return await call(self, operation, params)

    AioBaseClient._make_api_call = hooked  # type: ignore[method-assign]
    try:
        report = _import(sources, url, metadata=metadata)
        conn.send(("ok", ",".join(report.imported)))
    except StoreLockedError as e:
        conn.send(("locked", str(e)))
    except BaseException as e:  # noqa: BLE001 - the test reports any other outcome
        conn.send(("raw", f"{type(e).__name__}: {e}"))


class _Paused:
    """A forked import stopped at a request; ``resume()`` lets it go on and returns its outcome."""

    def __init__(self, sources: Path, url: str, match: Match, metadata: Any = None) -> None:
        self._rd, wr = _FORK.Pipe(duplex=False)
        self.proc = _FORK.Process(target=_paused_import, args=(sources, url, match, wr, metadata))
        self.proc.start()
        assert self._rd.poll(60), "the import never reached the request it was to stop at"
        assert self._rd.recv() == "paused"
        assert self.proc.pid is not None and _stopped(self.proc.pid)
        time.sleep(LEASE + 0.5)  # its lease expires

    def resume(self) -> tuple[str, str]:
        assert self.proc.pid is not None
        os.kill(self.proc.pid, signal.SIGCONT)
        assert self._rd.poll(120), "the resumed import did not finish"
        outcome: tuple[str, str] = self._rd.recv()
        self.proc.join(30)
        return outcome

    def kill(self) -> None:
        if self.proc.pid is not None and self.proc.is_alive():
            os.kill(self.proc.pid, signal.SIGCONT)
            self.proc.kill()
            self.proc.join(10)


# ---------------------------------------------------------------------- a paused writer


PAUSES = {
    # before its first write (after its lease check and its reads)
    "before-writes": _put_of("/adts/zarr.json"),
    # inside its writes: bytes written, index rows next
    "inside-writes": _put_of("/index/c/0/0"),
    # inside its writes, at the last column: the taker's commit leaves this chunk's
    # committed rows as they were (no metadata: ""), so only the random rows past the
    # committed end make its version differ from the one the paused import read
    "last-column": _put_of("/recordings/metadata/c/0"),
    # before its commit point: everything written but the root
    "before-commit": _put_of("c.zarr/zarr.json", root_recordings=2),
}


def _paused_writer(tmp_path: Path, bucket: str, pause: str, *, rerun: bool = False) -> None:
    # Invariant: an import stopped longer than its lease, wherever it stops, cannot
    # overwrite what the import that took the store over committed: resumed, it gets
    # StoreLockedError; the other import's recordings are intact and the store verifies.
    url = f"s3://{bucket}/c.zarr"
    assert _import(_sources(tmp_path / "a", "a"), url).ok
    paused = _Paused(_sources(tmp_path / "b", "b"), url, PAUSES[pause], metadata={"b0.wav": {"by": "paused"}})
    try:
        taker = _import(_sources(tmp_path / "c", "c"), url)  # takes the expired lease over
        assert taker.imported == ("c0.wav",)
        with AACStore.open(url) as store:
            committed = {rid: store.adts_bytes(rid) for rid in store.ids}
        kind, text = paused.resume()
    finally:
        paused.kill()
    assert kind == "locked", text
    assert "another import has taken this store over" in text and url in text
    after = _contents(url)
    assert after == committed  # nothing of the taker's commit changed
    assert sorted(after) == ["a0.wav", "c0.wav"]
    with AACStore.open(url) as store:
        assert all(not rec.metadata for rec in store.recordings)
    if rerun:
        again = _import(_sources(tmp_path / "b", "b"), url)  # the refused import, rerun, lands
        assert again.imported == ("b0.wav",)
        assert sorted(_contents(url)) == ["a0.wav", "b0.wav", "c0.wav"]


def test_a_writer_paused_inside_its_writes_is_refused(tmp_path: Path, bucket: str) -> None:
    _paused_writer(tmp_path, bucket, "last-column")


@pytest.mark.slow
def test_a_writer_paused_before_its_index_rows_is_refused(tmp_path: Path, bucket: str) -> None:
    _paused_writer(tmp_path, bucket, "inside-writes")


@pytest.mark.slow
def test_a_writer_paused_before_its_writes_is_refused(tmp_path: Path, bucket: str) -> None:
    _paused_writer(tmp_path, bucket, "before-writes", rerun=True)


@pytest.mark.slow
def test_a_writer_paused_before_its_commit_point_is_refused(tmp_path: Path, bucket: str) -> None:
    _paused_writer(tmp_path, bucket, "before-commit")


def test_a_taker_paused_between_reading_and_taking_the_lease_is_refused(tmp_path: Path, bucket: str) -> None:
    # Invariant: two imports taking over the same expired lease never both hold it: the
    # one that writes the lease second is refused by the bucket.
    from aacdata.store import _lock, _remote

    url = f"s3://{bucket}/c.zarr"
    expired = {"host": "elsewhere", "pid": 1, "started": time.time() - 900, "expires": time.time() - 5}
    boto3.client("s3").put_object(Bucket=bucket, Key="c.zarr/aacdata.lock", Body=json.dumps(expired).encode())
    paused = _Paused(_sources(tmp_path / "b", "b"), url, _put_of("c.zarr/aacdata.lock"))
    try:
        with _lock.acquire(_remote.open_store(url, read_only=False), url):  # the same expired lease
            kind, text = paused.resume()
    finally:
        paused.kill()
    assert kind == "locked", text
    assert "locked by another import at the same moment" in text


def _killed_import(sources: Path, url: str, match: Match) -> None:
    """Import, killing this process (SIGKILL) before the first request ``match`` accepts."""
    from aiobotocore.client import AioBaseClient

    call = AioBaseClient._make_api_call

    async def hooked(self: Any, operation: str, params: dict[str, Any]) -> Any:
        if match(operation, params):
            os.kill(os.getpid(), signal.SIGKILL)
        return await call(self, operation, params)

    AioBaseClient._make_api_call = hooked  # type: ignore[method-assign]
    _import(sources, url)


@pytest.mark.slow
def test_an_import_killed_inside_its_writes_leaves_a_tail_the_next_import_overwrites(
    tmp_path: Path, bucket: str
) -> None:
    # Invariant: an import killed (SIGKILL) after writing whole chunks past the committed
    # end (a recording of ~1.5 chunks of /adts) leaves the last commit readable; the same
    # import run again writes over that tail through its fenced writes, and the store
    # holds what a local import of the same sources holds.
    url = f"s3://{bucket}/c.zarr"
    assert _import(_sources(tmp_path / "a", "a"), url).ok
    long = tmp_path / "long"
    make_file(long / "long.wav", "noise", 44_100 * 40, sample_rate=44_100, seed=5)  # ~800 KB of ADTS
    proc = _FORK.Process(target=_killed_import, args=(long, url, _put_of("/recordings/id/c/0")))
    proc.start()
    proc.join(120)
    assert proc.exitcode == -signal.SIGKILL
    listed = boto3.client("s3").list_objects_v2(Bucket=bucket, Prefix="c.zarr/adts/c/")["Contents"]
    assert len(listed) >= 2  # the killed commit's chunks are there, past the committed end
    assert sorted(_contents(url)) == ["a0.wav"]
    boto3.client("s3").delete_object(Bucket=bucket, Key="c.zarr/aacdata.lock")  # its lease would expire
    assert _import(long, url).imported == ("long.wav",)
    local = tmp_path / "local.zarr"
    assert _import(tmp_path / "a", local).ok and _import(long, local).ok  # type: ignore[arg-type]
    assert _contents(url) == _contents(local)  # type: ignore[arg-type]


# ---------------------------------------------------------------------- creating


@pytest.mark.slow
def test_a_creator_paused_past_its_lease_does_not_recreate_the_store(tmp_path: Path, bucket: str) -> None:
    # Invariant: an import that was creating a new store and stopped past its lease, while
    # another import created the store and committed, never writes an empty layout over
    # that commit: resumed, it finds the store and appends to it.
    url = f"s3://{bucket}/c.zarr"
    paused = _Paused(_sources(tmp_path / "b", "b"), url, _put_of("c.zarr/zarr.json", root_recordings=0))
    try:
        assert _import(_sources(tmp_path / "a", "a"), url).imported == ("a0.wav",)
        committed = _contents(url)
        kind, text = paused.resume()
    finally:
        paused.kill()
    assert (kind, text) == ("ok", "b0.wav")
    after = _contents(url)
    assert sorted(after) == ["a0.wav", "b0.wav"]
    assert after["a0.wav"] == committed["a0.wav"]


def _racer(sources: Path, url: str, delay: float, conn: Any) -> None:
    time.sleep(delay)
    try:
        report = _import(sources, url)
        conn.send(("ok" if report.ok else "failed", ",".join(report.imported)))
    except StoreLockedError as e:
        conn.send(("locked", str(e)))
    except BaseException as e:  # noqa: BLE001 - the test reports any other outcome
        conn.send(("raw", f"{type(e).__name__}: {e}"))


def _race_rounds(tmp_path: Path, bucket: str, rounds: int, seed: int) -> None:
    # Invariant: two imports creating the same store in S3 within 100 ms of each other:
    # each imports or gets StoreLockedError, never a raw error; the store verifies.
    a = _sources(tmp_path / "a", "a")
    b = _sources(tmp_path / "b", "b")
    rng = random.Random(seed)
    for r in range(rounds):
        url = f"s3://{bucket}/s{r}.zarr"
        delays = [0.0, rng.uniform(0.0, 0.1)]
        rng.shuffle(delays)
        pipes = [_FORK.Pipe(duplex=False) for _ in range(2)]
        procs = [
            _FORK.Process(target=_racer, args=(src, url, d, w))
            for src, d, (_, w) in zip((a, b), delays, pipes, strict=True)
        ]
        for p in procs:
            p.start()
        got = [rd.recv() if rd.poll(120) else ("hung", "") for rd, _ in pipes]
        for p in procs:
            p.join(30)
        assert all(kind in ("ok", "locked") for kind, _ in got), got
        assert any(kind == "ok" for kind, _ in got), got
        for (kind, _), src in zip(got, (a, b), strict=True):
            if kind == "locked":
                assert _import(src, url).ok
        assert sorted(_contents(url)) == ["a0.wav", "b0.wav"]


@pytest.mark.slow
def test_racing_creators_in_a_bucket_40_rounds(tmp_path: Path, bucket: str) -> None:
    _race_rounds(tmp_path, bucket, rounds=40, seed=2)


# ---------------------------------------------------------------------- backends that cannot fence


def test_a_bucket_that_ignores_conditional_writes_is_refused(
    tmp_path: Path, bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Invariant: where the server would perform a stale writer's conditional writes anyway,
    # nothing is written to it: the import stops with StoreWriteError before any data.
    from moto.s3.responses import S3Response

    put = S3Response.put_object

    def ignoring(self: Any) -> Any:
        self.headers = {k: v for k, v in self.headers.items() if k.lower() not in ("if-match", "if-none-match")}
        return put(self)

    monkeypatch.setattr(S3Response, "put_object", ignoring)
    url = f"s3://{bucket}/c.zarr"
    with pytest.raises(StoreWriteError, match=r"ignores conditional writes .*aacdata copy"):
        _import(_sources(tmp_path / "a", "a"), url)
    listed = boto3.client("s3").list_objects_v2(Bucket=bucket).get("Contents", [])
    assert [o["Key"] for o in listed] == []  # not even the lease is left


def test_an_object_store_that_cannot_be_fenced_is_refused(tmp_path: Path) -> None:
    import zarr

    target = zarr.storage.FsspecStore.from_url(f"memory://fence-{os.getpid()}/c.zarr")
    with pytest.raises(StoreWriteError, match=r"cannot be fenced.*aacdata copy"):
        _import(_sources(tmp_path / "a", "a"), target)  # type: ignore[arg-type]


# ---------------------------------------------------------------------- format version 1


@pytest.mark.slow
def test_a_version_1_store_in_a_bucket_is_upgraded_by_fenced_writes(
    tmp_path: Path, bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Invariant: the first commit to a store of aacdata 0.1 in S3 adds the version-2
    # columns without deleting or overwriting anything; one cut short before its commit
    # point leaves version 1 as it was, and the next import finishes the upgrade.
    from aacdata.store import _layout
    from aacdata.store._copy import copy_store

    url = f"s3://{bucket}/v1.zarr"
    copy_store(Path(__file__).parent / "data" / "store_v1.zarr", url)
    with AACStore.open(url) as store:
        assert store.format_version == 1
        before = {rid: store.adts_bytes(rid) for rid in store.ids}

    def crash(*args: object, **kwargs: object) -> None:
        raise OSError(5, "simulated I/O error")

    src = _sources(tmp_path / "n", "n")
    with monkeypatch.context() as patched:
        patched.setattr(_layout, "root_attributes", crash)
        with pytest.raises(StoreWriteError, match="simulated I/O error"):
            _import(src, url)
    with AACStore.open(url) as store:
        assert store.format_version == 1 and len(store) == 3 and store.verify().ok
    assert _import(src, url).imported == ("n0.wav",)
    with AACStore.open(url) as store:
        assert store.format_version == 2 and len(store) == 4 and store.verify().ok
        assert {rid: store.adts_bytes(rid) for rid in before} == before
