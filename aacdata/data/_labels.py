"""Labels of windows from event annotations: which events a window holds, as targets.

Rule for a window ``[a, b)`` and an event ``[s, e)`` of the same recording (samples at the
dataset's rate): the overlap is ``o = max(0, min(b, e) - max(a, s))``; the event labels the
window when ``o > 0`` and the thresholds that were *given* allow it:

- neither given (both ``None``, the default): any overlap;
- only ``min_overlap_seconds``: ``o >= min_overlap_seconds * sample_rate``;
- only ``min_overlap_fraction``: ``o >= min_overlap_fraction * (e - s)``;
- both: either suffices (as OpenSoundscape's ``min_label_overlap`` /
  ``min_label_fraction``).

A threshold left at ``None`` never applies. ``min_overlap_seconds`` is a finite number
``>= 0``; ``min_overlap_fraction`` a finite number in ``(0, 1]`` (a fraction of 0 would
say "any overlap", which is what leaving it out says). An instant (``s == e``) labels the
windows it lies in (``a <= s < b``), whatever the thresholds. Frame targets: frame ``j``
of a window, centred at ``a + (j + 1/2) * hop``, is 1 for class ``k`` where an event of
``k`` covers its centre (``s <= centre < e``).
"""

from __future__ import annotations

import itertools
import math
import numbers
from bisect import bisect_left
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
from torch.utils.data import default_collate

from ..annotations import Annotations
from ..errors import AnnotationError


class CorpusView:
    """The dataset's recordings as one store-like table, to resolve parsed annotations
    against (``ids``, ``path`` and ``column(name)``, as :meth:`Annotations.resolve` reads)."""

    def __init__(self, ids: Sequence[str], columns: dict[str, np.ndarray], path: str) -> None:
        self._ids = tuple(ids)
        self._columns = columns
        self._path = path

    @property
    def ids(self) -> tuple[str, ...]:
        return self._ids

    @property
    def path(self) -> str:
        return self._path

    def column(self, name: str) -> np.ndarray:
        return self._columns[name]


def combine(parts: Sequence[tuple[int, Annotations]]) -> Annotations:
    """Resolved tables of several stores as one over their concatenated recordings:
    ``(first corpus row of the store, its table)`` each; labels re-indexed to the union
    of the classes."""
    classes = tuple(sorted({c for _, ann in parts for c in ann.classes}))
    index = {c: i for i, c in enumerate(classes)}
    cols: dict[str, list[np.ndarray]] = {k: [] for k in ("recording", "start", "stop", "label", "low", "high", "ch")}
    extra: list[np.ndarray] = []
    for offset, ann in parts:
        remap = np.array([index[c] for c in ann.classes], dtype=np.int32)
        cols["recording"].append(np.asarray(ann.recording) + offset)
        cols["start"].append(np.asarray(ann.start))
        cols["stop"].append(np.asarray(ann.stop))
        cols["label"].append(remap[ann.label] if len(ann) else np.zeros(0, np.int32))
        cols["low"].append(np.asarray(ann.low_hz))
        cols["high"].append(np.asarray(ann.high_hz))
        cols["ch"].append(np.asarray(ann.channel))
        extra.append(np.asarray(ann.extra, dtype=object))

    def cat(name: str, dtype: Any) -> np.ndarray:
        return np.concatenate(cols[name]).astype(dtype) if cols[name] else np.zeros(0, dtype)

    return Annotations(
        recording=cat("recording", np.int64),
        start=cat("start", np.int64),
        stop=cat("stop", np.int64),
        label=cat("label", np.int32),
        classes=classes,
        low_hz=cat("low", np.float32),
        high_hz=cat("high", np.float32),
        channel=cat("ch", np.int16),
        extra=np.concatenate(extra).astype(str) if extra else np.zeros(0, str),
    )


