"""A run of frames ready to append to a store: what the writer takes, whoever made it
(the transcoder, repair copying a store's bytes, merge)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ._adts import SAMPLES_PER_FRAME
from ._codec import CODEC_AAC_LC


@dataclass(frozen=True, slots=True)
class FrameRun:
    """The frames of one recording and their timing.

    ``adts`` holds ``num_frames`` frames of ``codec`` back to back (ADTS frames for AAC-LC,
    FLAC frames for FLAC; sizes in ``frame_sizes``, int64 ``(num_frames,)``); decoding them
    gives ``frame_samples`` samples per frame and channel (FLAC's last frame: fewer), of
    which ``[encoder_delay, encoder_delay + num_samples)`` are the recording's.
    ``bits_per_sample``: FLAC's sample size (0 for AAC).
    ``random_noise``: the stream uses PNS, whose decoded noise depends on decoder state,
    so each window is read with a fresh decoder.

    ``sample_rate`` is the recording's true rate; ``stream_sample_rate`` the rate the
    frames are labelled with (0: the same; lower where the recording is time-expanded:
    the same samples, played slower). ``bandwidth_hz``: the highest frequency the frames
    carry, in Hz of the true timeline (0: unknown).
    """

    adts: bytes
    frame_sizes: np.ndarray
    num_samples: int
    sample_rate: int
    num_channels: int
    encoder_delay: int
    random_noise: bool = False
    stream_sample_rate: int = 0
    bandwidth_hz: int = 0
    codec: int = CODEC_AAC_LC
    frame_samples: int = SAMPLES_PER_FRAME
    bits_per_sample: int = 0

    @property
    def frames_rate(self) -> int:
        """The rate the frames are labelled with (see ``stream_sample_rate``)."""
        return self.stream_sample_rate or self.sample_rate

    @property
    def num_frames(self) -> int:
        return int(self.frame_sizes.size)

    @property
    def bitrate(self) -> int:
        """Average bit rate of the stored stream (headers included), bit per second of the
        recording (of the true timeline)."""
        seconds = self.num_samples / self.sample_rate
        return round(len(self.adts) * 8 / seconds) if seconds > 0 else 0

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(num_samples={self.num_samples}, sample_rate={self.sample_rate}, "
            f"num_channels={self.num_channels}, num_frames={self.num_frames}, num_bytes={len(self.adts)})"
        )
