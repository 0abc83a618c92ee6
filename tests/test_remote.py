"""Stores in object storage: a real S3 protocol server (moto) on 127.0.0.1."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import zarr
from conftest import env_with_package
from zarr.abc.store import ByteRequest, RangeByteRequest
from zarr.core.buffer import Buffer, BufferPrototype
from zarr.storage import WrapperStore

import aacdata
from aacdata import AACSegmentDataset, AACStore
from aacdata.audio._audiofile import write_audio
from aacdata.cli import main
from aacdata.store._copy import copy_store
from aacdata.testing import signal

pytest.importorskip("s3fs")
moto_server = pytest.importorskip("moto.server")
boto3 = pytest.importorskip("boto3")

RATE = 16_000


@pytest.fixture(scope="module")
def local_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    src = tmp_path_factory.mktemp("remote-src")
    for i in range(4):
        audio = signal(("speech", "music")[i % 2], RATE * 2 + 333 * i, sample_rate=RATE, num_channels=1 + i % 2, seed=i)
        write_audio(src / f"r{i}.flac", audio, sample_rate=RATE)
    store = tmp_path_factory.mktemp("remote-local") / "local.zarr"
    assert aacdata.import_audio(src, store, workers=0, progress=False).ok
    return store


def test_copy_to_bucket_reads_unchanged(local_store: Path, bucket: str) -> None:
    url = f"s3://{bucket}/corpus.zarr"
    assert main(["copy", str(local_store), url, "--no-progress"]) == 0
    with AACStore.open(local_store) as local, AACStore.open(url) as remote:
        assert remote.ids == local.ids
        assert remote.counts == local.counts
        rng = np.random.default_rng(0)
        for rec in local.recordings:
            assert remote.adts_bytes(rec.id) == local.adts_bytes(rec)
            np.testing.assert_array_equal(remote.frame_index(rec.id), local.frame_index(rec))
            for _ in range(5):
                start = int(rng.integers(0, rec.num_samples - 3000))
                np.testing.assert_array_equal(remote.read(rec.id, start, 3000), local.read(rec, start, 3000))
        assert remote.verify().ok
    with pytest.raises(aacdata.StoreFormatError, match="already holds"):
        copy_store(local_store, url)


def test_import_straight_to_a_bucket(local_store: Path, bucket: str, tmp_path: Path) -> None:
    src = tmp_path / "src"
    for i in range(3):
        write_audio(src / f"x{i}.wav", signal("chirp", RATE + 100 * i, sample_rate=RATE, seed=i), sample_rate=RATE)
    url = f"s3://{bucket}/direct.zarr"
    report = aacdata.import_audio(src, url, workers=0, progress=False)
    assert report.ok and len(report.imported) == 3
    again = aacdata.import_audio(src, url, workers=0, progress=False)
    assert again.imported == () and len(again.skipped) == 3
    local = aacdata.import_audio(src, tmp_path / "same.zarr", workers=0, progress=False)
    assert local.ok
    with AACStore.open(url) as remote, AACStore.open(tmp_path / "same.zarr") as same:
        for rid in same.ids:
            assert remote.adts_bytes(rid) == same.adts_bytes(rid)
        assert remote.verify().ok
    # no lock object is left behind
    keys = boto3.client("s3").list_objects_v2(Bucket=bucket, Prefix="direct.zarr/")["Contents"]
    assert not any(k["Key"].endswith("aacdata.lock") for k in keys)


def test_remote_lock_refuses_a_second_writer(local_store: Path, bucket: str, tmp_path: Path) -> None:
    url = f"s3://{bucket}/locked.zarr"
    copy_store(local_store, url)
    boto3.client("s3").put_object(Bucket=bucket, Key="locked.zarr/aacdata.lock", Body=b"{}")
    src = write_audio(tmp_path / "x.wav", signal("chirp", RATE, sample_rate=RATE), sample_rate=RATE)
    with pytest.raises(aacdata.StoreLockedError, match=r"delete .*aacdata\.lock"):
        aacdata.import_audio(src, url, workers=0, progress=False)


def test_storage_options_override_the_environment(
    local_store: Path, bucket: str, s3_endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"s3://{bucket}/opts.zarr"
    copy_store(local_store, url)
    with pytest.raises(aacdata.StoreNotFoundError, match="no store at"):
        AACStore.open(f"s3://{bucket}/missing.zarr")
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # nothing listens there
    options = {"endpoint_url": s3_endpoint, "key": "testing", "secret": "testing"}
    with AACStore.open(url, storage_options=options) as store:
        assert len(store) == 4


def test_dataloader_over_a_bucket(local_store: Path, bucket: str) -> None:
    url = f"s3://{bucket}/dl.zarr"
    copy_store(local_store, url)
    local = AACSegmentDataset(local_store, window_samples=4000, num_channels=1, num_windows=32, seed=1)
    remote = AACSegmentDataset(url, window_samples=4000, num_channels=1, num_windows=32, seed=1)
    expected = torch.stack([local[i] for i in range(32)])
    got = torch.cat(list(torch.utils.data.DataLoader(remote, batch_size=8, num_workers=2)))
    assert torch.equal(got, expected)


class _CountingStore(WrapperStore[Any]):
    """Counts ``get`` calls per key and records their byte ranges."""

    def __init__(self, store: Any) -> None:
        super().__init__(store)
        self.calls: list[tuple[str, ByteRequest | None]] = []

    def _with_store(self, store: Any) -> _CountingStore:
        return type(self)(store)

    async def get(self, key: str, prototype: BufferPrototype, byte_range: ByteRequest | None = None) -> Buffer | None:
        self.calls.append((key, byte_range))
        return await self._store.get(key, prototype, byte_range)


def test_reads_fetch_only_the_frames_of_a_window(local_store: Path) -> None:
    counting = _CountingStore(zarr.storage.LocalStore(local_store, read_only=True))
    store = AACStore.open(counting)
    with AACStore.open(local_store) as plain:
        rec = store.recording(1)
        store.read(rec, 0, 10)  # loads index rows (compressed chunks, read whole)
        counting.calls.clear()
        window = store.read(rec, 5000, 8000)
        np.testing.assert_array_equal(window, plain.read(rec, 5000, 8000))
    adts_calls = [(k, r) for k, r in counting.calls if k.startswith("adts/")]
    assert len(counting.calls) == len(adts_calls) >= 1  # no other request
    assert len(adts_calls) <= 2  # one range, two where it crosses a chunk boundary
    for _key, byte_range in adts_calls:
        assert isinstance(byte_range, RangeByteRequest)
        assert byte_range.end - byte_range.start < 20_000  # frames, never a whole 512 KiB chunk


def test_read_many_keeps_requests_in_flight(local_store: Path) -> None:
    """With 20 ms per request, 16 windows take about one round trip, not sixteen."""
    import time

    from zarr.testing.store import LatencyStore

    slow = AACStore.open(LatencyStore(zarr.storage.LocalStore(local_store, read_only=True), get_latency=0.02))
    requests = [(i % 4, 100 * i, 2000) for i in range(16)]
    slow.read_many(requests[:4])  # index rows of every recording cached
    t0 = time.perf_counter()
    got = slow.read_many(requests)
    elapsed = time.perf_counter() - t0
    with AACStore.open(local_store) as plain:
        for (r, s, n), a in zip(requests, got, strict=True):
            np.testing.assert_array_equal(a, plain.read(r, s, n))
    assert elapsed < 16 * 0.02 / 2, elapsed  # sequential requests would take >= 0.32 s


def test_dataset_over_a_latency_store_with_workers(local_store: Path) -> None:
    """A zarr Store object (here zarr's LatencyStore wrapper) travels to the workers."""
    from zarr.testing.store import LatencyStore

    slow = LatencyStore(zarr.storage.LocalStore(local_store, read_only=True), get_latency=0.005)
    plain = AACSegmentDataset(local_store, window_samples=2000, num_channels=1, num_windows=24, seed=2)
    wrapped = AACSegmentDataset(slow, window_samples=2000, num_channels=1, num_windows=24, seed=2)
    expected = torch.stack([plain[i] for i in range(24)])
    got = torch.cat(list(torch.utils.data.DataLoader(wrapped, batch_size=6, num_workers=2)))
    assert torch.equal(got, expected)
    reopened = AACSegmentDataset(AACStore.open(slow), window_samples=2000, num_channels=1, num_windows=24, seed=2)
    assert torch.equal(reopened[5], expected[5])


def test_dataset_refuses_a_client_store_object(local_store: Path, bucket: str) -> None:
    url = f"s3://{bucket}/obj.zarr"
    copy_store(local_store, url)
    client_store = zarr.storage.FsspecStore.from_url(url, read_only=True)
    with pytest.raises(ValueError, match="pass the store's URL"):
        AACSegmentDataset(client_store, window_samples=100)


_IMPORT_AND_READ = """
import sys
import aacdata
from aacdata.audio._audiofile import write_audio
from aacdata.testing import signal

src, url = sys.argv[1], sys.argv[2]
write_audio(src, signal("chirp", 16_000, sample_rate=16_000), sample_rate=16_000)
assert aacdata.import_audio(src, url, workers=0, progress=False).ok
store = aacdata.AACStore.open(url)
print(store.read(0, 1000, 2000).shape)
store.close()
"""

_DATALOADER = """
import sys
import torch
import aacdata

ds = aacdata.AACSegmentDataset(sys.argv[1], window_samples=4000, num_channels=1, num_windows=16, seed=1)
print(tuple(ds[0].shape))  # this process opens the store too: forked workers inherit its client
loader = torch.utils.data.DataLoader(ds, batch_size=4, num_workers=2, persistent_workers=True)
for _ in range(2):
    print(sum(len(batch) for batch in loader))
print(tuple(ds[1].shape))  # the parent's client still serves after the workers used theirs
"""


def _python(code: str, *args: str) -> tuple[str, str]:
    done = subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, env=env_with_package(), timeout=120
    )
    assert done.returncode == 0, done.stderr
    return done.stdout, done.stderr


