"""aacdata repair: proven recordings move to a new store unchanged, the others are listed.

Invariant of every test here: the repaired store holds no value that differs from the
original store's (repair copies or re-derives, never guesses), its verify is clean, and a
dropped recording comes back whole by running the same import into the repaired store.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zarr

import aacdata
from aacdata import AACStore
from aacdata.audio._audiofile import write_audio
from aacdata.cli import main
from aacdata.store._layout import column_crc32
from aacdata.store._repair import rebuild_store
from aacdata.testing import signal

IDS = tuple(f"f{i}.wav" for i in range(5))
METADATA = {rid: {"label": f"class{i % 2}", "take": i} for i, rid in enumerate(IDS)}


@pytest.fixture
def corpus(tmp_path: Path) -> tuple[Path, Path]:
    """Five speech-like clips (lengths not multiples of 1024) imported with metadata."""
    src = tmp_path / "src"
    for i, rid in enumerate(IDS):
        audio = signal("speech", 16_000 + 700 * i, sample_rate=16_000, seed=i)
        write_audio(src / rid, audio, sample_rate=16_000)
    good = tmp_path / "good.zarr"
    aacdata.import_audio(src, good, workers=0, progress=False, metadata=METADATA)
    return src, good


def _import(src: Path, store: Path) -> aacdata.ImportReport:
    return aacdata.import_audio(src, store, workers=0, progress=False, metadata=METADATA)


def _copy(good: Path, tmp_path: Path) -> Path:
    bad = tmp_path / "bad.zarr"
    shutil.copytree(good, bad)
    return bad


def _values(store: AACStore) -> dict[str, tuple[Any, ...]]:
    """Everything a recording holds except its place in the store: id -> values."""
    flags = store.column("flags")
    out = {}
    for rec in store:
        out[rec.id] = (
            rec.num_samples,
            rec.sample_rate,
            rec.num_channels,
            rec.encoder_delay,
            rec.num_frames,
            rec.num_bytes,
            rec.bitrate,
            rec.crc32,
            int(flags[rec.index]),
            dict(rec.source),
            dict(rec.metadata),
            store.adts_bytes(rec),
            store.frame_index(rec)[:, 1:].tobytes(),
        )
    return out


def _check_repaired(new: Path, good: Path, kept: tuple[str, ...]) -> None:
    """The repaired store verifies and holds exactly ``kept``, each equal to the original."""
    with AACStore.open(new) as repaired, AACStore.open(good) as ref:
        assert repaired.verify().ok
        assert repaired.ids == kept
        original = _values(ref)
        for rid, values in _values(repaired).items():
            assert values == original[rid], rid
        for rid in kept:
            rec = repaired.recording(rid)
            np.testing.assert_array_equal(repaired.read(rid, 0, rec.num_samples), ref.read(rid, 0, rec.num_samples))


def _chunk(store: Path, column: str) -> Path:
    return store / "recordings" / column / "c" / "0"


def _flip_a_bit(store: Path, column: str) -> np.ndarray:
    """Flip the first bit of a column's chunk file after which the chunk still decodes but
    to other values (bit rot that zarr cannot notice); returns the values zarr now reads."""
    chunk = _chunk(store, column)
    array = zarr.open_array(zarr.storage.LocalStore(store / "recordings" / column), mode="r+")
    before = np.asarray(array[:])
    if not chunk.exists():  # all fill values (flags of encoded recordings): zarr wrote no chunk
        array[0:1] = before[:1] ^ 1
        return np.asarray(array[:])
    data = chunk.read_bytes()
    for bit in range(8 * len(data)):
        flipped = bytearray(data)
        flipped[bit // 8] ^= 1 << (bit % 8)
        chunk.write_bytes(bytes(flipped))
        try:
            after = np.asarray(array[:])
        except (RuntimeError, ValueError):
            continue
        if not np.array_equal(after, before):
            return after
    raise AssertionError(f"no single-bit flip of {chunk} decodes to other values")


# ---------------------------------------------------------------------- intact


def test_intact_store_is_kept_bit_for_bit(corpus: tuple[Path, Path], tmp_path: Path) -> None:
    _, good = corpus
    report = rebuild_store(good, tmp_path / "new.zarr")
    assert report.kept == IDS and report.dropped == () and report.findings == ()
    _check_repaired(tmp_path / "new.zarr", good, IDS)
    with AACStore.open(tmp_path / "new.zarr") as new, AACStore.open(good) as ref:
        for name in ("frame_start", "byte_start", "flags"):
            np.testing.assert_array_equal(new.column(name), ref.column(name))
        assert new.counts == ref.counts


# ---------------------------------------------------------------------- damaged bytes


def test_damaged_frame_drops_only_its_recording(corpus: tuple[Path, Path], tmp_path: Path) -> None:
    src, good = corpus
    bad = _copy(good, tmp_path)
    with AACStore.open(bad) as store:
        offset = int(store.frame_index("f2.wav")[5, 0]) + 9
    chunk = bad / "adts" / "c" / str(offset // (1 << 19))
    data = bytearray(chunk.read_bytes())
    data[offset % (1 << 19)] ^= 0x10
    chunk.write_bytes(bytes(data))
    report = rebuild_store(bad, tmp_path / "new.zarr")
    assert report.kept == ("f0.wav", "f1.wav", "f3.wav", "f4.wav")
    assert [rid for rid, _ in report.dropped] == ["f2.wav"]
    assert "crc32" in report.dropped[0][1]
    _check_repaired(tmp_path / "new.zarr", good, report.kept)
    # the same import command brings the dropped recording back
    assert _import(src, tmp_path / "new.zarr").imported == ("f2.wav",)
    with AACStore.open(tmp_path / "new.zarr") as new, AACStore.open(good) as ref:
        assert _values(new)["f2.wav"] == _values(ref)["f2.wav"]


# ---------------------------------------------------------------------- damaged table


def test_lost_num_samples_chunk_drops_every_recording(corpus: tuple[Path, Path], tmp_path: Path) -> None:
    src, good = corpus
    bad = _copy(good, tmp_path)
    _chunk(bad, "num_samples").unlink()  # zarr reads a lost chunk as zeros
    report = rebuild_store(bad, tmp_path / "new.zarr")
    assert report.kept == ()
    assert [rid for rid, _ in report.dropped] == list(IDS)
    assert all("num_samples cannot be verified" in reason for _, reason in report.dropped)
    assert any("'num_samples'" in f for f in report.findings)
    _check_repaired(tmp_path / "new.zarr", good, ())
    # re-importing into the repaired store restores every recording as it was
    assert _import(src, tmp_path / "new.zarr").imported == IDS
    _check_repaired(tmp_path / "new.zarr", good, IDS)


@pytest.mark.parametrize(
    ("column", "kept"),
    [
        ("num_samples", ()),  # not derivable: every recording dropped
        ("encoder_delay", ()),
        ("frame_start", IDS),  # re-derived from /index, proven by the column CRC
        ("num_bytes", IDS),
        ("crc32", IDS),  # re-computed from bytes that every frame CRC vouches for
        ("sample_rate", IDS),  # from the ADTS headers
        ("num_channels", IDS),  # from decoding
        ("flags", IDS),  # encoded recordings never use PNS
        ("bitrate", IDS),  # derived by the writer
    ],
)
def test_flipped_bit_in_numeric_column(
    corpus: tuple[Path, Path], tmp_path: Path, column: str, kept: tuple[str, ...]
) -> None:
    _, good = corpus
    bad = _copy(good, tmp_path)
    damaged = _flip_a_bit(bad, column)
    with AACStore.open(good) as ref:
        assert not np.array_equal(damaged.astype(np.int64), ref.column(column))
    report = rebuild_store(bad, tmp_path / "new.zarr")
    assert report.kept == kept
    assert [rid for rid, _ in report.dropped] == [rid for rid in IDS if rid not in kept]
    assert all(f"{column} cannot be verified" in reason for _, reason in report.dropped)
    assert any(f"'{column}'" in f for f in report.findings)
    _check_repaired(tmp_path / "new.zarr", good, kept)


@pytest.mark.parametrize("column", ["num_channels", "byte_start"])
def test_undecodable_column_chunk_is_rederived(corpus: tuple[Path, Path], tmp_path: Path, column: str) -> None:
    _, good = corpus
    bad = _copy(good, tmp_path)
    _chunk(bad, column).write_bytes(b"not a zstd frame")
    report = rebuild_store(bad, tmp_path / "new.zarr")
    assert report.kept == IDS
    assert any(f"column '{column}' cannot be read" in f for f in report.findings)
    _check_repaired(tmp_path / "new.zarr", good, IDS)


@pytest.mark.parametrize("column", ["flags", "num_channels", "sample_rate", "num_frames", "crc32"])
def test_rederived_columns_across_formats(store_path: Path, tmp_path: Path, column: str) -> None:
    """The conftest store (store_path): .m4a and .aac passthrough (flags re-computed by decoding twice,
    encoder delay 0 for .aac), 6 channels, four sample rates, a clip shorter than a frame."""
    bad = tmp_path / "bad.zarr"
    shutil.copytree(store_path, bad)
    _chunk(bad, column).parent.mkdir(parents=True, exist_ok=True)
    _chunk(bad, column).write_bytes(b"not a zstd frame")
    report = rebuild_store(bad, tmp_path / "new.zarr")
    with AACStore.open(store_path) as ref:
        assert report.kept == ref.ids
    assert report.dropped == ()
    _check_repaired(tmp_path / "new.zarr", store_path, report.kept)


def test_places_proven_by_recording_crc32_when_the_index_disagrees(corpus: tuple[Path, Path], tmp_path: Path) -> None:
    """frame_start lost and the byte offset of f3's first frame damaged in /index: the
    re-derived places no longer match their column CRCs, so each recording must prove its
    place by its bytes' crc32; f2 and f3, whose byte ranges come out wrong, cannot."""
    _, good = corpus
    bad = _copy(good, tmp_path)
    index = zarr.open_array(zarr.storage.LocalStore(bad / "index"), mode="r+")
    with AACStore.open(good) as ref:
        row = ref.recording("f3.wav").frame_start
    rows = np.asarray(index[row : row + 1])
    rows[0, 0] += 1
    index[row : row + 1] = rows
    _chunk(bad, "frame_start").unlink()
    report = rebuild_store(bad, tmp_path / "new.zarr")
    assert any("kept only if its bytes match its crc32" in f for f in report.findings)
    assert report.kept == ("f0.wav", "f1.wav", "f4.wav")
    assert [rid for rid, _ in report.dropped] == ["f2.wav", "f3.wav"]
    assert all(reason.startswith("checksum mismatch") for _, reason in report.dropped)
    _check_repaired(tmp_path / "new.zarr", good, report.kept)


