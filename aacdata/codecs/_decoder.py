"""Per-process pool of decoders; AAC decoding of a run of frames into an exact window.

One decoder per stream configuration, kept alive and flushed between windows (a new
``CodecContext`` costs ~255 µs, ``flush_buffers`` + one frame ~15 µs). A run of frames is
fed as one packet: FFmpeg's AAC decoder consumes one ADTS frame per call and keeps the
rest of the packet, so one ``av.Packet`` serves the whole window.
"""

from __future__ import annotations

import os
from collections.abc import Hashable, Iterator
from typing import TYPE_CHECKING, Any

import av
import numpy as np

from ..audio._channels import coded_channels
from ..errors import DecodeError, Describe, described
from ._adts import SAMPLES_PER_FRAME, audio_specific_config

if TYPE_CHECKING:
    from ._codec import FrameCodec, StreamConfig

_SAMPLE_BYTES = 4  # float32
_FRAME_BYTES = SAMPLES_PER_FRAME * _SAMPLE_BYTES

DecoderKey = tuple[int, int, bool]
"""(sample_rate, coded channels, whether the layout is given by a PCE)."""


def new_decoder(key: DecoderKey | None = None) -> Any:
    """A decoder; for a PCE layout, told the layout up front (the ADTS headers of such a
    stream say ``channel_config = 0``), so that it decodes any frame of the stream."""
    ctx = av.CodecContext.create("aac", "r")
    ctx.thread_count = 1  # FFmpeg codec contexts are not shared across threads
    if key is not None and key[2]:
        ctx.extradata = audio_specific_config(key[0], key[1])
        ctx.sample_rate = key[0]  # the decoder takes no rate from a PCE stream's extradata alone
    return ctx


class DecoderPool:
    """Decoders of this process, one per codec configuration
    (:attr:`~aacdata.codecs._codec.StreamConfig.key`); re-created after ``fork``."""

    def __init__(self, *, compiled: bool = True) -> None:
        self.compiled = compiled
        """Whether it may use the compiled decoder and frame check (``False``: the pure-Python
        path, as with ``AACDATA_PURE_PYTHON=1``; for comparisons)."""
        self._pid = os.getpid()
        self._decoders: dict[Hashable, Any] = {}
        self.decoders_created = 0

    def for_window(self, codec: FrameCodec, config: StreamConfig, *, first_frame: int, random_noise: bool) -> Any:
        """A decoder for a run of frames from ``first_frame`` that does not follow the last:
        the pooled one for ``config``, reset; a new one where the codec needs it, or where the
        stream has random noise (PNS) and the pooled one cannot be reset to decode it as a
        new one would."""
        if self._pid != os.getpid():
            self._decoders = {}
            self._pid = os.getpid()
        if codec.needs_new_decoder(first_frame):
            return self.fresh(codec, config)
        key = config.key
        ctx = self._decoders.get(key)
        if ctx is None:
            ctx = self._decoders[key] = codec.new_window_decoder(config, compiled=self.compiled)
            self.decoders_created += 1
        elif not random_noise:
            codec.reset(ctx)
        elif not codec.reset_noise(ctx):
            return self.fresh(codec, config)
        return ctx

    def fresh(self, codec: FrameCodec, config: StreamConfig) -> Any:
        """A new decoder for ``config``, not kept."""
        self.decoders_created += 1
        return codec.new_window_decoder(config, compiled=self.compiled)

    def clear(self) -> None:
        self._decoders = {}

    def __len__(self) -> int:
        return len(self._decoders)


