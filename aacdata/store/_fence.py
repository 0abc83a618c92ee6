"""Fenced writes: in object storage, every write of an import is refused by the store itself
once another writer has taken over.

A lease (:mod:`aacdata.store._lock`) cannot keep two writers apart on its own: a process can
pause anywhere (SIGSTOP, a frozen VM, a stalled disk) for longer than its lease, the next
import takes the lease over and commits, and the first one resumes where it stopped. So on
S3 every request that writes is conditional, and the bucket refuses it when the object is
no longer what this writer saw:

- **Taking over.** A writer starts by rewriting the root ``zarr.json`` with its own token
  and a generation one higher (``If-Match`` the version it read). From then on no earlier
  writer can move the commit point.
- **Before each commit**, the writer reads the ETag of every object the commit will write
  (the root, each array's ``zarr.json``, the chunks from the committed end on), then the
  root's ETag again: if the root is still the version this writer made, no other writer
  had taken over when those ETags were read.
- **Every write** is ``If-Match`` the ETag read (or the ETag of this writer's own last
  write of that object), or ``If-None-Match: *`` where there was no object. The partial
  chunks that every commit rewrites in place (the last chunk of ``/adts``, ``/index``,
  ``/frame_crc`` and of each recordings column) and each array's ``zarr.json`` are made
  unique per commit: a few random rows past the committed end, and the writer's token
  and commit number in the array's attributes. S3's ETag is the MD5 of the content, so
  without them a later writer could put back byte-identical content and a stale writer's
  ``If-Match`` would pass.
- **The commit point** is the root ``zarr.json``, ``If-Match`` the version this writer
  made last.

A refused write raises :class:`~aacdata.errors.StoreLockedError`: the writer stops, and
what the other writer committed stays. Nothing is deleted while fenced (zarr is told to
write chunks that hold only fill values instead of deleting them).

The one case left: a whole chunk past the committed end, left there by an interrupted
import, holds no such random rows. A stale writer that read its ETag before pausing could
still overwrite it if a later import committed byte-identical content at the very same
offset (a rerun of the interrupted import) while that stale writer was paused.

Local stores need none of this: their lock is the kernel's and dies with the process, so
a paused writer keeps it and no other import starts.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import uuid
from collections.abc import AsyncGenerator, Iterable, Mapping
from typing import Any

import numpy as np
import zarr
from zarr.abc.store import ByteRequest, Store
from zarr.core.array import AsyncArray
from zarr.core.buffer import Buffer, BufferPrototype, default_buffer_prototype
from zarr.core.metadata import ArrayV3Metadata
from zarr.core.sync import sync
from zarr.storage import StorePath, WrapperStore

from ..errors import StoreLockedError, StoreWriteError
from . import _remote

FENCE_ATTRIBUTE = "aacdata_writer"
"""Attribute of the root (``generation``, ``token``, ``commit``) and of each array
(``token``, ``commit``) that the last fenced write set."""
ROOT = "zarr.json"
NONCE_BYTES = 16
"""Random bytes written past the committed end of each array by a fenced commit."""


class Fence:
    """The fenced writes of one writer to one S3 store: :meth:`begin` takes the store over,
    :meth:`prepare` reads what a commit will write, :attr:`store` performs the writes."""

    def __init__(self, cond: _remote.Conditional, where: str) -> None:
        self.where = where
        self.token = uuid.uuid4().hex
        self.generation = 0
        self.commits = 0
        self._cond = cond
        self.store = FencedStore(cond.remote, self)
        self._expected: dict[str, str | None] = {}
        """key -> the ETag the next write of it must match (None: it must not exist)."""
        self._read: dict[str, str] = {}
        """key -> the ETag of the version zarr read last through :attr:`store`."""

    @classmethod
    def begin(cls, zstore: Store, where: str) -> Fence | None:
        """Take the store over (S3), or None where writes need no fencing (local, memory).

        Raises
        ------
        StoreLockedError
            Another writer changed the root between reading and rewriting it.
        StoreWriteError
            The backend cannot be fenced.
        """
        cond = _remote.fencing(zstore, where)
        if cond is None:
            return None
        fence = cls(cond, where)
        group = zarr.open_group(fence.store, mode="r+")
        etag = fence._read.get(ROOT)
        if etag is None:
            raise StoreWriteError(f"{where!r} lost its zarr.json while this import opened it; check the bucket")
        fence._expected[ROOT] = etag
        previous = group.attrs.get(FENCE_ATTRIBUTE)
        number = previous.get("generation") if isinstance(previous, Mapping) else None
        fence.generation = (number if type(number) is int and number >= 0 else 0) + 1
        group.update_attributes({FENCE_ATTRIBUTE: fence.marker()})
        return fence

    def marker(self) -> dict[str, Any]:
        """The root's fence attribute for the next write of the root."""
        return {"generation": self.generation, "token": self.token, "commit": self.commits}

    def lost(self, key: str) -> StoreLockedError:
        return StoreLockedError(
            f"store {self.where!r}: another import has taken this store over (this import's write lease "
            f"had expired or was broken): {key} changed since this import read it, and the store refused "
            "this import's write. Nothing more is written; what the other import committed stays. Run "
            "the import again to add what is missing"
        )

    def prepare(self, keys: Iterable[str]) -> None:
        """Read the ETags of the objects a commit writes, then check that the root is still
        the version this writer made (so no other writer had taken over when they were read).

        Raises
        ------
        StoreLockedError
            An object this writer wrote last, or the root, was changed by another writer.
        """
        wanted = sorted(set(keys) - {ROOT})

        async def heads() -> list[str | None]:
            limit = asyncio.Semaphore(16)

            async def head(key: str) -> str | None:
                async with limit:
                    return await self._cond.head(key)

            return await asyncio.gather(*(head(k) for k in wanted))

        for key, etag in zip(wanted, sync(heads()), strict=True):
            if key in self._expected and self._expected[key] != etag:
                raise self.lost(key)
            self._expected[key] = etag
        if sync(self._cond.head(ROOT)) != self._expected.get(ROOT):
            raise self.lost(ROOT)
        self.commits += 1

    def resize(self, array: zarr.Array[Any], rows: int) -> zarr.Array[Any]:
        """``array`` with ``rows`` rows, its ``zarr.json`` written in one fenced request with
        this commit's mark; the returned array writes chunks of fill values (never deletes)."""
        meta = array.metadata
        attributes = dict(meta.attributes)
        attributes[FENCE_ATTRIBUTE] = {"token": self.token, "commit": self.commits}
        new = meta.update_shape((rows, *meta.shape[1:])).update_attributes(attributes)
        body = new.to_buffer_dict(default_buffer_prototype())["zarr.json"]
        sync(self.store.set(f"{array.path}/zarr.json", body))
        assert isinstance(new, ArrayV3Metadata)
        path = StorePath(self.store, array.path)
        return zarr.Array(AsyncArray(new, path, config={"write_empty_chunks": True}))

    def set_expected(self, key: str, etag: str) -> None:
        self._expected[key] = etag

    def expected(self, key: str) -> str | None:
        """The ETag a write of ``key`` must match; None: the key must not exist."""
        return self._expected.get(key)

    def note_read(self, key: str, etag: str | None) -> None:
        """Record what a read through :attr:`store` found; one that differs from what this
        writer expects of the key (as it wrote it, or as :meth:`prepare` found it) means
        another writer has written it: stop before doing any work on top of it."""
        if key in self._expected and self._expected[key] != etag:
            raise self.lost(key)
        if etag is not None:
            self._read[key] = etag


