"""Annotations: tables of labelled events (Raven selection tables, CSV, records), resolved
against a store's recordings, with a fast lookup of the events that overlap a window.

Two stages:

1. **Parsed** (:meth:`Annotations.from_raven`, :meth:`~Annotations.from_csv`,
   :meth:`~Annotations.from_records`): recordings are *names* (ids, file names, or the
   stem of a Raven table's file name) and times are **seconds**, since the sample rate of
   a recording is unknown until it is looked up. Rows keep the order of the tables.
2. **Resolved** (:meth:`Annotations.resolve` against an :class:`~aacdata.AACStore`, or
   read from a store): recordings are rows of the store's recordings table and times are
   **samples** of each recording's source timeline; rows are sorted by
   ``(recording, start)``, so a recording's events are one contiguous row range and
   :meth:`~Annotations.events_in` finds a window's events by binary search.

>>> ann = Annotations.from_records([{"id": "a.wav", "start": 0.5, "end": 1.0, "label": "owl"}])
>>> ann.start, ann.classes
(array([0.5]), ('owl',))
>>> store = aacdata.AACStore.open("corpus.zarr")                            # doctest: +SKIP
>>> ann.resolve(store).start                                                # doctest: +SKIP
array([8000])
"""

from __future__ import annotations

import bisect
import csv
import dataclasses
import io
import json
import logging
import math
import os
import posixpath
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np

from .errors import AnnotationError

__all__ = ["MATCH_FILE", "MATCH_ID", "MATCH_STEM", "Annotations"]

log = logging.getLogger("aacdata")

MATCH_ID = 0
"""A parsed event's recording name is a store id, matched exactly."""
MATCH_FILE = 1
"""The name is a file name or a path ending in one (Raven ``Begin File``, ``Begin Path``):
the id equal to it, else the one id whose last path component equals the file name; where
several have it (timestamp names repeated across sites), the one whose folders end the
path's folders."""
MATCH_STEM = 2
"""The name is a path without extension (of a Raven table ``X.Table.1.selections.txt``
beside its audio): the one id whose last path component is ``X.<ext>``; where several
have it, the one whose folders end the table's folders (a table beside its audio names
that audio)."""

STRINGS = np.dtypes.StringDType()
"""dtype of the text columns (recording names of parsed tables, ``extra``)."""

RAVEN_LABEL_COLUMNS = ("Annotation", "Species", "Label", "Class")
"""Label columns looked for in a Raven table, in this order, unless ``label_column`` is given."""
_RAVEN_BEGIN = "Begin Time (s)"
_RAVEN_END = "End Time (s)"
_RAVEN_LOW = "Low Freq (Hz)"
_RAVEN_HIGH = "High Freq (Hz)"
_RAVEN_OFFSET = "File Offset (s)"
_RAVEN_TABLE_NAME = re.compile(r"^(?P<stem>.+?)\.Table\.\d+\.selections\.txt$", re.IGNORECASE)
_CSV_COLUMNS = ("id", "start", "end", "label")
_SHOWN = 5
"""How many problems (missing ids, ...) an error message lists."""


class _StoreLike(Protocol):
    """What :meth:`Annotations.resolve` needs of a store (an :class:`~aacdata.AACStore`)."""

    @property
    def ids(self) -> tuple[str, ...]: ...

    @property
    def path(self) -> str: ...

    def column(self, name: str) -> np.ndarray: ...


def _frozen(values: Any, dtype: Any) -> np.ndarray:
    """A read-only 1-D copy of ``values`` as ``dtype``."""
    array = np.array(values, dtype=dtype, copy=True).reshape(-1)
    array.setflags(write=False)
    return array


def _view(array: np.ndarray) -> np.ndarray:
    view = array.view()
    view.setflags(write=False)
    return view


@dataclass(frozen=True, slots=True)
class _Lookup:
    """Per-recording row ranges and the running maximum of stops (built on first use).

    ``first[r]:first[r + 1]`` are the rows of recording ``r``; ``reach_own[i]`` is the stop
    of row ``i`` (``start + 1`` for an instant), ``reach[i]`` the largest ``reach_own`` of
    the rows of its recording up to ``i`` (inclusive), so within a recording it never
    decreases and a binary search finds the first row that may reach past a window's
    start::

        start   s0   s1      s2  s3          (sorted)
        stop      e0            e1   e2  e3
        reach   e0 max(e0,e1) ...            (non-decreasing)
                  window [a, b):  rows [j, k) with reach[j] > a and start[k - 1] < b
    """

    first: list[int]
    reach: np.ndarray
    reach_own: np.ndarray


