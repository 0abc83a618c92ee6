"""AACStore: open a store, list its recordings, read exact sample windows, verify it."""

from __future__ import annotations

import json
import logging
import operator
import os
import zlib
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal

import numpy as np
import zarr
from zarr.abc.store import Store
from zarr.core.sync import sync
from zarr.errors import GroupNotFoundError

from . import _layout, _lock, _remote
from ._adts import SAMPLES_PER_FRAME, parse_adts
from ._bytes import ByteReader
from ._decoder import DecoderPool, decode_into
from ._remote import StoreTarget
from .errors import (
    AACDataError,
    CorruptDataError,
    RecordingNotFoundError,
    StoreFormatError,
    StoreNotFoundError,
    WindowError,
)

log = logging.getLogger("aacdata")

DEFAULT_INDEX_CACHE_BYTES = 128 << 20
"""Per-process budget for cached per-recording index rows (byte offsets and CRC-32s, 12
bytes per frame): ~11 million frames, ~70 hours of 44.1 kHz audio. Larger corpora work
within it (least recently used recordings are dropped; a miss decodes the recording's
index rows, ~0.5 ms per 16384 frames: ~10 ms for a 30-minute recording); on top of it, up
to 32 decoded index chunks (~15 MB) are kept."""

_VERIFY_BATCH_FRAMES = 256
_ENTRY_OVERHEAD = 1024
"""Bytes counted per cached recording beyond its arrays (Python objects, measured ~1 KiB)."""


@dataclass(frozen=True, slots=True, eq=True)
class Recording:
    """One recording of a store (a row of its recordings table).

    Sample positions are in the recording's **source timeline**: sample 0 is the first
    sample of the source file (after resampling, when the import resampled).
    """

    index: int
    id: str
    num_samples: int
    sample_rate: int
    num_channels: int
    encoder_delay: int
    num_frames: int
    frame_start: int
    byte_start: int
    num_bytes: int
    bitrate: int
    crc32: int
    source: Mapping[str, Any] = field(default_factory=dict, compare=False)
    metadata: Mapping[str, Any] = field(default_factory=dict, compare=False)

    @property
    def duration_seconds(self) -> float:
        return self.num_samples / self.sample_rate

    def __repr__(self) -> str:
        return (
            f"Recording(index={self.index}, id={self.id!r}, num_samples={self.num_samples}, "
            f"sample_rate={self.sample_rate}, num_channels={self.num_channels}, "
            f"num_frames={self.num_frames}, num_bytes={self.num_bytes})"
        )


@dataclass(frozen=True, slots=True)
class VerifyReport:
    """Outcome of :meth:`AACStore.verify`: ``problems`` holds ``(id, reason)`` pairs for
    damaged recordings, ``store_problems`` what is wrong with the store as a whole (e.g. a
    recordings column that fails its checksum)."""

    num_recordings: int
    problems: tuple[tuple[str, str], ...]
    store_problems: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.problems and not self.store_problems

    @property
    def bad_ids(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(i for i, _ in self.problems))

    def __repr__(self) -> str:
        return (
            f"VerifyReport(num_recordings={self.num_recordings}, num_bad={len(self.bad_ids)}, "
            f"store_problems={len(self.store_problems)}, ok={self.ok})"
        )


@dataclass(frozen=True, slots=True)
class _Plan:
    """One window: its output, the part of it inside the recording, frames and bytes."""

    recording: int
    out: np.ndarray
    target: np.ndarray
    preroll_frame: int
    first_frame: int
    last_frame: int
    skip: int
    byte_start: int
    byte_stop: int
    offsets: np.ndarray
    crcs: np.ndarray

    @property
    def num_frames(self) -> int:
        return self.last_frame - self.preroll_frame + 1 if self.byte_stop > self.byte_start else 0


_NO_FRAMES = np.zeros(1, dtype=np.int64)
_NO_CRCS = np.zeros(0, dtype=np.uint32)

RecordingRef = int | str | Recording
"""A recording, given by index, by id or as a :class:`Recording`."""


