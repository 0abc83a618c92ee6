"""AAC-LC in ADTS framing as a :class:`~aacdata.codecs._codec.FrameCodec`: 1024 samples a
frame, one pre-roll frame (the MDCT overlaps neighbouring frames), the encoder's priming
as ``encoder_delay``; decoders from :mod:`aacdata.codecs._decoder`."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from ..audio._channels import coded_channels
from ..errors import CorruptDataError, Describe
from . import _decoder
from ._adts import parse_adts, with_pce_in_first_frame
from ._codec import CODEC_AAC_LC, FrameCodec, StreamConfig

_MAX_ADTS_FRAME = 8191  # the ADTS header's 13-bit frame length


def decoder_key(config: StreamConfig) -> _decoder.DecoderKey:
    """The AAC decoder's configuration: the frames' rate, coded channels, PCE layout."""
    return config.sample_rate, coded_channels(config.num_channels), config.pce


class AacCodec(FrameCodec):
    number = CODEC_AAC_LC
    name = "aac-lc"
    framing = "ADTS"
    suffix = ".aac"
    preroll_frames = 1
    max_frame_bytes_limit = _MAX_ADTS_FRAME

    def new_decoder(self, config: StreamConfig) -> Any:
        return _decoder.new_decoder(decoder_key(config))

    def needs_fresh_decoder(self, first_frame: int, random_noise: bool) -> bool:
        # Frame 0's own output (no priming: raw ADTS passthrough) differs slightly after
        # flush_buffers(); PNS noise depends on decoder state that flushing keeps.
        return first_frame == 0 or random_noise

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
        _decoder.decode_into(ctx, data, num_frames=num_frames, preroll=preroll, skip=skip, out=out, what=what)

    def decode_stream(
        self, ctx: Any, data: bytes, bounds: np.ndarray, *, config: StreamConfig, what: str
    ) -> Iterator[tuple[int, np.ndarray]]:
        coded = coded_channels(config.num_channels)
        for a, frames in _decoder.decode_batches(ctx, data, bounds, channels=coded, what=what):
            yield a, np.concatenate([_decoder.planes(f, config.num_channels) for f in frames], axis=1)

    def parse_frames(self, data: bytes, config: StreamConfig) -> tuple[np.ndarray, np.ndarray]:
        frames = parse_adts(data)
        if frames.sample_rate != config.sample_rate:
            raise CorruptDataError(f"headers say {frames.sample_rate} Hz, table says {config.sample_rate} Hz")
        return frames.offsets, frames.sizes

    def stream_bytes(self, data: bytes, config: StreamConfig) -> bytes:
        if config.pce:
            return with_pce_in_first_frame(data, config.sample_rate, coded_channels(config.num_channels))
        return data
