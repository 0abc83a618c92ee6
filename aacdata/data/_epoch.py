"""The seed and epoch a dataset and all its DataLoader workers agree on.

With ``persistent_workers=True`` a DataLoader keeps each worker's copy of the dataset for
the whole run, so ``dataset.set_epoch(e)`` or ``dataset.load_state_dict(...)`` in the main
process would change nothing the workers see: every epoch would read the windows of the
seed and epoch the workers started with. Both therefore live in sixteen bytes of a small
shared file (in ``/dev/shm`` where it exists), mapped by every process that reads them: the
process that created them writes, workers started by fork, spawn or forkserver read them
on every item (~0.3 µs). A worker with no file to read (it was removed before the worker
mapped it) falls back to the values it was forked or unpickled with.

The state belongs to one dataset object: a deep copy, or a copy unpickled in the process
that created the state, gets a file of its own, starting from the same values; a copy
unpickled in another process (a spawned worker) reads the creator's.
"""

from __future__ import annotations

import contextlib
import mmap
import operator
import os
import struct
import tempfile
import uuid
import weakref
from typing import Any

_FORMAT = struct.Struct("<QQ")
"""seed, epoch: the inputs of the plans' counter-based hash, 64 bits each."""
_LIMIT = 1 << 64


def parse_u64(name: str, value: object) -> int:
    """``value`` as an int in ``[0, 2**64)``: ``TypeError`` for a non-integer (a float
    included), ``ValueError`` out of range, each naming ``name`` and the value."""
    expected = f"{name} must be an integer in [0, 2**64)"
    try:
        number = operator.index(value)  # type: ignore[arg-type]
    except TypeError:
        raise TypeError(f"{expected}; got {value!r} ({type(value).__name__})") from None
    if not 0 <= number < _LIMIT:
        raise ValueError(f"{expected}; got {number}")
    return number


def _directory() -> str:
    shm = "/dev/shm"
    return shm if os.path.isdir(shm) and os.access(shm, os.W_OK) else tempfile.gettempdir()


def _remove(path: str, owner: int) -> None:
    # Only the process that created the file removes it (forked copies run finalizers too).
    if os.getpid() == owner:
        with contextlib.suppress(OSError):
            os.unlink(path)


class SharedSeedEpoch:
    """A seed and an epoch, each in ``[0, 2**64)``, shared by the process that created
    them and the processes it starts (picklable)."""

    def __init__(self, seed: int = 0, epoch: int = 0) -> None:
        self._create(parse_u64("seed", seed), parse_u64("epoch", epoch))

    def _create(self, seed: int, epoch: int) -> None:
        """Own the values: a new shared file that this process writes."""
        self._values = (seed, epoch)
        self._owner = os.getpid()
        self._map: mmap.mmap | None = None
        self._map_pid = 0
        self._path: str | None = os.path.join(_directory(), f"aacdata-epoch-{self._owner}-{uuid.uuid4().hex}")
        try:
            fd = os.open(self._path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        except OSError:
            self._path = None  # no shared file: workers keep the values they were started with
            return
        try:
            os.write(fd, _FORMAT.pack(*self._values))
        finally:
            os.close(fd)
        weakref.finalize(self, _remove, self._path, self._owner)

    def get(self) -> tuple[int, int]:
        """``(seed, epoch)``."""
        if os.getpid() == self._owner or self._path is None:
            return self._values
        mapped = self._mapped()
        if mapped is None:
            return self._values
        seed, epoch = _FORMAT.unpack_from(mapped)
        return int(seed), int(epoch)

    @property
    def seed(self) -> int:
        return self.get()[0]

    @property
    def epoch(self) -> int:
        return self.get()[1]

    def set(self, *, seed: int | None = None, epoch: int | None = None) -> None:
        """Set either or both (checked before anything changes)."""
        old_seed, old_epoch = self.get()
        new = (
            old_seed if seed is None else parse_u64("seed", seed),
            old_epoch if epoch is None else parse_u64("epoch", epoch),
        )
        self._values = new
        mapped = self._mapped()
        if mapped is not None:
            _FORMAT.pack_into(mapped, 0, *new)

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

    def __deepcopy__(self, memo: dict[int, Any]) -> SharedSeedEpoch:
        return SharedSeedEpoch(*self.get())

    def __getstate__(self) -> dict[str, Any]:
        seed, epoch = self.get()
        return {"seed": seed, "epoch": epoch, "owner": self._owner, "path": self._path}

    def __setstate__(self, state: dict[str, Any]) -> None:
        if state["owner"] == os.getpid():
            # Unpickled where it was created: a copy of the dataset, not one of its workers.
            self._create(int(state["seed"]), int(state["epoch"]))
            return
        self._values = (int(state["seed"]), int(state["epoch"]))
        self._owner = int(state["owner"])
        self._path = state["path"]
        self._map = None
        self._map_pid = 0
