"""Copy a store to another location (e.g. a local store to a bucket), key by key.

Every key is copied, annotation sets included (their rows stay valid: the recordings
table is copied as it is). A local source's files are read only where they are regular
files (:mod:`aacdata.store._chunks`): a FIFO or a link to ``/dev/zero`` in place of a chunk is
:class:`~aacdata.errors.CorruptDataError`, not a copy that never ends.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from typing import Any

from zarr.core.buffer import default_buffer_prototype
from zarr.core.sync import sync

from ..errors import StoreFormatError, StoreNotFoundError
from . import _chunks, _remote
from ._lock import LOCK_FILE
from ._store import AACStore

_IN_FLIGHT = 16


def copy_store(
    source: _remote.StoreTarget,
    destination: _remote.StoreTarget,
    *,
    source_options: Mapping[str, Any] | None = None,
    destination_options: Mapping[str, Any] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> int:
    """Copy every object of an aacdata store; returns the number of bytes copied.

    The root ``zarr.json`` (which holds the committed counts) is written last, so the
    destination never declares data it does not hold yet. The destination must not
    already hold a store. ``progress(done, total)`` is called as objects are copied.

    Raises
    ------
    CorruptDataError
        A file of a local source is not a regular file (a FIFO, a device, a link out of
        the store).
    StoreFormatError
        The destination already holds a store, or does not show the source's counts and
        annotation sets once copied.
    """
    with AACStore.open(source, storage_options=source_options) as src:  # checks it is a store
        src_store = _chunks.checked(src.zarr_store)
        src_sets = src.annotation_sets
        dst_store = _remote.open_store(destination, read_only=False, storage_options=destination_options)
        where = _remote.describe(destination)
        if sync(dst_store.exists("zarr.json")):
            raise StoreFormatError(f"{where!r} already holds a Zarr store; copy to a new location")

        async def keys() -> list[str]:
            return [k async for k in src_store.list() if k != LOCK_FILE]

        listed = sync(keys())
        if "zarr.json" not in listed:
            raise StoreNotFoundError(f"{src.path!r} lists no zarr.json")
        body = [k for k in listed if k != "zarr.json"]
        prototype = default_buffer_prototype()
        done = 0
        copied = 0

        async def copy_one(key: str, gate: asyncio.Semaphore) -> int:
            async with gate:
                buf = await src_store.get(key, prototype)
                if buf is None:
                    raise StoreNotFoundError(f"{src.path!r}: {key} vanished during the copy")
                await dst_store.set(key, buf)
                return len(buf)

        async def copy_all(batch: list[str]) -> list[int]:
            gate = asyncio.Semaphore(_IN_FLIGHT)
            return list(await asyncio.gather(*(copy_one(k, gate) for k in batch)))

        for start in range(0, len(body), 256):
            batch = body[start : start + 256]
            copied += sum(sync(copy_all(batch)))
            done += len(batch)
            if progress is not None:
                progress(done, len(listed))
        copied += sum(sync(copy_all(["zarr.json"])))  # the commit point of the copy
        if progress is not None:
            progress(len(listed), len(listed))
    with AACStore.open(destination, storage_options=destination_options) as dst:
        if dst.counts != src.counts:
            raise StoreFormatError(f"copy to {where!r} shows counts {dst.counts}, source had {src.counts}")
        if dst.annotation_sets != src_sets:
            raise StoreFormatError(
                f"copy to {where!r} shows annotation sets {list(dst.annotation_sets)}, source had {list(src_sets)}"
            )
    return copied
