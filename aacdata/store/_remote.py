"""Where a store lives: a local directory, an object-store URL, or a zarr ``Store``.

Object storage goes through zarr's :class:`zarr.storage.FsspecStore` (``s3fs`` for
``s3://``). ``obstore`` answered single range reads as fast on the same S3 server and 32
concurrent ones in ~60 % of the time, but its client hangs in a forked process (the
``DataLoader`` default on Linux), whereas a store opened afresh in each worker, as
:class:`~aacdata.AACSegmentDataset` does, works with fsspec. Endpoint and credentials
come from ``storage_options`` (s3fs's: ``endpoint_url``, ``key``, ``secret``,
``client_kwargs``...) or else from the standard AWS environment variables
(``AWS_ENDPOINT_URL``, ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_REGION``...),
which botocore reads itself.

Outages are not damage. Every request to an object store goes through
:class:`RemoteStore`, which

- bounds each request in time: for ``s3://``, botocore's ``connect_timeout`` (default
  :data:`DEFAULT_CONNECT_TIMEOUT_SECONDS`) and ``read_timeout`` (default
  :data:`DEFAULT_READ_TIMEOUT_SECONDS`, the longest silence while waiting for an answer),
  set through ``storage_options={"config_kwargs": {"connect_timeout": ..., "read_timeout":
  ...}}``;
- retries transient failures (timeouts, refused or reset connections, HTTP 5xx,
  throttling) ``retries`` times (default :data:`DEFAULT_RETRIES`, set with
  ``storage_options={"retries": n}``), waiting 0.2 s, 0.4 s, 0.8 s... (at most
  :data:`MAX_BACKOFF_SECONDS`, with jitter) between attempts. botocore's and s3fs's own
  retry loops are turned off so that the attempts do not multiply: a stalled server is
  reported after about ``(retries + 1) * read_timeout`` (~2 minutes with the defaults);
- raises :class:`~aacdata.errors.RemoteStoreError` for what remains, naming the store, the
  key and the cause, never the client library's own exception;
- tells a vanished store from a damaged one: an object missing from a store whose root
  ``zarr.json`` is gone too (bucket deleted or emptied) is a :class:`RemoteStoreError`;
  a chunk missing from a store that is still there is left to the reader to report as
  damage (:class:`~aacdata.errors.CorruptDataError`).

Connections are closed where they were opened. ``zarr`` makes an ``s3://`` filesystem
asynchronous, and s3fs closes the HTTP client of such a filesystem never by itself (only
its synchronous ones get a finalizer); left open, aiohttp complains at exit ("Unclosed
client session"). A :class:`RemoteStore` that :func:`open_store` made therefore closes its
client when the store is closed, when the last copy of it is collected, and at exit (before
zarr stops its event loop, on which the client lives) — in the process that opened it only:
a forked ``DataLoader`` worker shares its parent's sockets and holds a copy of its parent's
loop that does not run, so it keeps what it inherited untouched and opens its own.

Writers need more: the store itself must refuse the writes of an import that lost its
lock (:mod:`aacdata.store._fence`). :class:`Conditional` speaks S3's conditional requests
(``If-Match: <etag>``, ``If-None-Match: *``) through the same retries; :func:`fencing`
says how a store's writers are fenced and refuses the backends aacdata cannot fence: any
object store but S3 (GCS generation preconditions and Azure Blob ETags would serve, but
aacdata does not speak them yet).
"""

from __future__ import annotations

import asyncio
import atexit
import errno
import hashlib
import logging
import os
import random
import weakref
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Coroutine, Iterable, Mapping
from typing import Any, TypeVar
from urllib.parse import urlparse

import zarr
from zarr.abc.store import ByteRequest, Store
from zarr.core.buffer import Buffer, BufferPrototype
from zarr.core.sync import SyncError, sync
from zarr.storage import WrapperStore

from ..errors import AACDataError, RemoteStoreError, StoreNotFoundError, StoreWriteError
from ._chunks import CheckedLocalStore

StoreTarget = str | os.PathLike[str] | Store
"""A store location: local path, URL (``s3://bucket/prefix``, ``gs://``, ``az://``,
``memory://``) or an already built zarr ``Store``."""