def to_rate(ann: Annotations, rates: np.ndarray, rate: int) -> Annotations:
    """A resolved table with its times moved from each recording's own rate to ``rate``
    (nearest sample; unchanged where the rates agree)."""
    own = rates[np.asarray(ann.recording)]
    if not len(ann) or np.all(own == rate):
        return ann
    scale = rate / own
    return Annotations(
        recording=ann.recording,
        start=np.rint(np.asarray(ann.start) * scale).astype(np.int64),
        stop=np.rint(np.asarray(ann.stop) * scale).astype(np.int64),
        label=ann.label,
        classes=ann.classes,
        low_hz=ann.low_hz,
        high_hz=ann.high_hz,
        channel=ann.channel,
        extra=ann.extra,
    )


def parse_overlap(seconds: object, fraction: object) -> tuple[float | None, float | None]:
    """``(min_overlap_seconds, min_overlap_fraction)`` as floats, each ``None`` where it
    was not given; ``TypeError`` for a value that is not a real number, ``ValueError`` for
    one out of range (seconds finite and ``>= 0``, the fraction finite in ``(0, 1]``)."""
    out: list[float | None] = []
    for name, value, expected in (
        ("min_overlap_seconds", seconds, "a finite number >= 0"),
        ("min_overlap_fraction", fraction, "a finite number in (0, 1]"),
    ):
        if value is None:
            out.append(None)
            continue
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise TypeError(f"{name} must be None or {expected}; got {value!r} ({type(value).__name__})")
        x = float(value)
        ok = math.isfinite(x) and (x >= 0 if name == "min_overlap_seconds" else 0 < x <= 1)
        if not ok:
            hint = " (leave it at None to label any overlap)" if x == 0 else ""
            raise ValueError(f"{name} must be None or {expected}; got {value!r}{hint}")
        out.append(x)
    return out[0], out[1]


_FEW = 8
"""Up to this many events in a window, targets are computed event by event: on caches
that the window's decoding just left cold, a few scalar steps cost less than numpy's
per-call overhead (see benchmarks/bench_labels.py)."""
_SMALL = 1024
"""Recordings with at most this many events are labelled from Python lists..."""
_LOOP_MAX = 32
"""...where the window's candidate events (from the first that can reach it to the last
that starts in it) are at most this many; more go through numpy."""
_SMALL_EVENTS = 1 << 17
"""At most this many events are kept as lists (~12 MB; then the lists are built anew)."""
_Few = tuple[list[int], list[int], list[int], list[int]]
"""A small recording's events as lists: starts (sorted), stops, target classes, and the
running maximum of the stops (sorted too: events before the first that reaches ``a`` end
before ``a``)."""


