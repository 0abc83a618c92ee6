"""ADTS header parsing and building: pure bytes and numpy, no codec.

An ADTS frame is a 7-byte header (9 with CRC) followed by one raw AAC data block. The
header carries the 13-bit length of the whole frame, so a stream is a chain of frames
whose offsets follow from the lengths.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import CorruptDataError

SAMPLES_PER_FRAME = 1024
"""Samples per channel in one AAC-LC frame (the 960-sample variant is not used)."""

SAMPLE_RATES: tuple[int, ...] = (
    96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000, 7350,
)  # fmt: skip
"""Sample rates an ADTS header can signal, by sampling-frequency index."""

# ADTS channel_configuration -> number of channels (0 means "given by a PCE").
CHANNELS_BY_CONFIG: dict[int, int] = {1: 1, 2: 2, 3: 3, 4: 4, 5: 5, 6: 6, 7: 8}
CONFIG_BY_CHANNELS: dict[int, int] = {v: k for k, v in CHANNELS_BY_CONFIG.items()}

Elements = tuple[tuple[int, int], ...]
"""Syntactic elements of a channel group, in order: ``(is_cpe, instance_tag)`` each."""

PCE_LAYOUTS: dict[int, tuple[Elements, Elements, Elements]] = {
    6: (((1, 0), (0, 0)), ((1, 1),), ((0, 1),)),
    7: (((1, 0), (0, 0)), ((1, 1),), ((1, 2),)),
    8: (((1, 0), (0, 0)), ((1, 1),), ((1, 2), (0, 1))),
    16: (((1, 0), (0, 0), (1, 1), (0, 1)), ((1, 2), (1, 3)), ((1, 4), (0, 2), (1, 5), (0, 3))),
}
"""Front, side and back elements of the full-band layouts that need a program config
element (PCE), as FFmpeg's AAC encoder writes them for ``6.0``, ``7.0``, ``octagonal``
and ``hexadecagonal``. Stored as ``channel_config = 0``; a decoder learns the layout
from :func:`audio_specific_config` (reads) or from a PCE in frame 0 (stand-alone
streams, :func:`program_config_element`)."""

AOT_LC = 2
_HEADER_SIZE = 7
_MAX_FRAME_SIZE = (1 << 13) - 1


@dataclass(frozen=True, slots=True)
class AdtsFrames:
    """Frames found in an ADTS byte stream.

    Attributes
    ----------
    offsets, sizes
        int64 arrays of shape ``(N,)``: byte offset of each frame in the stream and its
        size including the header.
    object_type
        MPEG-4 audio object type (2 = AAC-LC).
    sample_rate, channel_config
        From the first frame's header; every frame agrees.
    """

    offsets: np.ndarray
    sizes: np.ndarray
    object_type: int
    sample_rate: int
    channel_config: int

    def __len__(self) -> int:
        return int(self.offsets.size)

    def __repr__(self) -> str:
        return (
            f"AdtsFrames(num_frames={len(self)}, num_bytes={int(self.sizes.sum())}, "
            f"object_type={self.object_type}, sample_rate={self.sample_rate}, "
            f"channel_config={self.channel_config})"
        )


def parse_adts(data: bytes | bytearray | memoryview | np.ndarray) -> AdtsFrames:
    """Find every frame of an ADTS stream and check its headers.

    The stream must start with a frame and consist of whole frames back to back, all
    with the same object type, sample rate and channel configuration and one raw data
    block each. Offsets follow from the 13-bit frame lengths (a chain walked in one tight
    loop, ~0.25 µs per frame); every header field is then checked vectorised.

    Raises
    ------
    CorruptDataError
        When the bytes are not such a stream; the message gives the first bad offset.
    """
    buf = np.frombuffer(data, dtype=np.uint8) if not isinstance(data, np.ndarray) else data.reshape(-1)
    n = int(buf.size)
    empty = np.zeros(0, dtype=np.int64)
    if n == 0:
        return AdtsFrames(empty, empty, AOT_LC, 0, 0)
    if n < _HEADER_SIZE:
        raise CorruptDataError(f"ADTS stream of {n} bytes is shorter than one frame header")
    offsets, stop = _walk(buf.data, n)
    synced = (buf[offsets] == 0xFF) & ((buf[offsets + 1] & 0xF6) == 0xF0)
    if not synced[0]:
        raise CorruptDataError("ADTS stream does not start with a sync word at byte 0")
    lost = np.flatnonzero(~synced)
    if lost.size:
        at, before = int(offsets[lost[0]]), int(offsets[lost[0] - 1])
        raise CorruptDataError(
            f"ADTS stream has no frame at byte {at}, where the frame at byte {before} "
            f"(length field {_length_at(buf, before)}) ends: sync lost"
        )
    if stop < 0:  # the walk met a length shorter than a header
        at = int(offsets[-1])
        raise CorruptDataError(f"ADTS frame at byte {at} has length {_length_at(buf, at)}")
    sizes = np.diff(np.append(offsets, stop))
    header_sizes = np.where((buf[offsets + 1] & 0x01) == 0, 9, 7)
    bad = np.flatnonzero(sizes < header_sizes)
    if bad.size:
        at = int(offsets[bad[0]])
        raise CorruptDataError(f"ADTS frame at byte {at} has length {int(sizes[bad[0]])}")
    if stop != n:
        raise CorruptDataError(
            f"ADTS stream of {n} bytes ends inside the frame at byte {int(offsets[-1])} "
            f"(frame length {_length_at(buf, int(offsets[-1]))})"
        )
    b2 = buf[offsets + 2].astype(np.int64)
    b3 = buf[offsets + 3].astype(np.int64)
    profile = b2 >> 6
    sr_index = (b2 >> 2) & 0x0F
    config = ((b2 & 0x01) << 2) | (b3 >> 6)
    blocks = buf[offsets + 6] & 0x03
    for name, values in (("profile", profile), ("sampling index", sr_index), ("channel config", config)):
        odd = np.flatnonzero(values != values[0])
        if odd.size:
            at = int(offsets[odd[0]])
            raise CorruptDataError(f"ADTS frame at byte {at} changes the {name} of the stream")
    if np.any(blocks != 0):
        at = int(offsets[np.flatnonzero(blocks)[0]])
        raise CorruptDataError(f"ADTS frame at byte {at} holds more than one raw data block")
    if int(sr_index[0]) >= len(SAMPLE_RATES):
        raise CorruptDataError(f"ADTS sampling index {int(sr_index[0])} is reserved")
    return AdtsFrames(
        offsets=offsets,
        sizes=sizes,
        object_type=int(profile[0]) + 1,
        sample_rate=SAMPLE_RATES[int(sr_index[0])],
        channel_config=int(config[0]),
    )


def _walk(b: memoryview, n: int) -> tuple[np.ndarray, int]:
    """Offsets of the frames chained by their length fields from byte 0, and where the
    chain stops (``n`` for a whole stream; -1 where a length is shorter than a header)."""
    out: list[int] = []
    append = out.append
    p = 0
    last = n - _HEADER_SIZE
    while p <= last:
        append(p)
        length = ((b[p + 3] & 0x03) << 11) | (b[p + 4] << 3) | (b[p + 5] >> 5)
        if length < _HEADER_SIZE:
            return np.asarray(out, dtype=np.int64), -1
        p += length
    return np.asarray(out, dtype=np.int64), p


def _length_at(buf: np.ndarray, at: int) -> int:
    return ((int(buf[at + 3]) & 0x03) << 11) | (int(buf[at + 4]) << 3) | (int(buf[at + 5]) >> 5)


def adts_headers(payload_sizes: np.ndarray, *, sample_rate: int, channel_config: int) -> np.ndarray:
    """Build 7-byte ADTS headers (no CRC) for AAC-LC payloads, shape ``(N, 7)`` uint8."""
    try:
        sr_index = SAMPLE_RATES.index(sample_rate)
    except ValueError:
        raise CorruptDataError(f"sample rate {sample_rate} Hz cannot be signalled in ADTS") from None
    if channel_config != 0 and channel_config not in CHANNELS_BY_CONFIG:
        raise CorruptDataError(f"ADTS channel configuration {channel_config} is not supported")
    sizes = np.asarray(payload_sizes, dtype=np.int64) + _HEADER_SIZE
    if sizes.size and int(sizes.max()) > _MAX_FRAME_SIZE:
        raise CorruptDataError(f"AAC frame of {int(sizes.max())} bytes exceeds the ADTS limit of 8191")
    h = np.empty((sizes.size, _HEADER_SIZE), dtype=np.uint8)
    h[:, 0] = 0xFF
    h[:, 1] = 0xF1  # MPEG-4, layer 0, no CRC
    h[:, 2] = ((AOT_LC - 1) << 6) | (sr_index << 2) | (channel_config >> 2)
    h[:, 3] = ((channel_config & 0x03) << 6) | (sizes >> 11)
    h[:, 4] = (sizes >> 3) & 0xFF
    h[:, 5] = ((sizes & 0x07) << 5) | 0x1F  # buffer fullness 0x7FF: variable rate
    h[:, 6] = 0xFC
    return h


def build_adts(payloads: list[bytes], *, sample_rate: int, channel_config: int) -> tuple[bytes, np.ndarray]:
    """Wrap raw AAC-LC payloads in ADTS headers; returns the stream and the frame sizes."""
    sizes = np.fromiter((len(p) for p in payloads), dtype=np.int64, count=len(payloads))
    headers = adts_headers(sizes, sample_rate=sample_rate, channel_config=channel_config).tobytes()
    parts: list[bytes] = []
    for i, p in enumerate(payloads):
        parts.append(headers[7 * i : 7 * i + 7])
        parts.append(p)
    return b"".join(parts), sizes + _HEADER_SIZE


@dataclass(frozen=True, slots=True)
class AudioSpecificConfig:
    """The fields of an MPEG-4 AudioSpecificConfig that decide ADTS passthrough."""

    object_type: int
    sample_rate: int
    channel_config: int
    frame_length: int
    has_sbr_or_ps: bool


class _BitReader:
    """Big-endian bit fields of a byte string, read in order."""

    def __init__(self, data: bytes, what: str) -> None:
        self._bits = int.from_bytes(data, "big")
        self._total = len(data) * 8
        self._what = what
        self.pos = 0

    def take(self, n: int) -> int:
        if self.pos + n > self._total:
            raise CorruptDataError(f"{self._what} ends early")
        self.pos += n
        return (self._bits >> (self._total - self.pos)) & ((1 << n) - 1)

    @property
    def left(self) -> int:
        return self._total - self.pos

    def peek(self, n: int) -> int:
        return (self._bits >> (self._total - self.pos - n)) & ((1 << n) - 1) if self.left >= n else 0


def parse_audio_specific_config(extradata: bytes) -> AudioSpecificConfig:
    """Parse the AudioSpecificConfig of an MP4 AAC track (ISO 14496-3, 1.6.2.1)."""
    if len(extradata) < 2:
        raise CorruptDataError(f"AudioSpecificConfig of {len(extradata)} bytes is too short")
    reader = _BitReader(extradata, "AudioSpecificConfig")
    take = reader.take

    def object_type() -> int:
        aot = take(5)
        return 32 + take(6) if aot == 31 else aot

    def rate() -> int:
        index = take(4)
        if index == 15:
            return take(24)
        if index >= len(SAMPLE_RATES):
            raise CorruptDataError(f"AudioSpecificConfig sampling index {index} is reserved")
        return SAMPLE_RATES[index]

    aot = object_type()
    sample_rate = rate()
    config = take(4)
    sbr = aot in (5, 29)
    if sbr:
        rate()
        aot = object_type()
    frame_length = 1024
    if aot in (1, 2, 3, 4, 6, 7):
        frame_length = 960 if take(1) else 1024
        if take(1):  # dependsOnCoreCoder
            take(14)
        take(1)  # extensionFlag
    # Backward-compatible explicit SBR signalling follows as a sync extension.
    if not sbr and reader.left >= 16 and reader.peek(11) == 0x2B7:
        take(11)
        if object_type() == 5 and reader.left >= 1 and take(1):
            sbr = True
    return AudioSpecificConfig(aot, sample_rate, config, frame_length, sbr)


# ---------------------------------------------------------------------- program config elements


class _BitWriter:
    def __init__(self) -> None:
        self._value = 0
        self._bits = 0

    def put(self, nbits: int, value: int) -> None:
        self._value = (self._value << nbits) | (value & ((1 << nbits) - 1))
        self._bits += nbits

    def align(self) -> None:
        self.put(-self._bits % 8, 0)

    def tobytes(self) -> bytes:
        self.align()
        return self._value.to_bytes(self._bits // 8, "big")


_ID_PCE = 5


def _put_pce(w: _BitWriter, sample_rate: int, channels: int) -> None:
    """The fields of a program_config_element (ISO 14496-3, 4.4.1.1) after its ID, with
    the byte alignment counted from the writer's start (a byte boundary in the stream)."""
    front, side, back = PCE_LAYOUTS[channels]
    w.put(4, 0)  # element_instance_tag
    w.put(2, AOT_LC - 1)  # object_type
    w.put(4, SAMPLE_RATES.index(sample_rate))
    for group in (front, side, back):
        w.put(4, len(group))
    w.put(2, 0)  # LFE elements: none, every channel keeps its full band
    w.put(3, 0)  # associated data elements
    w.put(4, 0)  # coupling channel elements
    w.put(3, 0)  # no mono/stereo/matrix mixdown
    for group in (front, side, back):
        for is_cpe, tag in group:
            w.put(1, is_cpe)
            w.put(4, tag)
    w.align()
    w.put(8, 0)  # comment_field_bytes


