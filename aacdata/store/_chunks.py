"""Chunk files of a local store: opened only when they are regular files, read with a bound.

Two readers live here, both for local stores:

- :func:`open_chunk` and :class:`CheckedLocalStore`: a chunk file (or ``zarr.json``) is
  opened only after ``os.lstat``/``os.stat`` show a regular file, inside the store where
  it is a symbolic link; a FIFO, device or socket is :class:`CorruptDataError` without
  being opened for reading (opening a FIFO blocks until a writer comes; ``/dev/zero``
  reads forever). Reads never take more than the file's size, nor, for a whole chunk of
  a fixed-size dtype, more than such a chunk can hold once encoded.
  :class:`CheckedLocalStore` is zarr's ``LocalStore`` with these reads, for every read
  that goes through zarr, and a listing that shows such files (zarr's leaves them out).
- :class:`DirectChunks`: whole chunks of ``/index`` and ``/frame_crc``, read straight
  from their files. Reading one chunk through zarr costs ~0.2 ms of zarr's own work, more
  than the chunk's decompression (a 2048-row index chunk: ~10 µs of Blosc). For a local
  store whose arrays use the codecs aacdata writes (``bytes`` alone, or ``bytes`` then
  Blosc or Zstd) and the ``default`` ``/`` chunk key encoding, the chunk file is read and
  decompressed here; where a chunk file is missing or does not decode, or in any other
  case (a remote store, other codecs), the caller reads through zarr, which also says
  what is wrong.
"""

from __future__ import annotations

import asyncio
import json
import os
import stat
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from typing import Any

import numcodecs
import numpy as np
import zarr
from zarr.abc.store import ByteRequest, OffsetByteRequest, RangeByteRequest, SuffixByteRequest
from zarr.core.buffer import Buffer, BufferPrototype, default_buffer_prototype

from ..errors import CorruptDataError

__all__ = ["CheckedLocalStore", "DirectChunks", "checked", "encoded_bound", "open_chunk", "read_exactly"]

_KINDS = {
    stat.S_IFIFO: "a FIFO (named pipe)",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFSOCK: "a socket",
}
_MISSING = (FileNotFoundError, IsADirectoryError, NotADirectoryError)
"""What zarr's LocalStore reads as an absent key (then the fill value, or "no node")."""


def open_chunk(path: str, *, real_root: str, where: str, key: str) -> tuple[int, int]:
    """Open the file of ``key`` (at ``path``, in the store at ``where`` whose resolved
    directory is ``real_root``) for reading; returns the descriptor and the file's size.

    Raises
    ------
    FileNotFoundError, IsADirectoryError
        Nothing is there, or a directory (zarr's LocalStore reads both as an absent key).
    CorruptDataError
        A FIFO, device or socket, or a symbolic link that leads out of the store or to one
        of those; found by ``os.lstat``/``os.stat`` before the file is opened, and checked
        again on the open descriptor (a file swapped meanwhile).
    """
    info = os.lstat(path)
    if stat.S_ISLNK(info.st_mode):
        real = os.path.realpath(path)
        if real != real_root and not real.startswith(real_root.rstrip(os.sep) + os.sep):
            raise CorruptDataError(
                f"{where}: {key} is a symbolic link to {_target(path)!r}, outside the store; aacdata reads only "
                "regular files of the store (replace the link by a copy of the file it should be, or rebuild the "
                f"store with `aacdata repair {where} -o NEW_STORE`)"
            )
        info = os.stat(path)  # FileNotFoundError for a dangling link: an absent key
    if stat.S_ISDIR(info.st_mode):
        raise IsADirectoryError(21, "Is a directory", path)
    if not stat.S_ISREG(info.st_mode):
        raise _not_regular(info.st_mode, where, key)
    # O_NONBLOCK: should the file have been swapped for a FIFO since, the open does not block.
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NONBLOCK", 0))
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise _not_regular(info.st_mode, where, key)
    except BaseException:
        os.close(fd)
        raise
    return fd, int(info.st_size)


def read_exactly(fd: int, size: int, offset: int = 0) -> bytes:
    """``size`` bytes from ``offset`` (fewer where the file ends first); never more."""
    data = os.pread(fd, size, offset)
    if len(data) == size or not data:
        return data
    parts = [data]
    got = len(data)
    while got < size:
        more = os.pread(fd, size - got, offset + got)
        if not more:
            break
        parts.append(more)
        got += len(more)
    return b"".join(parts)


