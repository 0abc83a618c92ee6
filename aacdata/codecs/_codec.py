"""One interface for the frame codecs a store holds: AAC-LC (ADTS frames) and FLAC.

The read path, the writer, verify and repair see a recording's frames through a
:class:`FrameCodec` picked by the row's ``codec`` column, and never ask which one it is:

- a recording's frames cover ``frame_samples`` decoded samples each (the last may be
  shorter), frame ``k`` starting at decoded position ``k * frame_samples``;
- decoded position ``d`` is source sample ``d - encoder_delay`` (AAC's priming; 0 for FLAC);
- a window decodes ``preroll_frames`` frames before the first one it needs and drops their
  output (AAC's MDCT overlaps neighbouring frames; FLAC frames stand alone);
- the decoder's configuration is a small hashable key made from the row
  (:class:`StreamConfig`), so each process keeps one ready decoder per key.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Hashable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import Describe

CODEC_AAC_LC = 0
CODEC_FLAC = 1


@dataclass(frozen=True, slots=True)
class StreamConfig:
    """What decoding a recording's frames needs of its table row.

    ``sample_rate`` is the rate the frames are labelled with (the stream's, which differs
    from the recording's true rate where it is time-expanded); ``pce``: AAC frames whose
    channel layout comes from a program config element; ``bits_per_sample``: FLAC's sample
    size (0 for AAC); ``num_samples``: the recording's length (FLAC's STREAMINFO holds it).
    """

    codec: int
    sample_rate: int
    num_channels: int
    frame_samples: int
    bits_per_sample: int = 0
    pce: bool = False
    num_samples: int = 0

    @property
    def key(self) -> Hashable:
        """What a decoder is configured with: recordings with equal keys share decoders."""
        return (self.codec, self.sample_rate, self.num_channels, self.bits_per_sample, self.pce)


class FrameCodec(ABC):
    """Frames of one codec: decoders, decoding a run of frames, stand-alone streams."""

    number: int
    """The codec's value in the recordings table's ``codec`` column."""
    name: str
    """Its name in ``Recording.codec``, ``info`` and ``ls``."""
    framing: str
    """What its frames are called in messages ("ADTS", "FLAC")."""
    suffix: str
    """File suffix of a stand-alone stream (``export``)."""
    preroll_frames: int
    """Frames decoded, and dropped, before the first one a window needs."""
    max_frame_bytes_limit: int
    """The largest frame size the index of this codec may hold (a check on stored rows)."""

    @abstractmethod
    def new_decoder(self, config: StreamConfig) -> Any:
        """A decoder ready for frames of ``config``."""

    def new_window_decoder(self, config: StreamConfig, *, compiled: bool = True) -> Any:
        """A decoder for :meth:`decode_into` (pooled per process); by default
        :meth:`new_decoder`'s. ``compiled=False``: not a compiled one (a comparison)."""
        return self.new_decoder(config)

    def reset(self, ctx: Any) -> None:
        """Make a pooled decoder ready for a run of frames that does not follow the last."""
        ctx.flush_buffers()

    def needs_new_decoder(self, first_frame: int) -> bool:
        """Whether a window whose first needed frame is ``first_frame`` must be decoded by a
        new decoder rather than a reset one."""
        return False

    def reset_noise(self, ctx: Any) -> bool:
        """Reset a pooled decoder as :meth:`reset` does and also its noise generator, so that
        it decodes a stream with random noise (AAC's PNS) as a new decoder does; ``False``
        where it cannot (a new decoder is then used)."""
        return False

    @abstractmethod
    def decode_into(
        self,
        ctx: Any,
        data: bytes,
        *,
        config: StreamConfig,
        num_frames: int,
        preroll: int,
        skip: int,
        out: np.ndarray,
        what: Describe,
    ) -> None:
        """Decode ``num_frames`` frames held back to back in ``data``; drop the output of the
        first ``preroll`` and then ``skip`` samples; fill ``out`` (float32 ``(C, T)``, each row
        contiguous) with the next ``T`` samples of its ``C`` channels."""

    @abstractmethod
    def decode_stream(
        self, ctx: Any, data: bytes, bounds: np.ndarray, *, config: StreamConfig, what: str
    ) -> Iterator[tuple[int, np.ndarray]]:
        """Decode every frame of a recording (frame ``k`` is ``data[bounds[k]:bounds[k+1]]``),
        checking each: yields ``(k0, samples)``, the first frame of a batch and its decoded
        samples, float32 ``(C, t)``. For verification and the import's checks."""

    @abstractmethod
    def parse_frames(self, data: bytes, config: StreamConfig) -> tuple[np.ndarray, np.ndarray]:
        """Offsets and sizes (int64) of a recording's frames, found from their own headers,
        which must agree with ``config``; :class:`~aacdata.errors.CorruptDataError` says why
        where they do not."""

    @abstractmethod
    def stream_bytes(self, data: bytes, config: StreamConfig) -> bytes:
        """The recording's frames as a stand-alone stream any decoder plays."""

    def max_frame_bytes(self, frame_samples: np.ndarray, num_channels: np.ndarray) -> np.ndarray:
        """The largest frame recordings of these ``frame_samples`` and ``num_channels``
        (int64 table columns) may hold: a check on stored index rows."""
        return np.full_like(frame_samples, self.max_frame_bytes_limit)
