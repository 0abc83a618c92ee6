"""AACStore: opening, the format on disk, frame index, ADTS bytes, verify, plain-zarr readability."""

from __future__ import annotations

import dataclasses
import json
import pickle
import shutil
import zlib
from pathlib import Path

import av
import numpy as np
import pytest
import zarr
from conftest import SAMPLES_PER_FRAME, STORE_IDS, STORE_SOURCES, full_decode

import aacdata
from aacdata import AACStore, StoreFormatError, StoreNotFoundError
from aacdata.codecs._adts import adts_headers, parse_adts, program_config_element, uses_pce

# ---------------------------------------------------------------------- opening


def test_missing_path(tmp_path: Path) -> None:
    path = tmp_path / "nothing.zarr"
    with pytest.raises(StoreNotFoundError) as info:
        AACStore.open(path)
    assert isinstance(info.value, FileNotFoundError)
    assert isinstance(info.value, aacdata.AACDataError)
    assert str(path) in str(info.value)
    assert "aacdata import" in str(info.value)
    assert not path.exists()  # reading never creates


@pytest.mark.parametrize("content", ["empty", "with_file"])
def test_plain_directory_is_not_a_store(tmp_path: Path, content: str) -> None:
    path = tmp_path / "plain"
    path.mkdir()
    if content == "with_file":
        (path / "data.txt").write_text("hello")
    with pytest.raises(StoreFormatError) as info:
        AACStore.open(path)
    assert isinstance(info.value, ValueError)
    assert str(path) in str(info.value)
    assert "not an aacdata store" in str(info.value)


def test_zarr_group_without_attributes(tmp_path: Path) -> None:
    path = tmp_path / "g.zarr"
    zarr.open_group(path, mode="w")
    for mode in ("r", "a"):
        with pytest.raises(StoreFormatError) as info:
            AACStore.open(path, mode)  # type: ignore[arg-type]
        assert isinstance(info.value, ValueError)
        assert str(path) in str(info.value)
        assert "not an aacdata store (no 'aacdata' attribute)" in str(info.value)


def test_zarr_array_is_not_a_store(tmp_path: Path) -> None:
    path = tmp_path / "a.zarr"
    zarr.open_array(path, mode="w", shape=(3,), dtype="int32")
    with pytest.raises(StoreFormatError, match=r"a\.zarr"):
        AACStore.open(path)


def _edit_root_attrs(path: Path, **changes: object) -> None:
    meta_path = path / "zarr.json"
    meta = json.loads(meta_path.read_text())
    meta["attributes"]["aacdata"].update(changes)
    meta_path.write_text(json.dumps(meta))


@pytest.mark.parametrize(
    ("changes", "fragment"),
    [
        ({"format_version": 3}, "format_version 3; this aacdata reads versions 1, 2"),
        ({"format_version": None}, "format_version None"),
        ({"codecs": {"0": "opus", "1": "flac"}}, "codecs={'0': 'opus', '1': 'flac'}; expected"),
        ({"codecs": None}, "codecs=None; expected"),
        ({"num_frames": "many"}, "damaged counts"),
        ({"num_bytes": -1}, "negative counts"),
    ],
)
def test_bad_root_attributes(store_path: Path, tmp_path: Path, changes: dict[str, object], fragment: str) -> None:
    path = tmp_path / "copy.zarr"
    shutil.copytree(store_path, path)
    _edit_root_attrs(path, **changes)
    for mode in ("r", "a"):
        with pytest.raises(StoreFormatError) as info:
            AACStore.open(path, mode)  # type: ignore[arg-type]
        assert isinstance(info.value, ValueError)
        assert fragment in str(info.value)
        assert str(path) in str(info.value)


def test_counts_past_the_table(store_path: Path, tmp_path: Path) -> None:
    path = tmp_path / "copy.zarr"
    shutil.copytree(store_path, path)
    _edit_root_attrs(path, num_recordings=len(STORE_IDS) + 1)
    with pytest.raises(StoreFormatError, match=f"holds {len(STORE_IDS)} rows but {len(STORE_IDS) + 1} are committed"):
        AACStore.open(path)


