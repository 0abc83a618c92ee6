"""The frame codecs by their number in the recordings table's ``codec`` column."""

from __future__ import annotations

from ._aac import AacCodec
from ._codec import FrameCodec
from ._flac import FlacCodec

CODECS: dict[int, FrameCodec] = {c.number: c for c in (AacCodec(), FlacCodec())}
CODEC_NAMES: dict[str, int] = {c.name: n for n, c in CODECS.items()}


def codec_of(number: int) -> FrameCodec:
    """The codec with ``number`` in the ``codec`` column."""
    return CODECS[number]
