"""The write lock of a store: one writer at a time, never held by a dead process.

Local stores: a POSIX record lock (``lockf``) on ``aacdata.lock`` in the store directory.
Unlike ``flock``, a record lock belongs to the process that took it and is *not*
inherited by children forked afterwards (the conversion processes), so it is released
the moment the importing process dies, whatever becomes of its children. The file also
records the holder (host, pid, start time) for messages; a record left by a dead holder
means an import was killed, which is said with a warning when the next import takes over.

Object stores have no locks: ``aacdata.lock`` is a *lease*, an object naming its holder
and an expiry time, renewed by a background thread while the import runs. A lease that
has expired, or whose holder was a process on this host that no longer exists, is taken
over with a warning; any other can be broken on purpose (``break_lock=True``,
``aacdata import --break-lock``) once the user knows its writer is gone. Before each
commit the writer checks that the lease is still its own.

On S3 the lease is taken, taken over and renewed with conditional writes (``If-None-Match:
*``, ``If-Match: <etag>``), so two takers never both win, and taking it checks that the
bucket honours those conditions (the writer's fencing, :mod:`aacdata.store._fence`, depends on
them). A lease is only a courtesy between live writers: a process can pause anywhere, past
its lease, and resume. What keeps such a writer from overwriting the next one's commits is
that the bucket refuses its writes (:mod:`aacdata.store._fence`). Object stores whose writes
cannot be fenced are refused (:func:`aacdata.store._remote.fencing`).

A POSIX lock is per process: a second ``lockf`` from the same process succeeds and
closing any descriptor of the file drops the lock. So this module keeps a table of the
locks this process holds and refuses a second writer in the same process itself.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import socket
import stat
import threading
import time
import uuid
from typing import Any

from zarr.core.buffer import default_buffer_prototype
from zarr.core.sync import sync

from ..errors import StoreFormatError, StoreLockedError, StoreWriteError
from . import _remote

log = logging.getLogger("aacdata")

LOCK_FILE = "aacdata.lock"
LEASE_SECONDS = 60.0
"""How long an object-store lease lasts without renewal (renewed every third of it)."""

_held: dict[str, WriteLock] = {}
_held_guard = threading.Lock()


def _holder_record() -> dict[str, Any]:
    return {"host": socket.gethostname(), "pid": os.getpid(), "started": time.time(), "token": uuid.uuid4().hex}


def describe_holder(record: dict[str, Any]) -> str:
    """``process 1234 on host h (since 2026-12-02 06:00:00 UTC)``, from a holder record."""
    started = record.get("started")
    when = (
        time.strftime(" (since %Y-%m-%d %H:%M:%S UTC)", time.gmtime(float(started)))
        if isinstance(started, (int, float)) and 0 < started < 1e11
        else ""
    )
    return f"process {record.get('pid', '?')!s} on host {record.get('host', '?')!s}{when}"


def _local_process_gone(record: dict[str, Any]) -> bool:
    """The record names a process of this host that no longer runs."""
    pid = record.get("pid")
    if record.get("host") != socket.gethostname() or not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, owned by another user
        return False
    return False


class WriteLock:
    """A held write lock. ``check()`` raises :class:`StoreLockedError` if it was lost;
    ``release()`` gives it up."""

    def __init__(self, key: str, where: str) -> None:
        self.key = key
        self.where = where
        self.record = _holder_record()
        self._released = False

    def check(self) -> None:
        """Raise if this lock is no longer held (an object-store lease broken or lost)."""

    def release(self) -> None:
        with _held_guard:
            if self._released:
                return
            self._released = True
            if _held.get(self.key) is self:
                del _held[self.key]
        self._release()

    def _release(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> WriteLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def acquire(zstore: Any, where: str, *, break_lock: bool = False) -> WriteLock:
    """Take the write lock of the store underneath ``zstore`` (a zarr ``Store``).

    Raises
    ------
    StoreLockedError
        Another live import holds it; the message names the holder and what to do.
    """
    import zarr

    key = _key(zstore)
    with _held_guard:
        held = _held.get(key)
        if held is not None:
            raise StoreLockedError(
                f"store {where!r} is being written by another import in this process "
                f"({describe_holder(held.record)}); wait for it to finish"
            )
        lock: WriteLock
        if isinstance(zstore, zarr.storage.LocalStore):
            lock = _FileLock(key, where, str(zstore.root))
        else:
            lock = _Lease(key, where, zstore, _remote.fencing(zstore, where), break_lock=break_lock)
        _held[key] = lock
        return lock


def held_here(zstore: Any) -> WriteLock | None:
    """The write lock of this store that this process holds, if any."""
    with _held_guard:
        return _held.get(_key(zstore))


def _key(zstore: Any) -> str:
    import zarr

    if isinstance(zstore, zarr.storage.LocalStore):
        return "file:" + os.path.realpath(str(zstore.root))
    return "object:" + str(zstore)


def _forget_after_fork() -> None:
    # A forked child holds none of its parent's locks (record locks are per process).
    _held.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_after_fork)


class _FileLock(WriteLock):
    def __init__(self, key: str, where: str, root: str) -> None:
        super().__init__(key, where)
        import fcntl

        if os.path.exists(root) and not os.path.isdir(root):
            raise StoreFormatError(f"{where!r} is a file, not a store directory; choose another output path")
        try:
            os.makedirs(root, exist_ok=True)
        except OSError as e:
            raise StoreWriteError(f"cannot create the store directory {where!r}: {e.strerror or e}") from None
        path = os.path.join(root, LOCK_FILE)
        # O_NONBLOCK: a FIFO put in the lock file's place must not block the open.
        flags = os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NONBLOCK | getattr(os, "O_NOFOLLOW", 0)
        try:
            fd = os.open(path, flags, 0o644)
        except OSError as e:
            if e.errno == errno.ELOOP:
                raise StoreFormatError(
                    f"{where}/{LOCK_FILE} is a symbolic link; remove it (a store's lock file is a plain file)"
                ) from None
            raise StoreWriteError(f"cannot open the lock file {where}/{LOCK_FILE}: {e.strerror or e}") from None
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            os.close(fd)
            kind = "a FIFO" if stat.S_ISFIFO(mode) else "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else (
                "a socket" if stat.S_ISSOCK(mode) else "not a regular file")  # fmt: skip
            raise StoreFormatError(f"{where}/{LOCK_FILE} is {kind}; remove it (a store's lock file is a plain file)")
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            previous = _read_record(fd)
            os.close(fd)
            if e.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                who = describe_holder(previous) if previous else "another process"
                raise StoreLockedError(
                    f"store {where!r} is being written by another import ({who}); wait for it to finish"
                ) from None
            raise
        if not _still_at(fd, path):
            # A remove or compact swapped the store directory while this lock was taken:
            # the file locked is the old store's, no longer the store's at this path.
            os.close(fd)
            raise StoreLockedError(
                f"store {where!r} was rewritten (aacdata remove or compact) while its lock was taken; run again"
            )
        previous = _read_record(fd)
        if previous:
            log.warning(
                "%s: the last import into this store (%s) ended without releasing its lock (it was killed); "
                "taking over: what it had not committed is discarded, and rerunning it resumes",
                where,
                describe_holder(previous),
            )
        _write_record(fd, self.record)
        self._fd: int | None = fd

    def _release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            os.ftruncate(fd, 0)  # a clean release leaves no holder behind
        except OSError:
            pass
        finally:
            os.close(fd)  # drops the record lock


def _read_record(fd: int) -> dict[str, Any]:
    try:
        data = os.pread(fd, 4096, 0)
        record = json.loads(data) if data.strip() else {}
    except (OSError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}


def _write_record(fd: int, record: dict[str, Any]) -> None:
    data = json.dumps(record).encode()
    os.ftruncate(fd, 0)
    os.pwrite(fd, data, 0)


class _Lease(WriteLock):
    def __init__(
        self, key: str, where: str, zstore: Any, conditional: _remote.Conditional | None, *, break_lock: bool
    ) -> None:
        super().__init__(key, where)
        self._zstore = zstore
        self._cond = conditional
        self._lost: str | None = None
        self._etag: str | None = None  # of the lease object as this writer last wrote it (S3)
        self._guard = threading.Lock()
        current, etag = self._read()
        if current is not None:
            gone = _local_process_gone(current)
            raw = current.get("expires")
            # A record without an expiry (damaged, or written by hand) never expires by itself.
            timed = isinstance(raw, (int, float)) and not isinstance(raw, bool)
            expires = float(raw) if isinstance(raw, (int, float)) else 0.0
            expired = timed and expires < time.time()
            if not (gone or expired or break_lock):
                lease = (
                    f"; its lease runs {expires - time.time():.0f} s more and is renewed while it runs" if timed else ""
                )
                raise StoreLockedError(
                    f"store {where!r} is being written by another import ({describe_holder(current)}{lease}); "
                    f"wait for it to finish, or, if you know it is gone, rerun with --break-lock "
                    f"(import_audio(..., break_lock=True)) or delete {where}/{LOCK_FILE}"
                )
            reason = "broken on request" if break_lock else "its process is gone" if gone else "its lease expired"
            log.warning("%s: taking over the lock of %s (%s)", where, describe_holder(current), reason)
        if self._cond is not None:
            # Taken only if the lease object is still the one read (or still absent).
            try:
                self._etag = sync(self._cond.put(LOCK_FILE, self._body(), expected=etag))
            except _remote.RefusedWriteError:
                now, _ = self._read()
                raise StoreLockedError(
                    f"store {where!r} was locked by another import at the same moment"
                    + (f" ({describe_holder(now)})" if now else "")
                    + "; wait for it to finish"
                ) from None
            self._check_conditions()
        else:
            self._put()
            # Two takers racing for a free lease both write it; the later write wins. Read back
            # after a pause so that only the winner goes on (a zarr MemoryStore: one process).
            time.sleep(0.2)
            now, _ = self._read()
            if now is None or now.get("token") != self.record["token"]:
                raise StoreLockedError(
                    f"store {where!r} was locked by another import at the same moment"
                    + (f" ({describe_holder(now)})" if now else "")
                    + "; wait for it to finish"
                )
        self._stop = threading.Event()
        self._renewer = threading.Thread(target=self._renew, name="aacdata-lease", daemon=True)
        self._renewer.start()

    def _check_conditions(self) -> None:
        """Refuse a bucket that ignores conditional writes: the fencing of writers relies on
        them. Both probes rewrite the lease with what it holds, so a bucket that performs them
        anyway changes nothing."""
        assert self._cond is not None
        body = self._body(renewed=False)
        for expected, header in (('"00000000000000000000000000000000"', "If-Match"), (None, "If-None-Match: *")):
            try:
                etag = sync(self._cond.put(LOCK_FILE, body, expected=expected))
            except _remote.RefusedWriteError:
                continue
            self._etag = etag
            self._release()
            raise StoreWriteError(
                f"cannot write to {self.where!r}: the object store ignores conditional writes ({header}), which "
                "aacdata needs to refuse the writes of an import that lost its lock. Use an S3 service that "
                "supports them (AWS S3, or a recent MinIO), or import into a local directory and copy it "
                "there with `aacdata copy`"
            )

    def _body(self, *, renewed: bool = True) -> bytes:
        if renewed or not hasattr(self, "_expires"):
            self._expires = time.time() + LEASE_SECONDS
        return json.dumps({**self.record, "expires": self._expires}).encode()

    def _read(self) -> tuple[dict[str, Any] | None, str | None]:
        """The lease record and, on S3, the ETag of the lease object."""
        if self._cond is not None:
            got = sync(self._cond.get(LOCK_FILE))
            if got is None:
                return None, None
            data, etag = got
        else:
            buf = sync(self._zstore.get(LOCK_FILE, default_buffer_prototype()))
            if buf is None:
                return None, None
            data, etag = buf.to_bytes(), None
        try:
            record = json.loads(data)
        except ValueError:
            return {}, etag
        return (record if isinstance(record, dict) else {}), etag

    def _get(self) -> dict[str, Any] | None:
        return self._read()[0]

    def _put(self) -> None:
        sync(self._zstore.set(LOCK_FILE, default_buffer_prototype().buffer.from_bytes(self._body())))

    def _still_ours(self) -> tuple[bool, dict[str, Any] | None]:
        if self._cond is not None:
            etag = sync(self._cond.head(LOCK_FILE))
            with self._guard:
                if etag is not None and etag == self._etag:
                    return True, None
            return False, self._get()
        now = self._get()
        return (now is not None and now.get("token") == self.record["token"]), now

    def _renew(self) -> None:
        while not self._stop.wait(LEASE_SECONDS / 3):
            try:
                if self._cond is not None:
                    with self._guard:
                        expected = self._etag
                    try:
                        etag = sync(self._cond.put(LOCK_FILE, self._body(), expected=expected))
                    except _remote.RefusedWriteError:
                        now = self._get()
                        self._lost = f"another process took the lock ({describe_holder(now) if now else 'deleted'})"
                        return
                    with self._guard:
                        self._etag = etag
                    continue
                now = self._get()
                if now is None or now.get("token") != self.record["token"]:
                    self._lost = f"another process took the lock ({describe_holder(now) if now else 'deleted'})"
                    return
                self._put()
            except Exception as e:  # noqa: BLE001 - a renewal that fails is retried; check() reports a lapse
                log.warning("%s: renewing the write lease failed (%s); retrying", self.where, e)

    def check(self) -> None:
        if self._lost is None:
            ours, now = self._still_ours()
            if not ours:
                self._lost = f"another process took the lock ({describe_holder(now) if now else 'deleted'})"
        if self._lost is not None:
            raise StoreLockedError(
                f"store {self.where!r}: this import lost its write lease: {self._lost}. Nothing more is written; "
                "what was committed before stays"
            )

    def _release(self) -> None:
        stop = getattr(self, "_stop", None)
        if stop is not None:
            stop.set()
            self._renewer.join(timeout=5)
        try:
            ours, _ = self._still_ours()
            if ours:
                sync(self._zstore.delete(LOCK_FILE))
        except Exception as e:  # noqa: BLE001 - the lease then expires on its own
            log.warning("%s: could not remove the write lease (%s); it expires in %.0f s", self.where, e, LEASE_SECONDS)


def _still_at(fd: int, path: str) -> bool:
    """The open file ``fd`` is still the one at ``path``."""
    try:
        here, there = os.fstat(fd), os.stat(path, follow_symlinks=False)
    except OSError:
        return False
    return (here.st_dev, here.st_ino) == (there.st_dev, there.st_ino)
