"""Channels: how many a store can hold, how they are laid out in AAC, and the one remix rule.

A source's channels are stored one to one: channel ``c`` of the source is channel ``c``
of every read, whatever layout, mask or lack of mask the source declares. AAC layouts are
chosen by count alone and none has an LFE channel (an LFE element keeps only the lowest
~120 Hz), so every channel keeps its full band:

====== ================ ==================================================
count  layout           signalled by
====== ================ ==================================================
1-5    mono ... 5.0     the ADTS channel configuration
6, 7   6.0, 7.0         a program config element (PCE)
8      octagonal        a PCE
9-16   hexadecagonal    a PCE; 9-15 channels are padded with silent channels
====== ================ ==================================================

Remixing happens only where asked for (``num_channels=`` at import or in the dataset),
with one rule everywhere: see :func:`remix`.
"""

from __future__ import annotations

import numpy as np

MAX_CHANNELS = 16
"""The most channels one recording can hold (FFmpeg's AAC encoder writes up to 16)."""

CODED_LAYOUTS: dict[int, str] = {
    1: "mono",
    2: "stereo",
    3: "3.0",
    4: "4.0",
    5: "5.0",
    6: "6.0",
    7: "7.0",
    8: "octagonal",
    16: "hexadecagonal",
}
"""FFmpeg layout names the encoder is given, by number of coded channels."""


def coded_channels(num_channels: int) -> int:
    """Channels in the AAC stream of a recording of ``num_channels`` channels (more than
    ``num_channels`` only for 9-15, padded to 16 with silence)."""
    if not 1 <= num_channels <= MAX_CHANNELS:
        raise ValueError(f"a recording holds 1 to {MAX_CHANNELS} channels; got {num_channels}")
    return num_channels if num_channels in CODED_LAYOUTS else MAX_CHANNELS


def remix(audio: np.ndarray, num_channels: int) -> np.ndarray:
    """The library's one channel remix, float32 ``(C, T)`` -> ``(num_channels, T)``.

    * same count: unchanged;
    * to 1 channel: the mean of all channels (equal weights, no gain: a signal present
      in every channel keeps its level);
    * from 1 channel: the channel repeated;
    * to fewer channels: the first ``num_channels`` channels;
    * to more channels from 2 or more: not defined (``ValueError``).
    """
    have = audio.shape[0]
    if num_channels == have:
        return audio
    if num_channels < 1:
        raise ValueError(f"num_channels must be >= 1; got {num_channels}")
    if num_channels == 1:
        return np.asarray(audio.mean(axis=0, keepdims=True, dtype=np.float32))
    if have == 1:
        return np.repeat(audio, num_channels, axis=0)
    if have > num_channels:
        return np.ascontiguousarray(audio[:num_channels])
    raise ValueError(
        f"cannot make {num_channels} channels from {have} (remixing works to mono, from mono, "
        "or to fewer channels than there are)"
    )
