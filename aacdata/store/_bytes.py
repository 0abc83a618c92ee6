"""Byte ranges of ``/adts``: frame range -> byte range -> bytes.

For a local store the chunk files are read directly with ``os.pread``: ``/adts`` has no
codec but ``bytes``, so chunk ``i`` holds bytes ``[i * chunk, (i + 1) * chunk)`` as they
are, in ``adts/c/<i>``. That costs ~10 µs per window against ~500 µs for zarr slicing.
Other stores are read through their byte-range interface, one request per chunk touched.

A committed chunk that is absent or short is damage (:class:`CorruptDataError`), and so is
a local chunk file that is not a regular file (a FIFO, a device, a link out of the store:
see :func:`aacdata.store._chunks.open_chunk`), which is never opened for reading; a read takes
at most the window's bytes, whatever the file holds. An object store that cannot be
reached, or that is gone altogether, is an outage: its
:class:`~aacdata.store._remote.RemoteStore` raises :class:`~aacdata.errors.RemoteStoreError`
before a missing chunk gets here.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections import OrderedDict
from pathlib import Path
from typing import Any

import zarr
from zarr.abc.store import RangeByteRequest
from zarr.core.buffer import default_buffer_prototype
from zarr.core.sync import sync

from ..errors import CorruptDataError
from ._chunks import open_chunk


def _max_open_files() -> int:
    """Chunk files kept open per process: 512, or a quarter of the descriptor limit."""
    try:
        import resource

        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    except (ImportError, OSError, ValueError):  # pragma: no cover - no resource module
        return 64
    return 512 if soft == resource.RLIM_INFINITY else max(16, min(512, soft // 4))


_MAX_OPEN_FILES = _max_open_files()


class ByteReader:
    """Reads ``[start, stop)`` of a 1-D uint8 array stored without compression."""

    def __init__(self, array: zarr.Array[Any], where: str) -> None:
        self._chunk = int(array.chunks[0])
        self._where = where
        self._store = array.store
        self._prefix = array.path
        self._local_root = self._local_chunk_root(array)
        store = array.store
        self._real_root = os.path.realpath(store.root) if isinstance(store, zarr.storage.LocalStore) else ""
        self._fds: OrderedDict[int, int] = OrderedDict()
        self._pid = os.getpid()
        self.bytes_read = 0

    @staticmethod
    def _local_chunk_root(array: zarr.Array[Any]) -> Path | None:
        store = array.store
        if not isinstance(store, zarr.storage.LocalStore):
            return None
        meta = array.metadata
        encoding = getattr(meta, "chunk_key_encoding", None)
        codecs = [type(c).__name__ for c in getattr(meta, "codecs", ())]
        if getattr(encoding, "name", None) != "default" or getattr(encoding, "separator", None) != "/":
            return None
        if codecs != ["BytesCodec"]:
            return None
        return Path(store.root) / array.path / "c"

    def key(self, chunk_index: int) -> str:
        return f"{self._prefix}/c/{chunk_index}"

    def read(self, start: int, stop: int) -> bytes:
        """The bytes ``[start, stop)``; raises :class:`CorruptDataError` if a chunk is missing."""
        if stop <= start:
            return b""
        pieces = [self._read_chunk(ci, a, b) for ci, a, b in self._pieces(start, stop)]
        self.bytes_read += stop - start
        return pieces[0] if len(pieces) == 1 else b"".join(pieces)

    def read_many(self, ranges: list[tuple[int, int]]) -> list[bytes]:
        """Several byte ranges; a remote store gets all requests in flight at once."""
        if self._local_root is not None or len(ranges) <= 1:
            return [self.read(a, b) for a, b in ranges]
        pieces = [self._pieces(a, b) for a, b in ranges]
        flat = [p for ps in pieces for p in ps]

        async def fetch_all() -> list[Any]:
            return list(
                await asyncio.gather(
                    *(
                        self._store.get(self.key(ci), default_buffer_prototype(), RangeByteRequest(a, b))
                        for ci, a, b in flat
                    )
                )
            )

        buffers = iter(sync(fetch_all()))
        out = []
        for ps in pieces:
            parts = [self._checked(next(buffers), ci, a, b) for ci, a, b in ps]
            out.append(parts[0] if len(parts) == 1 else b"".join(parts))
        self.bytes_read += sum(b - a for a, b in ranges)
        return out

    def _pieces(self, start: int, stop: int) -> list[tuple[int, int, int]]:
        """``(chunk, start, stop)`` within each chunk that ``[start, stop)`` touches."""
        if stop <= start:
            return []
        first, last = start // self._chunk, (stop - 1) // self._chunk
        return [
            (ci, max(start, ci * self._chunk) - ci * self._chunk, min(stop, (ci + 1) * self._chunk) - ci * self._chunk)
            for ci in range(first, last + 1)
        ]

    def _checked(self, buf: Any, ci: int, a: int, b: int) -> bytes:
        """The bytes of a chunk read (a zarr Buffer, ``bytes``, or None for an absent object)."""
        if buf is None:
            raise CorruptDataError(
                f"{self._where}: chunk {self.key(ci)} is missing from the store although the store holds "
                f"committed bytes in it; the store is damaged (`aacdata verify {self._where}` lists what is lost)"
            )
        data = buf if isinstance(buf, bytes) else bytes(buf.to_bytes())
        if len(data) != b - a:
            raise CorruptDataError(
                f"{self._where}: chunk {self.key(ci)} is short: {len(data)} bytes at offset {a}, "
                f"expected {b - a} (a truncated chunk); the store is damaged"
            )
        return data

    def _read_chunk(self, ci: int, a: int, b: int) -> bytes:
        data: Any
        if self._local_root is not None:
            data = os.pread(self._fd(ci), b - a, a)
        else:
            data = sync(self._store.get(self.key(ci), default_buffer_prototype(), RangeByteRequest(a, b)))
        return self._checked(data, ci, a, b)

    def _fd(self, ci: int) -> int:
        if self._pid != os.getpid():
            # A forked child must not share its parent's file offsets or descriptors' fate.
            self._fds.clear()
            self._pid = os.getpid()
        fd = self._fds.get(ci)
        if fd is not None:
            self._fds.move_to_end(ci)
            return fd
        assert self._local_root is not None
        try:
            fd, _ = open_chunk(
                str(self._local_root / str(ci)), real_root=self._real_root, where=self._where, key=self.key(ci)
            )
        except FileNotFoundError:
            raise CorruptDataError(f"{self._where}: chunk file {self.key(ci)} is missing") from None
        self._fds[ci] = fd
        if len(self._fds) > _MAX_OPEN_FILES:
            _, old = self._fds.popitem(last=False)
            os.close(old)
        return fd

    def close(self) -> None:
        if self._pid == os.getpid():
            for fd in self._fds.values():
                os.close(fd)
        self._fds.clear()

    def __getstate__(self) -> Any:
        raise TypeError("ByteReader holds open files; it is re-created in each process, not pickled")

    def __del__(self) -> None:
        with contextlib.suppress(Exception):  # interpreter shutdown: nothing left to report to
            self.close()
