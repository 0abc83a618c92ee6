"""The frame index cache: a window's byte bounds and CRC-32s come from cached, checked
chunks, equal the stored rows, and only windows that use damaged rows fail."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aacdata._index import ANCHOR_EVERY, FrameIndex
from aacdata.errors import CorruptDataError


def _table(frame_counts: list[int], seed: int = 0) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    """A consistent table and index for recordings of these frame counts: columns, index rows
    (N, 3) and CRCs (N,)."""
    rng = np.random.default_rng(seed)
    counts = np.asarray(frame_counts, dtype=np.int64)
    sizes = rng.integers(7, 8191, int(counts.sum()), dtype=np.int64)
    offsets = np.concatenate(([0], np.cumsum(sizes)[:-1])).astype(np.int64)
    frame_start = np.concatenate(([0], np.cumsum(counts)[:-1])).astype(np.int64)
    positions = np.concatenate([np.arange(n, dtype=np.int64) * 1024 for n in counts]) if counts.sum() else sizes
    byte_start = offsets[frame_start] if counts.sum() else np.zeros(len(counts), np.int64)
    num_bytes = np.array([sizes[a : a + n].sum() for a, n in zip(frame_start, counts, strict=True)], dtype=np.int64)
    rows = np.stack((offsets, sizes, positions), axis=1)
    crcs = rng.integers(0, 2**32, sizes.size, dtype=np.uint64).astype(np.uint32)
    columns = {"frame_start": frame_start, "frame_count": counts, "byte_start": byte_start, "num_bytes": num_bytes}
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
    data=st.data(),
)
def test_window_bounds_equal_the_stored_rows(counts: list[int], chunk_rows: int, data: st.DataObject) -> None:
    # Invariant: bounds are the rows' offsets and the last frame's end; CRCs are the rows'.
    columns, rows, crcs = _table(counts)
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

    from aacdata._chunks import DirectChunks

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
