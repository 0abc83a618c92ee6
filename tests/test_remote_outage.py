"""Object-store outages are not damage: a stalled, dead or emptied S3 server (moto, run as a
child process that can be paused and killed) gives RemoteStoreError or StoreNotFoundError
within the configured timeouts, never CorruptDataError, and datasets never skip it."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zarr
from zarr.abc.store import ByteRequest
from zarr.core.buffer import Buffer, BufferPrototype, default_buffer_prototype
from zarr.core.sync import sync
from zarr.storage import MemoryStore, WrapperStore

import aacdata
from aacdata import AACSegmentDataset, AACStore
from aacdata.audio._audiofile import write_audio
from aacdata.errors import AACDataError, CorruptDataError, RemoteStoreError, StoreNotFoundError
from aacdata.store._copy import copy_store
from aacdata.store._remote import (
    DEFAULT_CONNECT_TIMEOUT_SECONDS,
    DEFAULT_READ_TIMEOUT_SECONDS,
    DEFAULT_RETRIES,
    RemoteStore,
    open_store,
)
from aacdata.testing import signal as synth_signal

pytest.importorskip("s3fs")
pytest.importorskip("moto.server")
boto3 = pytest.importorskip("boto3")
botocore_exceptions = pytest.importorskip("botocore.exceptions")

RATE = 16_000
BUCKET = "outage"
TIMEOUT_SECONDS = 1
RETRIES = 1


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class MotoProcess:
    """moto's S3 server in a child process, so that a test can pause (SIGSTOP) or kill it."""

    def __init__(self) -> None:
        self.port = _free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                break
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("the moto server did not start") from None
                time.sleep(0.05)
        self.client = boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )

    def options(self) -> dict[str, Any]:
        """storage_options with short timeouts and one retry, so that outages show fast."""
        return {
            "endpoint_url": self.endpoint,
            "key": "testing",
            "secret": "testing",
            "client_kwargs": {"region_name": "us-east-1"},
            "config_kwargs": {"connect_timeout": TIMEOUT_SECONDS, "read_timeout": TIMEOUT_SECONDS},
            "retries": RETRIES,
        }

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait()

    def empty_bucket(self, *, delete: bool) -> None:
        listed = self.client.list_objects_v2(Bucket=BUCKET).get("Contents", [])
        for obj in listed:
            self.client.delete_object(Bucket=BUCKET, Key=obj["Key"])
        if delete:
            self.client.delete_bucket(Bucket=BUCKET)


@pytest.fixture
def server() -> Iterator[MotoProcess]:
    moto = MotoProcess()
    try:
        yield moto
    finally:
        if moto.proc.poll() is None:
            moto.proc.send_signal(signal.SIGCONT)  # a failed test may leave it paused
            moto.kill()


@pytest.fixture(scope="module")
def local_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    src = tmp_path_factory.mktemp("outage-src")
    for i in range(2):
        write_audio(
            src / f"r{i}.wav", synth_signal("speech", RATE * 2 + 100 * i, sample_rate=RATE, seed=i), sample_rate=RATE
        )
    store = tmp_path_factory.mktemp("outage-local") / "local.zarr"
    assert aacdata.import_audio(src, store, workers=0, progress=False).ok
    return store


@pytest.fixture
def remote_url(server: MotoProcess, local_store: Path) -> str:
    """A copy of the local store in the child server's bucket."""
    server.client.create_bucket(Bucket=BUCKET)
    url = f"s3://{BUCKET}/corpus.zarr"
    copy_store(local_store, url, destination_options=server.options())
    return url


def _dataset(url: str, server: MotoProcess) -> AACSegmentDataset:
    return AACSegmentDataset(
        url, window_samples=4000, num_windows=8, seed=0, on_error="skip", storage_options=server.options()
    )