def test_a_program_that_reads_a_bucket_exits_without_unclosed_clients(bucket: str, tmp_path: Path) -> None:
    # Invariant: every HTTP client aacdata opens is closed before the program ends (aiohttp
    # prints "Unclosed client session" / "Unclosed connector" for any that is not).
    out, err = _python(_IMPORT_AND_READ, str(tmp_path / "a.wav"), f"s3://{bucket}/a.zarr")
    assert out.split() == ["(1,", "2000)"]
    assert "Unclosed" not in err, err


def test_dataloader_workers_over_a_bucket_exit_without_unclosed_clients(local_store: Path, bucket: str) -> None:
    url = f"s3://{bucket}/workers.zarr"
    copy_store(local_store, url)
    out, err = _python(_DATALOADER, url)
    assert out.split("\n")[:4] == ["(1, 4000)", "16", "16", "(1, 4000)"]
    assert "Unclosed" not in err, err


def test_a_closed_store_reads_again(local_store: Path, bucket: str) -> None:
    url = f"s3://{bucket}/reopen.zarr"
    copy_store(local_store, url)
    with AACStore.open(local_store) as local:
        expected = local.read(1, 500, 1500)
    store = AACStore.open(url)
    store.close()  # closes the client's connections; a later read opens new ones
    np.testing.assert_array_equal(store.read(1, 500, 1500), expected)
    again = store.reopen()
    store.close()
    np.testing.assert_array_equal(again.read(1, 500, 1500), expected)
    again.close()