DEFAULT_CONNECT_TIMEOUT_SECONDS = 10.0
"""Seconds to establish a connection to an ``s3://`` endpoint before the attempt fails."""

DEFAULT_READ_TIMEOUT_SECONDS = 30.0
"""Seconds an ``s3://`` request may wait for the next bytes of its answer before the
attempt fails (a stalled server); a slow but moving transfer is not cut."""

DEFAULT_RETRIES = 3
"""Attempts after the first for a request that failed transiently (timeout, connection
refused or reset, HTTP 5xx, throttling)."""

FIRST_BACKOFF_SECONDS = 0.2
MAX_BACKOFF_SECONDS = 5.0

_METADATA_KEYS = frozenset({"zarr.json", ".zgroup", ".zattrs", ".zarray", ".zmetadata"})
"""Keys that zarr probes and that are legitimately absent; a missing data key is checked."""

_CLIENT_MODULES = frozenset(
    {"botocore", "aiobotocore", "aiohttp", "s3fs", "fsspec", "gcsfs", "adlfs", "azure", "google", "urllib3"}
)
"""Packages whose exceptions are the object-store client's: they become RemoteStoreError."""

_TRANSIENT_ERRNOS = frozenset(
    {
        errno.ECONNRESET,
        errno.ECONNREFUSED,
        errno.ECONNABORTED,
        errno.ETIMEDOUT,
        errno.EPIPE,
        errno.EHOSTUNREACH,
        errno.ENETUNREACH,
        errno.ENETDOWN,
    }
)
_TRANSIENT_CODES = frozenset(
    {
        "SlowDown",
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestThrottled",
        "RequestLimitExceeded",
        "TooManyRequests",
        "TooManyRequestsException",
        "RequestTimeout",
        "RequestTimeoutException",
        "InternalError",
        "ServiceUnavailable",
        # S3: a conditional write raced another write of the same key; AWS says to retry
        "ConditionalRequestConflict",
    }
)
_TRANSIENT_CLASS_NAMES = frozenset(
    {
        # botocore: no answer in time, connection refused/closed, a body cut short
        "ReadTimeoutError",
        "AioReadTimeoutError",
        "ConnectTimeoutError",
        "EndpointConnectionError",
        "ConnectionClosedError",
        "ResponseStreamingError",
        "IncompleteReadError",
        "HTTPClientError",
        # aiohttp
        "ClientConnectionError",
        "ClientOSError",
        "ServerDisconnectedError",
        "ServerTimeoutError",
        "ClientPayloadError",
        # http.client, as re-raised by some clients
        "IncompleteRead",
        "RemoteDisconnected",
    }
)

T = TypeVar("T")

log = logging.getLogger("aacdata")

CLOSE_TIMEOUT_SECONDS = 2.0
"""Seconds to wait for a client's connections to close (closing sends nothing; a bound
all the same, so that an exit never hangs on it)."""


def describe(target: StoreTarget) -> str:
    """A short name of a store location, for messages."""
    if isinstance(target, RemoteStore):
        return target.where
    if isinstance(target, Store):
        return str(target)
    return os.fspath(target)


def is_local(target: StoreTarget) -> bool:
    if isinstance(target, Store):
        return isinstance(target, zarr.storage.LocalStore)
    text = os.fspath(target)
    scheme = urlparse(text).scheme
    return scheme in ("", "file") or (len(scheme) == 1 and os.name == "nt")


def local_path(target: StoreTarget) -> str:
    """The directory of a local store location."""
    if isinstance(target, zarr.storage.LocalStore):
        return str(target.root)
    text = os.fspath(target)  # type: ignore[arg-type]
    return urlparse(text).path if text.startswith("file://") else text