def chunk_keys(array: zarr.Array[Any], start: int, stop: int) -> list[str]:
    """The keys of ``array``'s ``zarr.json`` and of the chunks holding rows ``[start, stop)``."""
    rows = int(array.chunks[0])
    tail = (0,) * (array.ndim - 1)
    keys = [f"{array.path}/zarr.json"]
    if stop > start:
        keys += [
            f"{array.path}/{array.metadata.encode_chunk_key((i, *tail))}"
            for i in range(start // rows, (stop - 1) // rows + 1)
        ]
    return keys


def nonce_rows(array: zarr.Array[Any]) -> np.ndarray:
    """Random rows for past the committed end of ``array`` (at least :data:`NONCE_BYTES`)."""
    dtype = array.dtype
    if isinstance(dtype, np.dtype) and dtype.kind in "iuf":
        width = dtype.itemsize * int(np.prod(array.shape[1:], dtype=np.int64))
        count = -(-NONCE_BYTES // width)
        raw = np.frombuffer(os.urandom(count * width), dtype=dtype.newbyteorder("<"))
        return raw.astype(dtype).reshape((count, *array.shape[1:]))
    return np.asarray([os.urandom(NONCE_BYTES).hex()], dtype=object)


class FencedStore(WrapperStore[Store]):
    """The writer's view of an S3 store: every write is conditional (see the module notes),
    reads record the ETag of what they read, deletes are refused."""

    def __init__(self, store: Store, fence: Fence) -> None:
        super().__init__(store)
        self._fence = fence

    def _with_store(self, store: Store) -> FencedStore:
        return type(self)(store, self._fence)

    def __str__(self) -> str:
        return str(self._store)

    async def get(self, key: str, prototype: BufferPrototype, byte_range: ByteRequest | None = None) -> Buffer | None:
        if byte_range is not None:
            return await self._store.get(key, prototype, byte_range)
        got = await self._fence._cond.get(key)
        self._fence.note_read(key, got[1] if got is not None else None)
        return prototype.buffer.from_bytes(got[0]) if got is not None else None

    async def _get_many(
        self, requests: Iterable[tuple[str, BufferPrototype, ByteRequest | None]]
    ) -> AsyncGenerator[tuple[str, Buffer | None], None]:
        for key, prototype, byte_range in requests:
            yield key, await self.get(key, prototype, byte_range)

    async def set(self, key: str, value: Buffer) -> None:
        fence = self._fence
        try:
            etag = await fence._cond.put(key, value.to_bytes(), expected=fence.expected(key))
        except _remote.RefusedWriteError:
            raise fence.lost(key) from None
        fence.set_expected(key, etag)

    async def set_if_not_exists(self, key: str, value: Buffer) -> None:
        try:
            etag = await self._fence._cond.put(key, value.to_bytes(), expected=None)
        except _remote.RefusedWriteError:
            return
        self._fence.set_expected(key, etag)

    async def _set_many(self, values: Iterable[tuple[str, Buffer]]) -> None:
        await asyncio.gather(*(self.set(key, value) for key, value in values))

    def _refuse(self, what: str) -> StoreWriteError:
        return StoreWriteError(f"{self._fence.where!r}: a fenced import does not {what} (an aacdata bug)")

    async def delete(self, key: str) -> None:
        raise self._refuse(f"delete objects ({key})")

    async def delete_dir(self, prefix: str) -> None:
        raise self._refuse(f"delete objects ({prefix}/...)")

    async def clear(self) -> None:
        raise self._refuse("clear stores")


def create_missing(store: Store, where: str, nodes: Mapping[str, Buffer]) -> None:
    """Write each node's ``zarr.json`` (``nodes``: key -> metadata) that does not exist yet,
    the root first; never overwrite one. On S3 each write is ``If-None-Match: *``; locally an
    exclusive create."""
    cond = _remote.fencing(store, where) if not isinstance(store, zarr.storage.LocalStore) else None

    async def put(key: str, value: Buffer) -> None:
        if cond is None:
            await store.set_if_not_exists(key, value)
            return
        with contextlib.suppress(_remote.RefusedWriteError):  # made by another creator: kept as it is
            await cond.put(key, value.to_bytes(), expected=None)

    async def run() -> None:
        if ROOT in nodes:
            await put(ROOT, nodes[ROOT])
        await asyncio.gather(*(put(k, v) for k, v in nodes.items() if k != ROOT))

    sync(run())
