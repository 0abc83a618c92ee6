"""Named annotation sets inside a store: layout, commit protocol, checks.

Layout (a fixed number of arrays per set, whatever the number of events)::

    /annotations/                        group
    /annotations/<name>/                 group; attributes["aacdata_annotations"]: the commit
    /annotations/<name>/v<k>/recording   int64   (E,)  row in the recordings table
    /annotations/<name>/v<k>/start       int64   (E,)  half-open span [start, stop), samples
    /annotations/<name>/v<k>/stop        int64   (E,)    of the recording's source timeline
    /annotations/<name>/v<k>/label       int32   (E,)  index into the commit's classes
    /annotations/<name>/v<k>/low_hz      float32 (E,)  frequency bounds, NaN where absent
    /annotations/<name>/v<k>/high_hz     float32 (E,)
    /annotations/<name>/v<k>/channel     int16   (E,)  0-based channel, -1 for all
    /annotations/<name>/v<k>/extra       string  (E,)  other columns of the source, JSON

The commit (one attribute, written in one ``zarr.json`` write, which zarr's local store
replaces atomically) names the current version ``v<k>`` and holds the set's classes, the
names of its source files, its event count and a CRC-32 of every array over those events.
Commit protocol: arrays of a fresh version ``v<k+1>`` first, the commit last, then old
versions deleted. A writer killed before the commit leaves the previous state visible (or
no set, for a new name) plus a stale version that the next write overwrites; killed after
it, only stale versions to delete. A set group without the attribute is not a set.

Stores without ``/annotations`` are plain version-1 stores; readers that do not know of
annotations never open the group.
"""

from __future__ import annotations

import re
import warnings
import zlib
from collections.abc import Mapping
from typing import Any

import numpy as np
import zarr
from zarr.core.sync import sync

from . import _lock
from .annotations import STRINGS, Annotations
from .errors import AACDataError, AnnotationError, CorruptDataError, StoreWriteError

__all__ = ["GROUP", "list_sets", "read_set", "set_info", "write_set"]

GROUP = "annotations"
ATTRIBUTE = "aacdata_annotations"
FORMAT_VERSION = 1
CHUNK_ROWS = 1 << 18
"""Rows per chunk (2 MiB of int64): a million events are four chunks per array."""

COLUMNS: dict[str, Any] = {
    "recording": np.dtype("int64"),
    "start": np.dtype("int64"),
    "stop": np.dtype("int64"),
    "label": np.dtype("int32"),
    "low_hz": np.dtype("float32"),
    "high_hz": np.dtype("float32"),
    "channel": np.dtype("int16"),
    "extra": STRINGS,
}
_FILL: dict[str, Any] = {"low_hz": np.nan, "high_hz": np.nan, "channel": -1, "extra": ""}
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_VERSION = re.compile(r"^v([0-9]{1,12})$")


def crc32(name: str, values: np.ndarray) -> int:
    """CRC-32 of an array's values: numbers as little-endian bytes, strings as UTF-8 each
    followed by a NUL byte (as the recordings table's text columns)."""
    if name == "extra":
        items = values.tolist()
        return zlib.crc32(("\0".join(items) + "\0").encode("utf-8")) if items else 0
    dtype = COLUMNS[name].newbyteorder("<")
    return zlib.crc32(np.ascontiguousarray(values, dtype=dtype).tobytes())


def check_name(name: str) -> str:
    """A set name: letters, digits, ``.``, ``_``, ``-``; starting with a letter or digit; ≤ 128."""
    if not isinstance(name, str) or not _NAME.match(name):
        raise ValueError(
            f"annotation set name {name!r} is not allowed; expected letters, digits, '.', '_' or '-', "
            "starting with a letter or digit, at most 128 characters"
        )
    return name