def open_store(target: StoreTarget, *, read_only: bool, storage_options: Mapping[str, Any] | None = None) -> Store:
    """A zarr ``Store`` for a location; remote URLs need ``fsspec`` and its backend (``s3fs``).

    An object-store URL gives a :class:`RemoteStore`: timeouts, bounded retries and
    :class:`~aacdata.errors.RemoteStoreError` for outages. ``storage_options`` are the
    backend's (s3fs: ``endpoint_url``, ``key``, ``secret``, ``client_kwargs``,
    ``config_kwargs``...), plus ``retries`` (attempts after the first for transient
    failures, default 3). For ``s3://`` the connect and read timeouts default to 10 s and
    30 s; set them with ``config_kwargs={"connect_timeout": 5, "read_timeout": 60}``.
    A zarr ``FsspecStore`` object is wrapped the same way (its timeouts are its own).
    """
    if isinstance(target, zarr.storage.FsspecStore):
        return RemoteStore(target, where=str(target), retries=_parse_retries(storage_options))
    if isinstance(target, Store):
        return target
    if is_local(target):
        return CheckedLocalStore(local_path(target), read_only=read_only)
    url = os.fspath(target)
    scheme = urlparse(url).scheme
    if scheme == "memory":
        raise StoreNotFoundError(f"{url!r}: pass a zarr MemoryStore object for in-memory stores")
    options = dict(storage_options or {})
    retries = _parse_retries(options)
    options.pop("retries", None)
    # fsspec caches filesystems by their arguments; a cached one keeps the endpoint and
    # credentials of the environment it was created in.
    options.setdefault("skip_instance_cache", True)
    # A cached listing would answer "the store is still there" after it is gone.
    options.setdefault("use_listings_cache", False)
    if scheme in ("s3", "s3a"):
        options["config_kwargs"] = _s3_config(options.get("config_kwargs"))
    try:
        inner = zarr.storage.FsspecStore.from_url(url, storage_options=options, read_only=read_only)
    except ImportError as e:
        raise StoreNotFoundError(
            f"{url!r} is an object-store URL; install the object-storage extra: pip install 'aacdata[s3]' ({e})"
        ) from None
    except (ValueError, TypeError) as e:
        raise StoreNotFoundError(f"cannot open {url!r} ({e})") from None
    except OSError as e:  # a file system that connects when made (ftp://, sftp://): host unknown, refused
        raise RemoteStoreError(
            f"cannot reach {url!r} ({type(e).__name__}: {e}); check the host and the network, or use an object "
            "store (s3://)"
        ) from None
    if scheme in ("s3", "s3a") and hasattr(inner.fs, "retries"):
        # s3fs retries some errors itself (5 times by default, nested per call); RemoteStore
        # does it for every error and every backend, so one attempt per call here.
        inner.fs.retries = 1
    connections = Connections(inner.fs) if scheme in ("s3", "s3a") else None
    return RemoteStore(inner, where=url, retries=retries, connections=connections)


def _parse_retries(options: Mapping[str, Any] | None) -> int:
    value = (options or {}).get("retries", DEFAULT_RETRIES)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"storage_options 'retries' must be an integer >= 0; got {value!r}")
    return value


def _s3_config(config: Any) -> dict[str, Any]:
    """botocore ``Config`` arguments with aacdata's timeouts, unless given."""
    if config is not None and not isinstance(config, Mapping):
        raise ValueError(f"storage_options 'config_kwargs' must be a mapping; got {type(config).__name__}")
    out = dict(config or {})
    for name in ("connect_timeout", "read_timeout"):
        value = out.get(name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float) or value <= 0):
            raise ValueError(f"storage_options config_kwargs {name!r} must be seconds > 0; got {value!r}")
    out.setdefault("connect_timeout", DEFAULT_CONNECT_TIMEOUT_SECONDS)
    out.setdefault("read_timeout", DEFAULT_READ_TIMEOUT_SECONDS)
    # RemoteStore retries; botocore's own retries (4 by default) would multiply its attempts.
    out.setdefault("retries", {"max_attempts": 0})
    return out


