"""Exception hierarchy of aacdata.

Every error aacdata raises on purpose is an :class:`AACDataError`. Each subclass also
inherits the builtin exception a caller would naturally catch, so
``except FileNotFoundError`` works for a missing store as well as for a missing file.
"""

from __future__ import annotations

from collections.abc import Callable

__all__ = [
    "AACDataError",
    "AnnotationError",
    "CorruptDataError",
    "DecodeError",
    "ImportFailedError",
    "ImportInterruptedError",
    "RecordingNotFoundError",
    "RemoteStoreError",
    "SourceError",
    "StoreFormatError",
    "StoreLockedError",
    "StoreNotFoundError",
    "StoreWriteError",
    "WindowError",
]


class AACDataError(Exception):
    """Base class of every error raised by aacdata."""

    def __str__(self) -> str:
        # KeyError quotes its message; keep every message readable as written.
        return str(self.args[0]) if self.args else ""


class StoreNotFoundError(AACDataError, FileNotFoundError):
    """The store path does not exist or holds no aacdata store."""


class StoreFormatError(AACDataError, ValueError):
    """The store exists but its layout or attributes are not a known aacdata format."""


class StoreLockedError(AACDataError, BlockingIOError):
    """Another process is writing to the store."""


class StoreWriteError(AACDataError, OSError):
    """Writing to the store failed (disk full, permissions); the last commit stays intact."""


class RecordingNotFoundError(AACDataError, KeyError):
    """No recording has the requested index or id."""


class WindowError(AACDataError, ValueError):
    """A requested sample window lies outside the recording (and ``pad`` is off)."""


class SourceError(AACDataError, ValueError):
    """A source file cannot be imported: unreadable, not audio, empty, truncated, ..."""


class DecodeError(AACDataError, RuntimeError):
    """The AAC decoder failed on stored frames."""


class AnnotationError(AACDataError, ValueError):
    """An annotation table cannot be read: a missing column, an unparseable number, an event
    that ends before it starts or past its recording, an id that matches no recording. The
    message names the file and line."""


class CorruptDataError(AACDataError, ValueError):
    """Stored bytes or index rows disagree with each other or with their checksum."""


class RemoteStoreError(AACDataError, OSError):
    """An object store could not be reached or answered with an error (timeout, connection
    lost, bucket gone) after the retries: an outage, not damage to the store. Datasets never
    skip it with ``on_error="skip"``."""


class ImportInterruptedError(AACDataError, RuntimeError):
    """An import stopped by SIGINT (Ctrl-C) or SIGTERM. What was converted completely is
    committed and the lock released; running the same import again finishes it.
    ``signum`` is the signal's number (the CLI exits with ``128 + signum``)."""

    def __init__(self, message: str, *, signum: int) -> None:
        super().__init__(message)
        self.signum = signum


class ImportFailedError(AACDataError, RuntimeError):
    """Raised by ``import_audio(..., on_error="raise")`` for the first failed source."""


Describe = str | Callable[[], str]
"""What an error message is about: a text, or a function that makes it (a hot path passes
a function, so that the text is built only when something fails)."""


def described(what: Describe) -> str:
    """The text of a :data:`Describe`."""
    return what if isinstance(what, str) else what()
