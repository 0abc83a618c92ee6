"""The single writer of a store: append recordings, then commit by moving the counts.

Order of writes per commit: ``/adts`` bytes and ``/index`` rows past the committed end,
then the recording rows, and last the root attribute with the new counts. Zarr's local
store replaces each file atomically, so a process killed at any point leaves the last
committed state readable; what lies past the counts is overwritten by the next import.

In S3 every write is fenced (:mod:`aacdata.store._fence`): once another import has taken the
store over, the bucket refuses this writer's writes, so a writer that paused past its
lease cannot overwrite what the other one committed.
"""

from __future__ import annotations

import errno
import json
import logging
import zlib
from dataclasses import dataclass
from typing import Any

import numpy as np
import zarr

from ..codecs._adts import SAMPLES_PER_FRAME, channel_config_of
from ..codecs._codec import CODEC_AAC_LC
from ..codecs._framerun import FrameRun
from ..errors import AACDataError, RemoteStoreError, StoreLockedError, StoreWriteError
from . import _fence, _layout, _lock
from ._lock import WriteLock
from ._store import AACStore

log = logging.getLogger("aacdata")


@dataclass(frozen=True, slots=True)
class PendingRecording:
    id: str
    encoded: FrameRun
    source: dict[str, Any]
    metadata: dict[str, Any]


def stored_recording(
    rid: str,
    data: bytes,
    frame_sizes: np.ndarray,
    *,
    num_samples: int,
    sample_rate: int,
    num_channels: int,
    encoder_delay: int,
    random_noise: bool,
    source: dict[str, Any],
    metadata: dict[str, Any],
    stream_sample_rate: int = 0,
    bandwidth_hz: int = 0,
    codec: int = CODEC_AAC_LC,
    frame_samples: int = SAMPLES_PER_FRAME,
    bits_per_sample: int = 0,
) -> PendingRecording:
    """A recording taken from a store, to append to another as it is (repair, merge): its
    stored ADTS bytes, frame sizes and table values. Nothing is re-encoded; the writer
    derives the rest (offsets, checksums, flags, bit rate) from them as for an import."""
    encoded = FrameRun(
        adts=data,
        frame_sizes=frame_sizes,
        num_samples=num_samples,
        sample_rate=sample_rate,
        num_channels=num_channels,
        encoder_delay=encoder_delay,
        random_noise=random_noise,
        stream_sample_rate=stream_sample_rate,
        bandwidth_hz=bandwidth_hz,
        codec=codec,
        frame_samples=frame_samples,
        bits_per_sample=bits_per_sample,
    )
    return PendingRecording(rid, encoded, source, metadata)


