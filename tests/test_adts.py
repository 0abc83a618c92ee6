"""ADTS parsing and building: round trips, damaged streams, fuzzing, AudioSpecificConfig."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import av
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import aacdata
from aacdata import CorruptDataError
from aacdata.codecs._adts import (
    SAMPLE_RATES,
    AdtsFrames,
    adts_headers,
    build_adts,
    parse_adts,
    parse_audio_specific_config,
)

SYNC = b"\xff\xf1"


def test_false_sync_word_with_zero_length_is_not_a_frame() -> None:
    # A payload holding FF F1 .. with a 0 length field: a false frame that points at itself.
    stream, sizes = build_adts([b"\xff\xf1\x50\x80\x00\x00\xfc"], sample_rate=44_100, channel_config=1)
    frames = parse_adts(stream)
    assert frames.offsets.tolist() == [0]
    assert frames.sizes.tolist() == sizes.tolist() == [14]


def _expected_offsets(sizes: list[int]) -> np.ndarray:
    return np.concatenate(([0], np.cumsum(sizes)[:-1])).astype(np.int64) if sizes else np.zeros(0, np.int64)


payload_st = st.binary(min_size=0, max_size=300) | st.builds(
    lambda a, b, c: a + SYNC + b + SYNC + c,
    st.binary(max_size=40),
    st.binary(max_size=40),
    st.binary(max_size=40),
)


def _asc_bits(*fields: tuple[int, int]) -> bytes:
    value, nbits = 0, 0
    for v, n in fields:
        value = (value << n) | v
        nbits += n
    pad = (-nbits) % 8
    return (value << pad).to_bytes((nbits + pad) // 8, "big")


# ---------------------------------------------------------------------- round trip


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    payloads=st.lists(payload_st, min_size=1, max_size=40),
    sample_rate=st.sampled_from([r for r in SAMPLE_RATES if r != 7350]),
    channel_config=st.sampled_from([1, 2, 3, 4, 5, 6, 7]),
)
def test_build_then_parse_round_trips(payloads: list[bytes], sample_rate: int, channel_config: int) -> None:
    stream, sizes = build_adts(payloads, sample_rate=sample_rate, channel_config=channel_config)
    expected_sizes = [len(p) + 7 for p in payloads]
    assert sizes.tolist() == expected_sizes
    assert len(stream) == sum(expected_sizes)
    frames = parse_adts(stream)
    assert len(frames) == len(payloads)
    assert frames.sizes.tolist() == expected_sizes
    np.testing.assert_array_equal(frames.offsets, _expected_offsets(expected_sizes))
    assert (frames.object_type, frames.sample_rate, frames.channel_config) == (2, sample_rate, channel_config)
    for off, size, p in zip(frames.offsets, frames.sizes, payloads, strict=True):
        assert stream[int(off) + 7 : int(off + size)] == p


@pytest.mark.parametrize("source", ["bytes", "bytearray", "memoryview", "ndarray"])
def test_parse_accepts_buffer_types(source: str) -> None:
    stream, _ = build_adts([b"\x01" * 10, b"\x02" * 300], sample_rate=44_100, channel_config=2)
    data = {
        "bytes": stream,
        "bytearray": bytearray(stream),
        "memoryview": memoryview(stream),
        "ndarray": np.frombuffer(stream, np.uint8),
    }[source]
    frames = parse_adts(data)
    assert frames.offsets.tolist() == [0, 17]
    assert frames.sizes.tolist() == [17, 307]


def test_parse_empty_stream_has_no_frames() -> None:
    frames = parse_adts(b"")
    assert len(frames) == 0
    assert frames.offsets.dtype == np.int64


def test_payload_full_of_sync_words_round_trips() -> None:
    # Every byte pair is a sync candidate whose length field points somewhere else.
    payloads = [SYNC * 200, b"\xff" * 500, SYNC + b"\x1f\xff\xff\xff" * 30]
    stream, _ = build_adts(payloads, sample_rate=48_000, channel_config=1)
    frames = parse_adts(stream)
    assert frames.sizes.tolist() == [407, 507, 129]


def test_long_false_chain_falls_back_to_walk() -> None:
    # A payload holding a chain of 40 fake 9-byte frames (more than the 16 filter rounds).
    fake = bytes([0xFF, 0xF1, 0x50, 0x80, 0x01, 0x3F, 0xFC, 0, 0])  # length 9
    assert parse_adts(fake).sizes.tolist() == [9]
    payloads = [b"\x00" + fake * 40 + b"\x00", b"\x05" * 20]
    stream, _ = build_adts(payloads, sample_rate=44_100, channel_config=2)
    frames = parse_adts(stream)
    assert frames.sizes.tolist() == [7 + 362, 27]


def test_adts_headers_fields() -> None:
    h = adts_headers(np.array([0, 100, 8184]), sample_rate=44_100, channel_config=2)
    assert h.shape == (3, 7)
    assert h.dtype == np.uint8
    assert (h[:, 0] == 0xFF).all()
    assert (h[:, 1] == 0xF1).all()  # MPEG-4, no CRC
    lengths = ((h[:, 3].astype(int) & 3) << 11) | (h[:, 4].astype(int) << 3) | (h[:, 5].astype(int) >> 5)
    assert lengths.tolist() == [7, 107, 8191]
    assert ((h[:, 2] >> 2) & 0x0F).tolist() == [SAMPLE_RATES.index(44_100)] * 3
    assert (h[:, 2] >> 6).tolist() == [1] * 3  # profile = object type 2 (LC) - 1


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"sample_rate": 44_000, "channel_config": 1}, "44000 Hz cannot be signalled"),
        ({"sample_rate": 44_100, "channel_config": 8}, "channel configuration 8"),
    ],
)
def test_adts_headers_rejects_unsignallable(kwargs: dict[str, int], match: str) -> None:
    with pytest.raises(CorruptDataError, match=match):
        adts_headers(np.array([10]), **kwargs)


def test_adts_headers_rejects_oversized_frame() -> None:
    with pytest.raises(CorruptDataError, match="8192 bytes exceeds the ADTS limit of 8191"):
        adts_headers(np.array([8185]), sample_rate=44_100, channel_config=1)


def test_repr_shows_sizes() -> None:
    stream, _ = build_adts([b"a" * 10, b"b" * 20], sample_rate=16_000, channel_config=1)
    text = repr(parse_adts(stream))
    assert text == "AdtsFrames(num_frames=2, num_bytes=44, object_type=2, sample_rate=16000, channel_config=1)"
    assert isinstance(parse_adts(stream), AdtsFrames)


# ---------------------------------------------------------------------- damaged streams


def _clean_stream(num_frames: int = 6) -> tuple[bytes, list[int]]:
    """Payloads without 0xFF bytes: no false sync words, so the failing offset is exact."""
    rng = np.random.default_rng(7)
    payloads = [rng.integers(0, 0xFF, int(rng.integers(20, 200)), dtype=np.uint8).tobytes() for _ in range(num_frames)]
    stream, sizes = build_adts(payloads, sample_rate=44_100, channel_config=2)
    return stream, _expected_offsets(sizes.tolist()).tolist()


@pytest.mark.parametrize("cut", [1, 6, 50, 300])
def test_truncated_stream_names_the_cut_frame(cut: int) -> None:
    stream, offsets = _clean_stream()
    end = len(stream) - cut
    assert end not in offsets
    inside = max(o for o in offsets if o < end)
    with pytest.raises(CorruptDataError, match=rf"stream of {end} bytes ends inside the frame at byte {inside}\b"):
        parse_adts(stream[:end])


def test_stream_shorter_than_header() -> None:
    stream, _ = _clean_stream()
    with pytest.raises(CorruptDataError, match="5 bytes is shorter than one frame header"):
        parse_adts(stream[:5])


@pytest.mark.parametrize("prefix", [b"\x00", b"garbage!", b"\xff\xf1"])
def test_garbage_prefix_is_rejected_at_byte_0(prefix: bytes) -> None:
    stream, _ = _clean_stream()
    with pytest.raises(CorruptDataError, match="byte 0"):
        parse_adts(prefix + stream)


@pytest.mark.parametrize("frame", [0, 2, 5])
@pytest.mark.parametrize("delta", [-3, 1, 40])
def test_wrong_length_field_names_the_frame(frame: int, delta: int) -> None:
    stream, offsets = _clean_stream()
    buf = bytearray(stream)
    at = offsets[frame]
    length = ((buf[at + 3] & 3) << 11) | (buf[at + 4] << 3) | (buf[at + 5] >> 5)
    new = length + delta
    buf[at + 3] = (buf[at + 3] & 0xFC) | (new >> 11)
    buf[at + 4] = (new >> 3) & 0xFF
    buf[at + 5] = ((new & 7) << 5) | (buf[at + 5] & 0x1F)
    with pytest.raises(CorruptDataError, match=rf"\bbyte {at}\b"):
        parse_adts(bytes(buf))


def test_length_below_header_size() -> None:
    stream, offsets = _clean_stream()
    buf = bytearray(stream)
    at = offsets[3]
    buf[at + 3] &= 0xFC
    buf[at + 4] = 0
    buf[at + 5] = (3 << 5) | (buf[at + 5] & 0x1F)  # length 3 < 7
    with pytest.raises(CorruptDataError, match=rf"frame at byte {at} has length 3"):
        parse_adts(bytes(buf))


def test_inconsistent_sample_rate_names_the_frame() -> None:
    a, _ = build_adts([b"\x01" * 30, b"\x02" * 30], sample_rate=44_100, channel_config=2)
    b, _ = build_adts([b"\x03" * 30], sample_rate=48_000, channel_config=2)
    with pytest.raises(CorruptDataError, match=r"frame at byte 74 changes the sampling index"):
        parse_adts(a + b)


def test_inconsistent_channel_config_names_the_frame() -> None:
    a, _ = build_adts([b"\x01" * 30], sample_rate=44_100, channel_config=2)
    b, _ = build_adts([b"\x03" * 30], sample_rate=44_100, channel_config=1)
    with pytest.raises(CorruptDataError, match=r"frame at byte 37 changes the channel config"):
        parse_adts(a + b)


def test_multiple_raw_blocks_rejected() -> None:
    stream, offsets = _clean_stream()
    buf = bytearray(stream)
    buf[offsets[1] + 6] |= 0x01
    with pytest.raises(CorruptDataError, match=rf"frame at byte {offsets[1]} holds more than one raw data block"):
        parse_adts(bytes(buf))


def test_reserved_sampling_index_rejected() -> None:
    stream, offsets = _clean_stream(2)
    buf = bytearray(stream)
    for at in offsets:
        buf[at + 2] = (buf[at + 2] & 0xC3) | (13 << 2)
    with pytest.raises(CorruptDataError, match="sampling index 13 is reserved"):
        parse_adts(bytes(buf))


def test_crc_frames_are_recognised() -> None:
    # protection_absent = 0: 9-byte header; a declared length of 8 is shorter than it.
    stream, _ = _clean_stream(1)
    buf = bytearray(stream)
    buf[1] = 0xF0
    buf[3] &= 0xFC
    buf[4] = 1
    buf[5] = buf[5] & 0x1F
    with pytest.raises(CorruptDataError, match="frame at byte 0 has length 8"):
        parse_adts(bytes(buf[:8]))


# ---------------------------------------------------------------------- fuzzing


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=400))
def test_fuzz_arbitrary_bytes_only_raise_corrupt_data(data: bytes) -> None:
    try:
        frames = parse_adts(data)
    except CorruptDataError as e:
        message = str(e)
    else:
        message = ""
    if message:
        return
    # Whatever parses is a chain of whole frames covering the input exactly.
    assert int(frames.sizes.sum()) == len(data)
    np.testing.assert_array_equal(frames.offsets, _expected_offsets(frames.sizes.tolist()))


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.binary(min_size=1, max_size=60), min_size=1, max_size=8),
    st.integers(0, 10_000),
    st.integers(0, 255),
)
def test_fuzz_mutated_streams_only_raise_corrupt_data(payloads: list[bytes], where: int, value: int) -> None:
    stream, _ = build_adts(payloads, sample_rate=22_050, channel_config=1)
    buf = bytearray(stream)
    buf[where % len(buf)] = value
    try:
        frames = parse_adts(bytes(buf))
    except CorruptDataError as e:
        message = str(e)
    else:
        message = ""
    if message:
        assert re.search(r"byte|reserved", message)
        return
    assert int(frames.sizes.sum()) == len(buf)


# ---------------------------------------------------------------------- AudioSpecificConfig


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (bytes([0x12, 0x10]), (2, 44_100, 2, 1024, False)),  # LC 44.1 kHz stereo
        (bytes([0x11, 0x88]), (2, 48_000, 1, 1024, False)),  # LC 48 kHz mono
        (bytes([0x14, 0x0C]), (2, 16_000, 1, 960, False)),  # frameLengthFlag: 960
        # LC 22.05 kHz stereo, then the backward-compatible SBR sync extension (0x2B7, AOT 5, flag 1).
        (_asc_bits((2, 5), (7, 4), (2, 4), (0, 3), (0x2B7, 11), (5, 5), (1, 1), (4, 4)), (2, 22_050, 2, 1024, True)),
        (_asc_bits((2, 5), (7, 4), (2, 4), (0, 3), (0x2B7, 11), (5, 5), (0, 1), (0, 4)), (2, 22_050, 2, 1024, False)),
    ],
)
def test_parse_audio_specific_config(data: bytes, expected: tuple[int, int, int, int, bool]) -> None:
    asc = parse_audio_specific_config(data)
    assert (asc.object_type, asc.sample_rate, asc.channel_config, asc.frame_length, asc.has_sbr_or_ps) == expected


def test_parse_asc_he_aac_hierarchical() -> None:
    # AOT 5 (SBR), 24 kHz core, stereo, extension rate 48 kHz, then the core AOT 2.
    data = _asc_bits((5, 5), (6, 4), (2, 4), (3, 4), (2, 5), (0, 3))
    asc = parse_audio_specific_config(data)
    assert (asc.object_type, asc.sample_rate, asc.channel_config, asc.has_sbr_or_ps) == (2, 24_000, 2, True)


def test_parse_asc_explicit_rate_and_escape_object_type() -> None:
    data = _asc_bits((2, 5), (15, 4), (12_345, 24), (1, 4), (0, 3))
    asc = parse_audio_specific_config(data)
    assert (asc.object_type, asc.sample_rate, asc.channel_config) == (2, 12_345, 1)
    data = _asc_bits((31, 5), (3, 6), (4, 4), (2, 4))  # escape: AOT 32 + 3 = 35
    assert parse_audio_specific_config(data).object_type == 35


def test_asc_from_a_real_m4a(make_audio: Callable[..., tuple[Path, np.ndarray]]) -> None:
    path, _ = make_audio("x.m4a", "tone", 8000, sample_rate=32_000, num_channels=2)
    with av.open(str(path)) as c:
        extradata = c.streams.audio[0].codec_context.extradata
    asc = parse_audio_specific_config(extradata)
    assert (asc.object_type, asc.sample_rate, asc.channel_config, asc.frame_length, asc.has_sbr_or_ps) == (
        2,
        32_000,
        2,
        1024,
        False,
    )


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (b"", "0 bytes is too short"),
        (b"\x12", "1 bytes is too short"),
        (bytes([0x17, 0x00]), "sampling index 14 is reserved"),
        (_asc_bits((2, 5), (15, 4), (1, 7)), "ends early"),
    ],
)
def test_parse_asc_errors(data: bytes, match: str) -> None:
    with pytest.raises(CorruptDataError, match=match):
        parse_audio_specific_config(data)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=16))
def test_fuzz_asc_only_raises_corrupt_data(data: bytes) -> None:
    try:
        asc = parse_audio_specific_config(data)
    except CorruptDataError:
        return
    assert asc.frame_length in (960, 1024)
    assert asc.sample_rate >= 0


@pytest.mark.parametrize("channels", sorted(aacdata.codecs._adts.PCE_LAYOUTS))
@pytest.mark.parametrize("sample_rate", [8_000, 44_100, 96_000])
def test_our_pce_names_the_elements_ffmpegs_encoder_writes(channels: int, sample_rate: int) -> None:
    # Invariant: stored PCE streams are decoded with aacdata's own AudioSpecificConfig, so
    # it must declare exactly the elements (kind and tag, in order) the encoder writes.
    import av

    from aacdata.audio._channels import CODED_LAYOUTS
    from aacdata.codecs._adts import audio_specific_config, pce_layout

    enc = av.CodecContext.create("aac", "w")
    enc.sample_rate, enc.layout, enc.format, enc.bit_rate = sample_rate, CODED_LAYOUTS[channels], "fltp", 64_000
    enc.open()
    ours = audio_specific_config(sample_rate, channels)
    assert pce_layout(bytes(enc.extradata)) == pce_layout(ours) == aacdata.codecs._adts.PCE_LAYOUTS[channels]
    # the same bits as FFmpeg's, up to FFmpeg's comment field (our PCE has none)
    assert bytes(enc.extradata).startswith(ours[:-1])


@pytest.mark.parametrize("channels", [1, 2, 5])
def test_configs_without_pce_are_two_bytes(channels: int) -> None:
    from aacdata.codecs._adts import audio_specific_config, parse_audio_specific_config

    asc = audio_specific_config(48_000, channels)
    parsed = parse_audio_specific_config(asc)
    assert len(asc) == 2
    assert (parsed.object_type, parsed.sample_rate, parsed.channel_config) == (2, 48_000, channels)


def test_pce_in_first_frame_only_changes_frame_0() -> None:
    from aacdata.codecs._adts import program_config_element, with_pce_in_first_frame

    payloads = [bytes([i]) * (10 + i) for i in range(4)]
    stream, _ = build_adts(payloads, sample_rate=48_000, channel_config=0)
    out = with_pce_in_first_frame(stream, 48_000, 8)
    frames = parse_adts(out)
    pce = program_config_element(48_000, 8)
    assert len(frames) == 4 and frames.channel_config == 0
    assert out[7 : 7 + len(pce)] == pce and pce[0] >> 5 == 5  # ID_PCE first
    assert out[int(frames.offsets[1]) :] == stream[17:]