def decode_into(
    ctx: Any,
    data: bytes,
    *,
    num_frames: int,
    preroll: int,
    skip: int,
    out: np.ndarray,
    what: Describe,
) -> None:
    """Decode ``num_frames`` ADTS frames in ``data``; write samples to ``out``.

    The first ``preroll`` frames only prime the decoder (MDCT overlap) and their output is
    dropped; of the rest, ``skip`` leading samples are dropped and the next
    ``out.shape[1]`` samples fill ``out`` (float32, shape ``(C, T)``, each row contiguous:
    ``out`` may be a column slice of a C-ordered array). Frames decode to
    ``coded_channels(C)`` channels, of which the first ``C`` are the recording's.
    """
    channels, total = out.shape
    coded = coded_channels(channels)
    frames = decode_packet(ctx, data, num_frames=num_frames, channels=coded, what=what)
    # Each channel's row of ``out`` as bytes: a frame's plane is copied in with one slice
    # assignment (the planes' buffers are padded past the 1024 samples, hence [:_FRAME_BYTES]).
    rows = [memoryview(out[c]).cast("B") for c in range(channels)]
    pos = -skip  # where the next frame's first sample lands in out
    for frame in frames[preroll:]:
        if pos >= total:
            break
        planes = frame.planes
        if frame.samples != SAMPLES_PER_FRAME or len(planes) < channels:
            raise DecodeError(
                f"{described(what)}: a decoded frame has {len(planes)} planes of {frame.samples} samples; "
                f"expected {coded} of {SAMPLES_PER_FRAME}"
            )
        if pos >= 0 and pos + SAMPLES_PER_FRAME <= total:  # the whole frame (most frames)
            b = pos * _SAMPLE_BYTES
            for c in range(channels):
                rows[c][b : b + _FRAME_BYTES] = memoryview(planes[c])[:_FRAME_BYTES]
        else:
            a = max(0, -pos) * _SAMPLE_BYTES
            b = min(SAMPLES_PER_FRAME, total - pos) * _SAMPLE_BYTES
            if b > a:
                at = pos * _SAMPLE_BYTES
                for c in range(channels):
                    rows[c][at + a : at + b] = memoryview(planes[c])[a:b]
        pos += SAMPLES_PER_FRAME
    if pos < total:
        raise DecodeError(f"{described(what)}: frames decoded to {pos} samples, window needs {total}")


def decode_packet(ctx: Any, data: bytes, *, num_frames: int, channels: int, what: Describe) -> list[Any]:
    """Decode a run of ADTS frames fed as one packet (FFmpeg's AAC decoder takes one frame
    per call and keeps the rest): exactly ``num_frames`` decoded frames, the first checked
    for ``channels`` planar float channels before any of their planes is touched (a frame of
    another layout would make PyAV read past its data pointers)."""
    try:
        frames: list[Any] = ctx.decode(av.Packet(data))
    except av.FFmpegError as e:
        raise DecodeError(f"{described(what)}: AAC decoder failed ({e})") from None
    if len(frames) != num_frames:
        raise DecodeError(f"{described(what)}: {num_frames} frames gave {len(frames)} decoded frames")
    if frames:
        got, fmt = frames[0].layout.nb_channels, frames[0].format.name
        if got != channels or fmt != "fltp":
            raise DecodeError(
                f"{described(what)}: decoded frame has {got} channels of {fmt} samples; expected {channels} of fltp"
            )
    return frames


def decode_batches(
    ctx: Any, data: bytes, bounds: np.ndarray, *, channels: int, what: str, batch: int = 256
) -> Iterator[tuple[int, list[Any]]]:
    """Decode every frame of a stream, ``batch`` frames a packet: frame ``k`` is
    ``data[bounds[k]:bounds[k + 1]]``. Yields ``(k0, frames)``, the batch's first frame
    number and its decoded frames, each checked for ``channels`` channels of 1024 samples
    (for verification and the import's checks, which trust nothing)."""
    edges = bounds.tolist()
    n = len(edges) - 1
    for a in range(0, n, batch):
        b = min(a + batch, n)
        frames = decode_packet(
            ctx, data[edges[a] : edges[b]], num_frames=b - a, channels=channels, what=f"{what} frames {a}..{b - 1}"
        )
        for k, frame in enumerate(frames):
            if frame.samples != SAMPLES_PER_FRAME or frame.layout.nb_channels != channels:
                raise DecodeError(
                    f"{what}: frame {a + k} decodes to {frame.layout.nb_channels} channels of {frame.samples} "
                    f"samples; expected {channels} of {SAMPLES_PER_FRAME}"
                )
        yield a, frames


def planes(frame: Any, channels: int) -> np.ndarray:
    """The first ``channels`` planes of a decoded planar float frame, ``(channels, samples)``
    (not ``to_ndarray``: PyAV 18.1 miscounts the planes of 8-channel frames and crashes)."""
    return np.stack([np.frombuffer(p, dtype=np.float32, count=frame.samples) for p in frame.planes[:channels]])
