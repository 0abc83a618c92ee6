"""Change a store: remove recordings, replace them, reclaim their bytes.

Design: a rewrite swapped in whole
----------------------------------
A store's recordings tile ``/adts`` and ``/index`` back to back, and every reader (and
the index chain checks) relies on that. Taking a recording out of the middle therefore
moves every recording after it, which cannot be done in place without a moment where the
table and the bytes disagree. So removal is a rewrite, like ``repair`` and ``merge``:

1. Take the store's write lock (a lock left by a killed process is taken over, as by an
   import; a live writer makes this :class:`~aacdata.errors.StoreLockedError`).
2. Delete what a killed rewrite left beside the store (``.<name>.aacdata-rewrite``).
3. Write a new store there through the single writer (:class:`StoreWriter`): every kept
   recording's bytes as stored (each checked against its CRC-32, nothing re-encoded),
   then the recordings that replace removed ones, then every annotation set with its
   events moved to their recordings' new rows (events of removed recordings left out).
   The new store's lock is held from its creation to the end.
4. Swap the two directories in one system call (``renameat2(RENAME_EXCHANGE)`` on Linux,
   ``renamex_np(RENAME_SWAP)`` on macOS): the store's path names the old store or the new
   one, complete, at every instant, and a process killed at any step leaves a store that
   reads and verifies. The lock of each store moves with its directory, so the store at
   the path stays locked until the rewrite ends.
5. Delete the old store (now beside the new one).

A process killed during 1-3 leaves the store as it was plus a partial directory beside it,
which the next remove or compact deletes; killed after 4, the change is done and only the
old store is left to delete. The cost is a copy of the whole store per call (give many ids
at once; ``import --replace`` replaces every changed file in one rewrite). ``compact``
is the same rewrite removing nothing: it drops the bytes and rows past the committed
counts that interrupted imports left, and moves a version-1 store to the current format.

Readers that have the store open while it is rewritten keep their table of the old store
and may read the new store's chunk files (a checksum error, never wrong samples): open the
store again after a change. Only local stores are supported; an object store has no
atomic swap of two prefixes (copy it to a local path, change it, copy it back).
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import logging
import os
import shutil
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import zarr

from ..errors import CorruptDataError, RecordingNotFoundError, StoreFormatError, StoreWriteError
from . import _annotation_store, _lock, _remote
from ._runs import copied_recording, runs
from ._store import AACStore
from ._writer import PendingRecording, StoreWriter

log = logging.getLogger("aacdata")

REWRITE_SUFFIX = ".aacdata-rewrite"
"""Suffix of the hidden directory beside a store where its rewrite is built."""
_COMMIT_BYTES = 64 << 20
_COMMIT_RECORDINGS = 4096

_step_hook: Callable[[str], None] | None = None
"""Called with the name of each step of a rewrite (``"copied"``, ``"sets"``, ``"swapped"``,
``"done"``); tests use it to kill the process at a known point."""


@dataclass(frozen=True, slots=True)
class ChangeReport:
    """What a remove, replace or compact did.

    ``removed``: ids taken out; ``added``: ids written anew in their place (replace);
    ``kept``: recordings copied as they were; ``events_dropped``: ``(set, events)`` for each
    annotation set that lost events of removed or replaced recordings; ``bytes_before`` and
    ``bytes_after``: the size of the store's files on disk (the lock file aside).
    """

    store: str
    removed: tuple[str, ...]
    added: tuple[str, ...]
    kept: int
    events_dropped: tuple[tuple[str, int], ...]
    bytes_before: int
    bytes_after: int

    def __repr__(self) -> str:
        return (
            f"ChangeReport(store={self.store!r}, removed={len(self.removed)}, added={len(self.added)}, "
            f"kept={self.kept}, events_dropped={sum(n for _, n in self.events_dropped)}, "
            f"bytes_before={self.bytes_before}, bytes_after={self.bytes_after})"
        )


def remove_recordings(
    store: _remote.StoreTarget | AACStore,
    ids: Iterable[str],
    *,
    progress: Callable[[int, int], None] | None = None,
) -> ChangeReport:
    """Remove the recordings ``ids`` (resolved as other commands resolve ids: the id, the
    one id equal to it but for case, or the one id whose file name it is) and their
    annotation events, and reclaim their bytes.

    Raises
    ------
    RecordingNotFoundError
        An id names no recording (the message suggests near ones); nothing is changed.
    StoreLockedError
        Another process writes to the store.
    StoreFormatError
        The store is not local, or not a store; or no id was given.
    CorruptDataError
        A kept recording or an annotation set fails its checksum (run ``aacdata verify``,
        and ``aacdata repair`` where it is damaged); nothing is changed.
    """
    wanted = _id_list(ids)
    if not wanted:
        raise ValueError("give at least one recording id to remove")
    return rewrite(store, remove=wanted, progress=progress, what="aacdata remove")


def compact_store(
    store: _remote.StoreTarget | AACStore, *, progress: Callable[[int, int], None] | None = None
) -> ChangeReport:
    """Rewrite the store with only its committed recordings and annotation sets, dropping
    what interrupted imports left past the committed counts (see the module's notes)."""
    return rewrite(store, remove=(), progress=progress, what="aacdata compact")


def rewrite(
    store: _remote.StoreTarget | AACStore,
    *,
    remove: Sequence[str] = (),
    add: Sequence[PendingRecording] = (),
    lock: _lock.WriteLock | None = None,
    progress: Callable[[int, int], None] | None = None,
    what: str = "changing a store",
    carry_metadata: bool = False,
) -> ChangeReport:
    """Rewrite a local store without the recordings ``remove`` (ids as users give them),
    with ``add`` appended after the kept ones, and swap it in (see the module's notes).

    ``lock``: the store's write lock, where the caller holds it (an import replacing
    recordings); otherwise it is taken here. ``carry_metadata``: a recording of ``add``
    without user metadata takes that of the recording of its id it replaces.
    """
    path = _local_root(store, what)
    where = store.path if isinstance(store, AACStore) else _remote.describe(store)
    with contextlib.ExitStack() as held:
        if lock is None:
            with AACStore.open(path, "r") as probe:  # a clear error for what is not a store
                zstore = probe.zarr_store
            lock = held.enter_context(_lock.acquire(zstore, where))
        old = held.enter_context(AACStore.open(path, "r"))  # what is committed, under the lock
        rows_removed = _resolve(old, remove)
        removed_ids = [old.ids[i] for i in rows_removed]
        if carry_metadata:
            add = [_with_metadata(p, old) for p in add]
        before = _disk_bytes(path)
        staging = _staging_path(path)
        _delete_leftover(staging, where)
        try:
            new = held.enter_context(AACStore.open(staging, "a"))
            # The new store's lock, held to the end: it moves with the directory in the swap.
            new_lock = held.enter_context(_lock.acquire(new.zarr_store, staging))
            new_rows = _copy_into_new(old, new, new_lock, set(rows_removed), add, progress)
            _step("copied")
            events_dropped = _carry_sets(old, staging, new_rows, new_lock)
            _step("sets")
            _check_new(staging, len(old) - len(rows_removed) + len(add), where)
            _exchange(staging, path, where)
        except BaseException as e:
            # Nothing was swapped in: the store is as it was; its unfinished copy goes.
            with contextlib.suppress(OSError, StoreWriteError, StoreFormatError):
                new_lock_held = _lock.held_here(zarr.storage.LocalStore(staging))
                if new_lock_held is not None:
                    new_lock_held.release()
                _delete_leftover(staging, where)
            if isinstance(e, StoreWriteError):
                raise StoreWriteError(
                    f"{e}. Nothing was changed: {where!r} is as it was (a rewrite needs free space for a "
                    "whole copy of the store, beside it)"
                ) from e
            raise
        _step("swapped")
        # The path holds the new store, still locked; the old one, beside it, is deleted
        # before the lock is released (a next rewrite builds in the same place).
        old.close()
        _delete_leftover(staging, where)
        _step("done")
    log.info("%s: removed %d recordings, added %d", where, len(removed_ids), len(add))
    return ChangeReport(
        store=where,
        removed=tuple(removed_ids),
        added=tuple(p.id for p in add),
        kept=len(old) - len(rows_removed),
        events_dropped=tuple(events_dropped),
        bytes_before=before,
        bytes_after=_disk_bytes(path),
    )


def check_local(store: _remote.StoreTarget | AACStore, what: str) -> None:
    """Refuse an object store (or a store opened read-only) for ``what`` with a clear error;
    a local path where no store is yet passes."""
    if isinstance(store, AACStore) and store.mode != "a":
        raise ValueError(f"open the store with mode='a' to change it; {store.path!r} is open read-only")
    target = store.target if isinstance(store, AACStore) else store
    if not _remote.is_local(target):
        raise _not_local(what, _remote.describe(target))


# ---------------------------------------------------------------------- steps


def _step(name: str) -> None:
    if _step_hook is not None:
        _step_hook(name)


def _with_metadata(p: PendingRecording, old: AACStore) -> PendingRecording:
    if p.metadata or p.id not in old.ids:
        return p
    return PendingRecording(p.id, p.encoded, p.source, dict(old.recording(p.id).metadata))


def _id_list(ids: Iterable[str]) -> list[str]:
    if isinstance(ids, (str, bytes)):
        ids = [ids]  # type: ignore[list-item]
    out = []
    for rid in ids:
        if not isinstance(rid, str):
            raise TypeError(f"recording ids are strings; got {rid!r} ({type(rid).__name__})")
        out.append(rid)
    return out


def _local_root(store: _remote.StoreTarget | AACStore, what: str = "changing a store") -> str:
    target = store.target if isinstance(store, AACStore) else store
    if isinstance(store, AACStore) and store.mode != "a":
        raise ValueError(f"open the store with mode='a' to change it; {store.path!r} is open read-only")
    if not _remote.is_local(target):
        raise _not_local(what, _remote.describe(target))
    path = os.path.realpath(_remote.local_path(target))
    if not os.path.isfile(os.path.join(path, "zarr.json")):
        AACStore.open(path, "r").close()  # raises the error that says what is there instead
    if not os.access(os.path.dirname(path), os.W_OK):
        raise StoreWriteError(
            f"{what} writes a new copy of the store beside it, and {os.path.dirname(path)!r} is not writable; "
            "make it writable or copy the store elsewhere"
        )
    return path


def _not_local(what: str, where: str) -> StoreFormatError:
    return StoreFormatError(
        f"{what} works on local stores only, and {where!r} is not one (object storage cannot swap a "
        f"rewritten store in atomically); copy it to a local path (`aacdata copy {where} LOCAL.zarr`), "
        "change that, and copy it back to a new location"
    )


def _resolve(store: AACStore, given: Sequence[str]) -> list[int]:
    """Rows of the recordings named ``given`` (each once, in table order); every unknown
    name is listed in one error, with suggestions."""
    rows: set[int] = set()
    unknown: list[str] = []
    for name in given:
        try:
            rid, how = store.resolve_id(name)
        except RecordingNotFoundError as e:
            unknown.append(str(e))
            continue
        if how != "its id":
            log.warning("%r is taken as %r (%s)", name, rid, how)
        rows.add(store.index_of(rid))
    if unknown:
        more = f" (and {len(unknown) - 1} more)" if len(unknown) > 1 else ""
        raise RecordingNotFoundError(f"{unknown[0]}{more}; nothing was changed (`aacdata ls {store.path}` lists ids)")
    return sorted(rows)


def _staging_path(path: str) -> str:
    head, name = os.path.split(path)
    return os.path.join(head, f".{name}{REWRITE_SUFFIX}")


def _delete_leftover(staging: str, where: str) -> None:
    """Delete the directory a rewrite builds in (or the old store a finished one left)."""
    if not os.path.lexists(staging):
        return
    if os.path.islink(staging) or not os.path.isdir(staging):
        raise StoreFormatError(
            f"{staging!r} is in the way of rewriting {where!r} and is not a directory left by aacdata; remove it"
        )
    log.info("%s: deleting %s, left by an earlier remove or compact", where, staging)
    try:
        shutil.rmtree(staging)
    except OSError as e:
        raise StoreWriteError(f"cannot delete {staging!r} (left by an earlier rewrite of {where!r}): {e}") from e


def _disk_bytes(path: str) -> int:
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            if name != _lock.LOCK_FILE:
                with contextlib.suppress(OSError):
                    total += os.lstat(os.path.join(root, name)).st_size
    return total


def _copy_into_new(
    old: AACStore,
    new: AACStore,
    lock: _lock.WriteLock,
    removed: set[int],
    add: Sequence[PendingRecording],
    progress: Callable[[int, int], None] | None,
) -> np.ndarray:
    """Write the recordings of the new store; returns, per row of ``old``, its row in the
    new store (-1: removed)."""
    writer = StoreWriter(new, lock=lock)
    try:
        keep = [i for i in range(len(old)) if i not in removed]
        new_rows = np.full(len(old), -1, dtype=np.int64)
        new_rows[keep] = np.arange(len(keep), dtype=np.int64)
        sources = old.text_column("source")
        metadata = old.text_column("metadata")
        total = len(keep) + len(add)
        done = 0
        for run in runs(old, keep):
            for i in run.rows:
                rec = old.recording(i)
                writer.add(
                    copied_recording(
                        rec,
                        run,
                        source=sources[i],
                        metadata=metadata[i],
                        where=old.path,
                        lead="nothing was changed. Run",
                        end="first",
                    )
                )
                done += 1
                if writer.pending_bytes >= _COMMIT_BYTES or len(writer) >= _COMMIT_RECORDINGS:
                    writer.commit()
            if progress is not None:
                progress(done, total)
        for p in add:
            writer.add(p)
            done += 1
            if writer.pending_bytes >= _COMMIT_BYTES:
                writer.commit()
        writer.commit()
        if progress is not None:
            progress(total, total)
    finally:
        writer.close()
    return new_rows


def _carry_sets(old: AACStore, staging: str, new_rows: np.ndarray, lock: _lock.WriteLock) -> list[tuple[str, int]]:
    """Write every annotation set of ``old`` to the new store, events moved to their
    recordings' new rows; returns ``(set, events left out)`` where events were left out."""
    names = old.annotation_sets
    if not names:
        return []
    dropped: list[tuple[str, int]] = []
    with AACStore.open(staging, "r") as now:
        num_recordings = len(now)
    group = zarr.open_group(zarr.storage.LocalStore(staging), mode="r+")
    for name in names:
        try:
            ann = old.annotations(name)
        except CorruptDataError as e:
            raise CorruptDataError(
                f"{e}; nothing was changed (run `aacdata repair` to rebuild the store without the damaged set)"
            ) from e
        moved = _annotation_store.remap(ann, new_rows)
        if len(moved) != len(ann):
            dropped.append((name, len(ann) - len(moved)))
        _annotation_store.write_set(group, name, moved, lock=lock, num_recordings=num_recordings, where=staging)
    return dropped


def _check_new(staging: str, expected: int, where: str) -> None:
    """The new store opens, with its table checked, and holds what it should."""
    with AACStore.open(staging, "r") as new:
        if len(new) != expected:
            raise StoreWriteError(
                f"the rewrite of {where!r} holds {len(new)} recordings, {expected} expected; nothing was changed"
            )


# ---------------------------------------------------------------------- the atomic swap

_RENAME_EXCHANGE = 2
"""``renameat2`` flag (Linux 3.15+, glibc 2.28+): swap two paths atomically."""
_RENAME_SWAP = 2
"""``renamex_np`` flag (macOS 10.12+): the same."""
_AT_FDCWD = -100


def _exchange(a: str, b: str, where: str) -> None:
    """Swap the directories ``a`` and ``b`` in one system call."""
    libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
    ea, eb = os.fsencode(a), os.fsencode(b)
    if sys.platform.startswith("linux") and hasattr(libc, "renameat2"):
        fn = libc.renameat2
        fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
        result = fn(_AT_FDCWD, ea, _AT_FDCWD, eb, _RENAME_EXCHANGE)
    elif sys.platform == "darwin" and hasattr(libc, "renamex_np"):
        fn = libc.renamex_np
        fn.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_uint]
        result = fn(ea, eb, _RENAME_SWAP)
    else:
        raise StoreWriteError(
            f"cannot swap the rewritten store into {where!r}: this system has no atomic exchange of two "
            "directories (Linux renameat2 or macOS renamex_np); nothing was changed"
        )
    if result != 0:
        code = ctypes.get_errno()
        hint = (
            " (the file system cannot exchange directories atomically)"
            if code in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP)
            else ""
        )
        raise StoreWriteError(
            f"cannot swap the rewritten store into {where!r}: {os.strerror(code)}{hint}; nothing was changed"
        )
