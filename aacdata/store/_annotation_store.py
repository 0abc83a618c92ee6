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

Sets are found by listing ``/annotations`` and opened from their own groups, so a damaged
``/annotations/zarr.json`` hides none of them. Maintenance uses the rest of this module:
:func:`survey` and :func:`check_sets` (verify), :func:`event_problems` (the rules an event
must keep), :func:`remap` (repair and merge move events to other rows by recording id) and
:func:`combine` (merge). A local store's files are read through
:class:`aacdata.store._chunks.CheckedLocalStore`: a FIFO in place of a chunk is damage, not a
read that never returns.
"""

from __future__ import annotations

import re
import warnings
import zlib
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import zarr
from zarr.abc.store import Store
from zarr.core.sync import sync
from zarr.errors import NodeNotFoundError

from ..annotations import STRINGS, Annotations
from ..errors import AACDataError, AnnotationError, CorruptDataError, StoreWriteError
from . import _chunks, _lock

__all__ = [
    "GROUP",
    "check_sets",
    "combine",
    "event_problems",
    "list_sets",
    "read_set",
    "remap",
    "set_info",
    "survey",
    "take",
    "write_set",
]

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
    """Names of the committed annotation sets of a store's root ``group``, sorted.

    A set whose group metadata cannot be read is left out here; :func:`survey` (and so
    ``aacdata verify``) lists it as damaged, and reading it by name raises.
    """
    return survey(group.store, where=_describe(group))[0]


def survey(zstore: Store, *, where: str) -> tuple[list[str], list[tuple[str, str]]]:
    """Every annotation set a store holds, read from the listing of ``/annotations``.

    Returns the names of the committed sets (their group opens and holds the commit
    attribute; the commit itself is checked when the set is read), sorted, and ``(name,
    problem)`` for each set that cannot be read: a set group whose ``zarr.json`` does not
    parse, or a set directory holding versions but no ``zarr.json`` (its commit is lost);
    ``("", problem)`` where ``/annotations`` itself has no readable ``zarr.json`` although
    it holds sets. A group without the commit attribute is not a set (a first write killed
    before its commit) and is left out.
    """
    zstore = _chunks.checked(zstore)
    entries = _listing(zstore, GROUP)
    names = sorted(e for e in entries if e != "zarr.json" and _NAME.match(e))
    sets: list[str] = []
    problems: list[tuple[str, str]] = []
    for name in names:
        path = f"{GROUP}/{name}"
        try:
            node = _open_group(zstore, path)
        except NodeNotFoundError:
            if any(_VERSION.match(e) for e in _listing(zstore, path)):
                problems.append(
                    (
                        name,
                        f"{where}/{path}/zarr.json is missing: the set's commit (classes, event count, "
                        "checksums) is lost",
                    )
                )
            continue
        except _UNREADABLE as e:
            problems.append((name, f"{where}/{path}/zarr.json cannot be read ({_cause(e)})"))
            continue
        if ATTRIBUTE in node.attrs:
            sets.append(name)
    if sets or problems:
        try:
            _open_group(zstore, GROUP)
        except NodeNotFoundError:
            problems.insert(
                0,
                (
                    "",
                    f"{where}/{GROUP}/zarr.json is missing (Zarr readers other than aacdata do not see "
                    "the sets under it)",
                ),
            )
        except _UNREADABLE as e:
            problems.insert(0, ("", f"{where}/{GROUP}/zarr.json cannot be read ({_cause(e)})"))
    return sets, problems


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
    node = _set_group(_chunks.checked(group.store), check_name(name), where)
    record = _parse_record(node.attrs.get(ATTRIBUTE), f"{where}/{GROUP}/{name}")
    return {
        "num_events": record["num_events"],
        "classes": list(record["classes"]),
        "sources": list(record["sources"]),
        "version": record["current"],
    }


def read_set(
    group: zarr.Group | Store, name: str, *, num_recordings: int | None = None, where: str | None = None
) -> Annotations:
    """Read a committed annotation set (a resolved :class:`~aacdata.Annotations`).

    Parameters
    ----------
    group
        The store's root group, or its zarr ``Store``. A local store's files are read only
        where they are regular files (:mod:`aacdata.store._chunks`).
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
    zstore = group.store if isinstance(group, zarr.Group) else group
    where = where or _describe_store(zstore)
    zstore = _chunks.checked(zstore)
    check_name(name)
    node = _set_group(zstore, name, where)
    record = node.attrs.get(ATTRIBUTE)
    try:
        return _read(node, record, name, num_recordings, where)
    except CorruptDataError:
        # A replace may have deleted the version we began reading: read the new commit.
        node = _set_group(zstore, name, where)
        if node.attrs.get(ATTRIBUTE) == record:
            raise
        return _read(node, node.attrs.get(ATTRIBUTE), name, num_recordings, where)


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
        (:func:`aacdata.store._lock.acquire`) for the duration of the write.
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


