"""Whole chunks of a local store's ``/index`` and ``/frame_crc``, read straight from their files.

Reading one chunk through zarr costs ~0.2 ms of zarr's own work, more than the chunk's
decompression (a 2048-row index chunk: ~10 µs of Blosc). For a local store whose arrays
use the codecs aacdata writes (``bytes`` alone, or ``bytes`` then Blosc or Zstd) and the
``default`` ``/`` chunk key encoding, the chunk file is read and decompressed here; in any
other case (a remote store, other codecs, a chunk file that is missing or does not
decode) the caller reads through zarr, which also says what is wrong.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import numcodecs
import numpy as np
import zarr


class DirectChunks:
    """Reads whole chunks of a 1-D or 2-D local array; ``read`` returns ``None`` where it
    cannot, and the caller falls back to zarr."""

    def __init__(self, array: zarr.Array[Any]) -> None:
        self._root: str | None = None
        self._rows = int(array.chunks[0])
        self._shape = tuple(int(c) for c in array.chunks)
        self._dtype = np.dtype(array.dtype).newbyteorder("<")
        self._nbytes = int(np.prod(self._shape)) * self._dtype.itemsize
        self._tail = "/0" * (array.ndim - 1)
        self._decompress: Callable[[bytes], Any] | None = None
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
        elif kind == "ZstdCodec":
            self._decompress = numcodecs.Zstd().decode
        else:
            return
        self._root = os.path.join(str(store.root), array.path, "c")

    def read(self, start: int, stop: int) -> np.ndarray | None:
        """Rows ``[start, stop)`` when they lie in one chunk that can be read directly."""
        if self._root is None or self._decompress is None or stop <= start:
            return None
        ci, first = divmod(start, self._rows)
        if stop - ci * self._rows > self._rows:
            return None
        try:
            fd = os.open(f"{self._root}/{ci}{self._tail}", os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
            try:
                raw = os.read(fd, os.fstat(fd).st_size)  # a file that changes meanwhile fails below
            finally:
                os.close(fd)
            data = self._decompress(raw)
        except Exception:  # noqa: BLE001 - whatever is wrong, zarr's path reports it with its cause
            return None
        if len(data) != self._nbytes:
            return None
        rows = np.frombuffer(data, dtype=self._dtype).reshape(self._shape)
        return rows[first : stop - ci * self._rows]
