"""Per-process pool of AAC decoders; decode a run of frames into an exact window.

One decoder per stream configuration, kept alive and flushed between windows (a new
``CodecContext`` costs ~255 µs, ``flush_buffers`` + one frame ~15 µs). A run of frames is
fed as one packet: FFmpeg's AAC decoder consumes one ADTS frame per call and keeps the
rest of the packet, so one ``av.Packet`` serves the whole window.
"""

from __future__ import annotations

import os
from typing import Any

import av
import numpy as np

from ._adts import SAMPLES_PER_FRAME, audio_specific_config
from ._channels import coded_channels
from .errors import DecodeError

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
    """Decoders of this process, by configuration; re-created after ``fork``."""

    def __init__(self) -> None:
        self._pid = os.getpid()
        self._decoders: dict[DecoderKey, Any] = {}
        self.decoders_created = 0

    def get(self, key: DecoderKey) -> Any:
        if self._pid != os.getpid():
            self._decoders = {}
            self._pid = os.getpid()
        ctx = self._decoders.get(key)
        if ctx is None:
            ctx = self._decoders[key] = new_decoder(key)
            self.decoders_created += 1
        else:
            ctx.flush_buffers()
        return ctx

    def fresh(self, key: DecoderKey | None = None) -> Any:
        self.decoders_created += 1
        return new_decoder(key)

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
    what: str,
) -> None:
    """Decode ``num_frames`` ADTS frames in ``data``; write samples to ``out``.

    The first ``preroll`` frames only prime the decoder (MDCT overlap) and their output is
    dropped; of the rest, ``skip`` leading samples are dropped and the next
    ``out.shape[1]`` samples fill ``out`` (float32, shape ``(C, T)``). Frames decode to
    ``coded_channels(C)`` channels, of which the first ``C`` are the recording's.
    """
    try:
        frames = ctx.decode(av.Packet(data))
    except av.FFmpegError as e:
        raise DecodeError(f"{what}: AAC decoder failed ({e})") from None
    if len(frames) != num_frames:
        raise DecodeError(f"{what}: {num_frames} frames gave {len(frames)} decoded frames")
    channels, total = out.shape
    coded = coded_channels(channels)
    if num_frames > preroll:
        # Check one frame's layout before touching any .planes (a frame of another layout
        # would make PyAV read past its data pointers). The frames' bytes passed their
        # CRC-32s, so the rest have the layout the stream was written with; their sample
        # counts and plane counts are still checked, which costs nothing.
        first = frames[preroll]
        got = first.layout.nb_channels
        if got != coded or first.format.name != "fltp":
            raise DecodeError(
                f"{what}: decoded frame has {got} channels of {first.format.name} samples; expected {coded} of fltp"
            )
    pos = -skip  # where the next frame's first sample lands in out
    for frame in frames[preroll:]:
        if pos >= total:
            break
        planes = frame.planes
        if frame.samples != SAMPLES_PER_FRAME or len(planes) < channels:
            raise DecodeError(
                f"{what}: a decoded frame has {len(planes)} planes of {frame.samples} samples; "
                f"expected {coded} of {SAMPLES_PER_FRAME}"
            )
        if pos >= 0 and pos + SAMPLES_PER_FRAME <= total:  # the whole frame (most frames)
            for c in range(channels):
                out[c, pos : pos + SAMPLES_PER_FRAME] = np.frombuffer(planes[c], np.float32, SAMPLES_PER_FRAME)
        else:
            a = max(0, -pos)
            b = min(SAMPLES_PER_FRAME, total - pos)
            if b > a:
                for c in range(channels):
                    out[c, pos + a : pos + b] = np.frombuffer(planes[c], np.float32, SAMPLES_PER_FRAME)[a:b]
        pos += SAMPLES_PER_FRAME
    if pos < total:
        raise DecodeError(f"{what}: frames decoded to {pos} samples, window needs {total}")