def event_problems(
    ann: Annotations,
    *,
    ids: Sequence[str],
    num_samples: np.ndarray,
    num_channels: np.ndarray,
    node: str,
) -> tuple[np.ndarray, list[str]]:
    """Events of a resolved table that break the store's rules, as a boolean mask of shape
    ``(E,)``, and one line per rule broken naming ``node`` and the first such event.

    The rules (those :meth:`Annotations.resolve` applies): the row is one of the store's
    ``len(ids)`` recordings; ``stop`` is at most the recording's ``num_samples``; the
    channel is -1 or one of the recording's ``num_channels``; ``low_hz`` and ``high_hz``
    are NaN or finite and non-negative. Order, labels and ``start <= stop`` are checked
    when the table is built.
    """
    n = len(ids)
    rec = ann.recording
    bad_row = (rec < 0) | (rec >= n)
    row = np.where(bad_row, 0, rec)
    length = np.asarray(num_samples, dtype=np.int64)[row] if n else np.zeros(len(ann), np.int64)
    channels = np.asarray(num_channels, dtype=np.int64)[row] if n else np.zeros(len(ann), np.int64)
    rules: list[tuple[np.ndarray, Callable[[int], str]]] = [
        (bad_row, lambda i: f"recording row {int(rec[i])} is not one of the store's {n} recordings"),
        (
            ~bad_row & (ann.stop > length),
            lambda i: (
                f"[{int(ann.start[i])}, {int(ann.stop[i])}) ends past recording {ids[int(rec[i])]!r} "
                f"({int(length[i])} samples)"
            ),
        ),
        (
            ~bad_row & (ann.channel >= channels),
            lambda i: (
                f"channel {int(ann.channel[i])} is not one of recording {ids[int(rec[i])]!r}'s {int(channels[i])}"
            ),
        ),
    ]

    def frequency(column: str) -> Callable[[int], str]:
        return lambda i: f"{column} is {float(getattr(ann, column)[i])}; expected NaN or a finite frequency >= 0"

    for column in ("low_hz", "high_hz"):
        hz = getattr(ann, column)
        rules.append((~np.isnan(hz) & ~((hz >= 0) & np.isfinite(hz)), frequency(column)))
    bad = np.zeros(len(ann), dtype=bool)
    lines = []
    for mask, say in rules:
        if mask.any():
            first = int(np.flatnonzero(mask)[0])
            lines.append(f"{node}: {int(mask.sum())} event(s) break the rules; event {first}: {say(first)}")
            bad |= mask
    return bad, lines


def check_sets(
    zstore: Store,
    *,
    where: str,
    ids: Sequence[str],
    num_samples: np.ndarray | None,
    num_channels: np.ndarray | None,
) -> tuple[list[str], list[tuple[str, str]]]:
    """Check every annotation set of a store: its metadata, its commit, every array
    against its CRC-32, its rows against the store's ``len(ids)`` recordings and (where
    ``num_samples`` and ``num_channels`` are given) its events against their recordings
    (:func:`event_problems`).

    Returns the names of the sets checked and ``(name, problem)`` for each problem found
    (``""`` for ``/annotations`` itself); a set that cannot be read is one problem.
    """
    sets, problems = survey(zstore, where=where)
    for name in sets:
        try:
            ann = read_set(zstore, name, num_recordings=len(ids), where=where)
        except AACDataError as e:
            problems.append((name, str(e)))
            continue
        if num_samples is not None and num_channels is not None:
            _, lines = event_problems(
                ann, ids=ids, num_samples=num_samples, num_channels=num_channels, node=f"{where}/{GROUP}/{name}"
            )
            problems.extend((name, line) for line in lines)
    return sorted({n for n, _ in problems if n} | set(sets)), problems


def remap(ann: Annotations, rows: np.ndarray) -> Annotations:
    """The events of a resolved table whose recording row ``r`` has ``rows[r] >= 0``, moved
    to row ``rows[r]`` (e.g. of another store), sorted again by ``(recording, start)``;
    classes and sources as they are."""
    rows = np.asarray(rows, dtype=np.int64)
    new = rows[ann.recording] if len(ann) else np.zeros(0, np.int64)
    keep = np.flatnonzero(new >= 0)
    order = keep[np.lexsort((ann.label[keep], ann.stop[keep], ann.start[keep], new[keep]))]
    return Annotations(
        recording=new[order],
        start=ann.start[order],
        stop=ann.stop[order],
        label=ann.label[order],
        classes=ann.classes,
        low_hz=ann.low_hz[order],
        high_hz=ann.high_hz[order],
        channel=ann.channel[order],
        extra=ann.extra[order],
        sources=ann.sources,
    )