@dataclass(frozen=True, eq=False, slots=True)
class Annotations:
    """A frozen, columnar table of events; every column a read-only numpy array of shape ``(E,)``.

    Parameters
    ----------
    recording
        Resolved: ``int64``, the event's row in the store's recordings table. Parsed: strings
        (``StringDType``), the recording's name, matched as ``match`` says.
    start, stop
        The half-open span ``[start, stop)`` of the event. Resolved: ``int64`` samples of the
        recording's source timeline. Parsed: ``float64`` seconds from the start of the
        recording. ``start <= stop``; an event with ``start == stop`` marks an instant.
    label
        ``int32``, index into ``classes``.
    classes
        The labels, sorted, unique.
    low_hz, high_hz
        ``float32`` frequency bounds in Hz, NaN where absent.
    channel
        ``int16``, the 0-based channel the event was marked on, ``-1`` for all channels.
    extra
        Strings (``StringDType``): a JSON object per event holding the source table's other
        columns (``"{}"`` when none).
    sources
        Names of the files the events came from (``"<records>"`` for records).
    source
        ``int32``, index into ``sources`` of each event's file (``-1``: unknown).
    line
        ``int32``, 1-based line of each event in its file, or its position among records
        (``0``: unknown, e.g. for sets read from a store).
    match
        Parsed tables only: ``int8``, how each recording name is matched (:data:`MATCH_ID`,
        :data:`MATCH_FILE`, :data:`MATCH_STEM`); ``None`` once resolved.

    Notes
    -----
    A resolved table's rows are sorted by ``(recording, start)`` (ties by ``stop`` then
    ``label``); the constructor checks this. Build tables with the ``from_*`` methods and
    :meth:`resolve` rather than by hand.
    """

    recording: np.ndarray
    start: np.ndarray
    stop: np.ndarray
    label: np.ndarray
    classes: tuple[str, ...]
    low_hz: np.ndarray
    high_hz: np.ndarray
    channel: np.ndarray
    extra: np.ndarray
    sources: tuple[str, ...] = ()
    source: np.ndarray | None = None
    line: np.ndarray | None = None
    match: np.ndarray | None = None
    _lookup: list[_Lookup] = field(default_factory=list, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        resolved = self.match is None
        n = np.shape(self.start)[0] if np.ndim(self.start) == 1 else -1
        if n < 0:
            raise ValueError(f"start must be a 1-D array; got shape {np.shape(self.start)}")
        set_ = object.__setattr__
        time_dtype = np.int64 if resolved else np.float64
        set_(self, "recording", _frozen(self.recording, np.int64 if resolved else STRINGS))
        set_(self, "start", _frozen(self.start, time_dtype))
        set_(self, "stop", _frozen(self.stop, time_dtype))
        set_(self, "label", _frozen(self.label, np.int32))
        set_(self, "low_hz", _frozen(self.low_hz, np.float32))
        set_(self, "high_hz", _frozen(self.high_hz, np.float32))
        set_(self, "channel", _frozen(self.channel, np.int16))
        set_(self, "extra", _frozen(self.extra, STRINGS))
        set_(self, "classes", tuple(str(c) for c in self.classes))
        set_(self, "sources", tuple(str(s) for s in self.sources))
        set_(self, "source", _frozen(np.full(n, -1) if self.source is None else self.source, np.int32))
        set_(self, "line", _frozen(np.zeros(n) if self.line is None else self.line, np.int32))
        if not resolved:
            set_(self, "match", _frozen(self.match, np.int8))
        for name in ("recording", "stop", "label", "low_hz", "high_hz", "channel", "extra", "source", "line", "match"):
            value = getattr(self, name)
            if value is not None and value.shape != (n,):
                raise ValueError(f"column {name!r} has shape {value.shape}; expected ({n},) like 'start'")
        if list(self.classes) != sorted(set(self.classes)):
            raise ValueError(f"classes must be sorted and unique; got {_short(self.classes)}")
        if n and (self.label.min() < 0 or self.label.max() >= len(self.classes)):
            raise ValueError(
                f"labels must index classes (0 to {len(self.classes) - 1}); "
                f"got {self.label.min()} to {self.label.max()}"
            )
        if n and self.channel.min() < -1:
            raise ValueError(f"channel must be -1 (all) or a 0-based channel; got {self.channel.min()}")
        if n and not np.all(self.start <= self.stop):
            i = int(np.flatnonzero(~(self.start <= self.stop))[0])
            raise ValueError(f"event {i} has start {self.start[i]} > stop {self.stop[i]} (or NaN)")
        if resolved and n:
            if self.recording.min() < 0 or self.start.min() < 0:
                raise ValueError("recording rows and start samples must not be negative")
            rec, start = self.recording, self.start
            order_ok = np.all((rec[1:] > rec[:-1]) | ((rec[1:] == rec[:-1]) & (start[1:] >= start[:-1])))
            if not order_ok:
                raise ValueError("a resolved table's rows must be sorted by (recording, start)")

    def __reduce__(self) -> tuple[Any, ...]:
        # Through the constructor, so that unpickled columns are read-only again.
        columns = (self.recording, self.start, self.stop, self.label, self.classes, self.low_hz, self.high_hz)
        return (Annotations, (*columns, self.channel, self.extra, self.sources, self.source, self.line, self.match))

    # ------------------------------------------------------------------ parsing

    @classmethod
    def from_raven(
        cls,
        paths: str | os.PathLike[str] | Iterable[str | os.PathLike[str]],
        *,
        label_column: str | None = None,
        recording: str | Sequence[str | None] | None = None,
    ) -> Annotations:
        """Parse Raven Pro selection tables (tab-separated text, one selection per row).

        Parameters
        ----------
        paths
            One table or several; their events are concatenated in order.
        label_column
            Column holding the label; by default the first of ``Annotation``, ``Species``,
            ``Label``, ``Class`` that the table has.
        recording
            The recording a table without ``Begin File`` / ``Begin Path`` describes: an id
            (or file name) for every table, or one per table (``None``: that table's own).
            By default it comes from the table's file name: ``X.Table.1.selections.txt``
            describes the recording whose id ends with ``X.<ext>`` (looked up by
            :meth:`resolve`). To name the recordings of tables that do have those columns,
            see :meth:`map_recordings`.

        Returns
        -------
        Annotations
            A parsed table: names and seconds.

        Notes
        -----
        - A selection listed once per view (``Waveform 1``, ``Spectrogram 1``) is kept once:
          the row of its first spectrogram view, else its first row.
        - With a ``Begin File`` (or ``Begin Path``) column, each row's recording is that file,
          and its span is ``[File Offset (s), File Offset (s) + End Time (s) - Begin Time (s))``
          (a table over several files has table-relative begin and end times). Without
          ``File Offset (s)``, the table must name one file only, and times are its own.
        - ``Channel`` is 1-based in Raven, 0-based here; without it, events hold all
          channels (``-1``). ``Low Freq (Hz)`` / ``High Freq (Hz)`` are optional.
        - ``Selection`` and every column not named above go to ``extra``, as written.

        Raises
        ------
        AnnotationError
            Missing columns, unparseable numbers, negative or NaN times, an end before its
            begin, a channel below 1; the message names the file and line.
        FileNotFoundError
            A table does not exist.
        """
        files = _paths(paths)
        if isinstance(recording, str) or recording is None:
            names: list[str | None] = [recording] * len(files)
        else:
            names = list(recording)
            if len(names) != len(files):
                raise ValueError(
                    f"recording= names {len(names)} recordings for {len(files)} tables; expected one per table"
                )
        builder = _Builder()
        for path, name in zip(files, names, strict=True):
            _parse_raven(builder, path, label_column=label_column, recording=name)
        return builder.build()

    @classmethod
    def from_csv(cls, paths: str | os.PathLike[str] | Iterable[str | os.PathLike[str]]) -> Annotations:
        """Parse CSV tables (comma-separated, with a header row); several are concatenated.

        Columns: ``id`` (the recording's id in the store), ``start`` and ``end`` (seconds,
        half-open), ``label``; optional ``low_hz``, ``high_hz`` (empty: absent) and
        ``channel`` (0-based; empty or ``-1``: all channels). Other columns go to ``extra``.

        Raises
        ------
        AnnotationError
            A missing column, an unparseable number, a negative or NaN time, an end before
            its start; the message names the file and line.
        """
        builder = _Builder()
        for file in _paths(paths):
            _parse_csv(builder, file)
        return builder.build()

    @classmethod
    def from_records(cls, records: Iterable[Mapping[str, Any]]) -> Annotations:
        """Build a parsed table from dicts with the keys of :meth:`from_csv` (``id``,
        ``start``, ``end``, ``label``, optional ``low_hz``, ``high_hz``, ``channel``); other
        keys go to ``extra`` (their values must be JSON-serializable).

        Raises
        ------
        AnnotationError
            As :meth:`from_csv`; the message names the record (1-based).
        """
        builder = _Builder()
        src = builder.source("<records>")
        for i, rec in enumerate(records, start=1):
            if not isinstance(rec, Mapping):
                raise AnnotationError(f"<records>, record {i}: expected a dict; got {type(rec).__name__}")
            missing = [k for k in _CSV_COLUMNS if k not in rec]
            if missing:
                raise AnnotationError(
                    f"<records>, record {i}: missing key(s) {', '.join(map(repr, missing))}; got {_short(list(rec))}"
                )
            _add_row(builder, rec, src=src, line=i, where=f"<records>, record {i}")
        return builder.build()

    def map_recordings(self, mapping: Mapping[str, str], *, by: Literal["table", "name"]) -> Annotations:
        """The same events with the recordings they describe named anew, per table or per name.

        For tables whose names and folders do not tell which recording they describe
        (recorders that name files by timestamp, tables kept apart from their audio), and
        for many tables at once where ``recording=`` of :meth:`from_raven` names one each.

        Parameters
        ----------
        mapping
            Keys by ``by``; values are recordings: a store id, or a file name (or path
            ending in one) looked up as ``recording=`` of :meth:`from_raven` is.
        by
            ``"table"``: a key is a table as given to ``from_*``: its path, or its file name
            where no other of the tables has it; every event of that table goes to the
            recording, whatever its ``Begin File``, ``Begin Path``, id column or file name
            say. ``"name"``: a key is a recording name as the tables write it (a
            ``Begin File``'s file name, a ``Begin Path``, an ``id``); every event of every
            table that carries that name goes to the recording. Names taken from a table's
            own file name (``X.Table.1.selections.txt``) are not keys; map such tables by
            table.

        Returns
        -------
        Annotations
            A parsed table: the same rows in the same order, mapped ones named by the
            mapping's values.

        Raises
        ------
        ValueError
            The table is resolved; ``by`` is neither ``"table"`` nor ``"name"``; a key or
            value is empty; a key matches no table (no name of the tables), or, as a file
            name, several tables; two keys name one table with different recordings; a
            table mapped whole names several recordings (map its names instead).

        Examples
        --------
        >>> ann = Annotations.from_records([{"id": "0501.wav", "start": 0, "end": 1, "label": "owl"}])
        >>> ann.map_recordings({"0501.wav": "site_A/0501.wav"}, by="name").recording
        array(['site_A/0501.wav'], dtype=StringDType())
        """
        if by not in ("table", "name"):
            raise ValueError(f"by must be 'table' or 'name'; got {by!r}")
        if self.resolved:
            raise ValueError("map_recordings needs a parsed table (recordings by name); this one is resolved")
        assert self.match is not None
        assert self.source is not None
        for key, value in mapping.items():
            if not isinstance(key, str) or not isinstance(value, str) or not key or not value:
                raise ValueError(f"mapping {key!r} -> {value!r}: expected a non-empty {by} and recording (strings)")
        names = self.recording.copy()
        match = self.match.copy()
        if by == "table":
            target: dict[int, str] = {}
            for key, value in mapping.items():
                for t in _tables_named(key, self.sources):
                    if target.setdefault(t, value) != value:
                        raise ValueError(
                            f"table {self.sources[t]!r} is mapped to {target[t]!r} and, as {key!r}, to {value!r}; "
                            "expected one recording per table"
                        )
            for t, value in target.items():
                rows = self.source == t
                held = np.unique(self.recording[rows])
                if len(held) > 1:
                    raise ValueError(
                        f"table {self.sources[t]!r} names {len(held)} recordings ({_short(held.tolist())}), so no "
                        "one recording describes it whole; map its names instead (by='name')"
                    )
                names[rows] = value
                match[rows] = MATCH_FILE
        else:
            named = self.match != MATCH_STEM
            uniq, inverse = np.unique(self.recording, return_inverse=True)
            present = set(np.unique(self.recording[named]).tolist())
            unknown = [key for key in mapping if key not in present]
            if unknown:
                raise ValueError(
                    f"{len(unknown)} name(s) of the mapping are no recording name of the tables: "
                    f"{_short(unknown[:_SHOWN])} (names are written as a Begin File's file name, a Begin Path or "
                    f"an id; the tables have e.g. {_short(sorted(present)[:_SHOWN])})"
                )
            new = [mapping.get(name) for name in uniq.tolist()]
            hit = np.array([value is not None for value in new], dtype=bool)[inverse] & named
            kept_or_new = [name if value is None else value for name, value in zip(uniq.tolist(), new, strict=True)]
            renamed = np.array(kept_or_new, dtype=STRINGS)
            names[hit] = renamed[inverse][hit]
            match[hit] = MATCH_FILE
        return dataclasses.replace(self, recording=names, match=match)

    # ------------------------------------------------------------------ resolving

    @property
    def resolved(self) -> bool:
        """True when recordings are store rows and times samples; False for a parsed table."""
        return self.match is None

    def resolve(
        self, store: _StoreLike, *, clip: bool = False, missing: Literal["raise", "skip"] = "raise"
    ) -> Annotations:
        """Map recording names to rows of ``store`` and seconds to samples.

        Each time becomes the **nearest sample** at its recording's rate:
        ``round(seconds * sample_rate)``, ties to even (``numpy.rint``). Rows are then sorted
        by ``(recording, start)``.

        Parameters
        ----------
        store
            An :class:`~aacdata.AACStore` (its ``ids``, ``path`` and ``column(...)``).
        clip
            Cut events that end past their recording's end at that end (those that start at
            or past it are dropped) instead of raising.
        missing
            ``"raise"``: a name that matches no recording is an error (the first few are
            listed); ``"skip"``: their events are dropped (and counted in the log).

        Raises
        ------
        AnnotationError
            A name matches no recording (``missing="raise"``) or several; an event ends past
            its recording (``clip=False``); a channel the recording lacks. Messages name the
            file and line of the event.
        """
        if missing not in ("raise", "skip"):
            raise ValueError(f"missing must be 'raise' or 'skip'; got {missing!r}")
        if self.resolved:
            raise ValueError("this table is already resolved (recordings are store rows, times samples)")
        assert self.match is not None
        assert self.source is not None
        assert self.line is not None
        ids = list(store.ids)
        where = store.path
        rows = _match_names(self.recording, self.match, ids, self._origin, where)
        unknown = rows < 0
        if unknown.any():
            if missing == "raise":
                firsts = [int(i) for i in np.flatnonzero(unknown)]
                seen: dict[str, int] = {}
                for i in firsts:
                    seen.setdefault(str(self.recording[i]), i)
                listed = "; ".join(f"{name!r} ({self._origin(i)})" for name, i in list(seen.items())[:_SHOWN])
                more = f" and {len(seen) - _SHOWN} more" if len(seen) > _SHOWN else ""
                raise AnnotationError(
                    f"{len(seen)} recording name(s) match no recording of {where}: {listed}{more} "
                    "(check the ids, or pass missing='skip' to drop their events)"
                )
            log.info("%s: dropping %d events of recordings not in the store", where, int(unknown.sum()))
        keep = ~unknown
        # One padding entry past the table, where events of no recording point (an empty store).
        rate = np.append(store.column("sample_rate").astype(np.float64), 1.0)
        length = np.append(store.column("num_samples"), 0)
        channels = np.append(store.column("num_channels"), 0)
        r = np.where(keep, rows, len(ids))
        start_f, stop_f = np.rint(self.start * rate[r]), np.rint(self.stop * rate[r])
        huge = keep & ~(stop_f < 2.0**62)  # past int64 (or NaN): no recording is that long
        if huge.any():
            i = int(np.flatnonzero(huge)[0])
            raise AnnotationError(
                f"{self._origin(i)}: the event [{self.start[i]:g}, {self.stop[i]:g}) s of recording {ids[r[i]]!r} "
                f"lies beyond any recording's length at {int(rate[r[i]])} Hz (a time in the wrong unit?)"
            )
        start, stop = start_f.astype(np.int64), stop_f.astype(np.int64)
        n = length[r]
        past = keep & (stop > n)
        if past.any():
            if not clip:
                i = int(np.flatnonzero(past)[0])
                raise AnnotationError(
                    f"{self._origin(i)}: the event [{self.start[i]:g}, {self.stop[i]:g}) s ends at sample {stop[i]}, "
                    f"past the end of recording {ids[r[i]]!r} ({n[i]} samples at {int(rate[r[i]])} Hz, "
                    f"{n[i] / rate[r[i]]:.6f} s); {int(past.sum())} event(s) do so (pass clip=True to cut them)"
                )
            gone = past & (start >= n)
            if gone.any():
                log.info("%s: dropping %d events that start past their recording's end", where, int(gone.sum()))
            keep &= ~gone
            stop = np.minimum(stop, n)
        bad_channel = keep & (self.channel >= channels[r])
        if bad_channel.any():
            i = int(np.flatnonzero(bad_channel)[0])
            raise AnnotationError(
                f"{self._origin(i)}: the event is on channel {self.channel[i]} (0-based) but recording "
                f"{ids[r[i]]!r} has {channels[r[i]]} channel(s)"
            )
        idx = np.flatnonzero(keep)
        order = idx[np.lexsort((self.label[idx], stop[idx], start[idx], r[idx]))]
        return Annotations(
            recording=r[order],
            start=start[order],
            stop=stop[order],
            label=self.label[order],
            classes=self.classes,
            low_hz=self.low_hz[order],
            high_hz=self.high_hz[order],
            channel=self.channel[order],
            extra=self.extra[order],
            sources=self.sources,
            source=self.source[order],
            line=self.line[order],
        )

    def _origin(self, i: int) -> str:
        """``file, line N`` of event ``i`` (as far as known)."""
        assert self.source is not None
        assert self.line is not None
        s, line = int(self.source[i]), int(self.line[i])
        name = self.sources[s] if 0 <= s < len(self.sources) else "<unknown source>"
        if name == "<records>":
            return f"<records>, record {line}"
        return f"{name}, line {line}" if line > 0 else name

    # ------------------------------------------------------------------ lookup

    def __len__(self) -> int:
        return int(self.start.shape[0])

    def __repr__(self) -> str:
        stage = "resolved" if self.resolved else "parsed"
        num_recordings = len(np.unique(self.recording)) if len(self) else 0
        return (
            f"Annotations({len(self)} events, {num_recordings} recordings, {len(self.classes)} classes, "
            f"{stage}, sources={_short(self.sources, 60)})"
        )

    def _require_resolved(self, what: str) -> _Lookup:
        if not self.resolved:
            raise ValueError(f"{what} needs a resolved table (call .resolve(store) first)")
        if not self._lookup:
            self._lookup.append(_build_lookup(self.recording, self.start, self.stop))
        return self._lookup[0]

    def rows_of(self, row: int) -> tuple[int, int]:
        """The row range ``[i, j)`` of the events of recording ``row`` (``i == j``: none)."""
        first = self._require_resolved("rows_of").first
        r = int(row)
        if r < 0:
            raise IndexError(f"recording row {r} is negative")
        if r + 1 >= len(first):
            return len(self), len(self)
        return first[r], first[r + 1]

    def for_recording(self, row: int) -> Annotations:
        """The events of recording ``row`` (a resolved table's contiguous row range, as views)."""
        i, j = self.rows_of(row)
        return self._take(slice(i, j))

    def events_in(self, row: int, start: int, stop: int) -> np.ndarray:
        """Rows of the events of recording ``row`` that overlap samples ``[start, stop)``.

        An event ``[s, e)`` overlaps when ``s < stop`` and ``e > start``; an instant
        (``s == e``) counts when ``start <= s < stop``.

        Returns
        -------
        numpy.ndarray
            ``int64 (K,)``, ascending row numbers into this table's columns
            (``ann.label[ann.events_in(r, a, b)]`` are the window's labels).

        Notes
        -----
        Two binary searches within the recording's rows: the last event starting before
        ``stop``, and the first whose running maximum of stops passes ``start``; then a
        check of the ``k`` rows between. Time ``O(log n + k + m)``, where ``m`` counts events
        in that range that end before ``start`` although an earlier, longer event spans it
        (zero when no event contains another).
        """
        lookup = self._require_resolved("events_in")
        first = lookup.first
        r = int(row)
        if r < 0 or r + 1 >= len(first) or stop <= start:
            return np.empty(0, dtype=np.int64)
        lo = first[r]
        # bisect on the arrays: a few element reads, cheaper than slicing for searchsorted.
        k = bisect.bisect_left(self.start, stop, lo, first[r + 1])
        j = bisect.bisect_right(lookup.reach, start, lo, k)
        if j >= k:
            return np.empty(0, dtype=np.int64)
        hit = lookup.reach_own[j:k] > start
        if hit.all():
            return np.arange(j, k, dtype=np.int64)
        return np.flatnonzero(hit) + j

    def where(self, keep: np.ndarray) -> Annotations:
        """The events where ``keep`` (bool ``(E,)``) is true, in order (classes unchanged)."""
        keep = np.asarray(keep)
        if keep.dtype != bool or keep.shape != (len(self),):
            raise ValueError(f"keep must be a bool array of shape ({len(self)},); got {keep.dtype} {keep.shape}")
        return self._take(keep)

    def relabel(self, mapping: Mapping[str, str] | Callable[[str], str]) -> Annotations:
        """The same events with their labels renamed: by a mapping (labels it does not list
        stay as they are) or a function of the label (e.g. ``str.lower``). Labels that become
        equal merge into one class."""
        rename = mapping if callable(mapping) else (lambda c: str(mapping.get(c, c)))
        new = [str(rename(c)) for c in self.classes]
        classes = tuple(sorted(set(new)))
        position = {c: i for i, c in enumerate(classes)}
        remap = np.array([position[c] for c in new], dtype=np.int32)
        return dataclasses.replace(self, label=remap[self.label] if len(self) else self.label, classes=classes)

    def similar_labels(self) -> list[tuple[str, ...]]:
        """Groups of classes that differ only in case or spacing (``"Wren"``, ``"wren "``):
        most likely one label typed two ways."""
        groups: dict[str, list[str]] = {}
        for c in self.classes:
            groups.setdefault(" ".join(c.casefold().split()), []).append(c)
        return [tuple(g) for g in groups.values() if len(g) > 1]

    def _take(self, index: slice | np.ndarray) -> Annotations:
        return Annotations(
            recording=self.recording[index],
            start=self.start[index],
            stop=self.stop[index],
            label=self.label[index],
            classes=self.classes,
            low_hz=self.low_hz[index],
            high_hz=self.high_hz[index],
            channel=self.channel[index],
            extra=self.extra[index],
            sources=self.sources,
            source=None if self.source is None else self.source[index],
            line=None if self.line is None else self.line[index],
            match=None if self.match is None else self.match[index],
        )


# ---------------------------------------------------------------------- lookup structure


def _build_lookup(recording: np.ndarray, start: np.ndarray, stop: np.ndarray) -> _Lookup:
    n = recording.shape[0]
    num = int(recording[-1]) + 1 if n else 0
    first = np.searchsorted(recording, np.arange(num + 1, dtype=np.int64), "left").astype(np.int64)
    # An instant [s, s) reaches like [s, s + 1): it is found by windows that contain s.
    eff = np.maximum(stop, start + 1)
    reach = np.empty(n, dtype=np.int64)
    if n:
        # Running maximum restarted at each recording: lift each recording's values above
        # every earlier recording's (by the sum of their maxima), accumulate once, lower back.
        bounds = np.flatnonzero(np.diff(recording)) + 1
        seg_start = np.concatenate(([0], bounds))
        seg_max = np.maximum.reduceat(eff, seg_start)
        if float(seg_max.sum()) + len(seg_max) < 2.0**62:
            lift = np.concatenate(([0], np.cumsum(seg_max[:-1] + 1)))
            per_row = np.repeat(lift, np.diff(np.concatenate((seg_start, [n]))))
            reach[:] = np.maximum.accumulate(eff + per_row) - per_row
        else:  # sums that could overflow int64: one accumulation per recording
            for a, b in zip(seg_start, np.concatenate((bounds, [n])), strict=True):
                reach[a:b] = np.maximum.accumulate(eff[a:b])
    reach.setflags(write=False)
    eff.setflags(write=False)
    return _Lookup(first.tolist(), reach, eff)


# ---------------------------------------------------------------------- resolving names


def _match_names(names: np.ndarray, match: np.ndarray, ids: list[str], origin: Any, where: str) -> np.ndarray:
    """Store rows of parsed recording names (``-1``: no match). Several matches raise."""
    by_id = {x: i for i, x in enumerate(ids)}
    by_file: dict[str, list[int]] = {}
    by_stem: dict[str, list[int]] = {}
    rows = np.full(names.shape[0], -1, dtype=np.int64)
    if names.shape[0] == 0:
        return rows
    if (match != MATCH_ID).any():
        for i, x in enumerate(ids):
            base = posixpath.basename(x)
            by_file.setdefault(base, []).append(i)
            by_stem.setdefault(posixpath.splitext(base)[0], []).append(i)
    cache: dict[tuple[str, int], int] = {}
    for i, (name, how) in enumerate(zip(names.tolist(), match.tolist(), strict=True)):
        key = (name, how)
        row = cache.get(key)
        if row is None:
            row = by_id.get(name, -1)
            if row < 0 and how != MATCH_ID:
                folders = _parts(name)
                found = (by_file if how == MATCH_FILE else by_stem).get(folders.pop(), [])
                if len(found) > 1:
                    # Of the recordings with that name, the one whose folders end the path's
                    # (the deepest such, where an id without folders ends any path too).
                    ending = [k for k in found if _ends_with(folders, _parts(ids[k])[:-1])]
                    if ending:
                        deepest = max(len(_parts(ids[k])) for k in ending)
                        found = [k for k in ending if len(_parts(ids[k])) == deepest]
                if len(found) > 1:
                    shown = ", ".join(repr(ids[k]) for k in found[:_SHOWN])
                    kind = "file name" if how == MATCH_FILE else "name (without extension)"
                    raise AnnotationError(
                        f"{origin(i)}: the {kind} {posixpath.basename(name)!r} matches {len(found)} recordings of "
                        f"{where} ({shown}) and the table's folders tell none apart; name the recording by its "
                        "full id: pass recording= (CLI: --recording) for a Raven table of one recording or "
                        "map_recordings() (CLI: --recording-map FILE) for many tables, or write it in an id column"
                    )
                row = found[0] if found else -1
            cache[key] = row
        rows[i] = row
    return rows


# ---------------------------------------------------------------------- building parsed tables


class _Builder:
    """Collects parsed events, one list per column."""

    def __init__(self) -> None:
        self.sources: list[str] = []
        self.cols: dict[str, list[Any]] = {
            k: []
            for k in (
                "name",
                "match",
                "start",
                "stop",
                "label",
                "low_hz",
                "high_hz",
                "channel",
                "extra",
                "source",
                "line",
            )
        }

    def source(self, name: str) -> int:
        self.sources.append(name)
        return len(self.sources) - 1

    def add(self, **values: Any) -> None:
        for k, v in values.items():
            self.cols[k].append(v)

    def build(self) -> Annotations:
        c = self.cols
        classes = sorted(set(c["label"]))
        code = {x: i for i, x in enumerate(classes)}
        n = len(c["start"])
        return Annotations(
            recording=np.array(c["name"], dtype=STRINGS),
            start=np.array(c["start"], dtype=np.float64).reshape(n),
            stop=np.array(c["stop"], dtype=np.float64).reshape(n),
            label=np.array([code[x] for x in c["label"]], dtype=np.int32),
            classes=tuple(classes),
            low_hz=np.array(c["low_hz"], dtype=np.float32).reshape(n),
            high_hz=np.array(c["high_hz"], dtype=np.float32).reshape(n),
            channel=np.array(c["channel"], dtype=np.int16).reshape(n),
            extra=np.array(c["extra"], dtype=STRINGS),
            sources=tuple(self.sources),
            source=np.array(c["source"], dtype=np.int32).reshape(n),
            line=np.array(c["line"], dtype=np.int32).reshape(n),
            match=np.array(c["match"], dtype=np.int8).reshape(n),
        )


_RECORD_KEYS = frozenset({"id", "start", "end", "label", "low_hz", "high_hz", "channel"})


def _record(
    builder: _Builder,
    row: dict[str, str],
    num_fields: int,
    num_header: int,
    col: dict[str, int],
    src: int,
    line: int,
    file: str,
) -> None:
    where = f"{file}, line {line}"
    if num_fields != num_header:
        raise AnnotationError(f"{where}: {num_fields} fields; the header has {num_header}")
    _add_row(builder, row, src=src, line=line, where=where)


def _add_row(builder: _Builder, row: Mapping[str, Any], *, src: int, line: int, where: str) -> None:
    """One event from a row with the keys ``id``, ``start``, ``end`` (seconds), ``label``
    and optional ``low_hz``, ``high_hz``, ``channel`` (0-based); other keys become extras."""
    start = _seconds(row["start"], "start", where)
    stop = _seconds(row["end"], "end", where)
    if stop < start:
        raise AnnotationError(f"{where}: end {stop:g} s is before start {start:g} s")
    try:
        extra = json.dumps({str(k): v for k, v in row.items() if k not in _RECORD_KEYS}, sort_keys=True)
    except (TypeError, ValueError) as e:
        raise AnnotationError(f"{where}: its other keys are not JSON-serializable ({e})") from None
    builder.add(
        name=_text(row["id"], "id", where),
        match=MATCH_ID,
        start=start,
        stop=stop,
        label=_text(row["label"], "label", where),
        low_hz=_hz(row.get("low_hz"), "low_hz", where),
        high_hz=_hz(row.get("high_hz"), "high_hz", where),
        channel=_channel(row.get("channel"), "channel", where, one_based=False),
        extra=extra,
        source=src,
        line=line,
    )


def _parse_csv(builder: _Builder, file: Path) -> None:
    where = str(file)
    src = builder.source(where)
    with _open_text(file) as f:
        reader = csv.reader(f)
        try:
            try:
                header = next(reader)
            except StopIteration:
                raise AnnotationError(
                    f"{where}: the file is empty; expected a header row {','.join(_CSV_COLUMNS)}"
                ) from None
            header = [h.strip() for h in header]
            _need(header, _CSV_COLUMNS, where, "pass a table with these columns")
            col = {h: i for i, h in enumerate(header)}
            line = reader.line_num
            for row in reader:
                first_line, line = line + 1, reader.line_num
                if not any(v.strip() for v in row):
                    continue
                _record(
                    builder, dict(zip(header, row, strict=False)), len(row), len(header), col, src, first_line, where
                )
        except csv.Error as e:  # e.g. a field over csv's size limit: a binary file, or an unclosed quote
            raise AnnotationError(
                f"{where}, line {reader.line_num}: not a readable CSV table ({e}); is it a CSV file, "
                "with every quote closed?"
            ) from None


def _parse_raven(builder: _Builder, path: Path, *, label_column: str | None, recording: str | None) -> None:
    where = str(path)
    with _open_text(path) as f:
        lines = f.read().splitlines()
    numbered = [(i, text) for i, text in enumerate(lines, start=1) if text.strip()]
    if not numbered:
        raise AnnotationError(f"{where}: the file is empty; expected a Raven selection table (a tab-separated header)")
    header_line, header_text = numbered[0]
    header = [h.strip() for h in header_text.split("\t")]
    _need(header, ("Selection", _RAVEN_BEGIN, _RAVEN_END), where, "is it a Raven selection table (tab-separated)?")
    if label_column is None:
        label_column = next((c for c in RAVEN_LABEL_COLUMNS if c in header), None)
        if label_column is None:
            raise AnnotationError(
                f"{where}, line {header_line}: no label column (looked for {', '.join(RAVEN_LABEL_COLUMNS)}); "
                f"columns are {_short(header, 200)}; pass label_column="
            )
    elif label_column not in header:
        raise AnnotationError(
            f"{where}, line {header_line}: no column {label_column!r} (label_column=); "
            f"columns are {_short(header, 200)}"
        )
    file_column = "Begin File" if "Begin File" in header else "Begin Path" if "Begin Path" in header else None
    has_offset = _RAVEN_OFFSET in header
    consumed = {"View", "Channel", _RAVEN_BEGIN, _RAVEN_END, _RAVEN_LOW, _RAVEN_HIGH, label_column}
    if file_column is not None:
        consumed |= {"Begin File", "Begin Path", _RAVEN_OFFSET}
    rows: list[tuple[int, dict[str, str]]] = []
    for line, text in numbered[1:]:
        fields = text.split("\t")
        if len(fields) != len(header):
            raise AnnotationError(
                f"{where}, line {line}: {len(fields)} tab-separated fields; the header has {len(header)}"
            )
        rows.append((line, dict(zip(header, (v.strip() for v in fields), strict=True))))
    # One row per selection: a selection drawn in several views is listed once per view.
    chosen: dict[str, tuple[int, dict[str, str]]] = {}
    for line, row in rows:
        sel = row["Selection"]
        if not sel:
            raise AnnotationError(f"{where}, line {line}: empty Selection")
        held = chosen.get(sel)
        spectrogram = row.get("View", "").lower().startswith("spectrogram")
        if held is None or (spectrogram and not held[1].get("View", "").lower().startswith("spectrogram")):
            chosen[sel] = (line, row)
    kept = sorted(chosen.values(), key=lambda x: x[0])
    if file_column is not None and not has_offset:
        files = {row[file_column] for _, row in kept}
        if len(files) > 1:
            raise AnnotationError(
                f"{where}, line {header_line}: the table spans {len(files)} files ({file_column}) but has no "
                f"'{_RAVEN_OFFSET}' column, so times within each file are unknown; export it with that column"
            )
    if file_column is None:
        if recording is None:
            m = _RAVEN_TABLE_NAME.match(path.name)
            if m is None:
                raise AnnotationError(
                    f"{where}: cannot tell which recording the table describes: it has no Begin File column and "
                    "its name is not <recording>.Table.<n>.selections.txt; pass recording= (CLI: --recording, "
                    "or a --recording-map FILE for many tables)"
                )
            own, own_match = str(path.parent / m.group("stem")), MATCH_STEM
        else:
            own, own_match = recording, MATCH_FILE
    src = builder.source(where)
    for line, row in kept:
        at = f"{where}, line {line}"
        begin = _seconds(row[_RAVEN_BEGIN], _RAVEN_BEGIN, at)
        end = _seconds(row[_RAVEN_END], _RAVEN_END, at)
        if end < begin:
            raise AnnotationError(f"{at}: {_RAVEN_END} {end:g} is before {_RAVEN_BEGIN} {begin:g}")
        if file_column is not None:
            given = _text(row[file_column], file_column, at)
            name = given if file_column == "Begin Path" else _file_name(given)
            if has_offset:
                offset = _seconds(row[_RAVEN_OFFSET], _RAVEN_OFFSET, at)
                begin, end = offset, offset + (end - begin)
            match = MATCH_FILE
        else:
            name, match = own, own_match
        builder.add(
            name=name,
            match=match,
            start=begin,
            stop=end,
            label=_text(row[label_column], label_column, at),
            low_hz=_hz(row.get(_RAVEN_LOW), _RAVEN_LOW, at),
            high_hz=_hz(row.get(_RAVEN_HIGH), _RAVEN_HIGH, at),
            channel=_channel(row.get("Channel"), "Channel", at, one_based=True),
            extra=json.dumps({k: v for k, v in row.items() if k not in consumed}, sort_keys=True),
            source=src,
            line=line,
        )


# ---------------------------------------------------------------------- field parsers


def _paths(paths: str | os.PathLike[str] | Iterable[str | os.PathLike[str]]) -> list[Path]:
    if isinstance(paths, (str, os.PathLike)):
        return [Path(paths)]
    out = [Path(p) for p in paths]
    if not out:
        raise ValueError("no tables given")
    return out


def _open_text(path: Path) -> io.TextIOWrapper:
    """A table as text: UTF-8 (a byte-order mark is skipped), else Latin-1 (older Raven exports)."""
    data = path.read_bytes()
    try:
        data.decode("utf-8-sig")
        encoding = "utf-8-sig"
    except UnicodeDecodeError:
        encoding = "latin-1"
    return io.TextIOWrapper(io.BytesIO(data), encoding=encoding, newline="")


def _need(header: list[str], columns: Iterable[str], where: str, hint: str) -> None:
    missing = [c for c in columns if c not in header]
    if missing:
        raise AnnotationError(
            f"{where}, line 1: missing column(s) {', '.join(map(repr, missing))}; "
            f"columns are {_short(header, 200)} ({hint})"
        )


def _seconds(value: Any, name: str, where: str) -> float:
    """A time in seconds: a finite, non-negative number."""
    try:
        x = float(value.strip() if isinstance(value, str) else value)
    except (TypeError, ValueError):
        raise AnnotationError(f"{where}: {name} is {_short(value)}; expected a number of seconds") from None
    if not math.isfinite(x) or x < 0:
        raise AnnotationError(f"{where}: {name} is {_short(value)}; expected a finite, non-negative number of seconds")
    return x


def _hz(value: Any, name: str, where: str) -> float:
    """A frequency in Hz; absent or empty is NaN."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return math.nan
    try:
        x = float(value.strip() if isinstance(value, str) else value)
    except (TypeError, ValueError):
        raise AnnotationError(f"{where}: {name} is {_short(value)}; expected a frequency in Hz or nothing") from None
    if math.isnan(x):
        return x
    if not math.isfinite(x) or x < 0:
        raise AnnotationError(f"{where}: {name} is {_short(value)}; expected a finite, non-negative frequency in Hz")
    return x


def _channel(value: Any, name: str, where: str, *, one_based: bool) -> int:
    """A 0-based channel, or -1 for all (absent or empty; ``-1`` where 0-based)."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return -1
    try:
        text = value.strip() if isinstance(value, str) else value
        x = int(text) if isinstance(text, (str, int)) and not isinstance(text, bool) else None
    except ValueError:
        x = None
    low = 1 if one_based else -1
    if x is None or not low <= x <= 32767:
        expected = "a channel number from 1 (Raven counts from 1)" if one_based else "a 0-based channel, or -1 for all"
        raise AnnotationError(f"{where}: {name} is {_short(value)}; expected {expected}")
    return x - 1 if one_based else x


def _text(value: Any, name: str, where: str) -> str:
    text = str(value).strip() if value is not None else ""
    if not text:
        raise AnnotationError(f"{where}: {name} is empty")
    return text


def _tables_named(key: str, sources: Sequence[str]) -> list[int]:
    """Indices of the tables a mapping key names: the tables at that path, else the one
    table with that file name (a key without folders). Raises where none or several."""
    at = os.path.abspath(key)
    same = [i for i, s in enumerate(sources) if s == key or (s != "<records>" and os.path.abspath(s) == at)]
    if same:
        return same
    named = [i for i, s in enumerate(sources) if s != "<records>" and _parts(key) == [Path(s).name]]
    if not named:
        raise ValueError(f"the mapping's table {key!r} is none of the tables ({_short(list(sources))})")
    if len({os.path.abspath(sources[i]) for i in named}) > 1:
        shown = ", ".join(repr(sources[i]) for i in named[:_SHOWN])
        raise ValueError(f"the mapping's table {key!r} names {len(named)} tables ({shown}); give its path instead")
    return named


def _file_name(path: str) -> str:
    """The last component of a path written on any system (``C:\\data\\x.wav`` -> ``x.wav``)."""
    return re.split(r"[\\/]", path)[-1]


def _parts(path: str) -> list[str]:
    """The components of a path written on any system, empty ones and ``.`` left out."""
    return [p for p in re.split(r"[\\/]", path) if p and p != "."]


def _ends_with(folders: list[str], tail: list[str]) -> bool:
    """Whether ``folders`` ends with ``tail`` (an id's folders; an id without folders ends any)."""
    return len(tail) <= len(folders) and folders[len(folders) - len(tail) :] == tail


def _short(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