class AACStore:
    """A Zarr v3 store of AAC-LC recordings, opened for reading (``"r"``) or appending (``"a"``).

    Create one with :meth:`AACStore.open`. Reads are exact: ``read(rec, s, n)`` equals the
    samples ``[s, s + n)`` of a full decode of the recording's stored stream, bit for bit.
    A store is safe to use from one thread; in ``DataLoader`` workers, each process opens
    its own (the dataset does this lazily).
    """

    def __init__(
        self, group: zarr.Group, *, where: str, mode: str, index_cache_bytes: int, check_table: bool = True
    ) -> None:
        self._group = group
        self._where = where
        self.target: str | Store = where
        """What to pass to :meth:`open` to open this store again (in another process)."""
        self._mode = mode
        attrs = group.attrs.asdict()
        self.counts = _layout.parse_root_attributes(attrs, where)
        self._column_crc32 = _layout.stored_column_crc32(attrs)
        try:
            arrays = _layout.open_arrays(group, where, self.counts)
        except _layout.IncompleteStoreError:
            if self.counts != _layout.Counts():
                raise
            if mode != "a":
                raise StoreFormatError(
                    f"{where!r} is an empty store whose creation was interrupted; run the import again"
                ) from None
            _layout.complete_layout(group)  # a creation that was killed half-way
            arrays = _layout.open_arrays(group, where, self.counts)
        self._adts, self._index, self._frame_crc, self._columns = (
            arrays.adts,
            arrays.index,
            arrays.frame_crc,
            arrays.columns,
        )
        n = self.counts.num_recordings
        self._table = {
            name: (np.asarray(self._columns[name][:n], dtype=np.int64) if n else np.zeros(0, np.int64))
            for name in _layout.NUMERIC_COLUMNS
        }
        self._ids: list[str] = _strings(self._columns["id"], n)
        self._id_to_index: dict[str, int] | None = None
        self._json_cache: dict[str, list[str]] = {}
        self._check_table()
        self._table_problems = self._column_problems(("id", *_layout.NUMERIC_COLUMNS))
        if check_table and self._table_problems:
            raise StoreFormatError(f"{self._table_problems[0]} (`aacdata verify {where}` reports what it can)")
        self._bytes = ByteReader(self._adts, where)
        self._decoders = DecoderPool()
        self._offsets: OrderedDict[int, tuple[np.ndarray, np.ndarray]] = OrderedDict()
        # Whole index chunks, decompressed once: neighbouring recordings share them.
        self._index_chunks = _ChunkCache(self._index, self.counts.num_frames)
        self._crc_chunks = _ChunkCache(self._frame_crc, self.counts.num_frames)
        self._offsets_bytes = 0
        self.index_cache_bytes = int(index_cache_bytes)
        self.index_cache_hits = 0
        self.index_cache_misses = 0

    # ------------------------------------------------------------------ opening

    @classmethod
    def open(
        cls,
        path_or_url: StoreTarget,
        mode: Literal["r", "a"] = "r",
        *,
        storage_options: Mapping[str, Any] | None = None,
        index_cache_bytes: int = DEFAULT_INDEX_CACHE_BYTES,
        check_table: bool = True,
    ) -> AACStore:
        """Open a store; mode ``"a"`` creates an empty one where none exists.

        Parameters
        ----------
        path_or_url
            A local directory, an object-store URL (``s3://bucket/corpus.zarr``; needs
            ``aacdata[s3]``) or a zarr ``Store``.
        mode
            ``"r"`` read-only, ``"a"`` append (what :func:`aacdata.import_audio` uses).
        storage_options
            Object-store settings (for S3: ``endpoint``, ``access_key_id``,
            ``secret_access_key``, ``region``, ...); without them, the standard AWS
            environment variables are used.
        index_cache_bytes
            Budget for cached index rows in this process.
        check_table
            Refuse a store whose recordings table disagrees with its checksums
            (``False``: open it anyway, for :meth:`verify` to report what it can).

        Raises
        ------
        StoreNotFoundError
            ``mode="r"`` and nothing is at ``path_or_url``.
        StoreFormatError
            It holds something that is not an aacdata store of a known version.
        """
        if mode not in ("r", "a"):
            raise ValueError(f"mode must be 'r' (read) or 'a' (append); got {mode!r}")
        where = _remote.describe(path_or_url)
        if _remote.is_local(path_or_url):
            local = _remote.local_path(path_or_url)
            if mode == "r":
                if not os.path.exists(local):
                    raise StoreNotFoundError(
                        f"no store at {where!r} (create one with `aacdata import SOURCES -o {where}`)"
                    )
                group = _open_group(local, "r")
            else:
                if os.path.isfile(os.path.join(local, "zarr.json")):
                    group = _open_or_create(local)
                else:
                    # Creation happens under the write lock, so that two imports racing to
                    # create a store do not build the layout over each other.
                    with _lock.acquire(zarr.storage.LocalStore(local), where):
                        group = _open_or_create(local)
        else:
            zstore = _remote.open_store(path_or_url, read_only=mode == "r", storage_options=storage_options)
            if mode == "a" and not _remote_exists(zstore, where):
                with _lock.acquire(zstore, where):
                    group = _open_remote_group(zstore, where, mode)
            else:
                group = _open_remote_group(zstore, where, mode)
        store = cls(group, where=where, mode=mode, index_cache_bytes=index_cache_bytes, check_table=check_table)
        store.target = path_or_url if isinstance(path_or_url, Store) else where
        return store

    def reopen(self) -> AACStore:
        """A new :class:`AACStore` on the same location and mode, reading the committed
        state as it is now (an open store keeps the state it saw when it was opened)."""
        group = zarr.open_group(self._group.store, mode="r" if self._mode == "r" else "r+")
        store = AACStore(group, where=self._where, mode=self._mode, index_cache_bytes=self.index_cache_bytes)
        store.target = self.target
        return store

    @property
    def zarr_store(self) -> Any:
        """The zarr ``Store`` underneath (for copying, or for tools that speak Zarr)."""
        return self._group.store

    def _column_problems(self, names: Iterable[str]) -> list[str]:
        """Recordings columns that disagree with the CRC-32s of the last commit."""
        problems = []
        for name in names:
            expected = self._column_crc32.get(name)
            if expected is None:
                continue
            if name in _layout.NUMERIC_COLUMNS:
                values: Any = self._table[name]
            elif name == "id":
                values = self._ids
            else:
                values = self.text_column(name)
            if _layout.column_crc32(name, values) != expected:
                problems.append(
                    f"{self._where}: recordings column {name!r} does not match its checksum (a lost or "
                    "damaged chunk); the store is damaged"
                )
        return problems

    def _check_table(self) -> None:
        t, c = self._table, self.counts
        n = c.num_recordings
        if any(a.size != n for a in t.values()) or len(self._ids) != n:
            raise StoreFormatError(f"{self._where}: recordings table has fewer than {n} committed rows")
        if n == 0:
            return
        frame_end = t["frame_start"] + t["num_frames"]
        byte_end = t["byte_start"] + t["num_bytes"]
        if (
            t["frame_start"][0] != 0
            or t["byte_start"][0] != 0
            or np.any(t["frame_start"][1:] != frame_end[:-1])
            or np.any(t["byte_start"][1:] != byte_end[:-1])
            or frame_end[-1] != c.num_frames
            or byte_end[-1] != c.num_bytes
        ):
            raise StoreFormatError(
                f"{self._where}: recordings table does not tile the committed {c.num_frames} frames "
                f"and {c.num_bytes} bytes; run `aacdata verify {self._where}`"
            )

    # ------------------------------------------------------------------ recordings

    def __len__(self) -> int:
        return self.counts.num_recordings

    def __iter__(self) -> Iterator[Recording]:
        return (self.recording(i) for i in range(len(self)))

    def __repr__(self) -> str:
        return (
            f"AACStore({self._where!r}, mode={self._mode!r}, num_recordings={len(self)}, "
            f"num_frames={self.counts.num_frames}, num_bytes={self.counts.num_bytes})"
        )

    @property
    def path(self) -> str:
        return self._where

    @property
    def mode(self) -> str:
        return self._mode

    @property
    def recordings(self) -> tuple[Recording, ...]:
        """Every recording, in store order."""
        return tuple(self)

    @property
    def ids(self) -> tuple[str, ...]:
        return tuple(self._ids)

    def column(self, name: str) -> np.ndarray:
        """A numeric recordings column (e.g. ``"num_samples"``) as an int64 array, one row per recording."""
        try:
            return self._table[name]
        except KeyError:
            raise KeyError(f"no numeric column {name!r}; columns: {', '.join(self._table)}") from None

    def index_of(self, rec: RecordingRef) -> int:
        """The store index of a recording given by index, id or :class:`Recording`."""
        if isinstance(rec, Recording):
            rec = rec.index if rec.index < len(self) and self._ids[rec.index] == rec.id else rec.id
        if isinstance(rec, str):
            if self._id_to_index is None:
                self._id_to_index = {x: i for i, x in enumerate(self._ids)}
            try:
                return self._id_to_index[rec]
            except KeyError:
                raise RecordingNotFoundError(f"no recording with id {rec!r} in {self._where}") from None
        try:
            i = operator.index(rec)
        except TypeError:
            raise TypeError(f"a recording is an index, an id or a Recording; got {type(rec).__name__}") from None
        n = len(self)
        if not -n <= i < n:
            raise RecordingNotFoundError(f"recording index {i} is out of range for a store of {n} recordings")
        return i % n

    def recording(self, rec: RecordingRef) -> Recording:
        """The :class:`Recording` at an index or with an id."""
        i = self.index_of(rec)
        t = self._table
        return Recording(
            index=i,
            id=self._ids[i],
            num_samples=int(t["num_samples"][i]),
            sample_rate=int(t["sample_rate"][i]),
            num_channels=int(t["num_channels"][i]),
            encoder_delay=int(t["encoder_delay"][i]),
            num_frames=int(t["num_frames"][i]),
            frame_start=int(t["frame_start"][i]),
            byte_start=int(t["byte_start"][i]),
            num_bytes=int(t["num_bytes"][i]),
            bitrate=int(t["bitrate"][i]),
            crc32=int(t["crc32"][i]),
            source=MappingProxyType(self._json("source", i)),
            metadata=MappingProxyType(self._json("metadata", i)),
        )

    def text_column(self, column: str) -> list[str]:
        """A JSON text column (``"source"`` or ``"metadata"``), one string per recording,
        loaded on first use."""
        values = self._json_cache.get(column)
        if values is None:
            values = self._json_cache[column] = _strings(self._columns[column], len(self))
        return values

    def _json(self, column: str, i: int) -> dict[str, Any]:
        text = self.text_column(column)[i]
        if not text:
            return {}
        try:
            obj = json.loads(text)
        except json.JSONDecodeError:
            raise CorruptDataError(f"{self._where}: recording {self._ids[i]!r} has damaged {column} JSON") from None
        return obj if isinstance(obj, dict) else {}

    # ------------------------------------------------------------------ reading

    def read(self, rec: RecordingRef, start: int, num_samples: int, *, pad: bool = False) -> np.ndarray:
        """Samples ``[start, start + num_samples)`` of a recording.

        Parameters
        ----------
        rec
            Recording index, id or :class:`Recording`.
        start, num_samples
            Half-open window in samples of the source timeline.
        pad
            Zero-fill the parts of the window outside ``[0, rec.num_samples)`` instead
            of raising :class:`WindowError`.

        Returns
        -------
        numpy.ndarray
            float32, shape ``(num_channels, num_samples)``, values as decoded (nominally
            in [-1, 1]); bit-identical to the same slice of a full decode.

        Examples
        --------
        >>> store = AACStore.open("corpus.zarr")                    # doctest: +SKIP
        >>> store.read("birds/0042.flac", 16_000, 32_000).shape     # doctest: +SKIP
        (1, 32000)
        """
        plan = self._plan(rec, start, num_samples, pad)
        if plan.num_frames:
            self._decode(plan, self._bytes.read(plan.byte_start, plan.byte_stop))
        return plan.out

    def read_many(self, requests: Iterable[tuple[RecordingRef, int, int]], *, pad: bool = False) -> list[np.ndarray]:
        """:meth:`read` for each ``(rec, start, num_samples)``, in order.

        The byte ranges of all windows are fetched first, concurrently where the store is
        remote (one request per window in flight together), then decoded in order.
        """
        plans = [self._plan(rec, start, n, pad) for rec, start, n in requests]
        todo = [p for p in plans if p.num_frames]
        for plan, data in zip(todo, self._bytes.read_many([(p.byte_start, p.byte_stop) for p in todo]), strict=True):
            self._decode(plan, data)
        return [p.out for p in plans]

    def _plan(self, rec: RecordingRef, start: int, num_samples: int, pad: bool) -> _Plan:
        """Validate a window, allocate its output and find the frames and bytes it needs."""
        i = self.index_of(rec)
        start = operator.index(start)
        num_samples = operator.index(num_samples)
        if num_samples < 0:
            raise ValueError(f"num_samples must be >= 0; got {num_samples}")
        t = self._table
        length = int(t["num_samples"][i])
        channels = int(t["num_channels"][i])
        stop = start + num_samples
        if not pad and (start < 0 or stop > length):
            raise WindowError(
                f"recording {self._ids[i]!r} has {length} samples; window [{start}, {stop}) "
                f"{'starts before 0' if start < 0 else 'ends past it'} (pass pad=True to zero-fill)"
            )
        lo, hi = max(start, 0), min(stop, length)
        if lo == start and hi == stop:
            out = np.empty((channels, num_samples), dtype=np.float32)
        else:
            out = np.zeros((channels, num_samples), dtype=np.float32)
        if hi <= lo:
            return _Plan(i, out, out, 0, 0, 0, 0, 0, 0, _NO_FRAMES, _NO_CRCS)
        delay = int(t["encoder_delay"][i])
        d0, d1 = lo + delay, hi + delay
        k0, k1 = d0 // SAMPLES_PER_FRAME, (d1 - 1) // SAMPLES_PER_FRAME
        # One pre-roll frame: the MDCT overlaps neighbours, so frame k needs k-1 decoded first.
        kp = max(k0 - 1, 0)
        offsets, crcs = self._frame_offsets(i)
        if k1 + 1 >= offsets.size:
            raise CorruptDataError(
                f"{self._where}: recording {self._ids[i]!r} needs frame {k1} but has {offsets.size - 1} frames"
            )
        return _Plan(
            i, out, out[:, lo - start : hi - start], kp, k0, k1, d0 - k0 * SAMPLES_PER_FRAME,
            int(offsets[kp]), int(offsets[k1 + 1]), offsets, crcs,
        )  # fmt: skip

    def _decode(self, plan: _Plan, data: bytes) -> None:
        i, kp, k0, k1 = plan.recording, plan.preroll_frame, plan.first_frame, plan.last_frame
        t = self._table
        self._check_frames(i, data, plan.offsets, plan.crcs, kp, k1)
        # A window that needs frame 0's own output (no priming: raw ADTS passthrough) needs a
        # fresh decoder, as flush_buffers() leaves the first frame slightly different; so does
        # a stream with PNS, whose noise depends on decoder state.
        if k0 == 0 or int(t["flags"][i]) & _layout.FLAG_FRESH_DECODER:
            ctx = self._decoders.fresh()
        else:
            ctx = self._decoders.get((int(t["sample_rate"][i]), int(t["num_channels"][i])))
        decode_into(
            ctx,
            data,
            num_frames=plan.num_frames,
            preroll=k0 - kp,
            skip=plan.skip,
            out=plan.target,
            what=f"{self._where}: recording {self._ids[i]!r} frames {kp}..{k1}",
        )

    def _check_frames(self, i: int, data: bytes, offsets: np.ndarray, crcs: np.ndarray, first: int, last: int) -> None:
        """Compare frames ``first..last`` (in ``data``) with their stored CRC-32s."""
        bounds = offsets[first : last + 2] - int(offsets[first])
        bad = _frames_failing_crc(data, bounds, crcs[first : last + 1], stop_at_first=True)
        if bad:
            k, got = bad[0]
            raise CorruptDataError(
                f"{self._where}: recording {self._ids[i]!r} frame {first + k} is damaged (CRC-32 {got:08x}, "
                f"stored {int(crcs[first + k]):08x}); run `aacdata verify {self._where}`"
            )

    def _frame_offsets(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """Absolute byte offsets of recording i's frames plus its end (int64 ``(N + 1,)``) and
        the frames' stored CRC-32s (uint32 ``(N,)``)."""
        cached = self._offsets.get(i)
        if cached is not None:
            self._offsets.move_to_end(i)
            self.index_cache_hits += 1
            return cached
        self.index_cache_misses += 1
        frame_start = int(self._table["frame_start"][i])
        nf = int(self._table["num_frames"][i])
        rows = self._index_chunks.rows(frame_start, frame_start + nf).astype(np.int64)
        # A copy: a slice would keep its whole decoded chunk alive in the cache entry.
        crcs = np.array(self._crc_chunks.rows(frame_start, frame_start + nf), dtype=np.uint32, copy=True)
        byte_start = int(self._table["byte_start"][i])
        offsets = np.empty(nf + 1, dtype=np.int64)
        offsets[:nf] = rows[:, 0]
        offsets[nf] = rows[-1, 0] + rows[-1, 1] if nf else byte_start
        if nf and (
            rows[0, 0] != byte_start
            or np.any(offsets[1:] != rows[:, 0] + rows[:, 1])
            or np.any(rows[:, 2] != np.arange(nf, dtype=np.int64) * SAMPLES_PER_FRAME)
            or offsets[nf] != byte_start + int(self._table["num_bytes"][i])
        ):
            raise CorruptDataError(
                f"{self._where}: index rows of recording {self._ids[i]!r} are not contiguous frames "
                f"of its {int(self._table['num_bytes'][i])} bytes; run `aacdata verify {self._where}`"
            )
        entry = (offsets, crcs)
        self._offsets[i] = entry
        self._offsets_bytes += offsets.nbytes + crcs.nbytes + _ENTRY_OVERHEAD
        while self._offsets_bytes > self.index_cache_bytes and len(self._offsets) > 1:
            _, (old, old_crcs) = self._offsets.popitem(last=False)
            self._offsets_bytes -= old.nbytes + old_crcs.nbytes + _ENTRY_OVERHEAD
        return entry

    def frame_index(self, rec: RecordingRef) -> np.ndarray:
        """The stored index rows of a recording: uint64 ``(num_frames, 3)``,
        columns ``[byte_offset, frame_size, sample_pos]`` (offsets into ``/adts``)."""
        i = self.index_of(rec)
        start = int(self._table["frame_start"][i])
        count = int(self._table["num_frames"][i])
        return np.asarray(self._index[start : start + count], dtype=np.uint64).reshape(count, 3)

    def adts_bytes(self, rec: RecordingRef) -> bytes:
        """The recording's stored bytes: a stand-alone ADTS stream any AAC decoder plays."""
        i = self.index_of(rec)
        start = int(self._table["byte_start"][i])
        return self._bytes.read(start, start + int(self._table["num_bytes"][i]))

    # ------------------------------------------------------------------ caches and stats

    def cache_info(self) -> dict[str, int]:
        """Counters of this process: index cache hits/misses/bytes, decoders, bytes read."""
        return {
            "index_cache_hits": self.index_cache_hits,
            "index_cache_misses": self.index_cache_misses,
            "index_cache_bytes": self._offsets_bytes,
            "index_cache_recordings": len(self._offsets),
            "decoders_created": self._decoders.decoders_created,
            "bytes_read": self._bytes.bytes_read,
        }

    def clear_caches(self) -> None:
        """Drop cached index rows and decoders, and close chunk files."""
        self._offsets.clear()
        self._offsets_bytes = 0
        self._index_chunks.clear()
        self._crc_chunks.clear()
        self._decoders.clear()
        self._bytes.close()

    def close(self) -> None:
        self.clear_caches()

    def __enter__(self) -> AACStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __getstate__(self) -> Any:
        raise TypeError(
            "an AACStore holds open files and decoders and is not pickled; pass its path "
            "(AACSegmentDataset does this for you)"
        )

    # ------------------------------------------------------------------ checking

    def verify(self, *, decode: bool = True, progress: Any = None) -> VerifyReport:
        """Check every committed recording: checksum of its bytes, index rows against the
        ADTS headers, and (``decode=True``) that every frame decodes.

        ``progress``, if given, is called with the number of recordings checked so far.
        """
        problems: list[tuple[str, str]] = []
        store_problems = [*self._table_problems]
        try:
            store_problems += self._column_problems(("source", "metadata"))
        except CorruptDataError as e:
            store_problems.append(str(e))
        for i in range(len(self)):
            rid = self._ids[i]
            try:
                problems.extend((rid, reason) for reason in self._verify_one(i, decode))
            except AACDataError as e:
                problems.append((rid, str(e)))
            if progress is not None:
                progress(i + 1)
        return VerifyReport(num_recordings=len(self), problems=tuple(problems), store_problems=tuple(store_problems))

    def _verify_one(self, i: int, decode: bool) -> list[str]:
        t = self._table
        reasons = []
        data = self.adts_bytes(i)
        crc = zlib.crc32(data)
        if crc != int(t["crc32"][i]):
            reasons.append(f"checksum mismatch: stored bytes have crc32 {crc:08x}, table says {int(t['crc32'][i]):08x}")
        rows = self.frame_index(i).astype(np.int64)
        try:
            frames = parse_adts(data)
        except CorruptDataError as e:
            return [*reasons, f"ADTS stream damaged: {e}"]
        byte_start = int(t["byte_start"][i])
        nf = int(t["num_frames"][i])
        if len(frames) != nf:
            reasons.append(f"headers show {len(frames)} frames, table says {nf}")
        elif not (
            np.array_equal(rows[:, 0], frames.offsets + byte_start)
            and np.array_equal(rows[:, 1], frames.sizes)
            and np.array_equal(rows[:, 2], np.arange(nf, dtype=np.int64) * SAMPLES_PER_FRAME)
        ):
            bad = int(np.flatnonzero(
                (rows[:, 0] != frames.offsets + byte_start) | (rows[:, 1] != frames.sizes)
                | (rows[:, 2] != np.arange(nf) * SAMPLES_PER_FRAME)
            )[0])  # fmt: skip
            reasons.append(f"index row {bad} disagrees with the ADTS headers")
        if len(frames) == nf and nf:
            start = int(t["frame_start"][i])
            stored = np.asarray(self._frame_crc[start : start + nf], dtype=np.uint32)
            bounds = np.append(frames.offsets, frames.offsets[-1] + frames.sizes[-1])
            bad_frames = [k for k, _ in _frames_failing_crc(data, bounds, stored)]
            if bad_frames:
                shown = ", ".join(map(str, bad_frames[:5])) + (", ..." if len(bad_frames) > 5 else "")
                reasons.append(f"{len(bad_frames)} frame(s) fail their CRC-32: {shown}")
        if frames.sample_rate != int(t["sample_rate"][i]):
            reasons.append(f"headers say {frames.sample_rate} Hz, table says {int(t['sample_rate'][i])} Hz")
        needed = int(t["encoder_delay"][i]) + int(t["num_samples"][i])
        if nf * SAMPLES_PER_FRAME < needed:
            reasons.append(f"{nf} frames cannot hold delay + num_samples = {needed} samples")
        if decode and not reasons:
            reasons.extend(self._verify_decode(i, data, frames.offsets, frames.sizes))
        return reasons

    def _verify_decode(self, i: int, data: bytes, offsets: np.ndarray, sizes: np.ndarray) -> list[str]:
        import av

        ctx = self._decoders.fresh()
        channels = int(self._table["num_channels"][i])
        for a in range(0, offsets.size, _VERIFY_BATCH_FRAMES):
            b = min(a + _VERIFY_BATCH_FRAMES, offsets.size)
            chunk = data[int(offsets[a]) : int(offsets[b - 1] + sizes[b - 1])]
            try:
                decoded = ctx.decode(av.Packet(chunk))
            except av.FFmpegError as e:
                return [f"frames {a}..{b - 1} do not decode ({e})"]
            if len(decoded) != b - a or any(
                f.samples != SAMPLES_PER_FRAME or f.layout.nb_channels != channels for f in decoded
            ):
                return [f"frames {a}..{b - 1} decode to {len(decoded)} frames, not {b - a} of {channels} channels"]
        return []

    # ------------------------------------------------------------------ summary

    def summary(self) -> dict[str, Any]:
        """Totals for ``aacdata info``: recordings, hours, bytes, kbit/s, index overhead."""
        t = self._table
        seconds = float(np.sum(t["num_samples"] / np.maximum(t["sample_rate"], 1))) if len(self) else 0.0
        disk = _disk_usage(self._where)
        payload = self.counts.num_bytes
        return {
            "path": self._where,
            "format_version": _layout.FORMAT_VERSION,
            "num_recordings": len(self),
            "num_frames": self.counts.num_frames,
            "hours": seconds / 3600,
            "payload_bytes": payload,
            "kbit_per_s": (payload * 8 / seconds / 1000) if seconds else 0.0,
            "disk_bytes": disk.get("total"),
            "index_disk_bytes": disk.get(_layout.INDEX),
            "index_overhead": (disk[_layout.INDEX] / payload) if payload and _layout.INDEX in disk else None,
            "disk_over_payload": (disk["total"] / payload) if payload and "total" in disk else None,
            "sample_rates": sorted({int(x) for x in t["sample_rate"]}),
            "channel_counts": sorted({int(x) for x in t["num_channels"]}),
        }


def _frames_failing_crc(
    data: bytes, bounds: np.ndarray, expected: np.ndarray, *, stop_at_first: bool = False
) -> list[tuple[int, int]]:
    """``(k, crc)`` of the frames ``data[bounds[k]:bounds[k + 1]]`` whose CRC-32 is not
    ``expected[k]``."""
    view = memoryview(data)
    edges = bounds.tolist()
    bad = []
    for k, want in enumerate(expected.tolist()):
        got = zlib.crc32(view[edges[k] : edges[k + 1]])
        if got != want:
            bad.append((k, got))
            if stop_at_first:
                break
    return bad


class _ChunkCache:
    """The most recently used chunks of a 1-D or 2-D array, read whole and kept decoded.

    Reading a few index rows through zarr decompresses their whole chunk anyway (~0.5 ms
    for 16384 rows); keeping the chunk serves the neighbouring recordings for free.
    """

    def __init__(self, array: zarr.Array[Any], committed: int, max_chunks: int = 32) -> None:
        self._array = array
        self._rows = int(array.chunks[0])
        self._committed = committed
        self._max = max_chunks
        self._chunks: OrderedDict[int, np.ndarray] = OrderedDict()

    def rows(self, start: int, stop: int) -> np.ndarray:
        if stop <= start:
            return np.asarray(self._array[0:0])
        first, last = start // self._rows, (stop - 1) // self._rows
        parts = []
        for ci in range(first, last + 1):
            chunk = self._chunks.get(ci)
            if chunk is None:
                end = min((ci + 1) * self._rows, self._committed)
                chunk = self._chunks[ci] = np.asarray(self._array[ci * self._rows : end])
                if len(self._chunks) > self._max:
                    self._chunks.popitem(last=False)
            else:
                self._chunks.move_to_end(ci)
            a = max(start, ci * self._rows) - ci * self._rows
            b = min(stop, (ci + 1) * self._rows) - ci * self._rows
            parts.append(chunk[a:b])
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    def clear(self) -> None:
        self._chunks.clear()


def _strings(column: zarr.Array[Any], n: int) -> list[str]:
    """The first n entries of a string column as Python strings."""
    return [str(x) for x in np.asarray(column[:n]).reshape(-1)] if n else []


def _disk_usage(root: str) -> dict[str, int]:
    if not os.path.isdir(root):
        return {}
    sizes: dict[str, int] = {}
    total = 0
    for dirpath, _dirs, files in os.walk(root):
        for f in files:
            size = os.path.getsize(os.path.join(dirpath, f))
            total += size
            top = Path(os.path.relpath(dirpath, root)).parts
            if top:
                sizes[top[0]] = sizes.get(top[0], 0) + size
    sizes["total"] = total
    return sizes


def _open_group(where: str, mode: Literal["r", "r+"]) -> zarr.Group:
    """Open the Zarr group at a local path, with errors that say what is there instead."""
    if not os.path.isdir(where):
        raise StoreFormatError(f"{where!r} is a file, not a store directory")
    meta_path = os.path.join(where, "zarr.json")
    if not os.path.exists(meta_path):
        hint = " (a Zarr v2 store?)" if os.path.exists(os.path.join(where, ".zgroup")) else ""
        raise StoreFormatError(f"{where!r} is a directory without zarr.json{hint}, not an aacdata store")
    try:
        with open(meta_path, "rb") as f:
            node_type = json.load(f).get("node_type")
    except (OSError, ValueError, AttributeError) as e:
        raise StoreFormatError(f"{where!r}: its zarr.json cannot be read ({e})") from None
    if node_type != "group":
        raise StoreFormatError(f"{where!r} is a Zarr {node_type or 'node'}, not an aacdata store (a group)")
    try:
        return zarr.open_group(zarr.storage.LocalStore(where, read_only=mode == "r"), mode=mode)
    except (GroupNotFoundError, FileNotFoundError, ValueError, KeyError, TypeError) as e:
        raise StoreFormatError(f"{where!r}: the Zarr group cannot be opened ({e})") from None


def _open_remote_group(zstore: Any, where: str, mode: str) -> zarr.Group:
    # An outage is a RemoteStoreError (from _remote.RemoteStore, or here for other Store
    # objects), never "no store here": a caller may create a store where none is found.
    try:
        exists = sync(zstore.exists("zarr.json"))
    except AACDataError:
        raise
    except Exception as e:  # any client error: name the store and the cause
        raise _remote.remote_error(where, "checking", "zarr.json", e) from e
    if not exists:
        if mode == "r":
            raise StoreNotFoundError(f"no store at {where!r} (create one with `aacdata import SOURCES -o {where}`)")
        return _layout.create_layout(zstore)
    try:
        group = zarr.open_group(zstore, mode="r" if mode == "r" else "r+")
    except (GroupNotFoundError, FileNotFoundError, ValueError, KeyError, TypeError) as e:
        raise StoreFormatError(f"{where!r}: the Zarr group cannot be opened ({e})") from None
    return group


def _remote_exists(zstore: Any, where: str) -> bool:
    try:
        return bool(sync(zstore.exists("zarr.json")))
    except Exception:  # noqa: BLE001 - opening the group reports the client error with its cause
        return True


def _open_or_create(where: str) -> zarr.Group:
    if os.path.exists(where) and not os.path.isdir(where):
        raise StoreFormatError(f"{where!r} is a file, not a store directory; choose another output path")
    store = zarr.storage.LocalStore(where)
    if os.path.exists(os.path.join(where, "zarr.json")):
        group = _open_group(where, "r+")
        _layout.parse_root_attributes(group.attrs.asdict(), where)
        return group
    if os.path.isdir(where) and set(os.listdir(where)) - {_lock.LOCK_FILE}:
        raise StoreFormatError(f"{where!r} is a non-empty directory without zarr.json; choose a new path for the store")
    return _layout.create_layout(store)