def test_place_and_crc32_both_damaged_drops_every_recording(corpus: tuple[Path, Path], tmp_path: Path) -> None:
    _, good = corpus
    bad = _copy(good, tmp_path)
    _flip_a_bit(bad, "num_frames")
    _flip_a_bit(bad, "crc32")
    # an index row whose sample_pos is 0 adds a recording boundary: /index no longer proves the places
    index = zarr.open_array(zarr.storage.LocalStore(bad / "index"), mode="r+")
    rows = np.asarray(index[3:4])
    rows[0, 2] = 0
    index[3:4] = rows
    report = rebuild_store(bad, tmp_path / "new.zarr")
    assert report.kept == ()
    assert all("cannot be verified" in reason for _, reason in report.dropped)
    _check_repaired(tmp_path / "new.zarr", good, ())


def test_lost_id_chunk_is_rederived_from_source_paths(corpus: tuple[Path, Path], tmp_path: Path) -> None:
    _, good = corpus
    bad = _copy(good, tmp_path)
    _chunk(bad, "id").unlink()
    report = rebuild_store(bad, tmp_path / "new.zarr")
    assert report.kept == IDS
    assert any("ids re-derived" in f for f in report.findings)
    _check_repaired(tmp_path / "new.zarr", good, IDS)


def test_lost_id_and_source_chunks_drop_every_recording(corpus: tuple[Path, Path], tmp_path: Path) -> None:
    src, good = corpus
    bad = _copy(good, tmp_path)
    _chunk(bad, "id").unlink()
    _chunk(bad, "source").unlink()
    report = rebuild_store(bad, tmp_path / "new.zarr")
    assert report.kept == ()
    assert len(report.dropped) == len(IDS)
    for i, (_, reason) in enumerate(report.dropped):
        assert reason.startswith(f"row {i}, id unverified: ") and "its id cannot be verified" in reason
    _check_repaired(tmp_path / "new.zarr", good, ())
    assert _import(src, tmp_path / "new.zarr").imported == IDS
    _check_repaired(tmp_path / "new.zarr", good, IDS)


