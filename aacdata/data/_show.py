"""A picture of one window: waveform and spectrogram, with the events of an annotation set
drawn as boxes (time x frequency) and labelled. Needs matplotlib (``aacdata[plot]``)."""

from __future__ import annotations

import math
import os
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from ..store._store import AACStore, RecordingRef

EVENT_COLOR = "#ff0000"
"""Edge colour of event boxes (pure red, so that a test can find them in the picture)."""


def show_window(
    store: AACStore,
    rec: RecordingRef,
    *,
    start_seconds: float = 0.0,
    duration_seconds: float | None = None,
    annotation_set: str | None = "default",
    out: str | os.PathLike[str] | None = None,
) -> Any:
    """Draw ``[start_seconds, start_seconds + duration_seconds)`` of a recording: its
    waveform (the mean of its channels) and spectrogram (Hz of the true timeline), with the
    events of ``annotation_set`` that overlap the window as labelled boxes (an event without
    frequency bounds spans the whole band). ``annotation_set=None``, or a store without that
    set: no boxes. Writes the picture to ``out`` (PNG, SVG or PDF by its extension) where
    given; returns the matplotlib ``Figure``.

    Raises
    ------
    ValueError
        matplotlib is not installed, or the window lies outside the recording.
    """
    try:
        import matplotlib

        matplotlib.use("Agg")  # files, not windows: works without a display
        import matplotlib.pyplot as plt
        from matplotlib.patches import Rectangle
    except ImportError:
        raise ValueError("drawing a window needs matplotlib: pip install 'aacdata[plot]'") from None
    r = store.recording(rec)
    rate = r.sample_rate
    start = round(start_seconds * rate)
    if not 0 <= start < r.num_samples:
        raise ValueError(f"start_seconds {start_seconds:g} is outside {r.id!r} ({r.duration_seconds:.3f} s)")
    stop = r.num_samples if duration_seconds is None else min(r.num_samples, start + round(duration_seconds * rate))
    if stop <= start:
        raise ValueError(f"duration_seconds must be > 0; got {duration_seconds!r}")
    audio = store.read(r, start, stop - start).mean(axis=0)
    t = start_seconds + np.arange(audio.size) / rate
    fig, (wave, spec) = plt.subplots(2, 1, figsize=(10, 6), sharex=True, height_ratios=(1, 2))
    wave.plot(t, audio, linewidth=0.5, color="#1f4e79")
    wave.set_ylabel("amplitude")
    wave.set_title(f"{r.id}  [{start / rate:.3f}, {stop / rate:.3f}) s, {rate} Hz")
    nfft = 1 << max(8, min(12, int(math.log2(max(audio.size // 8, 256)))))
    spec.specgram(audio, NFFT=nfft, Fs=rate, noverlap=nfft // 2, xextent=(t[0], t[-1]), cmap="Greys")
    spec.set_ylabel("Hz")
    spec.set_xlabel("seconds")
    spec.set_ylim(0, rate / 2)
    if annotation_set is not None and annotation_set in store.annotation_sets:
        ann = store.annotations(annotation_set)
        row = store.index_of(r)
        for k in ann.events_in(row, start, stop).tolist():
            a, b = max(int(ann.start[k]), start) / rate, min(int(ann.stop[k]), stop) / rate
            low, high = float(ann.low_hz[k]), float(ann.high_hz[k])
            low = 0.0 if math.isnan(low) else low
            high = rate / 2 if math.isnan(high) else high
            box = Rectangle((a, low), max(b - a, 1 / rate), high - low, fill=False, edgecolor=EVENT_COLOR, linewidth=2)
            spec.add_patch(box)
            spec.text(a, high, ann.classes[int(ann.label[k])], color=EVENT_COLOR, va="bottom", fontsize=8)
    fig.tight_layout()
    if out is not None:
        fig.savefig(os.fspath(out), dpi=100)
    return fig