class RemoteStore(WrapperStore[Store]):
    """A zarr ``Store`` over an object store: retries transient failures with backoff and
    raises :class:`~aacdata.errors.RemoteStoreError` for the rest (see the module notes).

    ``where`` names the store in messages; ``retries`` is the number of attempts after the
    first for a transient failure.
    """

    def __init__(
        self, store: Store, *, where: str, retries: int = DEFAULT_RETRIES, connections: Connections | None = None
    ) -> None:
        super().__init__(store)
        self.where = where
        self.retries = retries
        self._connections = connections

    def _with_store(self, store: Store) -> RemoteStore:
        # Copies (zarr's with_read_only) share the client, and its closing.
        return type(self)(store, where=self.where, retries=self.retries, connections=self._connections)

    def close_connections(self) -> None:
        """Close the HTTP connections of the client that :func:`open_store` opened for this
        store (none for a store object passed in: its owner closes it). The next request
        opens new ones."""
        if self._connections is not None:
            self._connections.close()

    def close(self) -> None:
        self.close_connections()
        super().close()

    def __str__(self) -> str:
        return self.where

    def __repr__(self) -> str:
        return f"RemoteStore({self.where!r}, retries={self.retries})"

    async def _call(self, action: str, key: str, call: Callable[[], Awaitable[T]]) -> T:
        """``call()``, retried while it fails transiently; RemoteStoreError once it gives up."""
        for attempt in range(self.retries + 1):
            try:
                return await call()
            except AACDataError:
                raise
            except Exception as e:
                if not _is_client_error(e):
                    raise  # a bug or a misuse (TypeError, zarr's own ValueError): not an outage
                if attempt < self.retries and _is_transient(e):
                    delay = min(MAX_BACKOFF_SECONDS, FIRST_BACKOFF_SECONDS * 2**attempt)
                    # Jitter keeps many workers that failed together from retrying together.
                    await asyncio.sleep(delay * random.uniform(0.5, 1.0))
                    continue
                raise remote_error(self.where, action, key, e, attempts=attempt + 1) from e
        raise AssertionError("unreachable")  # pragma: no cover

    async def _check_present(self, key: str) -> None:
        """An absent data object: is the store itself gone (outage) or only the object (damage)?"""
        # Reads only: an import legitimately reads chunks it has not written yet.
        if not self.read_only or key.rsplit("/", 1)[-1] in _METADATA_KEYS:
            return
        if not await self._call("checking", "zarr.json", lambda: self._store.exists("zarr.json")):
            raise RemoteStoreError(
                f"store {self.where!r} is gone: {key} and the store's zarr.json are both missing (bucket "
                "deleted or emptied, or the wrong endpoint?); check the URL and the bucket, then open the "
                "store again"
            )

    async def get(self, key: str, prototype: BufferPrototype, byte_range: ByteRequest | None = None) -> Buffer | None:
        value = await self._call("reading", key, lambda: self._store.get(key, prototype, byte_range))
        if value is None:
            await self._check_present(key)
        return value

    async def get_partial_values(
        self, prototype: BufferPrototype, key_ranges: Iterable[tuple[str, ByteRequest | None]]
    ) -> list[Buffer | None]:
        key_ranges = list(key_ranges)
        first = key_ranges[0][0] if key_ranges else ""
        values = await self._call("reading", first, lambda: self._store.get_partial_values(prototype, key_ranges))
        for (key, _), value in zip(key_ranges, values, strict=True):
            if value is None:
                await self._check_present(key)
                break
        return values

    async def _get_many(
        self, requests: Iterable[tuple[str, BufferPrototype, ByteRequest | None]]
    ) -> AsyncGenerator[tuple[str, Buffer | None], None]:
        for key, prototype, byte_range in requests:
            yield key, await self.get(key, prototype, byte_range)

    async def exists(self, key: str) -> bool:
        return await self._call("checking", key, lambda: self._store.exists(key))

    async def getsize(self, key: str) -> int:
        return await self._call("sizing", key, lambda: self._store.getsize(key))

    async def is_empty(self, prefix: str) -> bool:
        return await self._call("listing", prefix, lambda: self._store.is_empty(prefix))

    async def set(self, key: str, value: Buffer) -> None:
        await self._call("writing", key, lambda: self._store.set(key, value))

    async def set_if_not_exists(self, key: str, value: Buffer) -> None:
        await self._call("writing", key, lambda: self._store.set_if_not_exists(key, value))

    async def _set_many(self, values: Iterable[tuple[str, Buffer]]) -> None:
        await asyncio.gather(*(self.set(key, value) for key, value in values))

    async def delete(self, key: str) -> None:
        await self._call("deleting", key, lambda: self._store.delete(key))

    async def delete_dir(self, prefix: str) -> None:
        await self._call("deleting", prefix, lambda: self._store.delete_dir(prefix))

    async def clear(self) -> None:
        await self._call("clearing", "", self._store.clear)

    # Listings are read whole, so that a failed one can be retried from its start.
    def list(self) -> AsyncIterator[str]:
        return self._listed("", self._store.list)

    def list_prefix(self, prefix: str) -> AsyncIterator[str]:
        return self._listed(prefix, lambda: self._store.list_prefix(prefix))

    def list_dir(self, prefix: str) -> AsyncIterator[str]:
        return self._listed(prefix, lambda: self._store.list_dir(prefix))

    async def _listed(self, prefix: str, listing: Callable[[], AsyncIterator[str]]) -> AsyncIterator[str]:
        async def collect() -> list[str]:
            return [k async for k in listing()]

        for key in await self._call("listing", prefix or "/", collect):
            yield key