def test_stalled_server_times_out(server: MotoProcess, remote_url: str, local_store: Path) -> None:
    with AACStore.open(remote_url, storage_options=server.options()) as store, AACStore.open(local_store) as local:
        rec = store.recording(0)
        np.testing.assert_array_equal(store.read(rec, 0, 2000), local.read(0, 0, 2000))  # index rows cached
        server.proc.send_signal(signal.SIGSTOP)
        try:
            t0 = time.monotonic()
            with pytest.raises(RemoteStoreError, match="did not answer in time") as info:
                store.read(rec, 20_000, 2000)
            elapsed = time.monotonic() - t0
            # Invariant: (RETRIES + 1) attempts of TIMEOUT_SECONDS each, plus one short backoff.
            assert (RETRIES + 1) * TIMEOUT_SECONDS * 0.9 <= elapsed < (RETRIES + 1) * TIMEOUT_SECONDS + 3, elapsed
            message = str(info.value)
            assert remote_url in message and "adts/c/0" in message and "after 2 attempts" in message
            assert not isinstance(info.value, CorruptDataError)
            t0 = time.monotonic()
            with pytest.raises(RemoteStoreError, match="did not answer in time"):
                store.read_many([(0, 100, 500), (1, 3000, 500)])
            assert time.monotonic() - t0 < (RETRIES + 1) * TIMEOUT_SECONDS + 3
        finally:
            server.proc.send_signal(signal.SIGCONT)
        # The server is back: the same store reads again.
        np.testing.assert_array_equal(store.read(rec, 20_000, 2000), local.read(0, 20_000, 2000))


def test_dead_server_is_an_outage_not_damage(server: MotoProcess, remote_url: str) -> None:
    dataset = _dataset(remote_url, server)
    first = dataset[0]
    assert first.shape == (1, 4000)
    with AACStore.open(remote_url, storage_options=server.options()) as store:
        rec = store.recording(1)
        store.read(rec, 0, 100)
        server.kill()
        with pytest.raises(RemoteStoreError, match="cannot be reached") as info:
            store.read(rec, 10_000, 2000)
        assert not isinstance(info.value, CorruptDataError)
        assert remote_url in str(info.value) and "adts/c/0" in str(info.value)
        with pytest.raises(RemoteStoreError, match="cannot be reached"):
            store.read_many([(0, 0, 100), (1, 5000, 100)])
    # on_error="skip" is for damaged windows: an outage stops the epoch.
    with pytest.raises(RemoteStoreError):
        dataset[1]
    with pytest.raises(RemoteStoreError):
        dataset.__getitems__([2, 3, 4])
    with pytest.raises(RemoteStoreError, match=r"checking zarr\.json"):
        AACStore.open(remote_url, storage_options=server.options())
    with pytest.raises(RemoteStoreError):
        AACStore.open(remote_url, "a", storage_options=server.options())