def test_counts_that_do_not_tile(store_path: Path, tmp_path: Path) -> None:
    path = tmp_path / "copy.zarr"
    shutil.copytree(store_path, path)
    meta = json.loads((path / "zarr.json").read_text())["attributes"]["aacdata"]
    _edit_root_attrs(path, num_bytes=meta["num_bytes"] - 1)
    with pytest.raises(StoreFormatError, match="does not tile"):
        AACStore.open(path)


def test_missing_node(store_path: Path, tmp_path: Path) -> None:
    path = tmp_path / "copy.zarr"
    shutil.copytree(store_path, path)
    shutil.rmtree(path / "recordings" / "crc32")
    with pytest.raises(StoreFormatError, match="lacks the node"):
        AACStore.open(path)


def test_bad_mode(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="mode must be 'r' \\(read\\) or 'a' \\(append\\); got 'w'"):
        AACStore.open(tmp_path / "x", "w")  # type: ignore[arg-type]


def test_append_mode_creates_an_empty_store(tmp_path: Path) -> None:
    path = tmp_path / "new.zarr"
    with AACStore.open(path, "a") as store:
        assert len(store) == 0
        assert store.recordings == ()
        assert store.mode == "a"
        assert store.verify().ok
    with AACStore.open(path) as store:
        assert len(store) == 0
        assert (store.counts.num_frames, store.counts.num_bytes) == (0, 0)
        assert store.summary()["hours"] == 0.0
    # an existing empty directory works too
    empty = tmp_path / "empty"
    empty.mkdir()
    assert len(AACStore.open(empty, "a")) == 0
    assert (empty / "zarr.json").is_file()


def test_append_mode_refuses_foreign_paths(tmp_path: Path) -> None:
    (tmp_path / "dir").mkdir()
    (tmp_path / "dir" / "keep.txt").write_text("mine")
    with pytest.raises(StoreFormatError, match=r"non-empty directory without zarr\.json"):
        AACStore.open(tmp_path / "dir", "a")
    (tmp_path / "file").write_text("x")
    with pytest.raises(StoreFormatError, match="is a file, not a store directory"):
        AACStore.open(tmp_path / "file", "a")
    assert (tmp_path / "dir" / "keep.txt").read_text() == "mine"


# ---------------------------------------------------------------------- recordings table


def test_recordings_table(small_store: AACStore) -> None:
    assert len(small_store) == len(STORE_IDS)
    assert sorted(small_store.ids) == sorted(STORE_IDS)
    recs = small_store.recordings
    assert [r.index for r in recs] == list(range(len(recs)))
    assert [r.id for r in recs] == list(small_store.ids)
    frame, byte = 0, 0
    for r in recs:
        assert (r.frame_start, r.byte_start) == (frame, byte)
        frame += r.num_frames
        byte += r.num_bytes
        assert small_store.recording(r.id) == r
        assert small_store.recording(r.index) == r
        assert small_store.index_of(r) == r.index
        assert r.duration_seconds == r.num_samples / r.sample_rate
    assert (frame, byte) == (small_store.counts.num_frames, small_store.counts.num_bytes)
    np.testing.assert_array_equal(small_store.column("num_samples"), [r.num_samples for r in recs])
    with pytest.raises(KeyError, match="no numeric column 'nope'"):
        small_store.column("nope")


def test_recording_is_frozen_and_repr_shows_sizes(small_store: AACStore) -> None:
    rec = small_store.recording("stereo_44k.flac")
    with pytest.raises(dataclasses.FrozenInstanceError):
        rec.num_samples = 1  # type: ignore[misc]
    with pytest.raises(TypeError):
        rec.source["path"] = "x"  # type: ignore[index]
    text = repr(rec)
    assert text == (
        f"Recording(index={rec.index}, id='stereo_44k.flac', num_samples=40000, sample_rate=44100, "
        f"num_channels=2, num_frames={rec.num_frames}, num_bytes={rec.num_bytes})"
    )
    assert "checksum" not in text
    assert "sha256" not in text
    assert repr(small_store).startswith(f"AACStore({str(small_store.path)!r}, mode='r', num_recordings=8")