class Connections:
    """The HTTP client of one s3fs filesystem made by :func:`open_store`, closed by
    :meth:`close`, when the last store holding it is collected, and at exit, in the process
    that made it (see the module notes).

    s3fs opens the client on the filesystem's first request, and again after it was closed.
    """

    def __init__(self, fs: Any) -> None:
        self.fs = fs
        self.close = _closer(fs)
        # The finalizer holds the closer (and the filesystem), never this object.
        weakref.finalize(self, self.close).atexit = False  # exit: _close_all, before zarr's loop stops
        _LIVE.add(self)

    def __reduce__(self) -> tuple[Any, ...]:
        # Unpickled elsewhere, the filesystem is a new one, whose client that process opens and closes.
        return (Connections, (self.fs,))


_LIVE: weakref.WeakSet[Connections] = weakref.WeakSet()
"""The clients this process may have opened, closed at exit."""

_INHERITED: dict[int, Any] = {}
"""Filesystems a forked child inherited with their parent's open clients: kept here and
never collected, since closing them (or aiohttp's complaint when collected) would act on
the parent's sockets and event loop."""

_CLOSING: set[asyncio.Task[Any]] = set()
"""Closings scheduled on zarr's loop from its own thread (tasks are weakly held by asyncio)."""


def _closer(fs: Any) -> Callable[[], None]:
    """A function that closes ``fs``'s client in this process, each client once."""
    pid = os.getpid()
    closed: list[Any] = [None]

    def close() -> None:
        if os.getpid() != pid:
            _INHERITED[id(fs)] = fs
            return
        # s3fs keeps the client's context there (one client, or one per region), and closes
        # its synchronous filesystems' clients through it too.
        context = getattr(fs, "_s3creator", None)
        if context is None or context is closed[0]:
            return
        closed[0] = context
        _run_on_zarr_loop(lambda: context.__aexit__(None, None, None))

    return close


def _run_on_zarr_loop(make: Callable[[], Coroutine[Any, Any, Any]]) -> None:
    """Run ``make()`` on zarr's event loop, where the clients live; from that loop's own
    thread (a store collected there), schedule it instead."""
    coro = make()
    try:
        sync(coro, timeout=CLOSE_TIMEOUT_SECONDS)
    except SyncError:
        coro.close()  # never started
        task = asyncio.get_running_loop().create_task(make())
        _CLOSING.add(task)
        task.add_done_callback(_CLOSING.discard)
    except TimeoutError:
        log.debug("an object-store client did not close within %s s", CLOSE_TIMEOUT_SECONDS)
    except RuntimeError as e:  # zarr's loop is already closed (late in the interpreter's exit)
        coro.close()
        log.debug("an object-store client was left open: %s", e)
    except Exception as e:  # noqa: BLE001 - the client's own failure to close: nothing left to do
        log.debug("closing an object-store client failed: %s: %s", type(e).__name__, e)


def _close_all() -> None:
    for connections in list(_LIVE):
        connections.close()


# Registered after zarr's own exit handler (imported above), so it runs first: the loop is still up.
atexit.register(_close_all)


