"""Window plans: which windows a dataset reads, apart from how it reads them.

A plan is made by the user with its parameters alone (``RandomWindows(window_seconds=1)``)
and bound by the dataset to its corpus (recording lengths at the dataset's rate, the
recordings it may use, the seed). A bound plan is a small picklable object of numpy
arrays, with ``len(plan)`` windows per epoch and a pure ``plan.window(index, epoch)``:
random draws come from ``(seed, epoch, index)`` through a counter-based hash
(splitmix64), never from a stateful generator, so any worker, rank or resumed run
computes the same window.

Windows are half-open, ``[start, start + num_samples)``, in samples of a recording's
timeline at the dataset's rate; ``start`` may be negative or the window may pass the
recording's end (the dataset zero-fills those parts).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from ..errors import RecordingNotFoundError

__all__ = ["Corpus", "EventWindows", "ExplicitWindows", "RandomWindows", "SlidingWindows", "Window", "WindowPlan"]

_MASK = (1 << 64) - 1


def mix64(x: int) -> int:
    """splitmix64 finaliser: a well-spread 64-bit hash of a 64-bit integer."""
    x = (x + 0x9E3779B97F4A7C15) & _MASK
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK
    return x ^ (x >> 31)


def uniforms(seed: int, epoch: int, index: int, count: int = 2) -> tuple[float, ...]:
    """``count`` independent floats in [0, 1) determined by (seed, epoch, index) alone."""
    a = mix64(mix64(mix64(seed & _MASK) ^ (epoch & _MASK)) ^ (index & _MASK))
    out = []
    for _ in range(count):
        out.append((a >> 11) * 2.0**-53)
        a = mix64(a)
    return tuple(out)


@dataclass(frozen=True, slots=True)
class Window:
    """A window of the corpus: ``[start, start + num_samples)`` of recording ``recording``
    (a corpus-wide row over the dataset's stores, in order)."""

    recording: int
    start: int
    num_samples: int


@dataclass(frozen=True, slots=True)
class Corpus:
    """What a plan is bound to: the dataset's recordings.

    ``lengths`` int64 ``(R,)`` samples of each recording at ``sample_rate``; ``eligible``
    int64 rows the plan may draw from (after the dataset's filters); ``ids`` the
    recording ids; ``resolve(annotations)`` turns an :class:`~aacdata.Annotations`
    table, a stored set's name, or ``None`` (the dataset's own) into events in corpus
    rows and samples at ``sample_rate`` (``None`` where the dataset has no events).
    ``groups`` (int64 ``(R,)``) and ``group_probabilities`` (float64, one per group,
    summing to 1) ask random plans to draw a group first, then a window in it.
    """

    lengths: np.ndarray
    sample_rate: int
    eligible: np.ndarray
    ids: Sequence[str]
    resolve: Callable[[Any], Any] | None = None
    groups: np.ndarray | None = None
    group_probabilities: np.ndarray | None = None


class WindowPlan:
    """Base of the window plans. Subclasses set their parameters in ``__init__`` and
    compute their arrays in :meth:`_bind`; a plan is usable once bound."""

    _bound: bool = False
    seed: int = 0
    window_samples: int | None = None

    def bind(self, corpus: Corpus, *, seed: int = 0) -> WindowPlan:
        """A copy of this plan bound to ``corpus`` (the dataset calls this)."""
        if corpus.group_probabilities is not None and not isinstance(self, RandomWindows):
            raise ValueError(
                f"weights= mixes corpora by drawing random windows; {type(self).__name__} reads every window it "
                "has, so it takes no weights (use RandomWindows, or drop weights=)"
            )
        bound = copy.copy(self)
        bound.seed = int(seed)
        bound._bind(corpus)
        bound._bound = True
        return bound

    def _bind(self, corpus: Corpus) -> None:
        raise NotImplementedError

    def params(self) -> dict[str, Any]:
        """The plan's parameters, as given (what its ``repr`` shows)."""
        raise NotImplementedError

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in self.params().items() if v is not None)
        bound = f", {len(self)} windows" if self._bound else ""
        return f"{type(self).__name__}({params}{bound})"

    def _check_bound(self) -> None:
        if not self._bound:
            raise RuntimeError(f"{type(self).__name__} is not bound to a corpus; pass it to AACSegmentDataset(plan=)")

    def __len__(self) -> int:
        raise NotImplementedError

    def window(self, index: int, epoch: int) -> Window:
        """The window of item ``index`` in ``epoch``: a pure function of (seed, epoch, index)."""
        raise NotImplementedError

    def _index(self, index: int) -> int:
        n = len(self)
        if isinstance(index, bool) or not isinstance(index, (int, np.integer)):
            raise TypeError(f"an item index is an integer; got {type(index).__name__} {index!r}")
        index = int(index)
        if not 0 <= index < n:
            if -n <= index < 0:
                return index + n
            raise IndexError(f"index {index} is out of range for a plan of {n} windows")
        return index

    def _length_of(self, corpus: Corpus, window_seconds: float | None, window_samples: int | None) -> int:
        if (window_seconds is None) == (window_samples is None):
            raise ValueError("give exactly one of window_seconds= or window_samples=")
        if window_samples is not None:
            length = int(window_samples)
        else:
            assert window_seconds is not None
            length = round(float(window_seconds) * corpus.sample_rate)
        if length < 1:
            raise ValueError(f"the window must hold at least one sample; got {length}")
        return length