def test_server_dying_during_an_import(
    server: MotoProcess, remote_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import aacdata.importer

    src = tmp_path / "src"
    write_audio(src / "late.wav", synth_signal("chirp", RATE, sample_rate=RATE, seed=5), sample_rate=RATE)
    convert_all = aacdata.importer._convert_all

    def convert_then_die(*args: Any, **kwargs: Any) -> Iterator[Any]:
        for outcome in convert_all(*args, **kwargs):
            server.kill()  # after the store is opened and locked, before the commit
            yield outcome

    monkeypatch.setattr(aacdata.importer, "_convert_all", convert_then_die)
    with pytest.raises(AACDataError) as info:
        aacdata.import_audio(src, remote_url, workers=0, progress=False, storage_options=server.options())
    assert isinstance(info.value, OSError)  # RemoteStoreError, or StoreWriteError around it
    chain = [info.value, info.value.__cause__]
    assert any(isinstance(e, RemoteStoreError) and remote_url in str(e) for e in chain), chain


@pytest.mark.parametrize("delete_bucket", [False, True], ids=["emptied", "deleted"])
def test_vanished_bucket_is_not_damage(server: MotoProcess, remote_url: str, delete_bucket: bool) -> None:
    dataset = _dataset(remote_url, server)
    assert dataset[0].shape == (1, 4000)  # opens the store in this process
    with AACStore.open(remote_url, storage_options=server.options()) as store:
        rec = store.recording(0)
        store.read(rec, 0, 100)
        server.empty_bucket(delete=delete_bucket)
        with pytest.raises((StoreNotFoundError, RemoteStoreError), match=r"no store at|gone"):
            AACStore.open(remote_url, storage_options=server.options())
        with pytest.raises(RemoteStoreError, match="is gone") as info:
            store.read(rec, 10_000, 2000)
        assert not isinstance(info.value, CorruptDataError)
        assert "adts/c/0" in str(info.value) and remote_url in str(info.value)
        with pytest.raises(RemoteStoreError, match="is gone"):
            store.read_many([(0, 0, 100), (1, 5000, 100)])
        with pytest.raises(RemoteStoreError, match="is gone"):
            store.frame_index(store.recording(1))  # index rows not read yet: through zarr
    with pytest.raises(RemoteStoreError, match="is gone"):
        dataset[1]
    with pytest.raises(RemoteStoreError, match="is gone"):
        dataset.__getitems__([2, 3, 4])
    if delete_bucket:
        with pytest.raises(AACDataError, match="bucket"):
            AACStore.open(remote_url, "a", storage_options=server.options())


def test_missing_or_short_chunk_in_a_live_bucket_is_damage(server: MotoProcess, remote_url: str) -> None:
    """Invariant: the store is there and a committed chunk is not (or is cut short): damage."""
    with AACStore.open(remote_url, storage_options=server.options()) as store:
        rec = store.recording(0)
        store.read(rec, 0, 100)
        key = "corpus.zarr/adts/c/0"
        body = server.client.get_object(Bucket=BUCKET, Key=key)["Body"].read()
        server.client.delete_object(Bucket=BUCKET, Key=key)
        with pytest.raises(CorruptDataError, match=r"chunk adts/c/0 is missing .* the store is damaged"):
            store.read(rec, 10_000, 2000)
        server.client.put_object(Bucket=BUCKET, Key=key, Body=body[:1000])
        with pytest.raises(CorruptDataError, match=r"chunk adts/c/0 is short"):
            store.read(rec, 10_000, 2000)
    dataset = _dataset(remote_url, server)
    with pytest.raises(CorruptDataError, match="no readable window"):
        dataset[0]  # every window lies in the damaged chunk: skipped, then reported


# ---------------------------------------------------------------- RemoteStore, no server


class _FlakyStore(WrapperStore[Any]):
    """Fails the first ``failures`` calls of ``get`` with ``error``; counts every call."""

    def __init__(self, store: Any, error: BaseException, failures: int) -> None:
        super().__init__(store)
        self.error = error
        self.failures = failures
        self.calls = 0

    async def get(self, key: str, prototype: BufferPrototype, byte_range: ByteRequest | None = None) -> Buffer | None:
        self.calls += 1
        if self.calls <= self.failures:
            raise self.error
        return await self._store.get(key, prototype, byte_range)


def _client_error(status: int, code: str) -> Exception:
    response: Any = {"Error": {"Code": code, "Message": code}, "ResponseMetadata": {"HTTPStatusCode": status}}
    return botocore_exceptions.ClientError(response, "GetObject")  # type: ignore[no-any-return]


def _flaky(error: BaseException, failures: int, retries: int) -> tuple[RemoteStore, _FlakyStore]:
    inner = MemoryStore()
    sync(inner.set("k", default_buffer_prototype().buffer.from_bytes(b"data")))
    flaky = _FlakyStore(inner, error, failures)
    return RemoteStore(flaky, where="s3://b/store.zarr", retries=retries), flaky


def _get(store: RemoteStore) -> bytes | None:
    buf = sync(store.get("k", default_buffer_prototype()))
    return None if buf is None else bytes(buf.to_bytes())


@pytest.mark.parametrize(
    "error",
    [
        ConnectionResetError(104, "Connection reset by peer"),
        TimeoutError("timed out"),
        _client_error(503, "SlowDown"),
        _client_error(500, "InternalError"),
        _client_error(429, "TooManyRequests"),
    ],
    ids=["reset", "timeout", "throttled", "5xx", "429"],
)
def test_transient_errors_are_retried_with_bounds(error: Exception, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("aacdata.store._remote.FIRST_BACKOFF_SECONDS", 0.01)
    store, flaky = _flaky(error, failures=2, retries=2)
    assert _get(store) == b"data"
    assert flaky.calls == 3
    store, flaky = _flaky(error, failures=5, retries=2)
    with pytest.raises(RemoteStoreError, match=r"reading k of 's3://b/store.zarr' failed after 3 attempts") as info:
        _get(store)
    assert flaky.calls == 3
    assert info.value.__cause__ is error


@pytest.mark.parametrize(
    ("error", "hint"),
    [
        (_client_error(403, "AccessDenied"), "access denied"),
        (PermissionError(13, "Access Denied"), "access denied"),
        (_client_error(404, "NoSuchBucket"), "does not exist"),
        (botocore_exceptions.NoCredentialsError(), "check the endpoint, the credentials"),
    ],
    ids=["403", "permission", "no-bucket", "no-credentials"],
)
def test_permanent_errors_are_not_retried(error: Exception, hint: str) -> None:
    store, flaky = _flaky(error, failures=1, retries=3)
    with pytest.raises(RemoteStoreError, match=hint) as info:
        _get(store)
    assert flaky.calls == 1
    assert "s3://b/store.zarr" in str(info.value) and "after" not in str(info.value)


def test_programming_errors_pass_through() -> None:
    store, flaky = _flaky(TypeError("bad argument"), failures=1, retries=3)
    with pytest.raises(TypeError, match="bad argument"):
        _get(store)
    assert flaky.calls == 1


def test_timeouts_default_and_override() -> None:
    pytest.importorskip("s3fs")
    store = open_store("s3://any-bucket/x.zarr", read_only=True, storage_options={"endpoint_url": "http://127.0.0.1:9"})
    assert isinstance(store, RemoteStore) and store.retries == DEFAULT_RETRIES == 3
    fs: Any = store._store.fs  # type: ignore[attr-defined]
    assert fs.config_kwargs["connect_timeout"] == DEFAULT_CONNECT_TIMEOUT_SECONDS == 10
    assert fs.config_kwargs["read_timeout"] == DEFAULT_READ_TIMEOUT_SECONDS == 30
    assert fs.config_kwargs["retries"] == {"max_attempts": 0}  # aacdata retries, botocore not
    assert fs.retries == 1
    options = {"config_kwargs": {"read_timeout": 2.5, "retries": {"max_attempts": 1}}, "retries": 0}
    store = open_store("s3://any-bucket/x.zarr", read_only=True, storage_options=options)
    assert isinstance(store, RemoteStore) and store.retries == 0
    fs = store._store.fs  # type: ignore[attr-defined]
    assert fs.config_kwargs["read_timeout"] == 2.5 and fs.config_kwargs["connect_timeout"] == 10
    assert fs.config_kwargs["retries"] == {"max_attempts": 1}
    assert options == {"config_kwargs": {"read_timeout": 2.5, "retries": {"max_attempts": 1}}, "retries": 0}
    with pytest.raises(ValueError, match="'retries' must be an integer >= 0; got -1"):
        open_store("s3://any-bucket/x.zarr", read_only=True, storage_options={"retries": -1})
    with pytest.raises(ValueError, match="'read_timeout' must be seconds > 0; got 0"):
        open_store("s3://any-bucket/x.zarr", read_only=True, storage_options={"config_kwargs": {"read_timeout": 0}})


def test_unreachable_endpoint_at_open_is_remote_store_error() -> None:
    """Nothing listens on port 9: refused at once, retried once, then reported."""
    options = {"endpoint_url": "http://127.0.0.1:9", "key": "k", "secret": "s", "retries": 1}
    t0 = time.monotonic()
    with pytest.raises(RemoteStoreError, match=r"s3://b/x.zarr.*after 2 attempts.*cannot be reached"):
        AACStore.open("s3://b/x.zarr", storage_options=options)
    assert time.monotonic() - t0 < 5
    assert os.environ.get("AWS_ENDPOINT_URL") != "http://127.0.0.1:9"  # storage_options only


def test_wrapping_keeps_zarr_working() -> None:
    """RemoteStore over a memory store: zarr reads and writes through it unchanged."""
    store = RemoteStore(MemoryStore(), where="memory-test", retries=0)
    arr = zarr.create_array(store, name="a", shape=(10,), chunks=(4,), dtype="int32")
    arr[:] = np.arange(10)
    np.testing.assert_array_equal(zarr.open_array(store, path="a")[:], np.arange(10))
    assert sorted(sync(_keys(store))) == ["a/c/0", "a/c/1", "a/c/2", "a/zarr.json", "zarr.json"]
    assert str(store) == "memory-test" and store.with_read_only(True).where == "memory-test"


async def _keys(store: RemoteStore) -> list[str]:
    return [k async for k in store.list()]