@pytest.mark.parametrize("column", ["source", "metadata"])
def test_lost_text_column_drops_and_reimport_restores(
    corpus: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str], column: str
) -> None:
    """A lost source or metadata column is not replaced by {} under a fresh checksum: every
    recording is dropped, and the same import into the repaired store restores them all,
    metadata included."""
    src, good = corpus
    bad = _copy(good, tmp_path)
    _chunk(bad, column).unlink()
    new = tmp_path / "new.zarr"
    assert main(["repair", str(bad), "-o", str(new), "--no-progress"]) == 1
    out = capsys.readouterr().out
    assert f"table: column '{column}' does not match its checksum" in out
    for rid in IDS:
        assert f"dropped: {rid}: its {column} cannot be verified" in out
    assert "kept 0 recordings" in out and "dropped 5" in out
    assert f"run the import that made {bad} again with -o {new}" in out
    _check_repaired(new, good, ())
    assert _import(src, new).imported == IDS
    _check_repaired(new, good, IDS)


def _rewrite(store: Path, column: str, row: int, value: Any) -> None:
    """Set one recordings value and its column checksum to match, as a crafted or buggy
    writer would: the checksums vouch for a value that no import writes."""
    array = zarr.open_array(zarr.storage.LocalStore(store / "recordings" / column), mode="r+")
    values = np.asarray(array[:])
    values[row] = value
    array[:] = values
    group = zarr.open_group(zarr.storage.LocalStore(store), mode="r+")
    meta: Any = group.attrs.asdict()["aacdata"]
    crcs = {**meta["column_crc32"], column: column_crc32(column, values.tolist())}
    group.attrs["aacdata"] = {**meta, "column_crc32": crcs}