def remote_error(where: str, action: str, key: str, error: BaseException, *, attempts: int = 1) -> RemoteStoreError:
    """A :class:`RemoteStoreError` for a failed request: the store, the key, the cause and
    what to do. Also for callers that talk to a client outside a :class:`RemoteStore`."""
    tried = f" after {attempts} attempts" if attempts > 1 else ""
    cause = _cause_text(error)
    status, code = _http_status(error)
    if any(isinstance(e, FileNotFoundError) for e in _chain(error)) or code in ("NoSuchBucket", "404"):
        hint = "the bucket or path does not exist; check the URL, or create the bucket first"
    elif any(isinstance(e, PermissionError) for e in _chain(error)) or status in (401, 403):
        hint = "access denied; check the credentials (storage_options key/secret or the AWS_* variables)"
    elif status is not None and (status >= 500 or status == 429 or code in _TRANSIENT_CODES):
        hint = f"the object store answered HTTP {status}: it is failing or throttling; try again later"
    elif _is_timeout(error):
        hint = (
            "the object store did not answer in time; check that the endpoint is up, or raise "
            "storage_options config_kwargs 'read_timeout' / 'connect_timeout' or 'retries'"
        )
    elif _is_transient(error):
        hint = "the endpoint cannot be reached; check the endpoint URL, that the server is up and the network"
    else:
        hint = "check the endpoint, the credentials and the network, then try again"
    subject = f"{key} of {where!r}" if key else repr(where)
    return RemoteStoreError(f"{action} {subject} failed{tried} ({cause}): {hint}")


def _chain(error: BaseException) -> Iterable[BaseException]:
    """The exception and its causes, innermost last (s3fs and aiobotocore wrap errors)."""
    seen: set[int] = set()
    e: BaseException | None = error
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        yield e
        e = e.__cause__ or e.__context__


def _cause_text(error: BaseException) -> str:
    text = str(error).strip() or type(error).__name__
    return f"{type(error).__name__}: {text}" if type(error).__name__ not in text else text


def _http_status(error: BaseException) -> tuple[int | None, str | None]:
    """HTTP status and error code of a botocore ``ClientError`` in the chain."""
    for e in _chain(error):
        response = getattr(e, "response", None)
        if isinstance(response, Mapping):
            meta = response.get("ResponseMetadata") or {}
            err = response.get("Error") or {}
            status = meta.get("HTTPStatusCode")
            code = err.get("Code")
            return (int(status) if isinstance(status, int) else None), (str(code) if code is not None else None)
    return None, None


def _is_client_error(error: BaseException) -> bool:
    if isinstance(error, OSError | TimeoutError):
        return True
    return any(cls.__module__.split(".")[0] in _CLIENT_MODULES for cls in type(error).__mro__)


def _is_timeout(error: BaseException) -> bool:
    return any(isinstance(e, TimeoutError) or "Timeout" in type(e).__name__ for e in _chain(error))


def _is_transient(error: BaseException) -> bool:
    """A failure worth another attempt: timeouts, lost connections, 5xx, throttling."""
    status, code = _http_status(error)
    if status is not None:
        return status >= 500 or status == 429 or code in _TRANSIENT_CODES
    for e in _chain(error):
        if isinstance(e, TimeoutError | ConnectionError):
            return True
        if isinstance(e, OSError) and e.errno in _TRANSIENT_ERRNOS:
            return True
        if any(cls.__name__ in _TRANSIENT_CLASS_NAMES for cls in type(e).__mro__):
            return True
    return False


# ---------------------------------------------------------------------- conditional writes


class RefusedWriteError(Exception):
    """A conditional write was refused: ``key`` is not in the state the writer expected
    (another writer has written or created it). Not an error of the object store."""

    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


