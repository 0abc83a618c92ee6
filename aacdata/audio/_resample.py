"""The position-addressable resampler: one fixed windowed-sinc filter, whole, in spans, or streamed.

Output sample ``n`` at ``new_rate`` sits at input position ``u = n * orig_rate / new_rate``
and is a fixed-length weighted sum of the input around ``u``; the input is zero outside
``[0, T)``. With ``g = gcd(orig_rate, new_rate)``, ``L = new_rate // g`` and
``M = orig_rate // g``::

    base(n)  = (n * M) // L          input sample at or just before u
    phase(n) = (n * M) % L           u = base + phase / L
    y[n]     = sum_i taps[phase(n), i] * x[base(n) - R + 1 + i],   i in [0, 2R)

where the taps are the filter at ``u - k``, zero for ``|u - k| >= R``; so output ``n``
depends on the input ``[base(n) - R + 1, base(n) + R + 1)`` only (``+ R`` for phase 0), and any
span of outputs can be computed from the matching span of input (:func:`input_span`,
:func:`resample_span`) or block by block (:class:`Resampler`). All three agree bit for bit
with :func:`resample` of the whole signal, because every output is computed by the same
operations whatever the span: outputs are grouped on a fixed grid of *chunks* (positions
that are multiples of the chunk length), and each chunk is one matrix product of the same
shape, whose rows are input views and whose columns are the taps of consecutive outputs::

    outputs   |<---------- period: P outputs ---------->|<-- next period ...
              | group 0 (gs) | group 1 (gs) | ... (G)  |
    inputs    |<------- Q = P * M / L inputs ------->|
    chunk     = Jc periods; per group, (Jc, S) input rows @ (S, gs) taps -> (Jc, gs) outputs

The filter is a Kaiser-windowed sinc with its cutoff at ``min(orig_rate, new_rate) / 2``
and a transition band of ``±0.05 * min(orig_rate, new_rate)`` around it, designed for
75 dB of stopband attenuation (see :func:`_design`).
"""

from __future__ import annotations

import functools
import math
import operator
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ..errors import Describe, WindowError, described

__all__ = ["Resampler", "input_span", "resample", "resample_span"]

# Filter design. The band from 0.45 to 0.55 of the lower rate is the transition band;
# below it the gain is 1 within about 2e-4, above it at most -75 dB (Kaiser's formulas).
_ATTENUATION_DB = 75.0
_TRANSITION = 0.1  # transition band width, as a fraction of the lower rate
_BETA = 0.1102 * (_ATTENUATION_DB - 8.7)
# Half-width of the filter in samples of the lower rate: Kaiser's length estimate
# (A - 7.95) / (2.285 * 2 pi * transition) taps, halved.
_HALF_WIDTH_LOW = (_ATTENUATION_DB - 7.95) / (2.285 * 2.0 * math.pi * _TRANSITION) / 2.0

# Aim of a chunk's size in outputs: large enough for an efficient matrix product, small
# enough that a short window does not compute much more than itself.
_CHUNK_OUTPUTS = 1024
# Bound on one matrix product, in multiply-adds: OpenBLAS runs smaller products on one
# thread (its threshold is 65536 * 4); threaded small products crawl on a busy machine.
_PRODUCT_MACS = 65536 * 4 - 1
# Bound on the scratch memory of one matrix product batch, in float32 elements.
_BATCH_ELEMENTS = 4 * 1024 * 1024

FloatArray = NDArray[np.float32]


