"""aacdata repair: intact recordings move to a new store unchanged, damaged ones are listed."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

import aacdata
from aacdata import AACStore
from aacdata._repair import rebuild_store
from aacdata._synth import signal, write_audio
from aacdata.cli import main


@pytest.fixture
def damaged(tmp_path: Path) -> tuple[Path, Path, Path]:
    src = tmp_path / "src"
    for i in range(5):
        write_audio(
            src / f"f{i}.wav", signal("speech", 16_000 + 700 * i, sample_rate=16_000, seed=i), sample_rate=16_000
        )
    good = tmp_path / "good.zarr"
    aacdata.import_audio(src, good, workers=0, progress=False)
    bad = tmp_path / "bad.zarr"
    shutil.copytree(good, bad)
    with AACStore.open(bad) as store:
        row = store.frame_index("f2.wav")[5]
    offset = int(row[0]) + 9
    chunk = bad / "adts" / "c" / str(offset // (1 << 19))
    data = bytearray(chunk.read_bytes())
    data[offset % (1 << 19)] ^= 0x10
    chunk.write_bytes(bytes(data))
    return src, good, bad


def test_repair_keeps_intact_recordings_bit_for_bit(damaged: tuple[Path, Path, Path], tmp_path: Path) -> None:
    src, good, bad = damaged
    report = rebuild_store(bad, tmp_path / "new.zarr")
    assert report.kept == ("f0.wav", "f1.wav", "f3.wav", "f4.wav")
    assert [rid for rid, _ in report.dropped] == ["f2.wav"]
    assert "crc32" in report.dropped[0][1]
    with AACStore.open(tmp_path / "new.zarr") as new, AACStore.open(good) as ref:
        assert new.verify().ok
        for rid in report.kept:
            assert new.adts_bytes(rid) == ref.adts_bytes(rid)
            rec = new.recording(rid)
            np.testing.assert_array_equal(new.read(rid, 0, rec.num_samples), ref.read(rid, 0, rec.num_samples))
            assert rec.source == ref.recording(rid).source
    # the same import command brings the dropped recording back
    again = aacdata.import_audio(src, tmp_path / "new.zarr", workers=0, progress=False)
    assert again.imported == ("f2.wav",)
    with AACStore.open(tmp_path / "new.zarr") as new, AACStore.open(good) as ref:
        assert new.adts_bytes("f2.wav") == ref.adts_bytes("f2.wav")


def test_repair_command(damaged: tuple[Path, Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _, good, bad = damaged
    assert main(["repair", str(bad), "-o", str(tmp_path / "new.zarr"), "--no-progress"]) == 1
    out = capsys.readouterr().out
    assert "dropped: f2.wav:" in out and "kept 4 recordings" in out
    assert main(["repair", str(good), "-o", str(tmp_path / "other.zarr"), "--no-progress"]) == 0
    assert main(["repair", str(good), "-o", str(tmp_path / "other.zarr"), "--no-progress"]) == 2  # not empty
