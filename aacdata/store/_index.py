"""Frame positions and CRC-32s of a store, read by chunk and cached: window -> byte range.

A window of recording ``r`` needs frames ``first..last`` (pre-roll included): their byte
offsets in ``/adts``, where the last one ends, and their CRC-32s. Those come from the rows
of ``/index`` and ``/frame_crc``, which are stored in chunks (4096 rows in new stores,
16384 in those of aacdata 0.1); reading any row decompresses its whole chunk, so whole
chunks are kept, decoded and checked once, in a compact form:

    sizes    uint16 per frame      (an ADTS frame is at most 8191 bytes; uint32 in a chunk
                                    holding a larger FLAC frame)
    anchors  int64 per 64 frames   (the byte offset of every 64th frame)
    crcs     uint32 per frame

about 6 bytes a frame instead of 28, so the default budget holds ~20 million frames
(~130 hours of 44.1 kHz audio). A window's offsets are an anchor plus a running sum of at
most 63 + the window's frame sizes. Neighbouring recordings share chunks, so the first
window of a recording costs no more than any other once its chunk is in memory.

The checks run per chunk, vectorised, when it is decoded: every row continues the byte
chain of the one before (recordings tile ``/adts`` back to back), sample positions count
up from each recording's first frame by its ``frame_samples``, recordings start at their
table's byte offset, and sizes are within what the recording's codec allows. A sound
chunk is recognised with a few whole-chunk operations (:meth:`FrameIndex._sound`);
otherwise the rows are checked one by one and those that fail are marked: only a window
that uses one fails (``CorruptDataError``), the rest of the chunk stays readable.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import CorruptDataError

ANCHOR_EVERY = 64
"""Frames between stored absolute offsets in a cached chunk."""

BYTES_PER_FRAME = 2 + 4 + 8 / ANCHOR_EVERY
"""What a cached frame costs: its size, its CRC-32 and its share of an anchor."""

_MIN_FRAME = 7


@dataclass(frozen=True, slots=True)
class _Chunk:
    start: int  # global row of the chunk's first frame
    sizes: np.ndarray  # uint16 (R,), or uint32 where a frame is larger
    anchors: np.ndarray  # int64 (ceil(R / ANCHOR_EVERY),)
    crcs: np.ndarray  # uint32 (R,)
    bad: np.ndarray | None  # bool (R,): rows that failed a check, None when all passed

    @property
    def nbytes(self) -> int:
        bad = 0 if self.bad is None else self.bad.nbytes
        return self.sizes.nbytes + self.anchors.nbytes + self.crcs.nbytes + bad + 200


RowReader = Callable[[str, int, int], np.ndarray]
"""``read(node, start, stop)``: rows ``[start, stop)`` of ``/index`` or ``/frame_crc``
(decode failures raised as :class:`CorruptDataError` naming the node and chunk)."""


class FrameIndex:
    """Where the frames of a store's recordings are, and their CRC-32s, for windows.

    ``frame_start``, ``frame_count`` (the table's ``num_frames``), ``byte_start``,
    ``num_bytes`` and ``frame_samples`` are the recordings table's columns (int64),
    ``max_frame_bytes`` the largest frame each recording's codec allows; rows past
    ``num_frames`` (the committed count) are never read.
    """

    def __init__(
        self,
        read: RowReader,
        *,
        chunk_rows: int,
        num_frames: int,
        frame_start: np.ndarray,
        frame_count: np.ndarray,
        byte_start: np.ndarray,
        num_bytes: np.ndarray,
        frame_samples: np.ndarray,
        max_frame_bytes: np.ndarray,
        describe: Callable[[int], str],
        budget_bytes: int,
    ) -> None:
        self._read = read
        self._rows = int(chunk_rows)
        self._num_frames = int(num_frames)
        self._frame_start = frame_start
        self._frame_count = frame_count
        self._byte_start = byte_start
        self._byte_end = byte_start + num_bytes
        self._step = frame_samples
        self._max_size = max_frame_bytes
        self._describe = describe
        self.budget_bytes = int(budget_bytes)
        self._chunks: OrderedDict[int, _Chunk] = OrderedDict()
        self._bytes = 0
        self.hits = 0
        self.misses = 0

    # ------------------------------------------------------------------ windows

    def window(self, rec: int, first: int, last: int) -> tuple[np.ndarray, np.ndarray]:
        """Frames ``first..last`` of recording ``rec``: their bounds in ``/adts`` (int64,
        ``last - first + 2``: each frame's offset, then where the last one ends) and their
        stored CRC-32s (uint32, ``last - first + 1``)."""
        g0 = int(self._frame_start[rec])
        g0, g1 = g0 + first, g0 + last
        c0, c1 = g0 // self._rows, g1 // self._rows
        if c0 == c1:
            chunk = self._chunk(c0)
            bounds, crcs, bad = self._rows_of(chunk, g0 - chunk.start, g1 - chunk.start)
        else:  # a window across a chunk boundary (rare): join the pieces
            parts = []
            for ci in range(c0, c1 + 1):
                chunk = self._chunk(ci)
                a = max(g0, chunk.start) - chunk.start
                b = min(g1, chunk.start + chunk.sizes.size - 1) - chunk.start
                parts.append(self._rows_of(chunk, a, b))
            bounds = np.concatenate([p[0][:-1] for p in parts] + [parts[-1][0][-1:]])
            crcs = np.concatenate([p[1] for p in parts])
            bad = any(p[2] for p in parts)
        if bad or bounds[0] < self._byte_start[rec] or bounds[-1] > self._byte_end[rec]:
            raise CorruptDataError(
                f"{self._describe(rec)}: index rows of frames {first}..{last} are damaged "
                "(they do not chain through the recording's bytes)"
            )
        return bounds, crcs

    @staticmethod
    def _rows_of(chunk: _Chunk, a: int, b: int) -> tuple[np.ndarray, np.ndarray, bool]:
        """Bounds and CRCs of chunk rows ``a..b`` (inclusive), and whether one is marked bad."""
        anchor = a // ANCHOR_EVERY
        lo = anchor * ANCHOR_EVERY
        ends = np.cumsum(chunk.sizes[lo : b + 1], dtype=np.int64)  # where frames lo..b end
        ends += int(chunk.anchors[anchor])
        if a > lo:
            bounds = ends[a - lo - 1 :]
        else:
            bounds = np.empty(b - a + 2, dtype=np.int64)
            bounds[0] = chunk.anchors[anchor]
            bounds[1:] = ends
        # The rows from the anchor on must all be sound: the offsets are summed through them.
        bad = chunk.bad is not None and bool(chunk.bad[lo : b + 1].any())
        return bounds, chunk.crcs[a : b + 1], bad

    def rows(self, rec: int) -> tuple[np.ndarray, np.ndarray]:
        """Every frame of recording ``rec``: bounds (int64, ``n + 1``) and CRC-32s."""
        n = int(self._frame_count[rec])
        if n == 0:
            return np.array([int(self._byte_start[rec])], dtype=np.int64), np.zeros(0, dtype=np.uint32)
        return self.window(rec, 0, n - 1)

    # ------------------------------------------------------------------ chunks

    def _chunk(self, ci: int) -> _Chunk:
        chunk = self._chunks.get(ci)
        if chunk is not None:
            self._chunks.move_to_end(ci)
            self.hits += 1
            return chunk
        self.misses += 1
        chunk = self._load(ci)
        self._chunks[ci] = chunk
        self._bytes += chunk.nbytes
        while self._bytes > self.budget_bytes and len(self._chunks) > 1:
            _, old = self._chunks.popitem(last=False)
            self._bytes -= old.nbytes
        return chunk

    def _load(self, ci: int) -> _Chunk:
        start = ci * self._rows
        stop = min(start + self._rows, self._num_frames)
        rows = np.asarray(self._read("index", start, stop)).reshape(-1, 3)
        # int64 (values past 2**63, which only damage makes, turn negative and fail the checks).
        rows = rows.view(np.int64) if rows.dtype == np.uint64 else rows.astype(np.int64)
        crcs = np.asarray(self._read("frame_crc", start, stop), dtype=np.uint32).reshape(-1)
        if rows.shape[0] != stop - start or crcs.size != stop - start:
            raise CorruptDataError(f"index chunk {ci} holds {rows.shape[0]} rows, expected {stop - start}")
        offsets, sizes, positions = rows.T.copy()  # contiguous columns: faster checks
        bad = None
        if not self._sound(start, offsets, sizes, positions):
            bad = self._bad_rows(start, offsets, sizes, positions)
        small = np.clip(sizes, 0, np.iinfo(np.uint32).max)  # a bad row's size is never summed
        small = small.astype(np.uint16 if small.size == 0 or small.max() <= np.iinfo(np.uint16).max else np.uint32)
        # Offsets are rebuilt from the sizes and the anchors: an anchor is trusted only on a good row.
        anchors = offsets[::ANCHOR_EVERY].copy()
        return _Chunk(start, small, anchors, crcs, bad if bad is not None and bad.any() else None)

    def _sound(self, start: int, offsets: np.ndarray, sizes: np.ndarray, positions: np.ndarray) -> bool:
        """Whether rows ``start...`` pass every check of :meth:`_bad_rows`, decided with a
        few whole-chunk operations (``False`` also where it cannot tell cheaply: recordings
        without frames among the chunk's; :meth:`_bad_rows` then marks the rows).

        Recordings ``first..last`` own the rows. The rows chain (each ends where the next
        begins, and sizes are positive), so the offsets increase: every row lies in its
        recording's bytes when the chunk's first row starts inside the first recording, each
        recording that begins here starts at its table offset and ends no later than its
        byte range (where the next one begins), and the last row ends inside the last one.
        """
        n = sizes.size
        fs, bs, be = self._frame_start, self._byte_start, self._byte_end
        first = int(np.searchsorted(fs, start, side="right")) - 1
        last = int(np.searchsorted(fs, start + n - 1, side="right")) - 1
        if first < 0:
            return False
        # One frame step and size limit for the chunk's recordings (else: row by row).
        step, limit = int(self._step[first]), int(self._max_size[first])
        if last > first and (
            (self._step[first : last + 1] != step).any() or (self._max_size[first : last + 1] != limit).any()
        ):
            return False
        if not ((sizes - _MIN_FRAME).view(np.uint64) <= limit - _MIN_FRAME).all():
            return False
        ends = offsets + sizes
        # The chain, and no offset past 2**63 (int64 sums would wrap: the end lies beyond the start).
        if not np.array_equal(offsets[1:], ends[:-1]) or ends[-1] <= offsets[0]:
            return False
        if offsets[0] < bs[first] or ends[-1] > be[last] or positions[0] != (start - fs[first]) * step:
            return False
        if fs[first] == start and offsets[0] != bs[first]:
            return False
        steps = positions[1:] - positions[:-1]  # ``step`` within a recording
        if last > first:
            begins = fs[first + 1 : last + 1] - start  # rows where the other recordings begin
            if not (begins[1:] > begins[:-1]).all() or begins[0] <= 0:
                return False  # a recording without frames: leave it to the row-by-row checks
            owners = slice(first + 1, last + 1)
            if not np.array_equal(offsets[begins], bs[owners]) or positions[begins].any():
                return False
            if (bs[owners] > be[first:last]).any():
                return False
            steps[begins - 1] = step
        return bool((steps == step).all())

    def _bad_rows(self, start: int, offsets: np.ndarray, sizes: np.ndarray, positions: np.ndarray) -> np.ndarray:
        """The rows ``start...`` that fail a check, row by row."""
        g = np.arange(start, start + sizes.size, dtype=np.int64)
        owner = np.searchsorted(self._frame_start, g, side="right") - 1
        bad = (sizes < _MIN_FRAME) | (sizes > self._max_size[owner])
        bad |= positions != (g - self._frame_start[owner]) * self._step[owner]
        bad |= (offsets < self._byte_start[owner]) | (offsets + sizes > self._byte_end[owner])
        # Recordings start at their table offset; within the chunk, each row ends where the next begins.
        starts = self._frame_start[owner] == g
        bad |= starts & (offsets != self._byte_start[owner])
        broken = offsets[1:] != offsets[:-1] + sizes[:-1]
        bad[:-1] |= broken
        bad[1:] |= broken
        return bad

    # ------------------------------------------------------------------ budget

    @property
    def nbytes(self) -> int:
        """Bytes held by cached chunks."""
        return self._bytes

    def __len__(self) -> int:
        return len(self._chunks)

    def clear(self) -> None:
        self._chunks.clear()
        self._bytes = 0

    def info(self) -> dict[str, Any]:
        return {
            "index_cache_hits": self.hits,
            "index_cache_misses": self.misses,
            "index_cache_bytes": self._bytes,
            "index_cache_chunks": len(self._chunks),
        }