def list_sets(group: zarr.Group) -> list[str]:
    """Names of the committed annotation sets of a store's root ``group``, sorted."""
    parent = _parent(group)
    if parent is None:
        return []
    names = []
    for name, node in parent.members():
        if isinstance(node, zarr.Group) and ATTRIBUTE in node.attrs:
            names.append(name)
    return sorted(names)


def set_info(group: zarr.Group, name: str, *, where: str | None = None) -> dict[str, Any]:
    """What a set's commit says, without reading its arrays: ``num_events``, ``classes``,
    ``sources`` and ``version`` (for ``aacdata info``).

    Raises
    ------
    AnnotationError
        No set of that name.
    CorruptDataError
        Its commit attribute is damaged.
    """
    where = where or _describe(group)
    node = _set_group(group, check_name(name), where)
    record = _parse_record(node.attrs.get(ATTRIBUTE), f"{where}/{GROUP}/{name}")
    return {
        "num_events": record["num_events"],
        "classes": list(record["classes"]),
        "sources": list(record["sources"]),
        "version": record["current"],
    }


def read_set(
    group: zarr.Group, name: str, *, num_recordings: int | None = None, where: str | None = None
) -> Annotations:
    """Read a committed annotation set (a resolved :class:`~aacdata.Annotations`).

    Parameters
    ----------
    group
        The store's root group.
    name
        The set's name.
    num_recordings
        The store's committed recordings: rows at or past it are damage.
    where
        How to name the store in messages (default: the zarr store's location).

    Raises
    ------
    AnnotationError
        No set of that name (the message lists the sets there are).
    CorruptDataError
        A node is missing or unreadable, an array disagrees with its CRC-32, or the values
        break the table's rules (order, label range); the message names the node.
    """
    where = where or _describe(group)
    check_name(name)
    try:
        return _read(group, name, num_recordings, where)
    except CorruptDataError:
        # A replace may have deleted the version we began reading: read the new commit.
        node = _set_group(group, name, where)
        before = node.attrs.get(ATTRIBUTE)
        node = zarr.open_group(node.store, path=node.path, mode="r")
        if node.attrs.get(ATTRIBUTE) == before:
            raise
        return _read(group, name, num_recordings, where)


def write_set(
    group: zarr.Group,
    name: str,
    ann: Annotations,
    *,
    replace: bool = False,
    lock: _lock.WriteLock | None = None,
    num_recordings: int | None = None,
    where: str | None = None,
) -> None:
    """Write a resolved :class:`~aacdata.Annotations` as the set ``name``.

    The arrays go to a fresh version group, the commit attribute last (see the module's
    docstring), so that a writer killed at any moment leaves either the previous state or
    the new one visible.

    Parameters
    ----------
    group
        The store's root group, opened for writing.
    name
        The set's name (letters, digits, ``.``, ``_``, ``-``).
    ann
        A resolved table (rows of the store's recordings, samples).
    replace
        Replace an existing set of that name (otherwise that is an error).
    lock
        The store's write lock, if the caller holds it; otherwise it is taken here
        (:func:`aacdata._lock.acquire`) for the duration of the write.
    num_recordings
        The store's committed recordings: events of rows at or past it are refused.
    where
        How to name the store in messages.

    Raises
    ------
    AnnotationError
        The set exists and ``replace`` is False; ``ann`` is not resolved or names rows
        past ``num_recordings``.
    StoreLockedError
        Another process writes to the store.
    StoreWriteError
        Writing failed (the previous state stays visible).
    """
    where = where or _describe(group)
    check_name(name)
    if not ann.resolved:
        raise AnnotationError(f"annotation set {name!r}: the table is not resolved; call ann.resolve(store) first")
    if num_recordings is not None and len(ann) and int(ann.recording.max()) >= num_recordings:
        raise AnnotationError(
            f"annotation set {name!r} has events of recording row {int(ann.recording.max())}, but {where} has "
            f"{num_recordings} recordings; resolve the table against this store"
        )
    if lock is None:
        with _lock.acquire(group.store, where) as held:
            _write(group, name, ann, replace=replace, lock=held, where=where)
    else:
        _write(group, name, ann, replace=replace, lock=lock, where=where)