def encoded_bound(num_bytes: int, compressed: bool) -> int:
    """The most bytes a chunk of ``num_bytes`` decoded bytes takes once encoded: the same
    without a compressor, else with room for the compressors' worst case (Blosc adds 16
    bytes, Zstd ~1/256, gzip ~1/3000, a CRC-32C 4)."""
    return num_bytes + (num_bytes // 64 + 4096 if compressed else 0)


def checked(store: Any) -> Any:
    """``store`` read through :class:`CheckedLocalStore` where it is a plain local store
    (read-only); any other store as it is."""
    if type(store) is zarr.storage.LocalStore:
        return CheckedLocalStore(store.root, read_only=True)
    return store


class CheckedLocalStore(zarr.storage.LocalStore):
    """zarr's ``LocalStore``, reading only regular files of the store (see :func:`open_chunk`),
    each whole chunk at most as large as its array's chunks can be once encoded.

    A FIFO, device, socket or a link out of the store raises :class:`CorruptDataError`
    where zarr's own store would block or read without end.
    """

    def __init__(self, root: Any, *, read_only: bool = False) -> None:
        super().__init__(root, read_only=read_only)
        self._real_root = os.path.realpath(self.root)
        self._bounds: dict[str, int | None] = {}

    async def get(
        self, key: str, prototype: BufferPrototype | None = None, byte_range: ByteRequest | None = None
    ) -> Buffer | None:
        if not self._is_open:
            await self._open()
        try:
            return await asyncio.to_thread(self._read, key, prototype or default_buffer_prototype(), byte_range)
        except _MISSING:
            return None

    def get_sync(
        self, key: str, *, prototype: BufferPrototype | None = None, byte_range: ByteRequest | None = None
    ) -> Buffer | None:
        self._ensure_open_sync()
        try:
            return self._read(key, prototype or default_buffer_prototype(), byte_range)
        except _MISSING:
            return None

    async def get_partial_values(
        self, prototype: BufferPrototype, key_ranges: Iterable[tuple[str, ByteRequest | None]]
    ) -> list[Buffer | None]:
        return [await self.get(key, prototype, byte_range) for key, byte_range in key_ranges]

    async def list(self) -> AsyncIterator[str]:
        for key in self._walk(""):
            yield key

    async def list_prefix(self, prefix: str) -> AsyncIterator[str]:
        for key in self._walk(prefix.strip("/")):
            yield key

    def _walk(self, prefix: str) -> Iterator[str]:
        """Every key under ``prefix`` that is not a directory: zarr's own listing leaves out
        FIFOs, sockets, devices and links to them (a copy would silently lack them; here
        reading them raises) and the files in linked folders (read, but never copied)."""
        root = str(self.root)
        seen: set[str] = set()
        for folder, dirs, files in os.walk(os.path.join(root, prefix) if prefix else root, followlinks=True):
            real = os.path.realpath(folder)
            if real in seen:  # a link loop
                dirs.clear()
                continue
            seen.add(real)
            for name in sorted(files):
                yield os.path.relpath(os.path.join(folder, name), root).replace(os.sep, "/")

    def _read(self, key: str, prototype: BufferPrototype, byte_range: ByteRequest | None) -> Buffer:
        where = str(self.root)
        fd, size = open_chunk(os.path.join(where, key), real_root=self._real_root, where=where, key=key)
        try:
            if byte_range is None:
                self._check_size(key, size)
                start, stop = 0, size
            elif isinstance(byte_range, RangeByteRequest):
                start, stop = byte_range.start, min(byte_range.end, size)
            elif isinstance(byte_range, OffsetByteRequest):
                start, stop = byte_range.offset, size
            elif isinstance(byte_range, SuffixByteRequest):
                start, stop = max(0, size - byte_range.suffix), size
            else:
                raise TypeError(f"unexpected byte_range {byte_range!r}")
            data = read_exactly(fd, max(0, stop - start), start)
        finally:
            os.close(fd)
        return prototype.buffer.from_bytes(data)

    def _check_size(self, key: str, size: int) -> None:
        """Refuse a whole chunk larger than a chunk of its array can be once encoded."""
        cut = key.rfind("/c/")
        if cut < 0 and not key.startswith("c/"):
            return  # metadata (zarr.json), bounded by the file's size
        node = key[:cut] if cut >= 0 else ""
        if node not in self._bounds:
            self._bounds[node] = self._chunk_bound(node)
        bound = self._bounds[node]
        if bound is not None and size > bound:
            self._bounds[node] = bound = self._chunk_bound(node)  # its metadata may have changed
            if bound is not None and size > bound:
                raise CorruptDataError(
                    f"{self.root}/{node}: chunk file {key[len(node) :].lstrip('/')} holds {size} bytes; a chunk of "
                    f"this array holds at most {bound} once encoded. The store is damaged (restore the file from "
                    f"a copy of the store, or rebuild it with `aacdata repair {self.root} -o NEW_STORE`)"
                )

    def _chunk_bound(self, node: str) -> int | None:
        """The encoded bound of a chunk of the array at ``node`` (None: not a fixed-size
        dtype, sharded, or metadata that cannot be read: only the file's size bounds it)."""
        try:
            meta = json.loads(
                self._read(f"{node}/zarr.json" if node else "zarr.json", default_buffer_prototype(), None).to_bytes()
            )
            shape = meta["chunk_grid"]["configuration"]["chunk_shape"]
            itemsize = np.dtype(meta["data_type"]).itemsize if meta["data_type"] in _FIXED else 0
            codecs = [c["name"] for c in meta.get("codecs", ())]
        except (OSError, ValueError, KeyError, TypeError, AttributeError, RecursionError):
            return None
        if not itemsize or "sharding_indexed" in codecs or not all(isinstance(n, int) and n > 0 for n in shape):
            return None
        return encoded_bound(int(np.prod(shape, dtype=np.int64)) * itemsize, compressed=len(codecs) > 1)


_FIXED = frozenset(
    ("bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64", "float32", "float64")
)


def _target(path: str) -> str:
    try:
        return os.readlink(path)
    except OSError:
        return "?"


def _not_regular(mode: int, where: str, key: str) -> CorruptDataError:
    kind = _KINDS.get(stat.S_IFMT(mode), f"not a regular file (mode {stat.filemode(mode)})")
    return CorruptDataError(
        f"{where}: {key} is {kind}, not a regular file; aacdata reads only regular files and did not open it. "
        f"The store is damaged (restore the file from a copy of the store, or rebuild it with "
        f"`aacdata repair {where} -o NEW_STORE`)"
    )


class DirectChunks:
    """Reads whole chunks of a 1-D or 2-D local array; ``read`` returns ``None`` where it
    cannot, and the caller falls back to zarr. A chunk file that is not a regular file, or
    larger than a chunk can be, is :class:`CorruptDataError` (zarr would block on it or
    read it whole)."""

    def __init__(self, array: zarr.Array[Any]) -> None:
        self._root: str | None = None
        self._rows = int(array.chunks[0])
        self._shape = tuple(int(c) for c in array.chunks)
        self._dtype = np.dtype(array.dtype).newbyteorder("<")
        self._nbytes = int(np.prod(self._shape)) * self._dtype.itemsize
        self._tail = "/0" * (array.ndim - 1)
        self._node = array.path
        self._decompress: Callable[[bytes], Any] | None = None
        self._blosc = False
        store = array.store
        meta = array.metadata
        encoding = getattr(meta, "chunk_key_encoding", None)
        if not isinstance(store, zarr.storage.LocalStore) or getattr(encoding, "name", None) != "default":
            return
        if getattr(encoding, "separator", None) != "/":
            return
        codecs = list(getattr(meta, "codecs", ()))
        if not 1 <= len(codecs) <= 2 or type(codecs[0]).__name__ != "BytesCodec":
            return
        if getattr(codecs[0], "endian", None) is not None and str(getattr(codecs[0].endian, "value", "")) != "little":
            return
        kind = type(codecs[1]).__name__ if len(codecs) == 2 else None
        if kind is None:
            self._decompress = bytes  # stored as they are
        elif kind == "BloscCodec":
            self._decompress = numcodecs.blosc.decompress
            self._blosc = True
        elif kind == "ZstdCodec":
            self._decompress = numcodecs.Zstd().decode
        else:
            return
        self._where = str(store.root)
        self._real_root = os.path.realpath(store.root)
        self._bound = encoded_bound(self._nbytes, compressed=kind is not None)
        self._root = os.path.join(self._where, array.path, "c")

    def read(self, start: int, stop: int) -> np.ndarray | None:
        """Rows ``[start, stop)`` when they lie in one chunk that can be read directly."""
        if self._root is None or self._decompress is None or stop <= start:
            return None
        ci, first = divmod(start, self._rows)
        if stop - ci * self._rows > self._rows:
            return None
        key = f"{self._node}/c/{ci}{self._tail}"
        try:
            fd, size = open_chunk(
                f"{self._root}/{ci}{self._tail}", real_root=self._real_root, where=self._where, key=key
            )
        except OSError:  # missing, a directory, no permission: zarr's path reports it
            return None
        try:
            if size > self._bound:
                raise self._damaged(key, f"the file holds {size} bytes; a chunk holds at most {self._bound} encoded")
            raw = read_exactly(fd, size)
        finally:
            os.close(fd)
        if self._blosc and len(raw) >= 16 and int.from_bytes(raw[4:8], "little") != self._nbytes:
            # zarr would allocate what the header declares (up to 4 GiB): refuse it here.
            declared = int.from_bytes(raw[4:8], "little")
            raise self._damaged(key, f"its Blosc header declares {declared} bytes; a chunk holds {self._nbytes}")
        try:
            data = self._decompress(raw)
        except Exception:  # noqa: BLE001 - whatever is wrong, zarr's path reports it with its cause
            return None
        if len(data) != self._nbytes:
            return None
        rows = np.frombuffer(data, dtype=self._dtype).reshape(self._shape)
        return rows[first : stop - ci * self._rows]

    def _damaged(self, key: str, reason: str) -> CorruptDataError:
        return CorruptDataError(
            f"{self._where}/{self._node}: chunk {key[len(self._node) + 1 :]} cannot be read ({reason}); the store "
            f"is damaged (run `aacdata verify {self._where}`)"
        )