def test_frame_index_rows(small_store: AACStore) -> None:
    for rec in small_store:
        rows = small_store.frame_index(rec)
        assert rows.dtype == np.uint64
        assert rows.shape == (rec.num_frames, 3)
        offsets, sizes, positions = (rows[:, i].astype(np.int64) for i in range(3))
        assert offsets[0] == rec.byte_start
        np.testing.assert_array_equal(offsets[1:], offsets[:-1] + sizes[:-1])
        assert int(sizes.sum()) == rec.num_bytes
        np.testing.assert_array_equal(positions, np.arange(rec.num_frames) * SAMPLES_PER_FRAME)
        assert (sizes >= 7).all()
        assert (sizes <= 8191).all()


def test_adts_bytes_parse_and_decode(small_store: AACStore) -> None:
    for rec in small_store:
        data = small_store.adts_bytes(rec)
        # Layouts signalled by a PCE (6 channels here) carry it in frame 0 of the exported
        # stream; without it, the bytes are the stored ones.
        pce = program_config_element(rec.sample_rate, rec.num_channels) if uses_pce(rec.num_channels) else b""
        stored = data
        if pce:
            first = int(parse_adts(data).sizes[0])
            header = adts_headers(np.array([first - 7 - len(pce)]), sample_rate=rec.sample_rate, channel_config=0)
            stored = header.tobytes() + data[7 + len(pce) :]
        assert data[7 : 7 + len(pce)] == pce
        assert len(stored) == rec.num_bytes
        assert zlib.crc32(stored) == rec.crc32
        frames = parse_adts(stored)
        rows = small_store.frame_index(rec).astype(np.int64)
        np.testing.assert_array_equal(frames.offsets + rec.byte_start, rows[:, 0])
        np.testing.assert_array_equal(frames.sizes, rows[:, 1])
        assert frames.sample_rate == rec.sample_rate
        assert frames.object_type == 2
        # the bytes are a stand-alone stream: one packet, a fresh decoder
        decoded = av.CodecContext.create("aac", "r").decode(av.Packet(data))
        assert len(decoded) == rec.num_frames
        assert all(f.samples == SAMPLES_PER_FRAME and f.sample_rate == rec.sample_rate for f in decoded)
        assert {len(f.layout.channels) for f in decoded} == {rec.num_channels}


def test_adts_file_plays_with_a_demuxer(small_store: AACStore, tmp_path: Path) -> None:
    rec = small_store.recording("mono_44k.wav")
    path = tmp_path / "x.aac"
    path.write_bytes(small_store.adts_bytes(rec))
    with av.open(str(path)) as c:
        decoded = np.concatenate([f.to_ndarray() for f in c.decode(audio=0)], axis=1)
    ref = full_decode(small_store, rec)
    assert decoded.shape[1] == rec.num_frames * SAMPLES_PER_FRAME
    np.testing.assert_array_equal(decoded[:, rec.encoder_delay : rec.encoder_delay + rec.num_samples], ref)


def test_source_info(small_store: AACStore, store_sources: Path) -> None:
    for rid in STORE_IDS:
        rec = small_store.recording(rid)
        assert rec.source["path"] == str(store_sources / rid)
        assert rec.source["checksum"].startswith("sha256:")
        assert rec.source["passthrough"] is rid.endswith((".m4a", ".aac"))
        assert dict(rec.metadata) == {}
        assert rec.sample_rate == STORE_SOURCES[rid][2]


# ---------------------------------------------------------------------- verify


