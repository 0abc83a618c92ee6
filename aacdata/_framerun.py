"""A run of AAC frames ready to append to a store: what the writer takes, whoever made it
(the transcoder, repair copying a store's bytes, merge)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, slots=True)
class FrameRun:
    """ADTS frames of one recording and their timing.

    ``adts`` holds ``num_frames`` frames back to back (sizes in ``frame_sizes``, int64
    ``(num_frames,)``); decoding them gives ``num_frames * 1024`` samples per channel, of
    which ``[encoder_delay, encoder_delay + num_samples)`` are the recording's.
    ``random_noise``: the stream uses PNS, whose decoded noise depends on decoder state,
    so each window is read with a fresh decoder.
    """

    adts: bytes
    frame_sizes: np.ndarray
    num_samples: int
    sample_rate: int
    num_channels: int
    encoder_delay: int
    random_noise: bool = False

    @property
    def num_frames(self) -> int:
        return int(self.frame_sizes.size)

    @property
    def bitrate(self) -> int:
        """Average bit rate of the stored stream (headers included), bit/s."""
        seconds = self.num_samples / self.sample_rate
        return round(len(self.adts) * 8 / seconds) if seconds > 0 else 0

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(num_samples={self.num_samples}, sample_rate={self.sample_rate}, "
            f"num_channels={self.num_channels}, num_frames={self.num_frames}, num_bytes={len(self.adts)})"
        )
