"""Band energies of a signal, to prove what an import kept of its source's spectrum.

The import measures the source (as given to the encoder, at its own rate) and the stored
stream (decoded) in the same bands, octaves below the stored bandwidth, and keeps the
figures in the recording's ``source`` info::

    |<- low ->|<- octave ->|<- octave ->| ... |<- octave ->|<- above the bandwidth ->|
    0         B/2**K       B/2**(K-1)         B/2          B                source Nyquist

A band's figure is its mean power per sample over the whole recording (Hann-windowed
blocks, summed over channels), in dB relative to a full-scale square wave (0 dB). Power
averages do not depend on the block grid, so a source and a resampled stored stream are
compared over the same seconds even though their blocks fall on other samples.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

BLOCK = 4096
"""Samples per analysed block (10.8 Hz per bin at 44.1 kHz, 94 Hz at 384 kHz)."""
LOWEST_BAND_BINS = 8
"""The lowest octave edge lies at least this many bins above 0 Hz (narrower bands would
hold one or two bins, whose figures the window's leakage dominates)."""
MAX_OCTAVES = 10
CHANGE_DB = 3.0
"""A band that carries signal and lost (or gained: coding noise) more than this is reported."""
SIGNAL_FLOOR_DB = -50.0
"""A band carries signal when it holds at least this much of the source's total power (dB)
and more than :data:`SILENCE_DB` absolute: quieter bands are below what AAC keeps on purpose."""
SILENCE_DB = -100.0
ABOVE_FLOOR_DB = -50.0
"""Source power above the stored bandwidth that is reported (dB of the source's total)."""


def band_edges(bandwidth_hz: float, sample_rate: int) -> list[float]:
    """Octave band edges from 0 Hz up to ``bandwidth_hz``: ``[0, B/2**K, ..., B/2, B]``."""
    bin_hz = sample_rate / BLOCK
    octaves = 1
    while octaves < MAX_OCTAVES and bandwidth_hz / 2 ** (octaves + 1) >= LOWEST_BAND_BINS * bin_hz:
        octaves += 1
    return [0.0] + [bandwidth_hz / 2**k for k in range(octaves, -1, -1)]


class BandMeter:
    """Accumulates the power spectrum of a signal pushed block by block ``(C, t)``."""

    def __init__(self, sample_rate: int) -> None:
        self.sample_rate = int(sample_rate)
        self._window = np.hanning(BLOCK).astype(np.float32)
        # Normalised so that a bin's |X|**2 sums to the block's mean power per sample.
        self._scale = 2.0 / (BLOCK * float(np.sum(self._window.astype(np.float64) ** 2)))
        self._pending: list[np.ndarray] = []
        self._pending_samples = 0
        self._power: np.ndarray | None = None
        self._blocks = 0
        self._tail: np.ndarray | None = None

    def push(self, x: np.ndarray) -> None:
        """Add samples ``(C, t)`` (float, in order)."""
        if x.shape[1] == 0:
            return
        self._pending.append(np.asarray(x, dtype=np.float32))
        self._pending_samples += x.shape[1]
        if self._pending_samples >= 8 * BLOCK:
            self._flush(final=False)

    def _flush(self, *, final: bool) -> None:
        if not self._pending:
            return
        data = np.concatenate(self._pending, axis=1) if len(self._pending) > 1 else self._pending[0]
        whole = data.shape[1] // BLOCK
        if final and whole == 0 and self._blocks == 0:
            # Shorter than a block: one zero-padded block, scaled to its true length.
            padded = np.zeros((data.shape[0], BLOCK), np.float32)
            padded[:, : data.shape[1]] = data
            self._add(padded[:, None, :], BLOCK / max(data.shape[1], 1))
            self._pending, self._pending_samples = [], 0
            return
        if whole:
            blocks = data[:, : whole * BLOCK].reshape(data.shape[0], whole, BLOCK)
            self._add(blocks, 1.0)
        rest = data[:, whole * BLOCK :]
        self._pending = [rest] if rest.shape[1] else []
        self._pending_samples = rest.shape[1]

    def _add(self, blocks: np.ndarray, weight: float) -> None:
        spectra = np.fft.rfft(blocks * self._window, axis=-1)
        power = (spectra.real**2 + spectra.imag**2).sum(axis=(0, 1)).astype(np.float64) * (self._scale * weight)
        self._power = power if self._power is None else self._power + power
        self._blocks += blocks.shape[1]

    def spectrum(self) -> tuple[np.ndarray, np.ndarray]:
        """``(frequencies in Hz, mean power per bin)`` of everything pushed."""
        self._flush(final=True)
        freqs = np.fft.rfftfreq(BLOCK, 1.0 / self.sample_rate)
        if self._power is None:
            return freqs, np.zeros_like(freqs)
        return freqs, self._power / self._blocks

    def bands(self, edges: Iterable[float], top_hz: float | None = None) -> np.ndarray:
        """Mean power in each band ``[edges[k], edges[k + 1])`` (the last band includes its
        upper edge), and one more entry for ``[edges[-1], top_hz]`` where ``top_hz`` is given."""
        freqs, power = self.spectrum()
        edges = list(edges)
        out = []
        for k, (lo, hi) in enumerate(itertools.pairwise(edges)):
            last = k == len(edges) - 2
            mask = (freqs >= lo) & ((freqs <= hi) if last else (freqs < hi))
            out.append(float(power[mask].sum()))
        if top_hz is not None:
            out.append(float(power[freqs > edges[-1]].sum()) if top_hz > edges[-1] else 0.0)
        return np.asarray(out)


def to_db(power: float) -> float | None:
    """Power in dB (0 dB: a full-scale square wave); None for silence."""
    return round(10 * math.log10(power), 2) if power > 0 else None


@dataclass(frozen=True, slots=True)
class BandReport:
    """Band energies of a source and of what was stored, in dB; the proof an import keeps."""

    edges_hz: tuple[float, ...]
    source_db: tuple[float | None, ...]
    stored_db: tuple[float | None, ...]
    above_bandwidth_db: float | None
    """Source power above the stored bandwidth (None: none, or nothing above to measure)."""
    source_total_db: float | None

    def as_json(self) -> dict[str, Any]:
        return {
            "edges_hz": [round(e, 1) for e in self.edges_hz],
            "source_db": list(self.source_db),
            "stored_db": list(self.stored_db),
            "above_bandwidth_db": self.above_bandwidth_db,
        }

    def problems(self, hint: str = "raise the bitrate") -> list[str]:
        """What a user should hear about: bands that carry signal and lost or gained more
        than :data:`CHANGE_DB`, and source power above the stored bandwidth."""
        out: list[str] = []
        total = self.source_total_db
        if total is None:
            return out
        changed = []
        for k, (src, got) in enumerate(zip(self.source_db, self.stored_db, strict=True)):
            if src is None or src < SILENCE_DB or src < total + SIGNAL_FLOOR_DB:
                continue
            change = (got if got is not None else -300.0) - src
            if abs(change) > CHANGE_DB:
                band = f"{_hz(self.edges_hz[k])}-{_hz(self.edges_hz[k + 1])}"
                if got is None:
                    changed.append(f"{band} lost all of its energy")
                else:
                    changed.append(f"{band} {'gained' if change > 0 else 'lost'} {abs(change):.1f} dB")
        if changed:
            out.append(f"the stored stream does not keep the source's spectrum ({hint}): " + "; ".join(changed))
        above = self.above_bandwidth_db
        if above is not None and above > SILENCE_DB and above >= total + ABOVE_FLOOR_DB:
            out.append(
                f"the source has energy above the stored bandwidth of {_hz(self.edges_hz[-1])} "
                f"({above - total:+.1f} dB of its total), which is not stored"
            )
        return out


def compare(source: BandMeter, stored: BandMeter, bandwidth_hz: float) -> BandReport:
    """Band energies of ``source`` and ``stored`` in octaves up to ``bandwidth_hz``, and the
    source's power above it (up to its own Nyquist frequency)."""
    edges = band_edges(bandwidth_hz, source.sample_rate)
    top = source.sample_rate / 2
    src = source.bands(edges, top_hz=top)
    got = stored.bands(edges)
    total = float(src.sum())
    return BandReport(
        edges_hz=tuple(edges),
        source_db=tuple(to_db(p) for p in src[:-1]),
        stored_db=tuple(to_db(p) for p in got),
        above_bandwidth_db=to_db(float(src[-1])) if top > edges[-1] else None,
        source_total_db=to_db(total),
    )


def measured_bandwidth(meter: BandMeter) -> int:
    """The highest frequency a decoded stream carries: the top of the highest bin holding
    more than -100 dB of the total power (an encoder's low-pass leaves nothing above it),
    rounded up to 100 Hz, at most the Nyquist frequency; 0 for silence."""
    freqs, power = meter.spectrum()
    total = float(power.sum())
    if total <= 0:
        return 0
    loud = np.flatnonzero(power > total * 1e-10)
    top = float(freqs[loud[-1]]) + meter.sample_rate / BLOCK if loud.size else 0.0
    return int(min(meter.sample_rate // 2, math.ceil(top / 100) * 100))


def _hz(f: float) -> str:
    return f"{f / 1000:.3g} kHz" if f >= 1000 else f"{f:.0f} Hz"
