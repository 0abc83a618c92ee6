"""AAC-LC in ADTS framing as a :class:`~aacdata.codecs._codec.FrameCodec`: 1024 samples a
frame, one pre-roll frame (the MDCT overlaps neighbouring frames), the encoder's priming
as ``encoder_delay``; decoders from :mod:`aacdata.codecs._decoder`."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import av
import numpy as np

from ..audio._channels import coded_channels
from ..errors import CorruptDataError, DecodeError, Describe, described
from . import _decoder
from ._adts import parse_adts, with_pce_in_first_frame
from ._codec import CODEC_AAC_LC, FrameCodec, StreamConfig
from ._fast import fastaac

log = logging.getLogger("aacdata")

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

    def new_window_decoder(self, config: StreamConfig, *, compiled: bool = True) -> Any:
        # The compiled decoder, where built, for layouts without a PCE (the PyAV decoder is
        # told a PCE layout through extradata, which the compiled one does not set).
        usable = compiled and _fast_trusted and not config.pce and coded_channels(config.num_channels) <= 8
        if usable and fastaac is not None:
            ctx = fastaac.Decoder()
            _noise.find(ctx)
            return ctx
        return self.new_decoder(config)

    def needs_new_decoder(self, first_frame: int) -> bool:
        # Frame 0's own output (no priming: raw ADTS passthrough) differs slightly after
        # flush_buffers().
        return first_frame == 0

    def reset_noise(self, ctx: Any) -> bool:
        # PNS noise comes from a generator that flush_buffers() keeps; the compiled decoder
        # sets it back to its seed, once that is proven in this process (_NoiseReset).
        if _noise.proven and fastaac is not None and isinstance(ctx, fastaac.Decoder):
            assert _noise.offset is not None
            ctx.reset_noise(_noise.offset)
            return True
        return False

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
        if fastaac is None or not isinstance(ctx, fastaac.Decoder) or not _fast_trusted:
            if not isinstance(ctx, av.CodecContext):  # a compiled decoder made before it was found wrong
                ctx = _decoder.new_decoder(decoder_key(config))
            _decoder.decode_into(ctx, data, num_frames=num_frames, preroll=preroll, skip=skip, out=out, what=what)
            return
        _decode_compiled(ctx, data, num_frames, preroll, skip, out, what)
        if not _fast_checked:
            _check_compiled(data, config, num_frames, preroll, skip, out, what)
        if _noise.offset is not None and not _noise.proven and preroll and ctx.decodes() == 1:
            _noise.prove(ctx, data, num_frames, preroll, skip, out, what)

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


# ---------------------------------------------------------------------- the compiled decoder

_fast_checked = False  # its first window in this process was compared with PyAV's decode
_fast_trusted = True  # and agreed (else the pool makes PyAV decoders from then on)

_COMPILED_ERRORS = {
    1: "AAC decoder failed (FFmpeg error {a})",
    2: "{b} frames gave {a} decoded frames",
    3: "decoded frame {a} has sample format {b}; expected planar float",
    4: "decoded frame {a} has {b} samples; expected 1024",
    5: "decoded frame {a} has {b} planes; expected the coded channels",
    6: "frames decoded to {a} samples, window needs {b}",
    7: "decoded frame {a} is not laid out as expected (planes of {b} bytes)",
}


def _decode_compiled(
    ctx: Any, data: bytes, num_frames: int, preroll: int, skip: int, out: np.ndarray, what: Describe
) -> None:
    code, a, b = ctx.decode_into(data, num_frames, preroll, skip, out, coded_channels(out.shape[0]))
    if code:
        raise DecodeError(f"{described(what)}: {_COMPILED_ERRORS[code].format(a=a, b=b)}")


def _check_compiled(
    data: bytes, config: StreamConfig, num_frames: int, preroll: int, skip: int, out: np.ndarray, what: Describe
) -> None:
    """Decode the window again with a new PyAV decoder; where the two differ, keep PyAV's
    samples and stop using the compiled decoder in this process. (A new decoder gives the
    same samples as a reset one except for frame 0, which always gets a new one.)"""
    global _fast_checked, _fast_trusted
    ref = np.empty_like(out)
    ctx = _decoder.new_decoder(decoder_key(config))
    _decoder.decode_into(ctx, data, num_frames=num_frames, preroll=preroll, skip=skip, out=ref, what=what)
    _fast_checked = True
    if not np.array_equal(ref, out):
        _fast_trusted = False
        log.warning("the compiled AAC decoder disagrees with PyAV's on %s; decoding with PyAV", described(what))
        out[...] = ref


class _NoiseReset:
    """Where the compiled decoder keeps the PNS noise generator's state, and whether setting
    it back to its seed has been proven to make a used decoder decode as a new one does.

    FFmpeg's AAC decoder fills noise-substituted bands from a generator seeded when it
    opens and never reset (``flush_buffers`` keeps it), so a window of a PNS stream equals
    what a new decoder gives only from a new decoder (~250 µs to open). The place of the
    state is found on a decoder that has not decoded yet: the one 4-byte word holding the
    seed. It is used only after a proof in this process: the first PNS window decoded by a
    new decoder (whose noise state then moved) is decoded again by the same decoder, reset
    and seeded, and must come out bit-identical; otherwise windows of PNS streams keep
    getting new decoders.
    """

    def __init__(self) -> None:
        self.offset: int | None = None
        self.proven = False
        self._searched = False

    def find(self, ctx: Any) -> None:
        if not self._searched:
            self._searched = True
            offsets = ctx.seed_offsets()
            self.offset = offsets[0] if len(offsets) == 1 else None

    def prove(
        self, ctx: Any, data: bytes, num_frames: int, preroll: int, skip: int, out: np.ndarray, what: Describe
    ) -> None:
        assert self.offset is not None
        assert fastaac is not None
        if ctx.noise_state(self.offset) == fastaac.NOISE_SEED:
            return  # this window used no noise: it proves nothing
        again = np.empty_like(out)
        ctx.reset_noise(self.offset)
        _decode_compiled(ctx, data, num_frames, preroll, skip, again, what)
        if np.array_equal(again, out):
            self.proven = True
        else:
            log.debug("the noise state's place is not proven; PNS windows keep getting new decoders")
            self.offset = None


_noise = _NoiseReset()