def resample(x: np.ndarray, orig_rate: int, new_rate: int) -> FloatArray:
    """Resample a whole signal from ``orig_rate`` to ``new_rate``.

    Parameters
    ----------
    x : numpy.ndarray
        Floating-point samples, shape ``(C, T)`` (channels, samples); float64 and other
        floating dtypes are converted to float32. Taken as zero outside ``[0, T)``.
    orig_rate, new_rate : int
        Sample rates in Hz, positive.

    Returns
    -------
    numpy.ndarray
        float32, shape ``(C, ceil(T * new_rate / orig_rate))``, a new array. Equal rates
        return a float32 copy of ``x``.

    Raises
    ------
    ValueError
        A rate is not a positive integer, or ``x`` is not a 2-D floating-point array.

    Examples
    --------
    >>> import numpy as np
    >>> y = resample(np.zeros((2, 44_100), dtype=np.float32), 44_100, 16_000)
    >>> y.shape, y.dtype
    ((2, 16000), dtype('float32'))
    """
    x = _parse_signal(x, "x")
    orig_rate, new_rate = _parse_rates(orig_rate, new_rate)
    if orig_rate == new_rate:
        return x.copy()
    plan = _plan(orig_rate, new_rate)
    num_out = -(-x.shape[1] * plan.up // plan.down)
    return _compute(plan, x, 0, 0, num_out)


def input_span(n0: int, n1: int, orig_rate: int, new_rate: int) -> tuple[int, int]:
    """Input samples that the outputs ``[n0, n1)`` depend on.

    Parameters
    ----------
    n0, n1 : int
        Half-open span of output samples at ``new_rate``, ``0 <= n0 <= n1``.
    orig_rate, new_rate : int
        Sample rates in Hz, positive.

    Returns
    -------
    tuple of int
        ``(a, b)``: the half-open span of input samples at ``orig_rate``. ``a`` may be
        negative and ``b`` may lie past the end of the signal: those samples are zero.
        ``(n0, n1)`` for equal rates; ``(a, a)`` for an empty span.

    Examples
    --------
    >>> a, b = input_span(1000, 2000, 48_000, 16_000)
    >>> a < 3000 < 6000 < b
    True
    """
    orig_rate, new_rate = _parse_rates(orig_rate, new_rate)
    n0, n1 = _parse_output_span(n0, n1)
    if orig_rate == new_rate:
        return n0, n1
    return _plan(orig_rate, new_rate).input_span(n0, n1)


def resample_span(
    x_span: np.ndarray,
    a: int,
    n0: int,
    n1: int,
    orig_rate: int,
    new_rate: int,
) -> FloatArray:
    """Outputs ``[n0, n1)`` of :func:`resample` from a span of the input.

    ``resample_span(x[:, a:b], a, n0, n1, fi, fo)`` equals ``resample(x, fi, fo)[:, n0:n1]``
    bit for bit, where ``(a, b) = input_span(n0, n1, fi, fo)`` and ``x[:, a:b]`` is zero
    outside the signal (the caller pads).

    Parameters
    ----------
    x_span : numpy.ndarray
        Floating-point samples of the input positions ``[a, a + x_span.shape[1])``, shape
        ``(C, t)``; must cover :func:`input_span` of ``[n0, n1)``.
    a : int
        Input position of ``x_span[:, 0]``; may be negative (zeros before the signal).
    n0, n1 : int
        Half-open span of output samples, ``0 <= n0 <= n1``.
    orig_rate, new_rate : int
        Sample rates in Hz, positive.

    Returns
    -------
    numpy.ndarray
        float32, shape ``(C, n1 - n0)``, a new array.

    Raises
    ------
    ValueError
        A rate or a span is invalid, or ``x_span`` does not cover the input the outputs
        need.
    """
    x_span = _parse_signal(x_span, "x_span")
    orig_rate, new_rate = _parse_rates(orig_rate, new_rate)
    n0, n1 = _parse_output_span(n0, n1)
    a = operator.index(a)
    need = (n0, n1) if orig_rate == new_rate else _plan(orig_rate, new_rate).input_span(n0, n1)
    have = (a, a + x_span.shape[1])
    if need[0] < need[1] and (need[0] < have[0] or need[1] > have[1]):
        raise ValueError(
            f"x_span covers input samples [{have[0]}, {have[1]}) but outputs [{n0}, {n1}) need "
            f"[{need[0]}, {need[1]}) (see input_span; pad with zeros outside the signal)"
        )
    if orig_rate == new_rate:
        return x_span[:, n0 - a : n1 - a].copy()
    return _compute(_plan(orig_rate, new_rate), x_span, a, n0, n1)


class Resampler:
    """Streaming resampler: blocks of input in, complete outputs out.

    The outputs of all :meth:`push` calls and of :meth:`flush`, concatenated, equal
    bit for bit :func:`resample` of the concatenated input. Outputs are released a chunk
    at a time (the fixed grid that makes every path compute the same bits; ``chunk``
    outputs, about a thousand): :meth:`push` returns the outputs of every chunk whose
    input has all arrived, so they lag the input by less than ``chunk`` outputs plus the
    filter's half-width. Memory stays bounded: the resampler keeps only the input tail
    that the next chunk needs.

    Parameters
    ----------
    orig_rate, new_rate : int
        Sample rates in Hz, positive.
    num_channels : int
        Number of channels ``C`` of every block, positive.

    Examples
    --------
    >>> import numpy as np
    >>> r = Resampler(48_000, 16_000, 1)
    >>> parts = [r.push(np.ones((1, 4_800), dtype=np.float32)) for _ in range(10)]
    >>> sum(p.shape[1] for p in parts + [r.flush()])
    16000
    """

    def __init__(self, orig_rate: int, new_rate: int, num_channels: int) -> None:
        self.orig_rate, self.new_rate = _parse_rates(orig_rate, new_rate)
        num_channels = operator.index(num_channels)
        if num_channels <= 0:
            raise ValueError(f"num_channels must be a positive integer, got {num_channels}")
        self.num_channels = num_channels
        self._plan = None if self.orig_rate == self.new_rate else _plan(self.orig_rate, self.new_rate)
        self._received = 0  # input samples pushed so far
        self._emitted = 0  # output samples returned so far
        self._buf = np.zeros((num_channels, 0), dtype=np.float32)
        self._buf_start = 0  # input position of self._buf[:, 0]
        self._finished = False

    @property
    def chunk(self) -> int:
        """Outputs per chunk: :meth:`push` releases whole chunks (1 for equal rates)."""
        return 1 if self._plan is None else self._plan.chunk

    def __repr__(self) -> str:
        return (
            f"Resampler({self.orig_rate} -> {self.new_rate} Hz, {self.num_channels} channels, "
            f"{self._received} samples in, {self._emitted} out)"
        )

    def push(self, x: np.ndarray) -> FloatArray:
        """Add a block of input; return the outputs of the chunks it completes.

        Parameters
        ----------
        x : numpy.ndarray
            Floating-point samples, shape ``(num_channels, t)``, ``t >= 0``; the input
            positions ``[received, received + t)``.

        Returns
        -------
        numpy.ndarray
            float32, shape ``(num_channels, k)``, ``k >= 0`` a multiple of
            :attr:`chunk`: the next ``k`` output samples.

        Raises
        ------
        ValueError
            ``x`` is not a 2-D floating-point array of ``num_channels`` rows, or
            :meth:`flush` was called.
        """
        if self._finished:
            raise ValueError("Resampler.push() after flush(): create a new Resampler for a new signal")
        x = _parse_signal(x, "x")
        if x.shape[0] != self.num_channels:
            raise ValueError(f"block has {x.shape[0]} channels; this Resampler takes {self.num_channels}")
        self._received += x.shape[1]
        if self._plan is None:
            self._emitted = self._received
            return x.copy()
        self._buf = np.concatenate([self._buf, x], axis=1) if self._buf.shape[1] else x.copy()
        chunk = self._plan.chunk
        return self._emit(self._plan.complete_outputs(self._received) // chunk * chunk)

    def flush(self) -> FloatArray:
        """End the input (zeros after it); return the remaining outputs.

        Returns
        -------
        numpy.ndarray
            float32, shape ``(num_channels, k)``: the outputs up to
            ``ceil(received * new_rate / orig_rate)``.
        """
        if self._finished:
            raise ValueError("Resampler.flush() called twice: create a new Resampler for a new signal")
        self._finished = True
        if self._plan is None:
            return np.zeros((self.num_channels, 0), dtype=np.float32)
        return self._emit(-(-self._received * self._plan.up // self._plan.down))

    def _emit(self, end: int) -> FloatArray:
        plan = self._plan
        assert plan is not None
        if end <= self._emitted:
            return np.zeros((self.num_channels, 0), dtype=np.float32)
        out = _compute(plan, self._buf, self._buf_start, self._emitted, end)
        self._emitted = max(self._emitted, end)
        # Keep the input from the start of the chunk that holds the next output.
        keep = plan.chunk_input_start(self._emitted // plan.chunk)
        drop = keep - self._buf_start
        if drop > 0:
            self._buf = self._buf[:, drop:].copy()
            self._buf_start = keep
        return out


# ---------------------------------------------------------------------------- private


@dataclass(frozen=True, slots=True)
class _Plan:
    """Everything that depends only on the rate pair; built once per pair and cached.

    ``up = L`` and ``down = M`` are the reduced rates; ``radius = R`` (output ``n`` reads
    input ``[base - R + 1, base + R + 1)``). A period of ``period`` outputs reads
    ``period_in`` more inputs than the previous one; it is split into ``groups`` groups of
    ``group`` consecutive outputs (the last group may have unused columns), group ``g``
    reading ``span`` inputs from ``period start + offsets[g] - R + 1``; its taps are
    ``weights[g]``, shape ``(span, group)``. A chunk is ``periods`` periods.
    """

    up: int
    down: int
    radius: int
    period: int
    period_in: int
    group: int
    groups: int
    span: int
    periods: int
    offsets: NDArray[np.int64]
    weights: FloatArray

    @property
    def chunk(self) -> int:
        """Outputs per chunk."""
        return self.periods * self.period

    def chunk_input_start(self, c: int) -> int:
        """First input position read by chunk ``c``."""
        return c * self.periods * self.period_in - self.radius + 1

    def input_span(self, n0: int, n1: int) -> tuple[int, int]:
        a = n0 * self.down // self.up - self.radius + 1
        if n0 >= n1:
            return a, a
        # The last tap, at u - k = phase / L - R, is zero (outside the window) for phase 0.
        base, phase = divmod((n1 - 1) * self.down, self.up)
        return a, base + self.radius + (phase != 0)

    def complete_outputs(self, received: int) -> int:
        """Number of outputs whose input lies within the first ``received`` samples."""
        # Output n is complete when (n * M) // L + R + 1 <= received, i.e. n * M < e * L.
        e = received - self.radius
        return 0 if e <= 0 else -(-e * self.up // self.down)


def _design_taps(orig_rate: int, new_rate: int, up: int, radius: int) -> NDArray[np.float64]:
    """Taps of every phase, float64 ``(L, 2R)``: row ``p`` for ``u = base + p / L``.

    The window spans ``|u - k| < R`` exactly (``R`` is Kaiser's length estimate rounded
    up, so the filter is at least as long as the design asks).
    """
    low = min(orig_rate, new_rate)
    cutoff = 0.5 * low / orig_rate  # cycles per input sample
    offsets = np.arange(1 - radius, radius + 1, dtype=np.float64)  # input k - base
    tau = np.arange(up, dtype=np.float64)[:, None] / up - offsets[None, :]  # u - k
    ratio = np.clip(tau / radius, -1.0, 1.0)
    window = np.i0(_BETA * np.sqrt(1.0 - ratio * ratio)) / np.i0(_BETA)
    window[np.abs(tau) >= radius] = 0.0
    taps = 2.0 * cutoff * np.sinc(2.0 * cutoff * tau) * window
    # Each phase sums to exactly 1 (unit DC gain); the correction is within the ripple.
    taps /= taps.sum(axis=1, keepdims=True)
    return taps


MAX_PHASES = 1 << 16
"""Most filter phases (``L``) a pair of rates may need: 44.1 -> 48 kHz needs 160, 16 kHz ->
44.056 kHz 5507; at 65536 the filter takes ~1 s and 25 MB to build. Rates that share
almost no divisor (16000 -> 1999999 Hz: 1999999 phases, ~30 s) are refused."""


@functools.lru_cache(maxsize=64)
def _plan(orig_rate: int, new_rate: int) -> _Plan:
    g = math.gcd(orig_rate, new_rate)
    up, down = new_rate // g, orig_rate // g
    if up > MAX_PHASES:
        raise ValueError(
            f"resampling {orig_rate} Hz to {new_rate} Hz needs {up} filter phases (the rates share only the "
            f"divisor {g}); at most {MAX_PHASES} are supported: choose a rate with a larger common divisor"
        )
    low = min(orig_rate, new_rate)
    radius = math.ceil(_HALF_WIDTH_LOW * orig_rate / low)
    taps = _design_taps(orig_rate, new_rate, up, radius)
    width = 2 * radius
    # A group of consecutive outputs shares one input row; its row is longer than the
    # filter by the input the group advances over, so take groups advancing about one
    # filter width (each multiply-add does useful work at least half the time).
    target = max(1, round(width * up / down))
    if up >= target:
        q = 1
        groups = -(-up // target)
        group = -(-up // groups)
    else:
        q = -(-target // up)
        groups, group = 1, q * up
    period, period_in = q * up, q * down
    r = np.arange(period, dtype=np.int64)
    base = r * down // up
    phase = r * down % up
    offsets = base[::group].copy()
    last = np.minimum(np.arange(groups) * group + group, period) - 1
    span = int((base[last] - offsets).max()) + width
    weights = np.zeros((groups, span, group), dtype=np.float32)
    for k in range(period):
        gi, c = divmod(k, group)
        s = int(base[k] - offsets[gi])
        weights[gi, s : s + width, c] = taps[phase[k]]
    weights.flags.writeable = False
    offsets.flags.writeable = False
    periods = max(1, min(round(_CHUNK_OUTPUTS / period), _PRODUCT_MACS // (span * group)))
    return _Plan(up, down, radius, period, period_in, group, groups, span, periods, offsets, weights)


def _compute(plan: _Plan, src: np.ndarray, src_start: int, n0: int, n1: int) -> FloatArray:
    """Outputs ``[n0, n1)``, float32 ``(C, n1 - n0)``, from ``src`` = input positions
    ``[src_start, src_start + src.shape[1])``, zero elsewhere.

    Computes whole chunks on the fixed grid so that every output comes from the same
    matrix product whatever the span; the caller guarantees that ``src`` covers the
    input of ``[n0, n1)`` (other outputs of those chunks are computed and dropped).
    """
    num_channels = src.shape[0]
    out = np.empty((num_channels, max(0, n1 - n0)), dtype=np.float32)
    if n1 <= n0:
        return out
    chunk = plan.chunk
    c_first, c_end = n0 // chunk, -(-n1 // chunk)
    per_chunk = num_channels * plan.groups * plan.periods * plan.span
    batch = max(1, _BATCH_ELEMENTS // per_chunk)
    for c0 in range(c_first, c_end, batch):
        c1 = min(c0 + batch, c_end)
        nrows = (c1 - c0) * plan.periods
        # Input of rows [first row, last row] of every group, zero-padded outside src.
        a = plan.chunk_input_start(c0)
        b = a + (nrows - 1) * plan.period_in + int(plan.offsets[-1]) + plan.span
        seg, j = _padded(src, src_start, a, b)
        rows = np.empty((num_channels, plan.groups, nrows, plan.span), dtype=np.float32)
        item = seg.itemsize
        strides = (seg.strides[0], plan.period_in * item, item)
        for g, off in enumerate(plan.offsets.tolist()):
            # Row r of group g: seg[:, j + off + r * period_in :][:, :span] (overlapping views).
            rows[:, g] = np.ndarray((num_channels, nrows, plan.span), np.float32, seg, (j + off) * item, strides)
        # One (periods, span) @ (span, group) product per chunk and group: same shapes always.
        rows5 = rows.reshape(num_channels, plan.groups, c1 - c0, plan.periods, plan.span)
        prod = np.matmul(rows5, plan.weights[:, None])  # (C, G, nc, Jc, gs)
        # Output order within a period: group, then column; periods follow each other.
        y = prod.transpose(0, 2, 3, 1, 4).reshape(num_channels, nrows, plan.groups * plan.group)
        y = y[:, :, : plan.period].reshape(num_channels, nrows * plan.period)
        lo = c0 * chunk
        i0, i1 = max(n0, lo), min(n1, lo + nrows * plan.period)
        out[:, i0 - n0 : i1 - n0] = y[:, i0 - lo : i1 - lo]
    return out


def _padded(src: np.ndarray, src_start: int, a: int, b: int) -> tuple[np.ndarray, int]:
    """Input positions ``[a, b)`` as ``(arr, j)``: ``arr[:, j : j + b - a]``, C-contiguous
    float32, where ``src`` holds the positions ``[src_start, ...)`` and zeros lie outside."""
    i0, i1 = a - src_start, b - src_start
    if i0 >= 0 and i1 <= src.shape[1] and src.flags.c_contiguous:
        return src, i0
    seg = np.zeros((src.shape[0], b - a), dtype=np.float32)
    j0, j1 = max(i0, 0), min(i1, src.shape[1])
    if j0 < j1:
        seg[:, j0 - i0 : j1 - i0] = src[:, j0:j1]
    return seg, 0


def _parse_rates(orig_rate: int, new_rate: int) -> tuple[int, int]:
    return parse_rate(orig_rate, "orig_rate"), parse_rate(new_rate, "new_rate")


def _parse_output_span(n0: int, n1: int) -> tuple[int, int]:
    n0, n1 = operator.index(n0), operator.index(n1)
    if not 0 <= n0 <= n1:
        raise ValueError(f"output span [{n0}, {n1}) is invalid: expected 0 <= n0 <= n1")
    return n0, n1


def _parse_signal(x: np.ndarray, name: str) -> FloatArray:
    if not isinstance(x, np.ndarray):
        raise ValueError(f"{name} must be a numpy array of shape (C, T), got {type(x).__name__}")
    if x.ndim != 2:
        raise ValueError(f"{name} must have shape (C, T) (2-D), got shape {x.shape}")
    if x.dtype.kind != "f":
        raise ValueError(f"{name} must be floating-point (float32 or float64), got dtype {x.dtype}")
    return np.asarray(x, dtype=np.float32)


# ---------------------------------------------------------------------- windows at another rate


MAX_RATE = 2_000_000
"""Highest rate accepted to resample to or from, Hz: twice the highest source rate a store
holds (1 MHz); above it the filter's phases and taps would take minutes and gigabytes."""


def parse_rate(value: Any, name: str) -> int:
    """A positive integer sample rate in Hz up to :data:`MAX_RATE`, or ``ValueError``
    naming ``name`` and the value."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not 0 < value <= MAX_RATE:
        raise ValueError(f"{name} must be a positive integer sample rate in Hz, at most {MAX_RATE}; got {value!r}")
    return int(value)


def samples_at(num_samples: int, orig_rate: int, new_rate: int) -> int:
    """Length of a signal of ``num_samples`` at ``orig_rate`` once resampled to ``new_rate``:
    ``ceil(num_samples * new_rate / orig_rate)``."""
    return -(-int(num_samples) * int(new_rate) // int(orig_rate))


class RateSpan:
    """One window ``[start, start + n)`` at ``new_rate`` of a signal stored at ``orig_rate``:
    which outputs lie inside the resampled signal (``[lo, hi)``), which input samples they
    need (``[a, b)``, zero outside the signal), and how the window is filled from them.

    ::

        output  |····[lo=====hi)·····|        window [start, start + n), zero outside [0, length)
        input      [a=============b)          filter reach around lo*M/L .. hi*M/L
    """

    __slots__ = ("a", "b", "hi", "lo", "n", "new_rate", "orig_rate", "recording", "start")

    def __init__(self, start: int, n: int, lo: int, hi: int, a: int, b: int, orig_rate: int, new_rate: int) -> None:
        self.start, self.n, self.lo, self.hi, self.a, self.b = start, n, lo, hi, a, b
        self.orig_rate, self.new_rate = orig_rate, new_rate
        self.recording = -1

    @classmethod
    def plan(cls, start: int, n: int, length: int, orig_rate: int, new_rate: int, *, pad: bool, what: str) -> RateSpan:
        """Check a window against a resampled length and find its input span."""
        start, n, lo, hi = window_inside(start, n, length, pad=pad, what=f"{what} at {new_rate} Hz")
        if hi <= lo:
            return cls(start, n, lo, lo, 0, 0, orig_rate, new_rate)
        a, b = input_span(lo, hi, orig_rate, new_rate)
        return cls(start, n, lo, hi, a, b, orig_rate, new_rate)

    def finish(self, native: np.ndarray | None, channels: int) -> FloatArray:
        """The window, float32 ``(C, n)``, from the input span ``native`` (``(C, b - a)``,
        zero where it lies outside the signal)."""
        if native is not None:
            channels = native.shape[0]
        out = window_array(channels, self.n, zeroed=True)
        if native is not None and self.hi > self.lo:
            part = resample_span(native, self.a, self.lo, self.hi, self.orig_rate, self.new_rate)
            out[:, self.lo - self.start : self.hi - self.start] = part
        return out


def window_array(channels: int, num_samples: int, *, zeroed: bool) -> FloatArray:
    """The float32 ``(channels, num_samples)`` output of a window (zeroed where padding will
    stay); a window too large for memory is a :class:`~aacdata.WindowError`, not a
    ``MemoryError``."""
    try:
        return (np.zeros if zeroed else np.empty)((channels, num_samples), dtype=np.float32)
    except (MemoryError, ValueError) as e:
        raise WindowError(
            f"a window of {num_samples} samples x {channels} channels ({4 * channels * num_samples / 1e9:.1f} GB "
            f"of float32) cannot be allocated ({type(e).__name__}); read it in shorter windows"
        ) from None


def _sample_count(value: Any, name: str) -> int:
    try:
        return operator.index(value)
    except TypeError:
        raise TypeError(f"{name} is a whole number of samples; got {type(value).__name__} {value!r}") from None


def window_inside(start: int, num_samples: int, length: int, *, pad: bool, what: Describe) -> tuple[int, int, int, int]:
    """Check a window ``[start, start + num_samples)`` against a signal of ``length``
    samples: ``(start, num_samples, lo, hi)`` with ``[lo, hi)`` the part inside it. Outside
    parts raise :class:`~aacdata.WindowError` unless ``pad`` (the caller zero-fills them)."""
    start, num_samples = _sample_count(start, "start"), _sample_count(num_samples, "num_samples")
    if num_samples < 0:
        raise ValueError(f"num_samples must be >= 0; got {num_samples}")
    stop = start + num_samples
    if not pad and (start < 0 or stop > length):
        raise WindowError(
            f"{described(what)} has {length} samples; window [{start}, {stop}) "
            f"{'starts before 0' if start < 0 else 'ends past it'} (pass pad=True to zero-fill)"
        )
    return start, num_samples, max(start, 0), min(stop, length)