class StoreWriter:
    """Appends recordings to a store opened with mode ``"a"``; holds its write lock.

    Everything the writer needs of the store (counts, checksums, committed ids) is read
    after the lock is taken, and the counts are read again before every commit: a store
    object opened earlier may show a state that another import has since moved past.
    """

    def __init__(self, store: AACStore, *, lock: WriteLock | None = None, break_lock: bool = False) -> None:
        if store.mode != "a":
            raise ValueError("open the store with mode='a' to import into it")
        self._own_lock = lock is None
        self._lock: WriteLock | None = (
            lock if lock is not None else _lock.acquire(store.zarr_store, store.path, break_lock=break_lock)
        )
        self._fence: _fence.Fence | None = None
        try:
            # Object storage: take the store over before reading it (every later write is fenced).
            self._fence = _fence.Fence.begin(store.zarr_store, store.path)
            self._store = store.reopen()
            group = self._open_group()
            self._counts = self._store.counts
            self._column_crc32 = _layout.stored_column_crc32(group.attrs.asdict())
            self.committed_ids = _committed_checksums(self._store)
        except BaseException:
            self.close()
            raise
        self._pending: list[PendingRecording] = []
        self._pending_bytes = 0

    @property
    def lock(self) -> WriteLock:
        """The write lock this writer holds (for a rewrite that follows its commits)."""
        assert self._lock is not None, "the writer is closed"
        return self._lock

    @property
    def counts(self) -> _layout.Counts:
        """The committed counts as of the last commit."""
        return self._counts

    def _open_group(self) -> zarr.Group:
        return zarr.open_group(self._store.zarr_store if self._fence is None else self._fence.store, mode="r+")

    @property
    def pending_bytes(self) -> int:
        return self._pending_bytes

    def __len__(self) -> int:
        return len(self._pending)

    def add(self, rec: PendingRecording) -> None:
        if rec.id in self.committed_ids or any(p.id == rec.id for p in self._pending):
            raise ValueError(f"recording id {rec.id!r} is already in the store")
        self._pending.append(rec)
        self._pending_bytes += len(rec.encoded.adts)

    def commit(self) -> None:
        """Write the pending recordings and move the committed counts past them."""
        if not self._pending:
            return
        base = self._counts
        payload = b"".join(p.encoded.adts for p in self._pending)
        frame_sizes = np.concatenate([p.encoded.frame_sizes for p in self._pending]).astype(np.uint64)
        n_frames = frame_sizes.size
        rows = np.empty((n_frames, 3), dtype=np.uint64)
        rows[:, 1] = frame_sizes
        rows[:, 0] = base.num_bytes + np.concatenate(([0], np.cumsum(frame_sizes[:-1], dtype=np.uint64)))
        values: dict[str, list[Any]] = {name: [] for name in (*_layout.NUMERIC_COLUMNS, *_layout.TEXT_COLUMNS)}
        frame_pos, byte_pos, row = base.num_frames, base.num_bytes, 0
        for p in self._pending:
            e = p.encoded
            rows[row : row + e.num_frames, 2] = np.arange(e.num_frames, dtype=np.uint64) * np.uint64(e.frame_samples)
            row += e.num_frames
            for name, value in (
                ("frame_start", frame_pos),
                ("num_frames", e.num_frames),
                ("byte_start", byte_pos),
                ("num_bytes", len(e.adts)),
                ("num_samples", e.num_samples),
                ("sample_rate", e.sample_rate),
                ("num_channels", e.num_channels),
                ("encoder_delay", e.encoder_delay),
                ("bitrate", e.bitrate),
                ("crc32", zlib.crc32(e.adts)),
                ("flags", _flags(e)),
                ("bandwidth_hz", e.bandwidth_hz),
                ("stream_sample_rate", e.frames_rate),
                ("codec", e.codec),
                ("frame_samples", e.frame_samples),
                ("bits_per_sample", e.bits_per_sample),
                ("id", p.id),
                ("source", json.dumps(p.source, sort_keys=True)),
                ("metadata", json.dumps(p.metadata, sort_keys=True) if p.metadata else ""),
            ):
                values[name].append(value)
            frame_pos += e.num_frames
            byte_pos += len(e.adts)
        new = _layout.Counts(base.num_recordings + len(self._pending), frame_pos, byte_pos)
        try:
            self._write(base, new, payload, rows, values)
        except (RemoteStoreError, StoreLockedError):
            raise  # an outage or a lost lock, not a write failure of this store
        except OSError as e:
            reason = "the disk is full" if e.errno in (errno.ENOSPC, errno.EDQUOT) else (e.strerror or str(e))
            raise StoreWriteError(
                f"writing to {self._store.path!r} failed: {reason}. The store keeps its last commit "
                f"({base.num_recordings} recordings); fix the cause and run the same import again to finish"
            ) from e
        for p in self._pending:
            self.committed_ids[p.id] = str(p.source.get("checksum", ""))
        self._counts = new
        self._pending = []
        self._pending_bytes = 0

    def _write(
        self, base: _layout.Counts, new: _layout.Counts, payload: bytes, rows: np.ndarray, values: dict[str, list[Any]]
    ) -> None:
        assert self._lock is not None, "the writer is closed"
        self._lock.check()
        group = self._open_group()
        now = _layout.parse_root_attributes(group.attrs.asdict(), self._store.path)
        if now != base:
            raise StoreLockedError(
                f"store {self._store.path!r} was changed by another writer while this import held its lock "
                f"(committed counts {now}, expected {base}; was the lock broken?). Nothing more is written; "
                "run the import again to add what is missing"
            )
        version = _layout.format_version(group.attrs.asdict())
        arrays = _layout.open_arrays(group, self._store.path, version=version)
        columns = dict(arrays.columns)
        crc_start = dict(self._column_crc32)
        view = memoryview(payload)
        starts = (rows[:, 0] - base.num_bytes).tolist()
        crcs = np.fromiter(
            (zlib.crc32(view[a : a + n]) for a, n in zip(starts, rows[:, 1].tolist(), strict=True)),
            dtype=np.uint32,
            count=rows.shape[0],
        )
        # (array, first row written, rows written): bytes, index rows, CRCs, recording rows.
        writes: list[tuple[zarr.Array[Any], int, np.ndarray]] = [
            (arrays.adts, base.num_bytes, np.frombuffer(payload, dtype=np.uint8)),
            (arrays.index, base.num_frames, rows),
            (arrays.frame_crc, base.num_frames, crcs),
        ]
        if version == 1:
            # The first commit to a store of aacdata 0.1 adds the columns of version 2,
            # holding for its rows what version 1 implied; the commit moves it to version 2.
            implied = {name: self._store.column(name) for name in _layout.V2_COLUMNS}
            crc_start.update({name: _layout.column_crc32(name, v) for name, v in implied.items()})
            if self._fence is None:
                columns.update(_layout.add_v2_columns(group, implied))
            else:
                for name, kind in _layout.V2_COLUMNS.items():
                    column = _fence_column(group, name, kind)
                    data = np.concatenate([np.asarray(implied[name], dtype=kind), np.asarray(values[name], kind)])
                    writes.append((column, 0, data))
        for name, column in columns.items():
            dtype = _layout.NUMERIC_COLUMNS.get(name)
            data = np.asarray(values[name], dtype=dtype) if dtype else np.asarray(values[name], dtype=object)
            writes.append((column, base.num_recordings, data))
        if self._fence is None:
            for array, start, data in writes:
                array.resize((start + data.shape[0], *array.shape[1:]))
                array[start : start + data.shape[0]] = data
        else:
            self._fenced_writes(writes)
        column_crcs = {n: _layout.column_crc32(n, values[n], crc_start.get(n, 0)) for n in values}
        # The commit point: readers see the new recordings only from here on.
        if self._fence is None:
            group.attrs[_layout.ATTRIBUTE] = _layout.root_attributes(new, column_crcs)
        else:
            attributes = {_layout.ATTRIBUTE: _layout.root_attributes(new, column_crcs)}
            group.update_attributes({**attributes, _fence.FENCE_ATTRIBUTE: self._fence.marker()})
        self._column_crc32 = column_crcs

    def _fenced_writes(self, writes: list[tuple[zarr.Array[Any], int, np.ndarray]]) -> None:
        """The writes of a commit to object storage, each refused by the store once another
        writer has taken over: the ETags of every object written are read first, and each
        array gets random rows past its new end, so that its last chunk and its zarr.json
        differ from any earlier version."""
        assert self._fence is not None
        padded = [
            (array, start, np.concatenate([data, _fence.nonce_rows(array).astype(data.dtype)]))
            for array, start, data in writes
        ]
        self._fence.prepare(
            key for array, start, data in padded for key in _fence.chunk_keys(array, start, start + data.shape[0])
        )
        for array, start, data in padded:
            resized = self._fence.resize(array, start + data.shape[0])
            resized[start : start + data.shape[0]] = data

    def close(self) -> None:
        store = getattr(self, "_store", None)
        if store is not None:
            store.close()
        lock, self._lock = self._lock, None
        if lock is not None and self._own_lock:
            lock.release()


