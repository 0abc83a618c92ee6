"""The epoch a dataset and all its DataLoader workers agree on.

With ``persistent_workers=True`` a DataLoader keeps each worker's copy of the dataset for
the whole run, so ``dataset.set_epoch(e)`` in the main process changes nothing the workers
see: every epoch would read the windows of epoch 0. The epoch therefore lives in eight
bytes of a small shared file (in ``/dev/shm`` where it exists), mapped by every process
that reads it: the main process writes it, workers started by fork, spawn or forkserver
read it on every item (~0.2 µs). A process that never sets the epoch and has no file to
read (it was removed) falls back to the value it was created or unpickled with.
"""

from __future__ import annotations

import contextlib
import mmap
import os
import struct
import tempfile
import uuid
import weakref
from typing import Any

_FORMAT = struct.Struct("<q")


def _directory() -> str:
    shm = "/dev/shm"
    return shm if os.path.isdir(shm) and os.access(shm, os.W_OK) else tempfile.gettempdir()


def _remove(path: str, owner: int) -> None:
    # Only the process that created the file removes it (forked copies run finalizers too).
    if os.getpid() == owner:
        with contextlib.suppress(OSError):
            os.unlink(path)


class SharedEpoch:
    """An integer shared by a process and the processes it starts (picklable)."""

    def __init__(self, value: int = 0) -> None:
        self._value = int(value)
        self._owner = os.getpid()
        self._path: str | None = os.path.join(_directory(), f"aacdata-epoch-{self._owner}-{uuid.uuid4().hex}")
        self._map: mmap.mmap | None = None
        self._map_pid = 0
        try:
            fd = os.open(self._path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        except OSError:
            self._path = None  # no shared file: workers keep the epoch they were started with
            return
        try:
            os.write(fd, _FORMAT.pack(self._value))
        finally:
            os.close(fd)
        weakref.finalize(self, _remove, self._path, self._owner)

    def get(self) -> int:
        if os.getpid() == self._owner or self._path is None:
            return self._value
        mapped = self._mapped()
        return self._value if mapped is None else int(_FORMAT.unpack_from(mapped)[0])

    def set(self, value: int) -> None:
        self._value = int(value)
        mapped = self._mapped()
        if mapped is not None:
            _FORMAT.pack_into(mapped, 0, self._value)

    def _mapped(self) -> mmap.mmap | None:
        if self._map is not None and self._map_pid == os.getpid():
            return self._map
        if self._path is None:
            return None
        try:
            fd = os.open(self._path, os.O_RDWR | os.O_CLOEXEC)
        except OSError:
            return None
        try:
            self._map = mmap.mmap(fd, _FORMAT.size)
        except (OSError, ValueError):
            return None
        finally:
            os.close(fd)
        self._map_pid = os.getpid()
        return self._map

    def __getstate__(self) -> dict[str, Any]:
        return {"value": self.get(), "owner": self._owner, "path": self._path}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self._value = int(state["value"])
        self._owner = int(state["owner"])
        self._path = state["path"]
        self._map = None
        self._map_pid = 0