class WindowLabels:
    """Targets and event lists of windows, from a resolved table in corpus rows."""

    def __init__(
        self,
        events: Annotations,
        *,
        classes: Sequence[str] | None,
        sample_rate: int,
        min_overlap_seconds: float | None = None,
        min_overlap_fraction: float | None = None,
        label_hop_seconds: float,
        other_classes: str = "error",
    ) -> None:
        seconds, fraction = parse_overlap(min_overlap_seconds, min_overlap_fraction)
        if other_classes not in ("error", "ignore"):
            raise ValueError(f"other_classes must be 'error' or 'ignore'; got {other_classes!r}")
        if not label_hop_seconds > 0:
            raise ValueError(f"label_hop_seconds must be > 0; got {label_hop_seconds}")
        self.events = events
        self.classes: tuple[str, ...] = tuple(classes) if classes is not None else tuple(events.classes)
        if len(set(self.classes)) != len(self.classes):
            raise ValueError(f"classes= holds duplicates: {list(self.classes)}")
        position = {c: i for i, c in enumerate(self.classes)}
        unknown = sorted(set(events.classes) - set(position))
        if unknown and other_classes == "ignore":
            # Train on a subset: events of the other classes label nothing.
            listed = np.array([c in position for c in events.classes], dtype=bool)
            events = events.where(listed[events.label]) if len(events) else events
            self.events = events
        elif unknown:
            raise AnnotationError(
                f"the events have labels that classes= does not list: {unknown[:5]}"
                + (f" and {len(unknown) - 5} more" if len(unknown) > 5 else "")
                + " (add them, leave classes= out to use every label, or pass other_classes='ignore' to train on "
                "the listed ones)"
            )
        # (-1: a class whose events other_classes="ignore" dropped)
        self._class_of = np.array([position.get(c, -1) for c in events.classes], dtype=np.int64)
        # Target class of each event, and plain references to the columns the loops read.
        self._klass = self._class_of[events.label] if len(events) else np.zeros(0, dtype=np.int64)
        self._start, self._stop = events.start, events.stop
        # Recordings with few events, as Python lists (a window's target then needs no numpy
        # call but one np.zeros): built on first use, bounded by the events they hold.
        self._small: dict[int, _Few] = {}
        self._small_events = 0
        # The rule as one test, o >= min_overlap or o >= fraction * (e - s), where a
        # threshold that was not given never passes (an overlap never reaches infinity, nor
        # twice the event's length) unless neither was given: then any overlap passes.
        self._min_overlap = seconds * sample_rate if seconds is not None else 0.0 if fraction is None else math.inf
        self._fraction = fraction if fraction is not None else 2.0
        self._hop = label_hop_seconds * sample_rate

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def num_frames(self, window_samples: int) -> int:
        """Label frames of a window: ``floor(window / hop)``, at least one."""
        return max(1, math.floor(window_samples / self._hop + 1e-9))

    def _rows(self, recording: int, a: int, b: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        rows = self.events.events_in(recording, a, b)
        return rows, self.events.start[rows], self.events.stop[rows], self._class_of[self.events.label[rows]]

    def _few(self, recording: int) -> _Few | None:
        """The events of a recording with at most ``_SMALL`` of them, as lists (starts
        sorted, with the running maximum of the stops), or ``None`` for a recording with
        more."""
        entry = self._small.get(recording)
        if entry is None:
            i, j = self.events.rows_of(recording)
            if j - i > _SMALL:
                return None
            if self._small_events + j - i > _SMALL_EVENTS:
                self._small.clear()
                self._small_events = 0
            self._small_events += j - i
            stops = self._stop[i:j].tolist()
            entry = self._small[recording] = (
                self._start[i:j].tolist(),
                stops,
                self._klass[i:j].tolist(),
                list(itertools.accumulate(stops, max)),
            )
        return entry

    def _candidates(self, recording: int, a: int, b: int) -> tuple[list[int], list[int], list[int], range] | None:
        """For a recording of few events (:meth:`_few`): its lists and the positions of the
        events that may touch ``[a, b)``, from the first that may end at or after ``a`` to
        the last that starts before ``b``; ``None`` where the numpy path is cheaper (more
        events, or more than ``_LOOP_MAX`` candidates)."""
        few = self._few(recording)
        if few is None:
            return None
        starts, stops, klass, reach = few
        lo, hi = bisect_left(reach, a), bisect_left(starts, b)
        return (starts, stops, klass, range(lo, hi)) if hi - lo <= _LOOP_MAX else None

    def clip(self, recording: int, a: int, b: int) -> np.ndarray:
        """float32 ``(K,)`` multi-hot: classes of the events that label ``[a, b)``."""
        target = np.zeros(len(self.classes), dtype=np.float32)
        few = self._candidates(recording, a, b)
        if few is not None:
            self._mark_clip(target, a, b, *few)
            return target
        rows = self.events.events_in(recording, a, b)
        if rows.size > _FEW:
            s, e, k = self._start[rows], self._stop[rows], self._klass[rows]
            o = np.minimum(b, e) - np.maximum(a, s)
            ok = (o > 0) & ((o >= self._min_overlap) | (o >= self._fraction * (e - s)))
            ok |= (e == s) & (s >= a) & (s < b)
            target[k[ok]] = 1.0
            return target
        self._mark_clip(target, a, b, self._start, self._stop, self._klass, rows.tolist())
        return target

    def _mark_clip(
        self, target: np.ndarray, a: int, b: int, starts: Any, stops: Any, klass: Any, events: Iterable[int]
    ) -> None:
        """The clip rule, event by event, for ``events`` (positions in the sequences)."""
        for n in events:
            s0, e0 = starts[n], stops[n]
            o0 = min(b, e0) - max(a, s0)
            if (o0 > 0 and (o0 >= self._min_overlap or o0 >= self._fraction * (e0 - s0))) or (e0 == s0 and a <= s0 < b):
                target[klass[n]] = 1.0

    def frames(self, recording: int, a: int, b: int) -> np.ndarray:
        """float32 ``(K, F)``: frame ``j`` (centre ``a + (j + 1/2) hop``) is 1 for class
        ``k`` where an event of ``k`` covers the centre."""
        f = self.num_frames(b - a)
        target = np.zeros((len(self.classes), f), dtype=np.float32)
        # The frames' centres (a window shorter than one hop still has one frame).
        end = max(b, math.ceil(a + f * self._hop))
        few = self._candidates(recording, a, end)
        if few is not None:
            self._mark_frames(target, a, *few)
            return target
        rows = self.events.events_in(recording, a, end)
        if rows.size > _FEW:
            s, e, k = self._start[rows], self._stop[rows], self._klass[rows]
            # Frames whose centre c_j = a + (j + 1/2) hop satisfies s <= c_j < e.
            lo = np.ceil((s - a) / self._hop - 0.5).astype(np.int64).clip(0, f)
            hi = np.ceil((e - a) / self._hop - 0.5).astype(np.int64).clip(0, f)
            for kk, j0, j1 in zip(k.tolist(), lo.tolist(), hi.tolist(), strict=True):
                if j1 > j0:
                    target[kk, j0:j1] = 1.0
            return target
        self._mark_frames(target, a, self._start, self._stop, self._klass, rows.tolist())
        return target

    def _mark_frames(
        self, target: np.ndarray, a: int, starts: Any, stops: Any, klass: Any, events: Iterable[int]
    ) -> None:
        """The frame rule, event by event, for ``events`` (positions in the sequences)."""
        hop, f = self._hop, target.shape[1]
        for n in events:
            j0 = min(max(math.ceil((starts[n] - a) / hop - 0.5), 0), f)
            j1 = min(max(math.ceil((stops[n] - a) / hop - 0.5), 0), f)
            if j1 > j0:
                target[klass[n], j0:j1] = 1.0

    def window_events(self, recording: int, a: int, b: int) -> dict[str, np.ndarray]:
        """The events overlapping ``[a, b)``, times relative to ``a`` (may be negative or
        past the window): ``start``, ``stop`` int64, ``label`` int64 (class index),
        ``low_hz``, ``high_hz`` float32, ``channel`` int16, each ``(k,)``."""
        rows, s, e, k = self._rows(recording, a, b)
        return {
            "start": np.asarray(s - a, dtype=np.int64),
            "stop": np.asarray(e - a, dtype=np.int64),
            "label": k,
            "low_hz": np.asarray(self.events.low_hz[rows]),
            "high_hz": np.asarray(self.events.high_hz[rows]),
            "channel": np.asarray(self.events.channel[rows]),
        }


def collate(batch: Sequence[Any]) -> Any:
    """A ``collate_fn`` for items with ``events`` (``return_info=True`` with annotations):
    everything is collated by PyTorch's default except ``events``, which stays a list of
    per-item dicts (their lengths differ)."""
    if batch and isinstance(batch[0], dict) and "events" in batch[0]:
        events = [item["events"] for item in batch]
        rest = default_collate([{k: v for k, v in item.items() if k != "events"} for item in batch])
        rest["events"] = events
        return rest
    return default_collate(list(batch))
