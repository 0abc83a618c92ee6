"""The frame index cache: a window's byte bounds and CRC-32s come from cached, checked
chunks, equal the stored rows, and only windows that use damaged rows fail."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aacdata.errors import CorruptDataError
from aacdata.store._index import ANCHOR_EVERY, FrameIndex


def _table(
    frame_counts: list[int], seed: int = 0, flac: tuple[int, ...] = ()
) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    """A consistent table and index for recordings of these frame counts: columns, index rows
    (N, 3) and CRCs (N,). Recordings numbered in ``flac`` hold FLAC-like rows: 4096 samples
    a frame, frames up to 100,000 bytes (the rest: AAC, 1024 samples, at most 8191 bytes)."""
    rng = np.random.default_rng(seed)
    counts = np.asarray(frame_counts, dtype=np.int64)
    is_flac = np.isin(np.arange(len(counts)), flac)
    step = np.where(is_flac, 4096, 1024).astype(np.int64)
    limit = np.where(is_flac, 100_000, 8191).astype(np.int64)
    sizes = rng.integers(7, np.repeat(limit, counts) + 1, int(counts.sum()), dtype=np.int64)
    offsets = np.concatenate(([0], np.cumsum(sizes)[:-1])).astype(np.int64)
    frame_start = np.concatenate(([0], np.cumsum(counts)[:-1])).astype(np.int64)
    positions = (
        np.concatenate([np.arange(n, dtype=np.int64) * s for n, s in zip(counts, step, strict=True)])
        if counts.sum()
        else sizes
    )
    byte_start = offsets[frame_start] if counts.sum() else np.zeros(len(counts), np.int64)
    num_bytes = np.array([sizes[a : a + n].sum() for a, n in zip(frame_start, counts, strict=True)], dtype=np.int64)
    rows = np.stack((offsets, sizes, positions), axis=1)
    crcs = rng.integers(0, 2**32, sizes.size, dtype=np.uint64).astype(np.uint32)
    columns = {
        "frame_start": frame_start,
        "frame_count": counts,
        "byte_start": byte_start,
        "num_bytes": num_bytes,
        "frame_samples": step,
        "max_frame_bytes": limit,
    }
    return columns, rows, crcs


def _index(columns: dict[str, np.ndarray], rows: np.ndarray, crcs: np.ndarray, chunk_rows: int, budget: int = 1 << 30):
    def read(node: str, start: int, stop: int) -> np.ndarray:
        return rows[start:stop] if node == "index" else crcs[start:stop]

    return FrameIndex(
        read,
        chunk_rows=chunk_rows,
        num_frames=rows.shape[0],
        describe=lambda r: f"recording {r}",
        budget_bytes=budget,
        **columns,
    )


@settings(max_examples=60, deadline=None)
@given(
    counts=st.lists(st.integers(1, 400), min_size=1, max_size=8),
    chunk_rows=st.sampled_from([16, 100, 128, 1000, 16384]),
    flac=st.lists(st.integers(0, 7), max_size=4),
    data=st.data(),
)
def test_window_bounds_equal_the_stored_rows(
    counts: list[int], chunk_rows: int, flac: list[int], data: st.DataObject
) -> None:
    # Invariant: bounds are the rows' offsets and the last frame's end; CRCs are the rows'
    # (AAC and FLAC recordings side by side, FLAC frames past uint16 sizes).
    columns, rows, crcs = _table(counts, flac=tuple(flac))
    index = _index(columns, rows, crcs, chunk_rows, budget=data.draw(st.sampled_from([1, 1 << 30])))
    for _ in range(5):
        rec = data.draw(st.integers(0, len(counts) - 1))
        first = data.draw(st.integers(0, counts[rec] - 1))
        last = data.draw(st.integers(first, counts[rec] - 1))
        bounds, got_crcs = index.window(rec, first, last)
        g0, g1 = int(columns["frame_start"][rec]) + first, int(columns["frame_start"][rec]) + last
        np.testing.assert_array_equal(bounds[:-1], rows[g0 : g1 + 1, 0])
        assert bounds[-1] == rows[g1, 0] + rows[g1, 1]
        np.testing.assert_array_equal(got_crcs, crcs[g0 : g1 + 1])


@settings(max_examples=150, deadline=None)
@given(
    counts=st.lists(st.integers(0, 300), min_size=1, max_size=10),
    chunk_rows=st.sampled_from([1, 7, 64, 100, 1000]),
    damage=st.lists(
        st.tuples(
            st.integers(0, 10_000), st.integers(0, 2), st.sampled_from([-1024, -7, -1, 1, 5, 1 << 40, -(1 << 62)])
        ),
        max_size=2,
    ),
    table_damage=st.none()
    | st.tuples(st.sampled_from(["byte_start", "num_bytes"]), st.integers(0, 10), st.sampled_from([-5, -1, 1])),
    flac=st.lists(st.integers(0, 10), max_size=3),
)
def test_the_whole_chunk_check_agrees_with_the_row_checks(
    counts: list[int],
    chunk_rows: int,
    damage: list[tuple[int, int, int]],
    table_damage: tuple[str, int, int] | None,
    flac: list[int],
) -> None:
    # Invariant: a chunk passes the few-operation check only if no row fails the row-by-row
    # checks; a sound chunk of recordings with frames, all of one codec, passes it (else
    # loads cost more).
    counts = [*counts, 1]  # the helper's table ends with a recording that has frames
    columns, rows, crcs = _table(counts, flac=tuple(flac))
    owner = np.repeat(np.arange(len(counts)), counts)
    rows = rows.copy()
    for row, field, delta in damage:
        rows[row % rows.shape[0], field] += delta
    if table_damage is not None:
        name, rec, delta = table_damage
        columns = {**columns, name: columns[name].copy()}
        columns[name][rec % len(counts)] += delta
    index = _index(columns, rows, crcs, chunk_rows)
    for start in range(0, rows.shape[0], chunk_rows):
        part = rows[start : start + chunk_rows]
        sound = index._sound(start, part[:, 0], part[:, 1], part[:, 2])
        bad = index._bad_rows(start, part[:, 0], part[:, 1], part[:, 2]).any()
        if sound:
            assert not bad, (start, damage, table_damage)
        elif not damage and table_damage is None and all(counts):
            steps = columns["frame_samples"][owner[start : start + chunk_rows]]
            if (steps == steps[0]).all():
                raise AssertionError(f"a sound chunk at row {start} fails the whole-chunk check")


def test_recordings_sharing_a_chunk_share_its_decoding() -> None:
    columns, rows, crcs = _table([10] * 50)
    index = _index(columns, rows, crcs, chunk_rows=16384)
    for rec in range(50):
        index.window(rec, 0, 9)
    assert index.misses == 1 and index.hits == 49


def test_the_budget_bounds_what_is_kept() -> None:
    columns, rows, crcs = _table([1000] * 20)
    index = _index(columns, rows, crcs, chunk_rows=1000, budget=3 * 7000)
    for rec in range(20):
        index.window(rec, 0, 999)
    assert index.nbytes <= 3 * 7000 and len(index) <= 3
    assert index.nbytes >= 1000 * 6  # one chunk at least, ~6 bytes a frame


@pytest.mark.parametrize("field", [0, 1, 2])
def test_only_windows_through_a_damaged_row_fail(field: int) -> None:
    columns, rows, crcs = _table([300, 300])
    rows = rows.copy()
    bad_row = 450  # recording 1, frame 150
    rows[bad_row, field] += 3
    index = _index(columns, rows, crcs, chunk_rows=16384)
    with pytest.raises(CorruptDataError, match="recording 1: index rows of frames"):
        index.window(1, 140, 160)
    # a window of the same recording that reads neither the row nor the sums through it
    anchor_of_bad = (bad_row // ANCHOR_EVERY) * ANCHOR_EVERY
    later = bad_row + ANCHOR_EVERY - bad_row % ANCHOR_EVERY + 1
    assert anchor_of_bad <= bad_row < later
    bounds, _ = index.window(1, later - 300, later - 300 + 20)
    np.testing.assert_array_equal(bounds[:-1], rows[later : later + 21, 0])
    index.window(0, 0, 299)  # the other recording reads


def test_rows_outside_their_recording_fail() -> None:
    columns, rows, crcs = _table([100, 100])
    columns = dict(columns)
    columns["num_bytes"] = columns["num_bytes"].copy()
    columns["num_bytes"][0] -= 10  # the table says recording 0 ends before its last frame does
    index = _index(columns, rows, crcs, chunk_rows=16384)
    with pytest.raises(CorruptDataError):
        index.window(0, 90, 99)


def test_direct_chunk_reads_equal_zarr_and_fall_back(store_path: Path, tmp_path: Path) -> None:
    # Invariant: rows read straight from a local chunk file equal zarr's; a chunk that is
    # missing or does not decode yields None (the store then reads through zarr, which
    # reports the damage).
    import shutil

    import zarr

    from aacdata.store._chunks import DirectChunks

    copy = tmp_path / "s.zarr"
    shutil.copytree(store_path, copy)
    group = zarr.open_group(str(copy), mode="r")
    for node in ("index", "frame_crc"):
        array = group[node]
        direct = DirectChunks(array)
        n = array.shape[0]
        for a, b in ((0, n), (1, n), (5, 17)):
            np.testing.assert_array_equal(direct.read(a, b), np.asarray(array[a:b]))
        assert direct.read(0, array.chunks[0] + 1) is None  # across chunks: not direct
    chunk = copy / "index" / "c" / "0" / "0"
    chunk.write_bytes(chunk.read_bytes()[:40])
    assert DirectChunks(zarr.open_group(str(copy), mode="r")["index"]).read(0, 5) is None
    chunk.unlink()
    assert DirectChunks(zarr.open_group(str(copy), mode="r")["index"]).read(0, 5) is None
    crc_chunk = copy / "frame_crc" / "c" / "0"
    crc_chunk.write_bytes(crc_chunk.read_bytes()[:-4])  # an uncompressed chunk one row short
    assert DirectChunks(zarr.open_group(str(copy), mode="r")["frame_crc"]).read(0, 5) is None


def test_stores_of_the_first_layout_read_the_same(store_path: Path, tmp_path: Path) -> None:
    # Invariant: a store whose /index and /frame_crc have aacdata 0.1's chunking and codecs
    # (16384 rows, Zstd) reads bit for bit as a store of today's layout, through the same
    # direct chunk reads, and verifies clean.
    from unittest import mock

    import zarr
    from zarr.codecs import BloscCodec

    import aacdata
    from aacdata import AACStore
    from aacdata.audio._audiofile import write_audio
    from aacdata.store import _layout
    from aacdata.store._chunks import DirectChunks
    from aacdata.store._merge import merge_stores
    from aacdata.testing import signal

    first = {
        "INDEX_CHUNK_ROWS": 1 << 14,
        "INDEX_CODECS": (BloscCodec(cname="zstd", clevel=5, shuffle="bitshuffle", typesize=8),),
        "FRAME_CRC_CODECS": "auto",
    }
    with mock.patch.multiple(_layout, **first):
        merge_stores([store_path], tmp_path / "old.zarr")
    merge_stores([store_path], tmp_path / "new.zarr")
    old_group, new_group = (zarr.open_group(str(tmp_path / n), mode="r") for n in ("old.zarr", "new.zarr"))
    assert old_group["index"].chunks == (1 << 14, 3) and new_group["index"].chunks == (_layout.INDEX_CHUNK_ROWS, 3)
    assert [type(c).__name__ for c in old_group["frame_crc"].metadata.codecs] == ["BytesCodec", "ZstdCodec"]
    assert [type(c).__name__ for c in new_group["frame_crc"].metadata.codecs] == ["BytesCodec"]
    for group in (old_group, new_group):
        for node in ("index", "frame_crc"):
            assert DirectChunks(group[node]).read(0, 3) is not None
    rng = np.random.default_rng(0)
    with AACStore.open(tmp_path / "old.zarr") as old, AACStore.open(tmp_path / "new.zarr") as new:
        assert old.verify().ok and new.verify().ok
        for rec in old.recordings:
            for _ in range(3):
                n = int(rng.integers(1, min(rec.num_samples, 5000) + 1))
                start = int(rng.integers(0, rec.num_samples - n + 1))
                np.testing.assert_array_equal(old.read(rec.id, start, n), new.read(rec.id, start, n))
    # Appending to such a store keeps its layout, and what is appended reads.
    source = tmp_path / "more" / "extra.wav"
    write_audio(source, signal("noise", 20_000, sample_rate=16_000, seed=3), sample_rate=16_000)
    assert aacdata.import_audio(source.parent, tmp_path / "old.zarr", workers=0, progress=False).ok
    assert zarr.open_group(str(tmp_path / "old.zarr"), mode="r")["index"].chunks == (1 << 14, 3)
    with AACStore.open(tmp_path / "old.zarr") as old:
        assert old.verify().ok
        assert old.read("extra.wav", 0, 20_000).shape == (1, 20_000)


def test_offsets_that_chain_only_modulo_2_64_fail() -> None:
    # Regression: a chunk whose offsets continue the chain but cross 2**63 (as stored uint64,
    # wrapping in int64 sums) passed the whole-chunk check; windows across the wrap read
    # nothing and returned uninitialised samples. Such rows must fail like any damage.
    n = 256
    sizes = np.full(n, 100, np.uint64)
    offsets = np.arange(n, dtype=np.uint64) * np.uint64(100)
    offsets[128:] = np.uint64(2**63 - 100 * 40) + np.arange(128, dtype=np.uint64) * np.uint64(100)
    rows = np.stack([offsets, sizes, np.arange(n, dtype=np.uint64) * np.uint64(1024)], axis=1)
    columns = {
        "frame_start": np.array([0]),
        "frame_count": np.array([n]),
        "byte_start": np.array([0]),
        "num_bytes": np.array([100 * n]),
        "frame_samples": np.array([1024]),
        "max_frame_bytes": np.array([8191]),
    }
    index = _index(columns, rows, np.zeros(n, np.uint32), chunk_rows=128)
    part = rows[128:].view(np.int64)
    assert not index._sound(128, *(part[:, i].copy() for i in range(3)))
    with pytest.raises(CorruptDataError, match="index rows"):
        index.window(0, 128 + 38, 128 + 42)
    index.window(0, 0, 127)  # the sound chunk reads
