"""Synthetic test signals, shared by aacdata's tests, examples and benchmarks, and
useful for yours: deterministic float32 audio of a few kinds, in memory.

>>> from aacdata.testing import signal
>>> signal("chirp", 16_000, sample_rate=16_000, num_channels=2).shape
(2, 16000)

Signals are float32 arrays of shape ``(num_channels, num_samples)`` with values in
[-0.95, 0.95], a pure function of their arguments (``seed`` included).
"""

from __future__ import annotations

import numpy as np

__all__ = ["KINDS", "signal"]

KINDS = ("tone", "chirp", "noise", "speech", "music")
"""The kinds of :func:`signal`."""


def signal(kind: str, num_samples: int, *, sample_rate: int, num_channels: int = 1, seed: int = 0) -> np.ndarray:
    """A test signal, float32 ``(num_channels, num_samples)`` in [-1, 1].

    Kinds: ``tone`` (sine), ``chirp`` (log sweep), ``noise`` (white), ``speech``
    (voiced bursts with pauses), ``music`` (dense chords, noise and percussive hits;
    many bits per AAC frame).
    """
    rng = np.random.default_rng(seed)
    t = np.arange(num_samples) / sample_rate
    nyq = sample_rate / 2
    chans = []
    for c in range(num_channels):
        x: np.ndarray
        if kind == "tone":
            f = min(220.0 * (1 + c) * (1 + seed % 5), nyq * 0.8)
            x = 0.5 * np.sin(2 * np.pi * f * t + c)
        elif kind == "chirp":
            f0, f1 = 50.0, nyq * 0.9
            dur = max(t[-1] if num_samples else 1.0, 1e-3)
            k = np.log(f1 / f0) / dur
            x = 0.4 * np.sin(2 * np.pi * f0 * (np.exp(k * t) - 1) / k + c)
        elif kind == "noise":
            x = 0.3 * rng.standard_normal(num_samples)
        elif kind == "speech":
            pitch = 110 + 40 * c + 20 * np.sin(2 * np.pi * 0.7 * t)
            phase = 2 * np.pi * np.cumsum(pitch) / sample_rate
            voiced = np.zeros(num_samples)
            for h in range(1, 12):
                if h * 150 < nyq:
                    voiced += np.sin(h * phase) / h
            syllables = np.clip(np.sin(2 * np.pi * 3.1 * t + rng.uniform(0, 6)), 0, None) ** 2
            pauses = (np.sin(2 * np.pi * 0.23 * t + c) > -0.6).astype(float)
            x = 0.3 * voiced * syllables * pauses + 0.01 * rng.standard_normal(num_samples)
        elif kind == "music":
            x = np.zeros(num_samples, dtype=np.float64)
            for i, f in enumerate((110.0, 138.6, 164.8, 220.0, 277.2, 329.6, 440.0, 554.4)):
                if f * 8 < nyq:
                    detune = 1 + 0.002 * (i - 4) + 0.001 * c
                    x += sum(0.04 / h * np.sin(2 * np.pi * f * h * detune * t + i + c) for h in range(1, 9))
            hits = np.zeros(num_samples)
            step = max(sample_rate // 4, 1)
            hits[::step] = 1.0
            decay = np.exp(-np.arange(min(step, 4096)) / (sample_rate * 0.01))
            x += 0.3 * np.convolve(hits, decay)[:num_samples] * rng.standard_normal(num_samples)
            x += 0.05 * rng.standard_normal(num_samples)
        else:
            raise ValueError(f"unknown signal kind {kind!r}; expected one of {', '.join(KINDS)}")
        chans.append(x)
    out = np.asarray(chans, dtype=np.float64).reshape(num_channels, num_samples)
    peak = float(np.max(np.abs(out))) if out.size else 0.0
    if peak > 0.95:
        out *= 0.95 / peak
    return out.astype(np.float32)