MAX_WINDOW_SECONDS = 1e7
"""Longest window or hop accepted, seconds (~116 days: longer than any recording)."""


def _positive(name: str, value: float | None) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name} must be a number of seconds; got {type(value).__name__} {value!r}")
    if not 0 < value <= MAX_WINDOW_SECONDS:  # NaN and inf fail too
        raise ValueError(f"{name} must be > 0 and at most {MAX_WINDOW_SECONDS:g} s; got {value!r}")


class RandomWindows(WindowPlan):
    """Random windows: each draws a recording (weighted by duration, or uniformly over
    recordings), then a start uniformly over the positions where the window fits.

    ``num_windows`` per epoch defaults to the eligible audio's length / window length.
    ``short="pad"`` zero-pads recordings shorter than the window; ``"skip"`` leaves
    them out.
    """

    def __init__(
        self,
        window_seconds: float | None = None,
        *,
        window_samples: int | None = None,
        num_windows: int | None = None,
        weighting: Literal["duration", "recording"] = "duration",
        short: Literal["pad", "skip"] = "pad",
    ) -> None:
        _positive("window_seconds", window_seconds)
        if weighting not in ("duration", "recording"):
            raise ValueError(f"weighting must be 'duration' or 'recording'; got {weighting!r}")
        if short not in ("pad", "skip"):
            raise ValueError(f"short must be 'pad' or 'skip'; got {short!r}")
        if num_windows is not None and num_windows < 1:
            raise ValueError(f"num_windows must be >= 1; got {num_windows}")
        self.window_seconds = window_seconds
        self.window_samples_given = window_samples
        self.num_windows = num_windows
        self.weighting = weighting
        self.short = short

    def params(self) -> dict[str, Any]:
        return {
            "window_seconds": self.window_seconds,
            "window_samples": self.window_samples_given,
            "num_windows": self.num_windows,
            "weighting": self.weighting,
            "short": self.short,
        }

    def _bind(self, corpus: Corpus) -> None:
        length = self._length_of(corpus, self.window_seconds, self.window_samples_given)
        self.window_samples = length
        rows = corpus.eligible
        if self.short == "skip":
            rows = rows[corpus.lengths[rows] >= length]
            if rows.size == 0:
                raise ValueError(f"no recording is at least {length} samples long (short='skip')")
        lengths = corpus.lengths[rows].astype(np.float64)
        weights = lengths if self.weighting == "duration" else np.ones_like(lengths)
        self._lengths = corpus.lengths
        self._count = self.num_windows if self.num_windows is not None else max(1, int(lengths.sum() // length))
        self._group_cum: np.ndarray | None = None
        if corpus.groups is not None and corpus.group_probabilities is not None:
            # Rows ordered by group; within a group, cumulative weights restart at 0, so that
            # a group is drawn first and then a recording within it.
            group = corpus.groups[rows]
            order = np.argsort(group, kind="stable")
            rows, weights, group = rows[order], weights[order], group[order]
            bounds = np.searchsorted(group, np.arange(corpus.group_probabilities.size + 1))
            empty = [g for g in range(corpus.group_probabilities.size) if bounds[g] == bounds[g + 1]]
            if empty:
                raise ValueError(f"weights= gives weight to groups with no recording left: {empty[:5]}")
            self._group_bounds = bounds
            self._group_cum = np.cumsum(corpus.group_probabilities)
            cum = np.cumsum(weights)
            before = np.concatenate(([0.0], cum))[bounds[:-1]]
            self._cum = cum - np.repeat(before, np.diff(bounds))
        else:
            self._cum = np.cumsum(weights)
        self._rows = rows

    def __len__(self) -> int:
        self._check_bound()
        return self._count

    def window(self, index: int, epoch: int) -> Window:
        self._check_bound()
        index = self._index(index)
        assert self.window_samples is not None
        length = self.window_samples
        if self._group_cum is None:
            u, v = uniforms(self.seed, epoch, index)
            k = int(np.searchsorted(self._cum, u * self._cum[-1], side="right"))
            g = int(self._rows[min(k, self._rows.size - 1)])
        else:
            t, u, v = uniforms(self.seed, epoch, index, 3)
            grp = min(
                int(np.searchsorted(self._group_cum, t * self._group_cum[-1], side="right")), self._group_cum.size - 1
            )
            lo, hi = int(self._group_bounds[grp]), int(self._group_bounds[grp + 1])
            cum = self._cum[lo:hi]
            k = lo + min(int(np.searchsorted(cum, u * cum[-1], side="right")), hi - lo - 1)
            g = int(self._rows[k])
        starts = int(self._lengths[g]) - length + 1
        return Window(g, int(v * starts) if starts > 1 else 0, length)


class SlidingWindows(WindowPlan):
    """Windows ``hop_seconds`` apart over every eligible recording, in order (evaluation).

    ``last="pad"`` adds one zero-padded window where samples remain after the last full
    one (recordings shorter than the window get exactly that one); ``"drop"`` does not.
    ``short="skip"`` leaves out recordings shorter than the window.
    """

    def __init__(
        self,
        window_seconds: float | None = None,
        hop_seconds: float | None = None,
        *,
        window_samples: int | None = None,
        last: Literal["pad", "drop"] = "pad",
        short: Literal["pad", "skip"] = "pad",
    ) -> None:
        _positive("window_seconds", window_seconds)
        if short not in ("pad", "skip"):
            raise ValueError(f"short must be 'pad' or 'skip'; got {short!r}")
        self.short = short
        if hop_seconds is None:
            raise ValueError("SlidingWindows needs hop_seconds=")
        _positive("hop_seconds", hop_seconds)
        if last not in ("pad", "drop"):
            raise ValueError(f"last must be 'pad' or 'drop'; got {last!r}")
        self.window_seconds = window_seconds
        self.hop_seconds = hop_seconds
        self.window_samples_given = window_samples
        self.last = last

    def params(self) -> dict[str, Any]:
        return {
            "window_seconds": self.window_seconds,
            "hop_seconds": self.hop_seconds,
            "window_samples": self.window_samples_given,
            "last": self.last,
            "short": self.short,
        }

    def _bind(self, corpus: Corpus) -> None:
        length = self._length_of(corpus, self.window_seconds, self.window_samples_given)
        self.window_samples = length
        hop = round(float(self.hop_seconds) * corpus.sample_rate)  # type: ignore[arg-type]
        if hop < 1:
            raise ValueError(f"hop_seconds={self.hop_seconds} is less than one sample")
        self._hop = hop
        self._rows = corpus.eligible
        if self.short == "skip":
            self._rows = self._rows[corpus.lengths[self._rows] >= length]
        lengths = corpus.lengths[self._rows]
        full = np.where(lengths >= length, (lengths - length) // hop + 1, 0)
        if self.last == "pad":
            covered = np.where(full > 0, (full - 1) * hop + length, 0)
            full = full + (lengths > covered)
        self._cum = np.cumsum(full)

    def __len__(self) -> int:
        self._check_bound()
        return int(self._cum[-1]) if self._cum.size else 0

    def window(self, index: int, epoch: int) -> Window:
        self._check_bound()
        index = self._index(index)
        assert self.window_samples is not None
        k = int(np.searchsorted(self._cum, index, side="right"))
        before = int(self._cum[k - 1]) if k else 0
        return Window(int(self._rows[k]), (index - before) * self._hop, self.window_samples)


class ExplicitWindows(WindowPlan):
    """Exactly these windows, in this order: ``(recording_id, start, num_samples)``
    each, in samples at the dataset's rate."""

    def __init__(self, windows: Sequence[tuple[str, int, int]]) -> None:
        checked = []
        for item in windows:
            rid, start, n = item
            if int(n) < 0:
                raise ValueError(f"window of {rid!r} at {start} has negative length {n}")
            checked.append((str(rid), int(start), int(n)))
        self.windows = tuple(checked)
        self._resolved: tuple[Window, ...] = ()

    def params(self) -> dict[str, Any]:
        return {"windows": f"<{len(self.windows)} windows>"}

    def _bind(self, corpus: Corpus) -> None:
        by_id: dict[str, int] = {}
        for row, rid in enumerate(corpus.ids):
            by_id.setdefault(rid, row)
        eligible = set(corpus.eligible.tolist())
        out = []
        for rid, start, n in self.windows:
            g = by_id.get(rid)
            if g is None:
                raise RecordingNotFoundError(f"windows= names recording {rid!r}, which is not in the stores")
            if g not in eligible:
                raise ValueError(f"windows= names recording {rid!r}, which the filters leave out")
            out.append(Window(g, start, n))
        self._resolved = tuple(out)
        lengths = {w.num_samples for w in out}
        self.window_samples = lengths.pop() if len(lengths) == 1 else None

    def __len__(self) -> int:
        self._check_bound()
        return len(self._resolved)

    def window(self, index: int, epoch: int) -> Window:
        self._check_bound()
        return self._resolved[self._index(index)]


class EventWindows(WindowPlan):
    """Windows centred on annotated events, and background windows with none.

    Parameters
    ----------
    annotations
        The events: an :class:`~aacdata.Annotations` table, the name of a set stored in
        the dataset's stores, or ``None`` for the dataset's own ``annotations=``.
    window_seconds
        Window length.
    num_windows
        Windows per epoch; default: one per (selected) event, plus the negatives' share.
    classes
        Draw positives only from events of these labels (default: all).
    positives, negatives
        Shares of positive windows (containing an event) and negative windows (containing
        none, at least ``min_gap_seconds`` from any event): ``negatives / (positives +
        negatives)`` of the windows are negatives. The first windows of an epoch's index
        range are positives, the rest negatives (shuffle in the ``DataLoader``).
    balance
        ``None``: positives draw events uniformly; ``"class"``: they draw a class first,
        uniformly, then an event of it, so rare classes are seen as often as common ones.
    jitter
        Place the event at a random offset inside the window (an event longer than the
        window: a random part of it); ``False`` centres it.
    min_gap_seconds
        Negatives keep this far from every event (of any class).

    A positive window contains its event entirely when the event fits; windows are kept
    inside their recording where it is at least a window long (which keeps the event
    inside). Negatives are drawn uniformly over every start position whose window lies in
    background time, exactly (from cumulative gap lengths), never by rejection.
    """

    def __init__(
        self,
        annotations: Any = None,
        window_seconds: float | None = None,
        *,
        window_samples: int | None = None,
        num_windows: int | None = None,
        classes: Sequence[str] | None = None,
        positives: float = 1.0,
        negatives: float = 0.0,
        balance: Literal["class"] | None = None,
        jitter: bool = True,
        min_gap_seconds: float = 0.0,
    ) -> None:
        _positive("window_seconds", window_seconds)
        if positives < 0 or negatives < 0 or positives + negatives <= 0:
            raise ValueError(f"positives and negatives must be >= 0, not both 0; got {positives}, {negatives}")
        if balance not in (None, "class"):
            raise ValueError(f"balance must be None or 'class'; got {balance!r}")
        if min_gap_seconds < 0:
            raise ValueError(f"min_gap_seconds must be >= 0; got {min_gap_seconds}")
        if num_windows is not None and num_windows < 1:
            raise ValueError(f"num_windows must be >= 1; got {num_windows}")
        self.annotations = annotations
        self.window_seconds = window_seconds
        self.window_samples_given = window_samples
        self.num_windows = num_windows
        self.classes = tuple(classes) if classes is not None else None
        self.positives = float(positives)
        self.negatives = float(negatives)
        self.balance = balance
        self.jitter = bool(jitter)
        self.min_gap_seconds = float(min_gap_seconds)

    def params(self) -> dict[str, Any]:
        return {
            "window_seconds": self.window_seconds,
            "window_samples": self.window_samples_given,
            "num_windows": self.num_windows,
            "classes": self.classes,
            "positives": self.positives,
            "negatives": self.negatives or None,
            "balance": self.balance,
            "jitter": None if self.jitter else False,
            "min_gap_seconds": self.min_gap_seconds or None,
        }

    def _bind(self, corpus: Corpus) -> None:
        length = self._length_of(corpus, self.window_seconds, self.window_samples_given)
        self.window_samples = length
        if corpus.resolve is None:
            raise ValueError("EventWindows needs events: give it annotations, or the dataset annotations=")
        events = corpus.resolve(self.annotations)
        eligible = np.zeros(corpus.lengths.size, dtype=bool)
        eligible[corpus.eligible] = True
        keep = eligible[events.recording]
        if self.classes is not None:
            unknown = sorted(set(self.classes) - set(events.classes))
            if unknown:
                raise ValueError(f"classes= names labels the events do not have: {unknown[:5]}")
            wanted = np.isin(np.asarray(events.classes, dtype=object)[events.label], list(self.classes))
            keep &= wanted
        self._rec = np.asarray(events.recording[keep], dtype=np.int64)
        self._start = np.asarray(events.start[keep], dtype=np.int64)
        self._stop = np.asarray(events.stop[keep], dtype=np.int64)
        labels = np.asarray(events.label[keep], dtype=np.int64)
        self._lengths = corpus.lengths
        positive_share = self.positives / (self.positives + self.negatives)
        if self.positives > 0 and self._rec.size == 0:
            raise ValueError(
                "EventWindows has no events to centre windows on (after the classes= and recordings filters)"
            )
        if self.num_windows is not None:
            total = self.num_windows
        elif self.positives > 0:
            total = round(self._rec.size / positive_share)
        else:
            total = max(1, int(corpus.lengths[corpus.eligible].sum() // length))
        self._num_pos = round(total * positive_share)
        self._total = total
        # Per class: the events of each, for balance="class".
        self._class_ids = np.unique(labels)
        order = np.argsort(labels, kind="stable")
        self._by_class = order
        self._class_cum = np.searchsorted(labels[order], self._class_ids, side="right")
        if total > self._num_pos:
            gap = round(self.min_gap_seconds * corpus.sample_rate)
            events_all = (
                np.asarray(events.recording, dtype=np.int64),
                np.asarray(events.start, dtype=np.int64),
                np.asarray(events.stop, dtype=np.int64),
            )
            self._gaps = _background(corpus.lengths, corpus.eligible, *events_all, gap=gap)
            fits = np.maximum(self._gaps[2] - self._gaps[1] - length + 1, 0)
            self._gap_cum = np.cumsum(fits)
            if not self._gap_cum.size or self._gap_cum[-1] == 0:
                raise ValueError(
                    f"no stretch of {length} samples lies {self.min_gap_seconds} s away from every event: "
                    "no negative window exists (lower negatives=, min_gap_seconds= or the window length)"
                )

    def __len__(self) -> int:
        self._check_bound()
        return self._total

    def window(self, index: int, epoch: int) -> Window:
        self._check_bound()
        index = self._index(index)
        assert self.window_samples is not None
        length = self.window_samples
        u, v, w = uniforms(self.seed, epoch, index, 3)
        if index >= self._num_pos:
            p = min(int(u * int(self._gap_cum[-1])), int(self._gap_cum[-1]) - 1)
            r = int(np.searchsorted(self._gap_cum, p, side="right"))
            before = int(self._gap_cum[r - 1]) if r else 0
            return Window(int(self._gaps[0][r]), int(self._gaps[1][r]) + p - before, length)
        if self.balance == "class":
            k = min(int(u * self._class_ids.size), self._class_ids.size - 1)
            lo = int(self._class_cum[k - 1]) if k else 0
            hi = int(self._class_cum[k])
            e = int(self._by_class[lo + min(int(v * (hi - lo)), hi - lo - 1)])
        else:
            e = min(int(u * self._rec.size), self._rec.size - 1)
        rec, s, t = int(self._rec[e]), int(self._start[e]), int(self._stop[e])
        span = t - s
        if span <= length:  # the whole event inside the window
            lo_start, hi_start = t - length, s
        else:  # a part of the event fills the window
            lo_start, hi_start = s, t - length
        start = lo_start + int(w * (hi_start - lo_start + 1)) if self.jitter else (lo_start + hi_start) // 2
        start = min(start, hi_start)
        n = int(self._lengths[rec])
        if n >= length:  # stay inside the recording; the event stays inside the window
            start = min(max(start, 0), n - length)
        return Window(rec, start, length)


def _background(
    lengths: np.ndarray,
    eligible: np.ndarray,
    ev_rec: np.ndarray,
    ev_start: np.ndarray,
    ev_stop: np.ndarray,
    *,
    gap: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Background stretches ``(recording, start, stop)`` of the eligible recordings: the
    time at least ``gap`` samples away from every event, as int64 arrays."""
    pieces_rec: list[np.ndarray] = []
    pieces_a: list[np.ndarray] = []
    pieces_b: list[np.ndarray] = []
    has = np.zeros(lengths.size, dtype=bool)
    if ev_rec.size:
        has[ev_rec] = True
        # Recordings laid end to end on one axis (a stride past any event's reach) so that
        # one running maximum serves all of them.
        stride = int(lengths.max()) + 2 * gap + 2
        order = np.lexsort((ev_start, ev_rec))
        rec = ev_rec[order]
        offset = rec * stride
        a = ev_start[order] - gap + offset
        b = np.maximum(ev_stop[order] + gap, ev_start[order] + gap + 1) + offset
        reach = np.maximum.accumulate(b)
        first = np.ones(rec.size, dtype=bool)
        first[1:] = rec[1:] != rec[:-1]
        prev = np.empty_like(reach)
        prev[1:] = reach[:-1]
        prev[first] = offset[first]  # a recording's background starts at its sample 0
        open_ = a > prev
        pieces_rec.append(rec[open_])
        pieces_a.append(prev[open_] - offset[open_])
        pieces_b.append(a[open_] - offset[open_])
        last = np.ones(rec.size, dtype=bool)
        last[:-1] = rec[1:] != rec[:-1]
        tail_rec = rec[last]
        pieces_rec.append(tail_rec)
        pieces_a.append(reach[last] - offset[last])
        pieces_b.append(lengths[tail_rec])
    quiet = eligible[~has[eligible]]
    pieces_rec.append(quiet)
    pieces_a.append(np.zeros(quiet.size, dtype=np.int64))
    pieces_b.append(lengths[quiet])
    rec_all = np.concatenate(pieces_rec).astype(np.int64)
    a_all = np.clip(np.concatenate(pieces_a), 0, None).astype(np.int64)
    b_all = np.minimum(np.concatenate(pieces_b), lengths[rec_all]).astype(np.int64)
    is_eligible = np.zeros(lengths.size, dtype=bool)
    is_eligible[eligible] = True
    keep = is_eligible[rec_all] & (b_all > a_all)
    order = np.lexsort((a_all[keep], rec_all[keep]))
    return rec_all[keep][order], a_all[keep][order], b_all[keep][order]
