"""The single writer of a store: append recordings, then commit by moving the counts.

Order of writes per commit: ``/adts`` bytes and ``/index`` rows past the committed end,
then the recording rows, and last the root attribute with the new counts. Zarr's local
store replaces each file atomically, so a process killed at any point leaves the last
committed state readable; what lies past the counts is overwritten by the next import.
"""

from __future__ import annotations

import errno
import json
import os
import socket
import time
import zlib
from dataclasses import dataclass
from typing import IO, Any

import numpy as np
import zarr
from zarr.core.buffer import default_buffer_prototype
from zarr.core.sync import sync

from . import _layout
from ._adts import SAMPLES_PER_FRAME
from ._transcode import EncodedRecording
from .errors import StoreLockedError, StoreWriteError
from .store import AACStore

LOCK_FILE = "aacdata.lock"


@dataclass(frozen=True, slots=True)
class PendingRecording:
    id: str
    encoded: EncodedRecording
    source: dict[str, Any]
    metadata: dict[str, Any]


class StoreWriter:
    """Appends recordings to a store opened with mode ``"a"``; holds its write lock."""

    def __init__(self, store: AACStore) -> None:
        if store.mode != "a":
            raise ValueError("open the store with mode='a' to import into it")
        self._store = store
        zstore = store.zarr_store
        if isinstance(zstore, zarr.storage.LocalStore):
            self._lock: _Lock | None = _FileLock(str(zstore.root))
        else:
            self._lock = _ObjectLock(zstore, store.path)
        self._counts = store.counts
        self._column_crc32 = dict(store._column_crc32)
        self._pending: list[PendingRecording] = []
        self._pending_bytes = 0
        self.committed_ids: dict[str, str] = {}  # id -> source checksum, committed so far
        metas = [json.loads(s) if s else {} for s in store.text_column("source")]
        for rid, meta in zip(store.ids, metas, strict=True):
            self.committed_ids[rid] = str(meta.get("checksum", ""))

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
            rows[row : row + e.num_frames, 2] = np.arange(e.num_frames, dtype=np.uint64) * SAMPLES_PER_FRAME
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
                ("flags", _layout.FLAG_FRESH_DECODER if e.random_noise else 0),
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
        group = self._store._group
        arrays = _layout.open_arrays(group, self._store.path)
        adts_arr, index_arr, columns = arrays.adts, arrays.index, arrays.columns
        adts_arr.resize((new.num_bytes,))
        adts_arr[base.num_bytes : new.num_bytes] = np.frombuffer(payload, dtype=np.uint8)
        index_arr.resize((new.num_frames, 3))
        index_arr[base.num_frames : new.num_frames] = rows
        view = memoryview(payload)
        starts = (rows[:, 0] - base.num_bytes).tolist()
        crcs = np.fromiter(
            (zlib.crc32(view[a : a + n]) for a, n in zip(starts, rows[:, 1].tolist(), strict=True)),
            dtype=np.uint32,
            count=rows.shape[0],
        )
        arrays.frame_crc.resize((new.num_frames,))
        arrays.frame_crc[base.num_frames : new.num_frames] = crcs
        for name, column in columns.items():
            column.resize((new.num_recordings,))
            dtype = _layout.NUMERIC_COLUMNS.get(name)
            data = np.asarray(values[name], dtype=dtype) if dtype else np.asarray(values[name], dtype=object)
            column[base.num_recordings : new.num_recordings] = data
        column_crcs = {n: _layout.column_crc32(n, values[n], self._column_crc32.get(n, 0)) for n in values}
        # The commit point: readers see the new recordings only from here on.
        group.attrs[_layout.ATTRIBUTE] = _layout.root_attributes(new, column_crcs)
        self._column_crc32 = column_crcs

    def close(self) -> None:
        if self._lock is not None:
            self._lock.close()
            self._lock = None


class _Lock:
    def close(self) -> None:
        raise NotImplementedError


class _FileLock(_Lock):
    """An advisory ``flock`` on ``aacdata.lock``: released by the OS when the process dies."""

    def __init__(self, path: str) -> None:
        self._file: IO[bytes] | None = None
        try:
            import fcntl
        except ImportError:  # pragma: no cover - Windows: no advisory locks
            return
        f = open(os.path.join(path, LOCK_FILE), "ab")  # noqa: SIM115 - held for the writer's lifetime
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            f.close()
            if e.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                raise StoreLockedError(
                    f"store {path!r} is being written by another import; wait for it to finish"
                ) from None
            raise
        self._file = f

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


class _ObjectLock(_Lock):
    """An ``aacdata.lock`` object created only if absent (a conditional put) and deleted on
    close. A killed import leaves it behind: the error says how to remove it."""

    def __init__(self, zstore: Any, where: str) -> None:
        self._store: Any = None
        owner = json.dumps({"host": socket.gethostname(), "pid": os.getpid(), "time": time.time()}).encode()
        if sync(zstore.exists(LOCK_FILE)):
            raise StoreLockedError(
                f"store {where!r} is being written by another import (it holds {LOCK_FILE}); wait for it to "
                f"finish, or, if no import is running (one was killed), delete {where}/{LOCK_FILE}"
            )
        sync(zstore.set_if_not_exists(LOCK_FILE, default_buffer_prototype().buffer.from_bytes(owner)))
        held = sync(zstore.get(LOCK_FILE, default_buffer_prototype()))
        if held is None or held.to_bytes() != owner:
            raise StoreLockedError(f"store {where!r} was locked by another import at the same moment; try again")
        self._store = zstore

    def close(self) -> None:
        if self._store is not None:
            sync(self._store.delete(LOCK_FILE))
            self._store = None