def test_verify_ok(small_store: AACStore) -> None:
    report = small_store.verify()
    assert report.ok
    assert report.problems == ()
    assert report.bad_ids == ()
    assert report.num_recordings == len(STORE_IDS)
    seen: list[tuple[int, int]] = []
    assert small_store.verify(decode=False, progress=lambda done, total: seen.append((done, total))).ok
    assert seen == [(i, len(STORE_IDS)) for i in range(1, len(STORE_IDS) + 1)]
    assert repr(report) == f"VerifyReport(num_recordings={len(STORE_IDS)}, num_bad=0, store_problems=0, ok=True)"


def _copy_and_flip(store_path: Path, tmp_path: Path, rid: str, where: str) -> tuple[Path, aacdata.Recording]:
    path = tmp_path / "copy.zarr"
    shutil.copytree(store_path, path)
    with AACStore.open(path) as store:
        rec = store.recording(rid)
        rows = store.frame_index(rec).astype(np.int64)
    k = rec.num_frames // 2
    offset = int(rows[k, 0]) + (int(rows[k, 1]) // 2 if where == "payload" else 4)
    chunk = path / "adts" / "c" / "0"
    data = bytearray(chunk.read_bytes())
    data[offset] ^= 0xFF
    chunk.write_bytes(bytes(data))
    return path, rec


@pytest.mark.parametrize("rid", ["stereo_44k.flac", "raw.aac", "short.wav"])
def test_verify_finds_a_flipped_payload_byte(store_path: Path, tmp_path: Path, rid: str) -> None:
    path, _ = _copy_and_flip(store_path, tmp_path, rid, "payload")
    with AACStore.open(path) as store:
        report = store.verify()
    assert not report.ok
    assert report.bad_ids == (rid,)
    assert any("checksum mismatch" in reason for _, reason in report.problems)
    assert repr(report) == f"VerifyReport(num_recordings={len(STORE_IDS)}, num_bad=1, store_problems=0, ok=False)"


def test_verify_finds_a_damaged_header(store_path: Path, tmp_path: Path) -> None:
    path, _ = _copy_and_flip(store_path, tmp_path, "mono_44k.wav", "header")
    with AACStore.open(path) as store:
        report = store.verify()
        assert report.bad_ids == ("mono_44k.wav",)
        reasons = " | ".join(r for _, r in report.problems)
        assert "checksum mismatch" in reasons
        assert "ADTS stream damaged" in reasons
        # other recordings still read exactly
        other = store.recording("stereo_16k.wav")
        assert np.array_equal(store.read(other, 0, other.num_samples), full_decode(store, other))


def test_verify_finds_a_bad_index_row(store_path: Path, tmp_path: Path) -> None:
    path = tmp_path / "copy.zarr"
    shutil.copytree(store_path, path)
    index = zarr.open_array(path / "index", mode="r+")
    with AACStore.open(path) as store:
        rec = store.recording("pass.m4a")
    row = rec.frame_start + 3
    index[row, 2] = 12345
    with AACStore.open(path) as store:
        report = store.verify()
        assert report.bad_ids == ("pass.m4a",)
        assert "index row 3 disagrees with the ADTS headers" in report.problems[0][1]
        with pytest.raises(aacdata.CorruptDataError, match=r"'pass\.m4a'"):
            store.read(rec, 5000, 10)


def test_missing_chunk_file(store_path: Path, tmp_path: Path) -> None:
    path = tmp_path / "copy.zarr"
    shutil.copytree(store_path, path)
    (path / "adts" / "c" / "0").unlink()
    with AACStore.open(path) as store:
        with pytest.raises(aacdata.CorruptDataError, match="chunk file adts/c/0 is missing"):
            store.read(0, 0, 10)
        report = store.verify()
    assert set(report.bad_ids) == set(STORE_IDS)


# ---------------------------------------------------------------------- readable by plain zarr


def test_plain_zarr_reads_every_array(store_path: Path, small_store: AACStore) -> None:
    group = zarr.open_group(store_path, mode="r")
    meta = dict(group.attrs["aacdata"])  # type: ignore[arg-type]
    assert meta["format_version"] == 2
    assert meta["num_recordings"] == len(STORE_IDS)
    adts = group["adts"][:]
    index = group["index"][:]
    assert adts.dtype == np.uint8
    assert index.dtype == np.uint64
    assert index.shape[1] == 3
    n = meta["num_recordings"]
    ids = group["recordings/id"][:n].tolist()
    assert ids == list(small_store.ids)
    table = {name: group[f"recordings/{name}"][:n] for name in ("byte_start", "num_bytes", "frame_start", "num_frames")}
    for i, rec in enumerate(small_store):
        assert (int(table["byte_start"][i]), int(table["num_bytes"][i])) == (rec.byte_start, rec.num_bytes)
        stored = adts[rec.byte_start : rec.byte_start + rec.num_bytes].tobytes()
        assert zlib.crc32(stored) == rec.crc32  # the stored bytes, as the store's own reads see them
        if rec.num_channels != 6:  # a 6-channel layout's exported stream also carries its PCE
            assert stored == small_store.adts_bytes(rec)
        rows = index[int(table["frame_start"][i]) : int(table["frame_start"][i] + table["num_frames"][i])]
        np.testing.assert_array_equal(rows, small_store.frame_index(rec))
    sources = [json.loads(s) for s in group["recordings/source"][:n].tolist()]
    assert [s["path"].rsplit("/", 1)[-1] for s in sources] == [i.rsplit("/", 1)[-1] for i in ids]
    for name in ("sample_rate", "num_channels", "encoder_delay", "bitrate", "crc32", "num_samples"):
        assert group[f"recordings/{name}"][:n].tolist() == [getattr(r, name) for r in small_store]
    assert group["recordings/metadata"][:n].tolist() == [""] * n


# ---------------------------------------------------------------------- summary, pickling, caches


def test_summary_numbers(small_store: AACStore) -> None:
    s = small_store.summary()
    seconds = sum(r.num_samples / r.sample_rate for r in small_store)
    assert s["num_recordings"] == len(STORE_IDS)
    assert s["hours"] == pytest.approx(seconds / 3600)
    assert s["payload_bytes"] == small_store.counts.num_bytes == sum(r.num_bytes for r in small_store)
    assert s["num_frames"] == small_store.counts.num_frames
    assert s["kbit_per_s"] == pytest.approx(s["payload_bytes"] * 8 / seconds / 1000)
    assert s["sample_rates"] == sorted({v[2] for v in STORE_SOURCES.values()})
    assert s["channel_counts"] == [1, 2, 6]
    assert s["disk_bytes"] >= s["payload_bytes"]
    assert s["disk_over_payload"] == pytest.approx(s["disk_bytes"] / s["payload_bytes"])
    assert s["format_version"] == 2
    json.dumps(s)


def test_store_is_not_picklable(small_store: AACStore) -> None:
    with pytest.raises(TypeError, match="pass its path"):
        pickle.dumps(small_store)


def test_recording_and_report_pickle(small_store: AACStore) -> None:
    rec = small_store.recording(0)
    rec2 = pickle.loads(pickle.dumps(dataclasses.replace(rec, source=dict(rec.source), metadata={})))
    assert rec2 == rec


def test_clear_caches_keeps_reads_exact(store_path: Path) -> None:
    with AACStore.open(store_path) as store:
        a = store.read("mono_44k.wav", 3000, 5000)
        info = store.cache_info()
        assert info["index_cache_misses"] == 1
        assert info["bytes_read"] > 0
        store.read("mono_44k.wav", 9000, 50)
        assert store.cache_info()["index_cache_hits"] == 1
        store.clear_caches()
        assert store.cache_info()["index_cache_chunks"] == 0
        assert np.array_equal(store.read("mono_44k.wav", 3000, 5000), a)


def test_tiny_index_cache_still_exact(store_path: Path, small_store: AACStore) -> None:
    with AACStore.open(store_path, index_cache_bytes=1) as store:
        for rid in STORE_IDS * 2:
            rec = store.recording(rid)
            n = min(3000, rec.num_samples)
            assert np.array_equal(store.read(rid, 0, n), small_store.read(rid, 0, n))
        assert store.cache_info()["index_cache_chunks"] == 1