# ---------------------------------------------------------------------- internals


def _describe(group: zarr.Group) -> str:
    store = group.store
    root = getattr(store, "root", None)
    return str(root) if root is not None else str(store)


def _parent(group: zarr.Group) -> zarr.Group | None:
    try:
        node = group[GROUP]
    except KeyError:
        return None
    return node if isinstance(node, zarr.Group) else None


def _set_group(group: zarr.Group, name: str, where: str) -> zarr.Group:
    parent = _parent(group)
    node: Any = None
    if parent is not None:
        try:
            node = parent[name]
        except KeyError:
            node = None
    if not isinstance(node, zarr.Group) or ATTRIBUTE not in node.attrs:
        have = list_sets(group)
        listed = ", ".join(map(repr, have)) if have else "none"
        raise AnnotationError(f"{where} has no annotation set {name!r} (sets: {listed})")
    return node


def _delete_stale(node: zarr.Group, *, keep: str) -> None:
    """Delete every version of a set but ``keep``: replaced ones, and what killed writes or
    deletions left (possibly chunks without their ``zarr.json``, which zarr does not list)."""
    store = node.store
    prefix = node.path.rstrip("/")

    async def names() -> list[str]:
        return [name async for name in store.list_dir(prefix)]

    for name in sorted(sync(names())):
        if name != keep and _VERSION.match(name):
            sync(store.delete_dir(f"{prefix}/{name}"))


def _parse_record(record: Any, node: str) -> dict[str, Any]:
    """Check a commit attribute's structure; damage raises :class:`CorruptDataError`."""

    def bad(what: str) -> CorruptDataError:
        return CorruptDataError(
            f"{node}/zarr.json: the '{ATTRIBUTE}' attribute {what} (the annotation set's metadata is damaged; "
            "write the set again with replace=True)"
        )

    if not isinstance(record, Mapping):
        raise bad(f"is {type(record).__name__}; expected an object")
    if record.get("format_version") != FORMAT_VERSION or type(record.get("format_version")) is not int:
        raise bad(f"has format_version={record.get('format_version')!r}; expected {FORMAT_VERSION}")
    current = record.get("current")
    if not isinstance(current, str) or not _VERSION.match(current):
        raise bad(f"has current={current!r}; expected 'v<number>'")
    count = record.get("num_events")
    if type(count) is not int or not 0 <= count < 1 << 40:
        raise bad(f"has num_events={count!r}; expected a non-negative integer")
    classes = record.get("classes")
    if not isinstance(classes, list) or not all(isinstance(c, str) for c in classes) or classes != sorted(set(classes)):
        raise bad("has classes that are not a sorted list of unique strings")
    sources = record.get("sources")
    if not isinstance(sources, list) or not all(isinstance(s, str) for s in sources):
        raise bad("has sources that are not a list of strings")
    crcs = record.get("crc32")
    if not isinstance(crcs, Mapping) or not all(type(crcs.get(c)) is int and 0 <= crcs[c] < 1 << 32 for c in COLUMNS):
        raise bad("lacks a CRC-32 for every array")
    return dict(record)