def uses_pce(channels: int) -> bool:
    """Whether a stream of this many (coded) channels signals its layout with a PCE."""
    return channels in PCE_LAYOUTS


def audio_specific_config(sample_rate: int, channels: int) -> bytes:
    """The AudioSpecificConfig of the AAC-LC streams aacdata writes with this many coded
    channels: what a decoder needs as extradata to decode any frame of a
    ``channel_config = 0`` stream (the ADTS headers do not say the layout)."""
    if sample_rate not in SAMPLE_RATES:
        raise CorruptDataError(f"sample rate {sample_rate} Hz cannot be signalled in AAC")
    w = _BitWriter()
    w.put(5, AOT_LC)
    w.put(4, SAMPLE_RATES.index(sample_rate))
    w.put(4, 0 if uses_pce(channels) else CONFIG_BY_CHANNELS[channels])
    w.put(3, 0)  # 1024-sample frames, no core coder, no extension
    if uses_pce(channels):
        _put_pce(w, sample_rate, channels)
    return w.tobytes()


def program_config_element(sample_rate: int, channels: int) -> bytes:
    """A PCE as the first element of a raw data block (ID included, whole bytes): put in
    front of frame 0's payload, it makes a ``channel_config = 0`` stream stand alone."""
    w = _BitWriter()
    w.put(3, _ID_PCE)
    _put_pce(w, sample_rate, channels)
    return w.tobytes()