class Conditional:
    """Conditional requests to the S3 bucket under a :class:`RemoteStore`: reads that return
    the object's ETag, and writes that the bucket performs only if the object is still in the
    state the writer saw (``If-Match: <etag>``) or does not exist yet (``If-None-Match: *``).

    Requests go through the store's retries and error reporting. A retried write whose
    first attempt had landed is answered "precondition failed" by the second; it counts as
    done when the object's ETag is the MD5 of what was written (S3's ETag of a single PUT).
    """

    backend = "S3"

    def __init__(self, remote: RemoteStore, fs: Any, root: str) -> None:
        self.remote = remote
        self._fs = fs
        self._root = root.rstrip("/")

    def _bucket_key(self, key: str) -> tuple[str, str]:
        bucket, path, _ = self._fs.split_path(f"{self._root}/{key}" if key else self._root)
        return str(bucket), str(path)

    async def head(self, key: str) -> str | None:
        """The object's ETag, or None where there is no object."""
        bucket, path = self._bucket_key(key)

        async def call() -> str | None:
            try:
                out = await self._fs._call_s3("head_object", Bucket=bucket, Key=path)
            except FileNotFoundError:
                return None
            return str(out["ETag"])

        return await self.remote._call("checking", key, call)

    async def get(self, key: str) -> tuple[bytes, str] | None:
        """The object's bytes and ETag (of the same version), or None where there is none."""
        bucket, path = self._bucket_key(key)

        async def call() -> tuple[bytes, str] | None:
            try:
                out = await self._fs._call_s3("get_object", Bucket=bucket, Key=path)
            except FileNotFoundError:
                return None
            body = out["Body"]
            try:
                data = await body.read()
            finally:
                body.close()
            return bytes(data), str(out["ETag"])

        return await self.remote._call("reading", key, call)

    async def put(self, key: str, data: bytes, *, expected: str | None) -> str:
        """Write ``data`` only if the object's ETag is ``expected`` (None: only if there is no
        object); returns the new ETag. Raises :class:`RefusedWriteError` where the bucket refuses."""
        bucket, path = self._bucket_key(key)
        condition = {"IfNoneMatch": "*"} if expected is None else {"IfMatch": expected}
        attempts = 0

        async def call() -> str:
            nonlocal attempts
            attempts += 1
            try:
                out = await self._fs._call_s3("put_object", Bucket=bucket, Key=path, Body=data, **condition)
            except Exception as e:
                if _refused(e, if_match=expected is not None):
                    raise RefusedWriteError(key) from None
                raise
            return str(out["ETag"])

        try:
            return await self.remote._call("writing", key, call)
        except RefusedWriteError:
            if attempts < 2:
                raise
            # An earlier attempt may have landed before its answer was lost.
            now = await self.head(key)
            if now is not None and now.strip('"') == hashlib.md5(data, usedforsecurity=False).hexdigest():
                return now
            raise


def _refused(error: BaseException, *, if_match: bool) -> bool:
    """A conditional write refused: 412 Precondition Failed, or for ``If-Match`` on an object
    that is gone, 404 NoSuchKey (AWS; other servers answer 412)."""
    status, code = _http_status(error)
    return status == 412 or code == "PreconditionFailed" or (if_match and code == "NoSuchKey")


def fencing(store: Store, where: str) -> Conditional | None:
    """How the writes of an import into ``store`` are fenced against a writer that lost its
    lock: a :class:`Conditional` for S3; None for a local directory (the lock is the
    kernel's and a writer cannot outlive it) and a zarr ``MemoryStore`` (one process).

    Raises
    ------
    StoreWriteError
        Any other backend: aacdata cannot make it refuse a stale writer's writes.
    """
    if isinstance(store, zarr.storage.LocalStore | zarr.storage.MemoryStore):
        return None
    inner = store._store if isinstance(store, RemoteStore) else store
    fs = getattr(inner, "fs", None) if isinstance(inner, zarr.storage.FsspecStore) else None
    protocol = getattr(fs, "protocol", None)
    protocols = (protocol,) if isinstance(protocol, str) else tuple(protocol or ())
    if fs is not None and isinstance(store, RemoteStore) and {"s3", "s3a"} & set(protocols):
        return Conditional(store, fs, str(getattr(inner, "path", "")))
    backend = f"{protocols[0]}:// (fsspec {type(fs).__name__})" if protocols else f"zarr {type(inner).__name__}"
    raise StoreWriteError(
        f"cannot write to {where!r}: its backend, {backend}, cannot be fenced. aacdata writes to object "
        "storage only where the store itself refuses the writes of an import that lost its lock (S3 "
        "conditional requests); import into a local directory and copy it there with `aacdata copy`"
    )
