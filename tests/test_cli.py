"""The ``aacdata`` command: exit statuses, output, export formats."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pytest
from conftest import STORE_IDS, env_with_package, make_file

from aacdata import AACStore
from aacdata.cli import main


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def sources(tmp_path: Path) -> Path:
    make_file(tmp_path / "src" / "a.wav", "tone", 8000)
    make_file(tmp_path / "src" / "sub" / "b.flac", "chirp", 6000, num_channels=2)
    return tmp_path / "src"


# ---------------------------------------------------------------------- import


def test_import_all_good(capsys: pytest.CaptureFixture[str], tmp_path: Path, sources: Path) -> None:
    store = tmp_path / "s.zarr"
    code, out, err = _run(capsys, "import", str(sources), "-o", str(store), "--workers", "0", "--no-progress")
    assert code == 0
    assert "failed" not in err
    assert "imported  2 (0 passed through" in out
    assert sorted(AACStore.open(store).ids) == ["a.wav", "sub/b.flac"]
    # running it again skips both
    code, out, _ = _run(capsys, "import", str(sources), "-o", str(store), "--workers", "0", "--no-progress")
    assert code == 0
    assert "skipped   2 (already in the store)" in out


def test_import_options_reach_the_store(capsys: pytest.CaptureFixture[str], tmp_path: Path, sources: Path) -> None:
    meta = tmp_path / "m.csv"
    meta.write_text("id,label\na.wav,dog\n")
    store = tmp_path / "s.zarr"
    argv = ["import", str(sources / "a.wav"), "-o", str(store), "--workers", "0", "--no-progress"]
    argv += ["--bitrate", "64000", "--sample-rate", "22050", "--channels", "2", "--metadata", str(meta)]
    code, _, _ = _run(capsys, *argv)
    assert code == 0
    rec = AACStore.open(store).recording("a.wav")
    assert (rec.sample_rate, rec.num_channels) == (22_050, 2)
    assert dict(rec.metadata) == {"label": "dog"}
    assert rec.bitrate < 100_000


def test_import_some_failed(capsys: pytest.CaptureFixture[str], tmp_path: Path, sources: Path) -> None:
    (sources / "bad.wav").write_text("not audio")
    store = tmp_path / "s.zarr"
    code, out, err = _run(capsys, "import", str(sources), "-o", str(store), "--workers", "0", "--no-progress")
    assert code == 1
    assert f"failed: {sources / 'bad.wav'}: not a readable audio file" in err
    assert err.count("failed:") == 1
    assert "failed    1" in out
    assert len(AACStore.open(store)) == 2


def test_import_on_error_raise(capsys: pytest.CaptureFixture[str], tmp_path: Path, sources: Path) -> None:
    (sources / "bad.wav").write_text("not audio")
    argv = ["import", str(sources), "-o", str(tmp_path / "s.zarr"), "--workers", "0", "--no-progress"]
    code, _, err = _run(capsys, *argv, "--on-error", "raise")
    assert code == 1  # a data failure, not a usage error
    assert "aacdata import: error:" in err
    assert "bad.wav" in err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["import", "x.wav"], "the following arguments are required: -o/--output"),
        (["import", "x.wav", "-o", "s.zarr", "--bitrate", "abc"], "expected a positive integer, got 'abc'"),
        (["import", "x.wav", "-o", "s.zarr", "--bitrate", "-5"], "expected a positive integer, got -5"),
        (["import", "x.wav", "-o", "s.zarr", "--on-error", "ignore"], "invalid choice: 'ignore'"),
        (["import", "-o", "s.zarr"], "the following arguments are required: sources"),
        (["frobnicate"], "invalid choice: 'frobnicate'"),
    ],
)
def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str], argv: list[str], message: str) -> None:
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_no_command_prints_help(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(capsys)
    assert code == 2
    assert "usage: aacdata" in out


def test_store_that_cannot_be_opened_exit_2(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    for command in ("info", "verify"):
        code, _, err = _run(capsys, command, str(tmp_path / "missing.zarr"))
        assert code == 2
        assert f"aacdata {command}: error: no store at" in err


def test_import_into_a_foreign_directory_exit_2(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, sources: Path
) -> None:
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "x").write_text("x")
    code, _, err = _run(
        capsys, "import", str(sources), "-o", str(tmp_path / "taken"), "--workers", "0", "--no-progress"
    )
    assert code == 2
    assert "non-empty directory without zarr.json" in err


# ---------------------------------------------------------------------- info, verify


def test_info_text_and_json(capsys: pytest.CaptureFixture[str], store_path: Path, small_store: AACStore) -> None:
    code, out, _ = _run(capsys, "info", str(store_path))
    assert code == 0
    assert f"recordings    {len(STORE_IDS)}" in out
    assert "16000 Hz, 22050 Hz, 44100 Hz, 48000 Hz" in out
    assert f"frames        {small_store.counts.num_frames}" in out
    code, out, _ = _run(capsys, "info", str(store_path), "--json")
    assert code == 0
    info = json.loads(out)
    assert info["num_recordings"] == len(STORE_IDS)
    assert info["payload_bytes"] == small_store.counts.num_bytes
    assert info["num_frames"] == small_store.counts.num_frames
    assert info["channel_counts"] == [1, 2, 6]
    assert info["hours"] == pytest.approx(sum(r.duration_seconds for r in small_store) / 3600)


def test_verify_ok_and_corrupt(capsys: pytest.CaptureFixture[str], store_path: Path, tmp_path: Path) -> None:
    code, out, _ = _run(capsys, "verify", str(store_path), "--no-progress")
    assert code == 0
    assert f"{len(STORE_IDS)} of {len(STORE_IDS)} recordings ok" in out
    assert "bad:" not in out

    path = tmp_path / "copy.zarr"
    shutil.copytree(store_path, path)
    rec = AACStore.open(path).recording("stereo_16k.wav")
    chunk = path / "adts" / "c" / "0"
    data = bytearray(chunk.read_bytes())
    data[rec.byte_start + rec.num_bytes // 2] ^= 0x55
    chunk.write_bytes(bytes(data))
    for extra in ([], ["--no-decode"]):
        code, out, _ = _run(capsys, "verify", str(path), "--no-progress", *extra)
        assert code == 1
        bad = [line for line in out.splitlines() if line.startswith("bad:")]
        assert bad
        assert all(line.startswith("bad: stereo_16k.wav: ") for line in bad)
        assert "checksum mismatch" in out
        assert f"{len(STORE_IDS) - 1} of {len(STORE_IDS)} recordings ok" in out


# ---------------------------------------------------------------------- export


def test_export_aac_is_the_stored_bytes(capsys: pytest.CaptureFixture[str], store_path: Path, tmp_path: Path) -> None:
    store = AACStore.open(store_path)
    for rid in ("nested/mono_16k.mp3", "raw.aac"):
        out = tmp_path / (rid.replace("/", "_") + ".aac")
        code, stdout, _ = _run(capsys, "export", str(store_path), rid, str(out))
        assert code == 0
        assert f"wrote {out} ({rid}," in stdout
        assert out.read_bytes() == store.adts_bytes(rid)


def test_export_by_index(capsys: pytest.CaptureFixture[str], store_path: Path, tmp_path: Path) -> None:
    store = AACStore.open(store_path)
    code, _, _ = _run(capsys, "export", str(store_path), "2", str(tmp_path / "x.aac"))
    assert code == 0
    assert (tmp_path / "x.aac").read_bytes() == store.adts_bytes(2)


def _read_wav(path: Path) -> tuple[np.ndarray, int]:
    sf = pytest.importorskip("soundfile")
    data, rate = sf.read(str(path), dtype="float32", always_2d=True)
    return np.ascontiguousarray(data.T), rate


@pytest.mark.parametrize("rid", ["surround_48k.wav", "stereo_44k.flac", "short.wav"])
def test_export_wav_is_exact(capsys: pytest.CaptureFixture[str], store_path: Path, tmp_path: Path, rid: str) -> None:
    store = AACStore.open(store_path)
    rec = store.recording(rid)
    out = tmp_path / "x.wav"
    code, _, _ = _run(capsys, "export", str(store_path), rid, str(out))
    assert code == 0
    with av.open(str(out)) as c:
        assert c.streams.audio[0].codec_context.name == "pcm_f32le"
    audio, rate = _read_wav(out)
    assert rate == rec.sample_rate
    assert audio.dtype == np.float32
    assert np.array_equal(audio, store.read(rec, 0, rec.num_samples))


def test_export_flac_is_16_bit_close(capsys: pytest.CaptureFixture[str], store_path: Path, tmp_path: Path) -> None:
    store = AACStore.open(store_path)
    rec = store.recording("mono_44k.wav")
    out = tmp_path / "x.flac"
    code, _, _ = _run(capsys, "export", str(store_path), rec.id, str(out))
    assert code == 0
    audio, rate = _read_wav(out)
    ref = store.read(rec, 0, rec.num_samples)
    assert rate == rec.sample_rate
    assert audio.shape == ref.shape
    assert float(np.abs(audio - ref).max()) <= 1 / 32768 + 1e-7
    assert not np.array_equal(audio, ref)  # 16-bit, not exact


@pytest.mark.parametrize(
    ("rid", "name", "message"),
    [
        ("nope.wav", "x.wav", "no recording with id 'nope.wav'"),
        ("99", "x.wav", "recording index 99 is out of range"),
        ("short.wav", "x.mp3", "must end in .aac, .wav or .flac"),
    ],
)
def test_export_errors_exit_2(
    capsys: pytest.CaptureFixture[str], store_path: Path, tmp_path: Path, rid: str, name: str, message: str
) -> None:
    code, _, err = _run(capsys, "export", str(store_path), rid, str(tmp_path / name))
    assert code == 2
    assert err.startswith("aacdata export: error: ")
    assert message in err
    assert not (tmp_path / name).exists()


# ---------------------------------------------------------------------- as a process


def _process(*argv: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "aacdata", *argv]
    return subprocess.run(cmd, env=env_with_package(), capture_output=True, text=True, timeout=120, check=False)


def test_python_m_aacdata(tmp_path: Path, sources: Path) -> None:
    store = tmp_path / "s.zarr"
    done = _process("import", str(sources), "-o", str(store), "--workers", "0", "--no-progress")
    assert done.returncode == 0, done.stderr
    assert "imported  2" in done.stdout
    done = _process("info", str(store), "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["num_recordings"] == 2