def pce_layout(asc: bytes) -> tuple[Elements, Elements, Elements] | None:
    """Front, side and back elements declared by the PCE of an AudioSpecificConfig
    (``None`` where it has a channel configuration instead)."""
    take = _BitReader(asc, "AudioSpecificConfig").take

    take(5)
    if take(4) == 15:
        take(24)
    if take(4) != 0:
        return None
    take(3)
    take(4 + 2 + 4)
    counts = [take(4) for _ in range(3)]
    take(2 + 3 + 4)
    for _ in range(3):  # mixdown flags, each followed by its element number when present
        if take(1):
            take(4)
    groups = tuple(tuple((take(1), take(4)) for _ in range(n)) for n in counts)
    return groups[0], groups[1], groups[2]


def with_pce_in_first_frame(stream: bytes, sample_rate: int, channels: int) -> bytes:
    """An ADTS stream of a PCE layout with the PCE put in front of frame 0's payload (as
    FFmpeg's ADTS muxer does), so that any decoder can play it from the start."""
    if not stream or not uses_pce(channels):
        return stream
    pce = program_config_element(sample_rate, channels)
    first = _length_at(np.frombuffer(stream, dtype=np.uint8), 0)
    header = adts_headers(
        np.array([first - _HEADER_SIZE + len(pce)]), sample_rate=sample_rate, channel_config=0
    ).tobytes()
    return header + pce + stream[_HEADER_SIZE:first] + stream[first:]


def channel_config_of(stream: bytes) -> int:
    """The channel configuration in the first ADTS header of a stream."""
    if len(stream) < _HEADER_SIZE:
        raise CorruptDataError(f"ADTS stream of {len(stream)} bytes is shorter than one frame header")
    return ((stream[2] & 0x01) << 2) | (stream[3] >> 6)