def take(ann: Annotations, index: np.ndarray) -> Annotations:
    """The events ``index`` (positions, in order) of a resolved table; classes and sources
    as they are."""
    return Annotations(
        recording=ann.recording[index],
        start=ann.start[index],
        stop=ann.stop[index],
        label=ann.label[index],
        classes=ann.classes,
        low_hz=ann.low_hz[index],
        high_hz=ann.high_hz[index],
        channel=ann.channel[index],
        extra=ann.extra[index],
        sources=ann.sources,
    )


def combine(tables: Sequence[Annotations]) -> Annotations:
    """One resolved table of the events of ``tables`` (rows of the same store).

    Classes become the sorted union of the tables' classes, each event keeping its class
    by name (so a class index may change; the name is what the label means); sources the
    union in order of appearance. An event equal in every column in several tables is kept
    as many times as the table holding it most often: combining a table with itself, or
    merging again what a merge already wrote, adds nothing.
    """
    classes = sorted({c for t in tables for c in t.classes})
    index = {c: k for k, c in enumerate(classes)}
    sources = list(dict.fromkeys(src for t in tables for src in t.sources))
    counts: Counter[tuple[Any, ...]] = Counter()
    for t in tables:
        labels = np.asarray([index[c] for c in t.classes], dtype=np.int32)[t.label] if len(t) else t.label
        low = t.low_hz.view(np.uint32)  # bit patterns: NaN equals NaN
        high = t.high_hz.view(np.uint32)
        keys = zip(
            t.recording.tolist(), t.start.tolist(), t.stop.tolist(), labels.tolist(), low.tolist(), high.tolist(),
            t.channel.tolist(), t.extra.tolist(), strict=True,
        )  # fmt: skip
        for key, count in Counter(keys).items():
            if count > counts[key]:
                counts[key] = count
    rows = sorted(counts.elements())
    columns = list(zip(*rows, strict=True)) if rows else [()] * 8
    return Annotations(
        recording=np.asarray(columns[0], dtype=np.int64),
        start=np.asarray(columns[1], dtype=np.int64),
        stop=np.asarray(columns[2], dtype=np.int64),
        label=np.asarray(columns[3], dtype=np.int32),
        classes=tuple(classes),
        low_hz=np.asarray(columns[4], dtype=np.uint32).view(np.float32),
        high_hz=np.asarray(columns[5], dtype=np.uint32).view(np.float32),
        channel=np.asarray(columns[6], dtype=np.int16),
        extra=np.asarray(columns[7], dtype=STRINGS),
        sources=tuple(sources),
    )


# ---------------------------------------------------------------------- internals


_UNREADABLE = (ValueError, TypeError, KeyError, AttributeError, OSError, RecursionError)
"""What zarr raises for metadata that does not parse (a ``zarr.json`` not JSON, nested too
deeply, of the wrong node type); CorruptDataError (a ValueError) for a file that is not a
regular file."""


def _describe(group: zarr.Group) -> str:
    return _describe_store(group.store)


def _describe_store(store: Any) -> str:
    root = getattr(store, "root", None)
    return str(root) if root is not None else str(store)


def _cause(e: BaseException) -> str:
    return f"{type(e).__name__}: {str(e)[:200]}"


def _listing(zstore: Store, path: str) -> list[str]:
    async def names() -> list[str]:
        return [name async for name in zstore.list_dir(path)]

    return sync(names())


def _open_group(zstore: Store, path: str) -> zarr.Group:
    """The group at ``path``, never created (``NodeNotFoundError`` where there is none)."""
    return zarr.open_group(zstore, path=path, mode="r" if zstore.read_only else "r+")


def _set_group(zstore: Store, name: str, where: str) -> zarr.Group:
    path = f"{GROUP}/{name}"
    try:
        node: zarr.Group | None = _open_group(zstore, path)
    except NodeNotFoundError:
        node = None
    except AACDataError:
        raise
    except _UNREADABLE as e:
        raise CorruptDataError(
            f"{where}/{path}/zarr.json cannot be read ({_cause(e)}); the annotation set {name!r} is damaged "
            f"(run `aacdata verify {where}`)"
        ) from None
    if node is None or ATTRIBUTE not in node.attrs:
        have = survey(zstore, where=where)[0]
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


def _read(node: zarr.Group, record: Any, name: str, num_recordings: int | None, where: str) -> Annotations:
    at = f"{where}/{GROUP}/{name}"
    record = _parse_record(record, at)
    version, count = record["current"], record["num_events"]
    columns: dict[str, np.ndarray] = {}
    for column, dtype in COLUMNS.items():
        path = f"{at}/{version}/{column}"
        try:
            array = node[f"{version}/{column}"]
        except KeyError:
            raise CorruptDataError(f"{path} is missing; the annotation set {name!r} is damaged") from None
        except AACDataError:
            raise  # a file that is not a regular file: the message names it
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
        except AACDataError:
            raise
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
