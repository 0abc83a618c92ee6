"""The write lease of object stores: held while an import runs, renewed, taken over when
expired or when its holder is a dead process of this host, broken on request."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

import aacdata
from aacdata import AACStore, StoreLockedError
from aacdata.audio._audiofile import write_audio
from aacdata.store import _lock
from aacdata.testing import signal

pytest.importorskip("s3fs")
boto3 = pytest.importorskip("boto3")

RATE = 16_000


def _sources(root: Path, count: int, prefix: str) -> Path:
    for i in range(count):
        write_audio(
            root / f"{prefix}{i}.wav", signal("chirp", RATE + 50 * i, sample_rate=RATE, seed=i), sample_rate=RATE
        )
    return root


def _put_lock(bucket: str, record: dict[str, object]) -> None:
    boto3.client("s3").put_object(Bucket=bucket, Key="c.zarr/aacdata.lock", Body=json.dumps(record).encode())


def _lock_exists(bucket: str) -> bool:
    listed = boto3.client("s3").list_objects_v2(Bucket=bucket, Prefix="c.zarr/aacdata.lock")
    return bool(listed.get("Contents"))


def _import(src: Path, url: str, **kwargs: object) -> aacdata.ImportReport:
    return aacdata.import_audio(src, url, workers=0, progress=False, **kwargs)  # type: ignore[arg-type]


def test_a_live_lease_refuses_and_break_lock_takes_it(bucket: str, tmp_path: Path) -> None:
    url = f"s3://{bucket}/c.zarr"
    assert _import(_sources(tmp_path / "a", 2, "a"), url).ok
    _put_lock(bucket, {"host": "elsewhere", "pid": 1, "started": time.time(), "expires": time.time() + 600})
    more = _sources(tmp_path / "b", 2, "b")
    with pytest.raises(StoreLockedError, match=r"host elsewhere.*--break-lock"):
        _import(more, url)
    report = _import(more, url, break_lock=True)
    assert sorted(report.imported) == ["b0.wav", "b1.wav"]
    assert not _lock_exists(bucket)  # released at the end
    with AACStore.open(url) as st:
        assert len(st) == 4 and st.verify().ok


def test_an_expired_lease_is_taken_over(bucket: str, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    url = f"s3://{bucket}/c.zarr"
    assert _import(_sources(tmp_path / "a", 1, "a"), url).ok
    _put_lock(bucket, {"host": "elsewhere", "pid": 1, "started": time.time() - 900, "expires": time.time() - 5})
    with caplog.at_level("WARNING", logger="aacdata"):
        report = _import(_sources(tmp_path / "b", 1, "b"), url)
    assert report.imported == ("b0.wav",)
    assert "lease expired" in caplog.text


def test_a_dead_local_holder_is_taken_over(bucket: str, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    url = f"s3://{bucket}/c.zarr"
    assert _import(_sources(tmp_path / "a", 1, "a"), url).ok
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    host = os.uname().nodename
    _put_lock(bucket, {"host": host, "pid": dead.pid, "started": time.time(), "expires": time.time() + 600})
    with caplog.at_level("WARNING", logger="aacdata"):
        report = _import(_sources(tmp_path / "b", 1, "b"), url)
    assert report.imported == ("b0.wav",)
    assert "its process is gone" in caplog.text


def test_the_lease_is_renewed_while_held_and_a_stolen_lease_stops_the_writer(
    bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from aacdata.store._writer import StoreWriter

    monkeypatch.setattr(_lock, "LEASE_SECONDS", 1.5)
    url = f"s3://{bucket}/c.zarr"
    assert _import(_sources(tmp_path / "a", 1, "a"), url).ok
    writer = StoreWriter(AACStore.open(url, "a"))
    try:
        first = json.loads(boto3.client("s3").get_object(Bucket=bucket, Key="c.zarr/aacdata.lock")["Body"].read())
        time.sleep(2.5)  # past the first lease: renewed, so still held
        renewed = json.loads(boto3.client("s3").get_object(Bucket=bucket, Key="c.zarr/aacdata.lock")["Body"].read())
        assert renewed["token"] == first["token"] and renewed["expires"] > first["expires"]
        with pytest.raises(StoreLockedError):
            _import(_sources(tmp_path / "b", 1, "b"), url)
        _put_lock(bucket, {"host": "thief", "pid": 2, "started": time.time(), "expires": time.time() + 600})
        with pytest.raises(StoreLockedError, match="lost its write lease"):
            writer._lock.check()  # type: ignore[union-attr]
    finally:
        writer.close()
    # The thief's lease is left alone by the writer that lost it.
    assert (
        json.loads(boto3.client("s3").get_object(Bucket=bucket, Key="c.zarr/aacdata.lock")["Body"].read())["host"]
        == "thief"
    )
