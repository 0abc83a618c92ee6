"""merge_stores / ``aacdata merge``: parts imported with --shard combined into one store,
bytes as stored; duplicate ids, resume, damage, annotation sets left behind."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import STORE_IDS, make_file

import aacdata
from aacdata import AACStore, Annotations, CorruptDataError, StoreFormatError
from aacdata.cli import main
from aacdata.store._merge import merge_stores

PLACEMENT = {"index", "frame_start", "byte_start"}


def _parts(sources: Path, root: Path, n: int = 3) -> list[Path]:
    parts = []
    for k in range(n):
        part = root / f"part{k}.zarr"
        report = aacdata.import_audio(sources, part, workers=0, progress=False, shard=(k, n))
        assert report.ok
        parts.append(part)
    return parts


def _same_by_id(path: Path, reference: Path) -> None:
    with AACStore.open(path) as a, AACStore.open(reference) as b:
        assert len(a.ids) == len(set(a.ids))
        assert sorted(a.ids) == sorted(b.ids)
        for rid in b.ids:
            ra, rb = a.recording(rid), b.recording(rid)
            for name in ra.__dataclass_fields__:
                if name not in PLACEMENT:
                    assert getattr(ra, name) == getattr(rb, name), (rid, name)
            assert a.adts_bytes(rid) == b.adts_bytes(rid)
            assert a.column("flags")[a.index_of(rid)] == b.column("flags")[b.index_of(rid)]
            ia, ib = a.frame_index(rid), b.frame_index(rid)
            assert np.array_equal(ia[:, 1:], ib[:, 1:])
            assert np.array_equal(ia[:, 0] - ra.byte_start, ib[:, 0] - rb.byte_start)
            assert np.array_equal(a.read(rid, 0, ra.num_samples), b.read(rid, 0, rb.num_samples))
        assert a.counts.num_bytes == b.counts.num_bytes
        assert a.verify().ok


def test_merge_equals_one_import(store_sources: Path, store_path: Path, tmp_path: Path) -> None:
    # Invariant: the merged store holds every recording of the parts once, bytes and table
    # values equal to a single import's (6-channel PCE layout and passthroughs included).
    parts = _parts(store_sources, tmp_path)
    assert all(len(AACStore.open(p)) < len(STORE_IDS) for p in parts)
    merged = tmp_path / "all.zarr"
    report = merge_stores(parts, merged)
    assert sorted(report.merged) == sorted(STORE_IDS) and report.skipped == ()
    with AACStore.open(merged) as st:  # parts in the order given, each in its own order
        assert st.ids == tuple(rid for p in parts for rid in AACStore.open(p).ids)
    _same_by_id(merged, store_path)
    again = merge_stores(parts, merged)  # nothing left to do
    assert again.merged == () and sorted(again.skipped) == sorted(STORE_IDS)
    assert len(AACStore.open(merged)) == len(STORE_IDS)


def test_merge_resumes(store_sources: Path, store_path: Path, tmp_path: Path) -> None:
    parts = _parts(store_sources, tmp_path)
    merged = tmp_path / "all.zarr"
    first = merge_stores(parts[:2], merged)  # as if stopped after two parts
    report = merge_stores(parts, merged)
    assert sorted(report.skipped) == sorted(first.merged)
    assert sorted(report.merged) == sorted(AACStore.open(parts[2]).ids)
    _same_by_id(merged, store_path)


def test_duplicate_id_names_both_parts(tmp_path: Path) -> None:
    make_file(tmp_path / "a" / "x.wav", "tone", 5000)
    make_file(tmp_path / "b" / "x.wav", "tone", 5000)
    a, b = tmp_path / "a.zarr", tmp_path / "b.zarr"
    aacdata.import_audio(tmp_path / "a", a, workers=0, progress=False)
    aacdata.import_audio(tmp_path / "b", b, workers=0, progress=False)
    with pytest.raises(StoreFormatError, match=r"'x\.wav' is in both") as info:
        merge_stores([a, b], tmp_path / "m.zarr")
    assert str(a) in str(info.value) and str(b) in str(info.value)
    with pytest.raises(StoreFormatError, match="is in both"):
        merge_stores([a, a], tmp_path / "m.zarr")
    with pytest.raises(StoreFormatError, match="also given as a part"):
        merge_stores([a, b], a)
    assert not (tmp_path / "m.zarr").exists()  # nothing was written


def test_id_in_destination_with_other_content(tmp_path: Path) -> None:
    make_file(tmp_path / "a" / "x.wav", "tone", 5000, seed=1)
    make_file(tmp_path / "b" / "x.wav", "noise", 5000, seed=2)
    a, dst = tmp_path / "a.zarr", tmp_path / "dst.zarr"
    aacdata.import_audio(tmp_path / "a", a, workers=0, progress=False)
    aacdata.import_audio(tmp_path / "b", dst, workers=0, progress=False)
    with pytest.raises(StoreFormatError, match="already in the destination with another source checksum"):
        merge_stores([a], dst)


def test_damaged_part_is_refused(tmp_path: Path) -> None:
    make_file(tmp_path / "src" / "x.wav", "chirp", 30_000)
    part = tmp_path / "p.zarr"
    aacdata.import_audio(tmp_path / "src", part, workers=0, progress=False)
    chunk = next(p for p in (part / "adts").rglob("*") if p.is_file() and p.name != "zarr.json")
    data = bytearray(chunk.read_bytes())
    data[200] ^= 0xFF
    chunk.write_bytes(bytes(data))
    with pytest.raises(CorruptDataError, match="fails its checksum"):
        merge_stores([part], tmp_path / "m.zarr")


def test_cli_merge_carries_annotation_sets(
    store_sources: Path, store_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Issue 17: sets were left behind ("was not merged"); now they follow their recordings.
    parts = _parts(store_sources, tmp_path, n=2)
    with AACStore.open(parts[1], "a") as st:
        rid = st.ids[0]
        ann = Annotations.from_records([{"id": rid, "start": 0.0, "end": 0.1, "label": "bird"}])
        st.write_annotations(ann, name="calls")
    out = tmp_path / "all.zarr"
    assert main(["merge", *map(str, parts), "-o", str(out), "--no-progress"]) == 0
    text = capsys.readouterr().out
    assert "was not merged" not in text
    assert f"{len(STORE_IDS)} recordings from 2 parts" in text
    assert main(["verify", str(out), "--no-progress"]) == 0
    _same_by_id(out, store_path)
    with AACStore.open(out) as st:
        assert st.annotation_sets == ("calls",)
        carried = st.annotations("calls")
        assert [st.ids[r] for r in carried.recording] == [rid] and carried.classes == ("bird",)
    assert main(["merge", str(parts[0]), str(parts[0]), "-o", str(tmp_path / "m2.zarr"), "--no-progress"]) == 2


def test_merge_reads_each_recording_of_a_part_once(tmp_path: Path) -> None:
    # Regression: merging built the whole recordings table again for every recording
    # (quadratic: hours for a part of 10,000 recordings).
    from unittest import mock

    from aacdata.audio._audiofile import write_audio
    from aacdata.testing import signal

    n = 40
    for k in range(n):
        write_audio(
            tmp_path / "src" / f"{k:03d}.wav", signal("noise", 1600, sample_rate=16_000, seed=k), sample_rate=16_000
        )
    part = tmp_path / "part.zarr"
    assert aacdata.import_audio(tmp_path / "src", part, workers=0, progress=False).ok
    original = AACStore.recording
    with mock.patch.object(AACStore, "recording", autospec=True, side_effect=original) as calls:
        report = merge_stores([part], tmp_path / "merged.zarr")
    assert len(report.merged) == n
    assert calls.call_count <= 2 * n


@pytest.mark.parametrize("node", ["index/c/0/0", "adts/c/0"])
def test_a_part_chunk_that_does_not_decode_is_damage(store_path: Path, tmp_path: Path, node: str) -> None:
    # Regression: a part whose /index chunk did not decompress made merge raise numcodecs'
    # RuntimeError instead of CorruptDataError naming the part and the chunk.
    import shutil

    part = tmp_path / "part.zarr"
    shutil.copytree(store_path, part)
    chunk = part / node
    data = bytearray(chunk.read_bytes())
    if node.startswith("index"):
        data[0] ^= 0xFF
    else:
        del data[len(data) // 2 :]  # a truncated /adts chunk
    chunk.write_bytes(bytes(data))
    with pytest.raises(CorruptDataError, match=str(part)):
        merge_stores([part], tmp_path / "merged.zarr")