def _fence_column(group: zarr.Group, name: str, dtype: str) -> zarr.Array[Any]:
    """A version-2 column of a version-1 store in object storage, created where missing
    (fenced: never over an existing one; one left by an interrupted upgrade is reused, and
    its rows rewritten)."""
    rec = group[_layout.RECORDINGS]
    assert isinstance(rec, zarr.Group)
    try:
        return rec.create_array(name, shape=(0,), dtype=dtype, chunks=(_layout.RECORDING_CHUNK_ROWS,), fill_value=0)
    except zarr.errors.ContainsArrayError:
        column = rec[name]
        assert isinstance(column, zarr.Array)
        return column


def _flags(e: FrameRun) -> int:
    flags = _layout.FLAG_FRESH_DECODER if e.random_noise else 0
    if e.codec == CODEC_AAC_LC and e.adts and channel_config_of(e.adts) == 0:
        flags |= _layout.FLAG_PCE
    return flags


def _committed_checksums(store: AACStore) -> dict[str, str]:
    """Recording id -> source checksum of every committed recording; ``""`` where the
    checksum cannot be read (a damaged ``source`` column or row)."""
    try:
        texts: list[str] = store.text_column("source")
    except AACDataError as e:
        log.warning(
            "%s: the source column cannot be read (%s); committed ids are not compared by checksum", store.path, e
        )
        texts = [""] * len(store)
    out: dict[str, str] = {}
    for rid, text in zip(store.ids, texts, strict=True):
        try:
            meta = json.loads(text) if text else {}
        except ValueError:
            meta = {}
        checksum = meta.get("checksum") if isinstance(meta, dict) else None
        out[rid] = checksum if isinstance(checksum, str) else ""
    return out