def _read(group: zarr.Group, name: str, num_recordings: int | None, where: str) -> Annotations:
    node = _set_group(group, name, where)
    at = f"{where}/{GROUP}/{name}"
    record = _parse_record(node.attrs.get(ATTRIBUTE), at)
    version, count = record["current"], record["num_events"]
    columns: dict[str, np.ndarray] = {}
    for column, dtype in COLUMNS.items():
        path = f"{at}/{version}/{column}"
        try:
            array = node[f"{version}/{column}"]
        except KeyError:
            raise CorruptDataError(f"{path} is missing; the annotation set {name!r} is damaged") from None
        except (ValueError, TypeError, AttributeError, RecursionError, OSError, OverflowError, MemoryError) as e:
            raise CorruptDataError(f"{path}/zarr.json is damaged ({type(e).__name__}: {str(e)[:200]})") from None
        if not isinstance(array, zarr.Array) or array.ndim != 1 or array.shape[0] < count:
            raise CorruptDataError(
                f"{path} is not a 1-D array of at least {count} rows; the annotation set {name!r} is damaged"
            )
        if (dtype is STRINGS) != (array.dtype.kind in "TUO") or (dtype is not STRINGS and array.dtype != dtype):
            raise CorruptDataError(f"{path} has dtype {array.dtype}; expected {dtype}")
        try:
            values = np.asarray(array[:count]) if count else np.empty(0, dtype=dtype)
        except Exception as e:
            raise CorruptDataError(
                f"{path}: a chunk cannot be read ({type(e).__name__}: {str(e)[:200]}); the annotation set "
                f"{name!r} is damaged"
            ) from e
        if dtype is STRINGS and values.dtype != STRINGS:
            values = values.astype(STRINGS)
        if crc32(column, values) != record["crc32"][column]:
            raise CorruptDataError(
                f"{path} does not match its CRC-32 (a lost or damaged chunk); the annotation set {name!r} is "
                "damaged (write it again with replace=True)"
            )
        columns[column] = values
    if num_recordings is not None and count and int(columns["recording"].max()) >= num_recordings:
        raise CorruptDataError(
            f"{at}/{version}/recording holds row {int(columns['recording'].max())}, but the store has "
            f"{num_recordings} recordings; the annotation set {name!r} is damaged"
        )
    try:
        return Annotations(**columns, classes=tuple(record["classes"]), sources=tuple(record["sources"]))
    except ValueError as e:
        raise CorruptDataError(f"{at}/{version}: {e}; the annotation set {name!r} is damaged") from None


def _write(group: zarr.Group, name: str, ann: Annotations, *, replace: bool, lock: _lock.WriteLock, where: str) -> None:
    at = f"{where}/{GROUP}/{name}"
    try:
        parent = group.require_group(GROUP)
        node = parent.require_group(name)
        previous = node.attrs.get(ATTRIBUTE)
        if previous is not None:
            if not replace:
                count = previous.get("num_events") if isinstance(previous, Mapping) else "?"
                raise AnnotationError(
                    f"{where} already has an annotation set {name!r} ({count} events); pass replace=True "
                    "(--replace) to replace it, or choose another name"
                )
            current = previous.get("current") if isinstance(previous, Mapping) else None
            m = _VERSION.match(current) if isinstance(current, str) else None
            number = int(m.group(1)) + 1 if m else 1
        else:
            number = 1
        version = f"v{number}"
        data = {c: getattr(ann, c) for c in COLUMNS}
        sub = node.create_group(version, overwrite=True)  # a stale version of a killed write goes
        with warnings.catch_warnings():
            # zarr flags its variable-length string dtype as not yet in the v3 core spec.
            warnings.simplefilter("ignore")
            for column, dtype in COLUMNS.items():
                array = sub.create_array(
                    column,
                    shape=(len(ann),),
                    dtype=str if dtype is STRINGS else dtype,
                    chunks=(CHUNK_ROWS,),
                    fill_value=_FILL.get(column, 0),
                )
                if len(ann):
                    array[:] = data[column]
        record: dict[str, Any] = {
            "format_version": FORMAT_VERSION,
            "current": version,
            "num_events": len(ann),
            "classes": list(ann.classes),
            "sources": list(ann.sources),
            "crc32": {c: crc32(c, v) for c, v in data.items()},
        }
        lock.check()
        node.attrs[ATTRIBUTE] = record  # the commit: one atomic write of the set's zarr.json
        _delete_stale(node, keep=version)
    except AACDataError:
        raise
    except OSError as e:
        raise StoreWriteError(f"{at}: writing the annotation set failed ({e}); the previous state stays") from e
