"""Hostile values given to public functions and CLI verbs: each is refused with an aacdata
error, or a ValueError/TypeError naming the argument and what it takes, never with an
error of numpy, csv, struct or the allocator, and never after minutes of work."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import STORE_IDS, env_with_package

import aacdata


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"start": float("inf"), "num_samples": 10}, TypeError, "start is a whole number"),
        ({"start": 0, "num_samples": 1.5}, TypeError, "num_samples is a whole number"),
        ({"start": 0, "num_samples": "10"}, TypeError, "num_samples"),
        ({"start": 0, "num_samples": 10**12, "pad": True}, aacdata.WindowError, "cannot be allocated"),
        ({"start": 0, "num_samples": 10**12, "pad": True, "sample_rate": 16_000}, aacdata.WindowError, "allocated"),
        ({"start": 0, "num_samples": 100, "sample_rate": 10**9}, ValueError, "sample_rate must be"),
        ({"start": 0, "num_samples": 100, "sample_rate": float("nan")}, ValueError, "sample_rate must be"),
        ({"start": 0, "num_samples": 100, "sample_rate": 1_999_999}, ValueError, "filter phases"),
    ],
)
def test_read_refuses_hostile_windows(
    small_store: aacdata.AACStore, kwargs: dict[str, Any], error: type, match: str
) -> None:
    started = time.perf_counter()
    with pytest.raises(error, match=match):
        small_store.read(STORE_IDS[0], **kwargs)
    assert time.perf_counter() - started < 5  # refused, not worked on


def test_text_column_names_the_columns(small_store: aacdata.AACStore) -> None:
    with pytest.raises(ValueError, match="no text column 'nope'; text columns: metadata, source"):
        small_store.text_column("nope")


def test_resample_refuses_rates_no_recording_uses() -> None:
    x = np.zeros((1, 10), np.float32)
    with pytest.raises(ValueError, match=r"new_rate must be .* at most 2000000"):
        aacdata.resample(x, 16_000, 10**9)
    with pytest.raises(ValueError, match="filter phases"):
        aacdata.resample(x, 16_000, 1_000_001)


@pytest.mark.parametrize(
    ("value", "error"),
    [(float("inf"), ValueError), (float("nan"), ValueError), (-1, ValueError), (0, ValueError), (1e12, ValueError),
     ("1", TypeError), (True, TypeError)],
)  # fmt: skip
def test_window_seconds_out_of_range(store_path: Path, value: Any, error: type) -> None:
    with pytest.raises(error, match="window_seconds"):
        aacdata.AACSegmentDataset(store_path, window_seconds=value, sample_rate=16_000, num_channels=1)
    with pytest.raises(error, match="window_seconds"):
        aacdata.RandomWindows(window_seconds=value)


@pytest.mark.parametrize("index", [1.5, "a", None, True])
def test_dataset_index_must_be_an_integer(store_path: Path, index: Any) -> None:
    ds = aacdata.AACSegmentDataset(store_path, window_seconds=0.1, sample_rate=16_000, num_channels=1)
    with pytest.raises(TypeError, match="an item index is an integer"):
        ds[index]
    assert ds[np.int64(0)].shape == (1, 1600)  # numpy integers are indices


def test_dataset_refuses_absurd_sample_rate(store_path: Path) -> None:
    with pytest.raises(ValueError, match="sample_rate must be"):
        aacdata.AACSegmentDataset(store_path, window_seconds=1.0, sample_rate=10**9, num_channels=1)


def test_event_times_past_any_recording(store_path: Path) -> None:
    ann = aacdata.Annotations.from_records([{"id": STORE_IDS[0], "start": 1e300, "end": 1e301, "label": "x"}])
    with aacdata.AACStore.open(store_path) as store, pytest.raises(aacdata.AnnotationError, match="beyond any"):
        ann.resolve(store)


def test_csv_field_over_the_csv_limit(tmp_path: Path) -> None:
    table = tmp_path / "big.csv"
    table.write_text('id,start,end,label\na,0,1,"' + "x" * 200_000 + '"\n')
    with pytest.raises(aacdata.AnnotationError, match=r"big.csv, line 2: not a readable CSV table"):
        aacdata.Annotations.from_csv(table)


@pytest.mark.parametrize(
    "args",
    [
        ["demo", "--seconds", "-5"],
        ["demo", "--seconds", "5"],
        ["demo", "--seconds", "nan"],
        ["bench", "nowhere.zarr", "--window-seconds", "inf"],
        ["import", "x.wav", "-o", "y.zarr", "--bandwidth", "0"],
        ["import", "x.wav", "-o", "y.zarr", "--time-expansion", "inf"],
    ],
)
def test_cli_usage_errors_without_traceback(tmp_path: Path, args: list[str]) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "aacdata", *args],
        capture_output=True,
        text=True,
        env=env_with_package(),
        cwd=tmp_path,
        timeout=120,
    )
    assert out.returncode == 2, (out.returncode, out.stderr)
    assert "Traceback" not in out.stderr and "error:" in out.stderr
    assert not (tmp_path / "y.zarr").exists()


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["import", "x.wav", "-o", "y.zarr", "--bitrate", "1000"], "--bitrate must be a whole number from 16000"),
        (["import", "x.wav", "-o", "y.zarr", "--sample-rate", "22000"], "--sample-rate 22000 Hz is not a rate"),
        (["import", "x.wav", "-o", "y.zarr", "--bitrat", "96000"], "unrecognized arguments: --bitrat"),
    ],
)
def test_cli_messages_name_flags(tmp_path: Path, args: list[str], said: str) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "aacdata", *args], capture_output=True, text=True, env=env_with_package(), cwd=tmp_path
    )
    assert out.returncode == 2 and said in out.stderr, out.stderr
    assert not (tmp_path / "y.zarr").exists()


def test_library_parameters_become_flags() -> None:
    from aacdata.cli import in_flags

    assert in_flags("x.csv: columns are [a]; pass label_column=") == "x.csv: columns are [a]; pass --label-column"
    assert in_flags("3 event(s) do so (pass clip=True to cut them)") == "3 event(s) do so (pass --clip to cut them)"
    assert in_flags("ids (or pass missing='skip' to drop them)") == "ids (or pass --skip-missing to drop them)"
    assert in_flags("no column 'x' (label_column=); columns") == "no column 'x' (--label-column); columns"
    assert in_flags("5 Hz; pass sample_rate= (CLI: --sample-rate) one of") == "5 Hz; pass --sample-rate one of"
    assert in_flags("recording (a) has (b) and pass the test") == "recording (a) has (b) and pass the test"
    said = "pass recording= (CLI: --recording) for one table or map_recordings() (CLI: --recording-map FILE) for many"
    assert in_flags(said) == "pass --recording for one table or --recording-map FILE for many"


def test_an_unreachable_url_is_ours() -> None:
    with pytest.raises(aacdata.RemoteStoreError, match=r"cannot reach 'ftp://no-such-host\.invalid/y'"):
        aacdata.AACStore.open("ftp://no-such-host.invalid/y")


@pytest.mark.parametrize("kind", ["fifo", "dir"])
def test_a_lock_file_that_is_not_a_file(tmp_path: Path, kind: str) -> None:
    import os

    from conftest import make_file

    src, _ = make_file(tmp_path / "a.wav", "tone", 4000)
    store = tmp_path / "s.zarr"
    aacdata.import_audio(src, store, workers=0, progress=False)
    lock = store / "aacdata.lock"
    lock.unlink(missing_ok=True)
    os.mkfifo(lock) if kind == "fifo" else lock.mkdir()
    make_file(tmp_path / "b.wav", "tone", 4000)
    out = subprocess.run(
        [sys.executable, "-m", "aacdata", "import", str(tmp_path / "b.wav"), "-o", str(store), "--no-progress"],
        capture_output=True, text=True, env=env_with_package(), timeout=60,
    )  # fmt: skip
    assert out.returncode != 0 and "Traceback" not in out.stderr
    assert "aacdata.lock" in out.stderr, out.stderr