@pytest.mark.parametrize(
    ("column", "value", "dropped"),
    [
        ("num_samples", 2**64 - 1, {1: "num_samples holds 18446744073709551615; expected a value below 2**63"}),
        ("encoder_delay", 2**32 - 1, {1: "frames cannot hold delay + num_samples"}),
        ("flags", 6, {1: "flags holds 0x6; its stream gives 0x0"}),
        ("id", "", {1: "its id is empty"}),
        ("id", "f0.wav", {0: "its id is also the id of row 1", 1: "its id is also the id of row 0"}),
    ],
)
def test_checksummed_values_no_import_writes_are_dropped(
    corpus: tuple[Path, Path], tmp_path: Path, column: str, value: Any, dropped: dict[int, str]
) -> None:
    src, good = corpus
    bad = _copy(good, tmp_path)
    _rewrite(bad, column, 1, value)
    report = rebuild_store(bad, tmp_path / "new.zarr")
    kept = tuple(rid for i, rid in enumerate(IDS) if i not in dropped)
    assert report.kept == kept and report.findings == ()
    assert len(report.dropped) == len(dropped)
    for (_, reason), expected in zip(report.dropped, dropped.values(), strict=True):
        assert expected in reason
    _check_repaired(tmp_path / "new.zarr", good, kept)
    assert set(_import(src, tmp_path / "new.zarr").imported) == set(IDS) - set(kept)
    with AACStore.open(tmp_path / "new.zarr") as new, AACStore.open(good) as ref:
        assert _values(new) == _values(ref)


# ---------------------------------------------------------------------- the command


def test_repair_command_exit_status(
    corpus: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, good = corpus
    bad = _copy(good, tmp_path)
    _chunk(bad, "num_samples").unlink()
    assert main(["repair", str(bad), "-o", str(tmp_path / "new.zarr"), "--no-progress"]) == 1
    out = capsys.readouterr().out
    assert "dropped: f2.wav: num_samples cannot be verified" in out and "kept 0 recordings" in out
    assert "dropped 5" in out
    assert main(["repair", str(good), "-o", str(tmp_path / "other.zarr"), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "kept 5 recordings" in out and "dropped 0" in out and "table:" not in out
    assert main(["repair", str(good), "-o", str(tmp_path / "other.zarr"), "--no-progress"]) == 2  # not empty
    assert main(["repair", str(tmp_path / "nothing"), "-o", str(tmp_path / "third.zarr"), "--no-progress"]) == 2
    assert not (tmp_path / "third.zarr").exists()


def test_repair_report_repr(corpus: tuple[Path, Path], tmp_path: Path) -> None:
    report = rebuild_store(corpus[1], tmp_path / "new.zarr")
    assert repr(report) == "RepairReport(kept=5, dropped=0, findings=0)"
    assert report.ok
