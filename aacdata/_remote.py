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
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlparse

import zarr
from zarr.abc.store import Store

from .errors import StoreNotFoundError

StoreTarget = str | os.PathLike[str] | Store
"""A store location: local path, URL (``s3://bucket/prefix``, ``gs://``, ``az://``,
``memory://``) or an already built zarr ``Store``."""


def describe(target: StoreTarget) -> str:
    """A short name of a store location, for messages."""
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
    """A zarr ``Store`` for a location; remote URLs need ``fsspec`` and its backend (``s3fs``)."""
    if isinstance(target, Store):
        return target
    if is_local(target):
        return zarr.storage.LocalStore(local_path(target), read_only=read_only)
    url = os.fspath(target)
    if urlparse(url).scheme == "memory":
        raise StoreNotFoundError(f"{url!r}: pass a zarr MemoryStore object for in-memory stores")
    options = dict(storage_options or {})
    # fsspec caches filesystems by their arguments; a cached one keeps the endpoint and
    # credentials of the environment it was created in.
    options.setdefault("skip_instance_cache", True)
    try:
        return zarr.storage.FsspecStore.from_url(url, storage_options=options, read_only=read_only)
    except ImportError as e:
        raise StoreNotFoundError(
            f"{url!r} is an object-store URL; install the object-storage extra: pip install 'aacdata[s3]' ({e})"
        ) from None
    except (ValueError, TypeError) as e:
        raise StoreNotFoundError(f"cannot open {url!r} ({e})") from None
