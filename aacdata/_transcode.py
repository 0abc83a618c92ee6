"""Source file -> AAC-LC frames in ADTS framing, in memory (PyAV, no ffmpeg binary).

Two paths:

* **encode**: demux + decode the first audio stream, resample/remix if asked, encode with
  FFmpeg's native AAC-LC encoder (PNS off), wrap packets in ADTS headers;
* **passthrough**: an AAC-LC track in MP4/M4A or an ADTS ``.aac`` file is re-wrapped
  without re-encoding, with its encoder delay and exact length from the container.
"""

from __future__ import annotations

import collections
import hashlib
import logging
import math
import os
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import av
import numpy as np

from . import _adts
from ._channels import CODED_LAYOUTS, MAX_CHANNELS, coded_channels, remix
from ._decoder import decode_batches, new_decoder
from ._framerun import FrameRun
from .errors import CorruptDataError, DecodeError, SourceError

log = logging.getLogger("aacdata")

ENCODER_OPTIONS = {"aac_pns": "0"}
"""Encoder options: PNS fills bands from a decoder-side random generator, which would
break exact, repeatable reads; FFmpeg takes unknown option names silently, so a test
proves this one takes effect."""

BITRATE_PER_CHANNEL = 80_000
"""Default bit rate per channel (160 kbit/s for stereo), bit/s."""

PASSTHROUGH_CHANNELS = (1, 2, 3, 4, 5, 6, 8)
"""Channel counts of AAC sources passed through: those with an ADTS channel configuration
(1-7; 7 is 7.1), whose layout (an LFE included) is the source's own."""

_PASSTHROUGH_FORMATS = ("mov", "mp4", "m4a", "aac")
_MP4_FORMATS = ("mov", "mp4")
# Decoded samples held back until an exact end declared by the container is known: the
# padding a decoder emits past it is at most one frame (1024 for AAC, 4096 for Vorbis).
_END_HOLD_SAMPLES = 16_384


@dataclass(frozen=True, slots=True)
class EncodedRecording(FrameRun):
    """One source converted to ADTS (a :class:`~aacdata._framerun.FrameRun`), with what
    the conversion knows of its source."""

    passthrough: bool = False
    source_format: str = ""
    source_codec: str = ""
    source_sample_rate: int = 0
    """The source's own rate (0: the same as ``sample_rate``)."""
    source_num_channels: int = 0
    """The source's own channel count (0: the same as ``num_channels``)."""
    peak: float = 0.0
    """Largest absolute sample value given to the encoder (re-encoded sources). Above 1.0
    the encoder lowers those frames to avoid clipping."""

    @property
    def notes(self) -> tuple[str, ...]:
        """What the conversion changed besides the coding: resampling, remixing, level."""
        out = []
        if self.source_sample_rate and self.source_sample_rate != self.sample_rate:
            lost = " (content above 48 kHz is lost)" if self.source_sample_rate > 96_000 else ""
            out.append(f"resampled from {self.source_sample_rate} Hz to {self.sample_rate} Hz{lost}")
        if self.source_num_channels and self.source_num_channels != self.num_channels:
            out.append(f"remixed from {self.source_num_channels} to {self.num_channels} channels")
        if self.peak > 1.0:
            out.append(
                f"peaks at {20 * math.log10(self.peak):+.1f} dBFS: the encoder lowers those frames by up to "
                f"{20 * math.log10(self.peak):.1f} dB to avoid clipping"
            )
        return tuple(out)

    def __repr__(self) -> str:
        return (
            f"EncodedRecording(num_samples={self.num_samples}, sample_rate={self.sample_rate}, "
            f"num_channels={self.num_channels}, num_frames={self.num_frames}, "
            f"num_bytes={len(self.adts)}, passthrough={self.passthrough})"
        )


def file_checksum(path: str | os.PathLike[str]) -> str:
    """``sha256:<hex>`` of a file's bytes."""
    with open(path, "rb") as f:
        return "sha256:" + hashlib.file_digest(f, "sha256").hexdigest()


def transcode(
    path: str | os.PathLike[str],
    *,
    bitrate: int | None = None,
    sample_rate: int | None = None,
    num_channels: int | None = None,
    reencode: bool = False,
) -> EncodedRecording:
    """Convert one audio file to AAC-LC ADTS frames, in memory.

    ``bitrate`` is the total of a recording (``None``: 80 kbit/s per channel);
    ``sample_rate`` defaults to the source's rate where AAC carries it, else the nearest
    AAC rate above it (see :func:`storable_rate`); ``num_channels`` remixes by
    :func:`aacdata._channels.remix` (``None``: every channel kept, one to one).

    Raises
    ------
    SourceError
        The file cannot be opened, has no audio stream, no samples, is truncated or
        does not decode; the message says which.
    """
    try:
        return _transcode(
            os.fspath(path), bitrate=bitrate, sample_rate=sample_rate, num_channels=num_channels, reencode=reencode
        )
    except SourceError:
        raise
    except MemoryError:
        raise SourceError("out of memory while converting") from None
    except (
        av.FFmpegError, OSError, ValueError, TypeError, IndexError, KeyError, OverflowError, RuntimeError,
        AttributeError,
    ) as e:  # fmt: skip
        # Hostile or damaged input can make FFmpeg or PyAV fail anywhere; report it as this file's failure.
        raise SourceError(f"cannot convert ({type(e).__name__}: {_reason(e)})") from e


def _transcode(
    name: str, *, bitrate: int | None, sample_rate: int | None, num_channels: int | None, reencode: bool
) -> EncodedRecording:
    if os.path.isfile(name) and os.path.getsize(name) == 0:
        raise SourceError("file is empty (0 bytes)")
    _check_header_sizes(name)
    with _open(name) as container:
        stream = _audio_stream(container)
        if not reencode and _can_pass_through(stream, container.format.name, sample_rate, num_channels):
            try:
                return _pass_through(container, stream, container.format.name)
            except _NotPassableError as e:
                log.debug("%s: re-encoding instead of passthrough: %s", name, e)
    # Re-encoding starts from a freshly opened file: after a seek back to the start, an
    # AAC decoder misses the priming of the first packets and mutes the head.
    with _open(name) as container:
        stream = _audio_stream(container)
        fmt, codec = container.format.name, stream.codec_context.name
        return _encode(container, stream, fmt, codec, bitrate, sample_rate, num_channels)


def _open(name: str) -> Any:
    try:
        return av.open(name, metadata_errors="ignore")
    except FileNotFoundError:
        raise SourceError("file not found") from None
    except PermissionError:
        raise SourceError("permission denied") from None
    except (av.FFmpegError, OSError, UnicodeDecodeError, ValueError) as e:
        raise SourceError(f"not a readable audio file ({_reason(e)})") from None


def _audio_stream(container: Any) -> Any:
    if not container.streams.audio:
        raise SourceError("no audio stream")
    stream = container.streams.audio[0]
    if stream.codec_context is None:
        raise SourceError("the audio stream's codec is unknown to FFmpeg")
    return stream


class _NotPassableError(Exception):
    """The stream looked like AAC-LC but turned out otherwise (e.g. implicit SBR)."""


def _reason(e: BaseException) -> str:
    msg = getattr(e, "strerror", None) or str(e)
    return msg.strip() or type(e).__name__


def _can_pass_through(stream: Any, fmt: str, sample_rate: int | None, num_channels: int | None) -> bool:
    cc = stream.codec_context
    if cc.name != "aac" or (cc.profile or "") != "LC":
        return False
    if not any(f in fmt.split(",") for f in _PASSTHROUGH_FORMATS):
        return False
    if sample_rate is not None and sample_rate != cc.sample_rate:
        return False
    if num_channels is not None and num_channels != cc.channels:
        return False
    return cc.sample_rate in _adts.SAMPLE_RATES and cc.channels in PASSTHROUGH_CHANNELS


def _pass_through(container: Any, stream: Any, fmt: str) -> EncodedRecording:
    is_adts = fmt == "aac"
    asc = None
    if not is_adts:
        extradata = stream.codec_context.extradata or b""
        try:
            asc = _adts.parse_audio_specific_config(extradata)
        except CorruptDataError as e:
            raise _NotPassableError(str(e)) from None
        if (
            asc.object_type != _adts.AOT_LC
            or asc.has_sbr_or_ps
            or asc.frame_length != _adts.SAMPLES_PER_FRAME
            or asc.channel_config not in _adts.CHANNELS_BY_CONFIG
        ):
            raise _NotPassableError(f"stream configuration {asc}")
    payloads: list[bytes] = []
    first_pts: int | None = None
    end_pts = 0
    try:
        for packet in container.demux(stream):
            if packet.size == 0:
                continue
            if packet.is_corrupt and not is_adts:
                break  # a packet cut by the end of the file: _check_mp4_complete says so
            if first_pts is None and packet.pts is not None:
                first_pts = packet.pts
            if packet.pts is not None and packet.duration is not None:
                end_pts = max(end_pts, packet.pts + packet.duration)
            payloads.append(bytes(packet))
    except av.FFmpegError as e:
        raise SourceError(f"demuxing failed ({_reason(e)})") from None
    if not is_adts:
        _check_mp4_complete(stream, len(payloads))
    if not payloads:
        raise SourceError("audio stream holds no packets (zero-length audio)")
    _check_frames_decode(payloads[:3], stream.codec_context)
    sr = int(stream.codec_context.sample_rate)
    channels = int(stream.codec_context.channels)
    if is_adts:
        adts = b"".join(payloads)
        try:
            frames = _adts.parse_adts(adts)
        except CorruptDataError as e:
            raise SourceError(f"ADTS stream is damaged ({e})") from None
        # A raw ADTS file carries no delay: its timeline starts with the priming samples.
        delay = 0
        num_samples = len(frames) * _adts.SAMPLES_PER_FRAME
        sizes = frames.sizes
    else:
        assert asc is not None
        tb = Fraction(stream.time_base or Fraction(1, sr))
        first = round((first_pts or 0) * tb * sr)
        delay = max(0, -first)
        # Exact length: end of the last packet or of the edit list, whichever comes first.
        num_samples = round(_mp4_end(container, stream, end_pts) * tb * sr) - max(first, 0)
        adts, sizes = _adts.build_adts(payloads, sample_rate=sr, channel_config=asc.channel_config)
    capacity = len(payloads) * _adts.SAMPLES_PER_FRAME - delay
    sizes = np.asarray(sizes, dtype=np.int64)
    try:
        noise = not decodes_repeatably(adts, sizes, channels)
    except av.FFmpegError as e:
        raise SourceError(f"AAC stream does not decode ({_reason(e)})") from None
    if num_samples <= 0 or num_samples > capacity:
        raise _NotPassableError(f"container timing gives {num_samples} samples for {len(payloads)} frames")
    return EncodedRecording(
        adts=adts,
        frame_sizes=sizes,
        random_noise=noise,
        num_samples=num_samples,
        sample_rate=sr,
        num_channels=channels,
        encoder_delay=delay,
        passthrough=True,
        source_format=fmt,
        source_codec="aac",
    )


def decodes_repeatably(adts: bytes, sizes: np.ndarray, channels: int, batch: int = 256) -> bool:
    """Whether decoding the stream twice through one decoder gives the same samples.

    It does not when frames use perceptual noise substitution: FFmpeg fills those bands
    from a generator that ``flush_buffers()`` does not reset. The first frame is left out
    of the comparison (a flushed decoder's first frame differs from a fresh one's).
    """
    bounds = np.concatenate(([0], np.cumsum(sizes)))
    dec = new_decoder()

    def digests() -> list[int]:
        out = []
        try:
            for a, frames in decode_batches(dec, adts, bounds, channels=channels, what="passthrough", batch=batch):
                crc = 0
                for k, frame in enumerate(frames):
                    if a + k > 0:
                        for plane in frame.planes[:channels]:
                            crc = zlib.crc32(memoryview(plane)[: 4 * frame.samples], crc)
                out.append(crc)
        except DecodeError as e:
            raise _NotPassableError(str(e)) from None
        return out

    first = digests()
    dec.flush_buffers()
    return digests() == first


def _check_frames_decode(payloads: list[bytes], template: Any) -> None:
    """Decode the first packets: implicit SBR shows as 2048-sample frames."""
    dec = av.CodecContext.create("aac", "r")
    if template.extradata:
        dec.extradata = template.extradata
    try:
        for p in payloads:
            for frame in dec.decode(av.Packet(p)):
                if frame.samples != _adts.SAMPLES_PER_FRAME or frame.sample_rate != template.sample_rate:
                    raise _NotPassableError("decodes as HE-AAC (SBR)")
    except av.FFmpegError as e:
        raise _NotPassableError(f"first frames do not decode ({_reason(e)})") from None


def storable_rate(rate: int) -> int:
    """The AAC rate a source at ``rate`` Hz is stored at by default: itself where AAC can
    carry it, else the nearest AAC rate above it, at most 96 kHz (above that, content
    above 48 kHz is lost)."""
    if rate in _adts.SAMPLE_RATES:
        return rate
    above = [r for r in _adts.SAMPLE_RATES if r > rate]
    return min(above) if above else max(_adts.SAMPLE_RATES)


def max_bitrate(sample_rate: int) -> int:
    """The highest total bit rate whose frames fit ADTS's 8191-byte frame limit with room
    for the encoder's peaks (frames vary about their average by up to ~2x)."""
    return int(0.5 * 8191 * 8 * sample_rate / _adts.SAMPLES_PER_FRAME)


def default_bitrate(num_channels: int, sample_rate: int) -> int:
    """Total bit rate of a recording when none is given: 80 kbit/s per channel, lowered
    where many channels at a low rate would overflow ADTS frames."""
    return min(BITRATE_PER_CHANNEL * num_channels, max_bitrate(sample_rate))


def _encode(
    container: Any,
    stream: Any,
    fmt: str,
    codec: str,
    bitrate: int | None,
    sample_rate: int | None,
    num_channels: int | None,
) -> EncodedRecording:
    src_rate = int(stream.codec_context.sample_rate or 0)
    src_channels = int(stream.codec_context.channels or 0)
    if src_rate <= 0 or src_channels <= 0:
        raise SourceError(f"audio stream has sample rate {src_rate} and {src_channels} channels")
    channels = int(num_channels or src_channels)
    if channels > MAX_CHANNELS:
        raise SourceError(
            f"{channels} channels: a recording holds at most {MAX_CHANNELS}; keep fewer with num_channels= "
            "(CLI: --channels), or split the channels into several files"
        )
    rate = int(sample_rate or storable_rate(src_rate))
    if rate not in _adts.SAMPLE_RATES:
        raise SourceError(
            f"sample rate {rate} Hz is not an AAC rate; pass sample_rate= (CLI: --sample-rate) one of "
            f"{', '.join(str(r) for r in sorted(_adts.SAMPLE_RATES))}"
        )
    coded = coded_channels(channels)
    layout = CODED_LAYOUTS[coded]
    total_bitrate = int(bitrate) if bitrate is not None else default_bitrate(channels, rate)
    if total_bitrate > max_bitrate(rate):
        raise SourceError(
            f"bitrate {total_bitrate} bit/s is too high for ADTS frames at {rate} Hz (at most "
            f"{max_bitrate(rate)}); lower bitrate= (CLI: --bitrate)"
        )
    enc = av.CodecContext.create("aac", "w")
    enc.sample_rate = rate
    enc.layout = layout
    enc.format = "fltp"
    enc.bit_rate = total_bitrate
    enc.time_base = Fraction(1, rate)
    enc.thread_count = 1
    enc.options = dict(ENCODER_OPTIONS)
    try:
        enc.open()
    except av.FFmpegError as e:
        raise SourceError(f"AAC encoder refused {rate} Hz, {layout}, {total_bitrate} bit/s ({_reason(e)})") from None
    if _adts.uses_pce(coded) and _adts.pce_layout(bytes(enc.extradata or b"")) != _adts.PCE_LAYOUTS[coded]:
        # The stored stream is decoded with aacdata's own PCE; it must name the encoder's elements.
        raise SourceError(
            f"this FFmpeg lays out {layout} differently from aacdata's PCE; cannot store {coded} channels"
        )
    # Frames are handed over packed (PyAV mishandles planar frames of 8 or more channels)
    # and converted to the encoder's planar format without any remix: the layouts match.
    to_planar = av.AudioResampler(format="fltp", layout=layout, rate=rate)
    resampler = _resampler(src_rate, rate, channels)
    payloads: list[bytes] = []
    first_pts: int | None = None
    num_samples = 0
    peak = 0.0

    def encode(frames: list[Any]) -> None:
        nonlocal first_pts, num_samples
        for f in frames:
            if f is not None:
                f.pts = num_samples
                num_samples += f.samples
            for p in enc.encode(f):
                if first_pts is None:
                    first_pts = p.pts
                payloads.append(bytes(p))

    def feed(block: np.ndarray) -> None:
        nonlocal peak
        if block.shape[1] == 0:
            return
        peak = max(peak, float(np.max(np.abs(block))))
        if coded > block.shape[0]:  # 9-15 channels ride in a 16-channel layout, padded with silence
            block = np.concatenate((block, np.zeros((coded - block.shape[0], block.shape[1]), np.float32)))
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(block.T).reshape(1, -1), format="flt", layout=layout)
        frame.sample_rate = rate
        frame.pts = None
        encode(to_planar.resample(frame))

    for block in _decoded_blocks(container, stream, src_channels):
        block = remix(block, channels)
        feed(resampler.push(block) if resampler is not None else block)
    if resampler is not None:
        feed(resampler.flush())
    encode(to_planar.resample(None))
    if num_samples == 0:
        raise SourceError("audio stream decodes to no samples (zero-length audio)")
    encode([None])
    delay = -int(first_pts or 0)
    expected = math.ceil((num_samples + delay) / _adts.SAMPLES_PER_FRAME)
    if delay < 0 or len(payloads) < expected:
        raise SourceError(
            f"AAC encoder gave {len(payloads)} frames with delay {delay} for {num_samples} samples; "
            f"expected at least {expected}"
        )
    config = 0 if _adts.uses_pce(coded) else _adts.CONFIG_BY_CHANNELS[coded]
    adts, sizes = _adts.build_adts(payloads, sample_rate=rate, channel_config=config)
    return EncodedRecording(
        adts=adts,
        frame_sizes=sizes,
        num_samples=num_samples,
        sample_rate=rate,
        num_channels=channels,
        encoder_delay=delay,
        passthrough=False,
        source_format=fmt,
        source_codec=codec,
        source_sample_rate=src_rate,
        source_num_channels=src_channels,
        peak=peak,
    )


def _resampler(orig_rate: int, new_rate: int, channels: int) -> Any:
    if orig_rate == new_rate:
        return None
    from ._resample import Resampler

    return Resampler(orig_rate, new_rate, channels)


def _as_array(frame: Any, converters: dict[Any, Any]) -> np.ndarray:
    """A decoded frame as float32 ``(C, T)``, channels in the order decoded (format
    conversion only: same layout in and out, so nothing is remixed)."""
    key = (frame.format.name, frame.layout.name, frame.sample_rate)
    conv = converters.get(key)
    if conv is None:
        conv = converters[key] = av.AudioResampler(format="flt", layout=frame.layout, rate=frame.sample_rate)
    frame.pts = None
    parts = [f.to_ndarray().reshape(-1, f.layout.nb_channels).T for f in conv.resample(frame)]
    if not parts:
        return np.zeros((frame.layout.nb_channels, 0), np.float32)
    return np.ascontiguousarray(np.concatenate(parts, axis=1) if len(parts) > 1 else parts[0], dtype=np.float32)


def _decoded_blocks(container: Any, stream: Any, src_channels: int) -> Iterator[np.ndarray]:
    """The source's decoded samples, float32 ``(C, t)`` blocks in order, ending where the
    source ends.

    The length is what the decoder gives. libavcodec already drops what the container marks
    as priming or padding: the MP4 edit list's start, Ogg Opus pre-skip and end trim,
    Matroska ``CodecDelay``/``DiscardPadding``, MP3 LAME/Xing gapless info. Where a container
    declares an exact end that the decoder does not apply (:class:`_ExactEnd`), the samples
    past it are dropped. Timestamps, which elsewhere only estimate the end (milliseconds in
    Matroska and ASF, bit-rate guesses for ADTS and AMR), never cut anything.
    """
    converters: dict[Any, Any] = {}
    end = _ExactEnd.of(container, stream)
    hold = 0 if end is None else _END_HOLD_SAMPLES
    held: collections.deque[Any] = collections.deque()
    held_samples = 0
    decoded = 0
    try:
        for packet in container.demux(stream):
            if end is not None and not end.see(packet):
                break
            for frame in packet.decode():
                if frame.layout.nb_channels != src_channels:
                    raise SourceError(
                        f"decoded audio changes from {src_channels} to {frame.layout.nb_channels} channels "
                        f"after {decoded + held_samples} samples (damaged file?)"
                    )
                held.append(frame)
                held_samples += frame.samples
                while held and held_samples - held[0].samples >= hold:
                    old = held.popleft()
                    held_samples -= old.samples
                    decoded += old.samples
                    yield _as_array(old, converters)
        total = decoded + held_samples
        limit = total if end is None else end.length(total, container)
        if limit < decoded:
            # Not an end this stream reaches (the declaration describes something else):
            # keep what decodes.
            log.debug("declared end at %d samples is before %d decoded ones; ignored", limit, decoded)
            limit = total
        for frame in held:
            keep = max(0, min(frame.samples, limit - decoded))
            if keep:
                yield _as_array(frame, converters)[:, :keep]
            decoded += keep
    except av.FFmpegError as e:
        raise SourceError(f"decoding failed after {decoded} samples ({_reason(e)})") from None


class _ExactEnd:
    """An exact length that a container declares and libavcodec does not apply by itself.

    ======================  =====================================================  ==========
    container, codec        declaration                                            truncated
    ======================  =====================================================  ==========
    MP4/MOV, any codec      sample table (``stts``) after the edit list's start:   fewer
                            the last packet's end, or the edit list's end where    packets
                            it is exact (:func:`_mp4_end`); AAC decodes the whole  than
                            last frame, up to 1023 samples more (measured: 20,480  ``stsz``
                            for 20,000 written)
    Ogg, Vorbis             granule position of the last page; FFmpeg 8.1 leaves   never
                            the end trim undone (measured: 96-320 samples more)
    FLAC in any container   ``STREAMINFO`` total samples (0: unknown)              fewer
    ======================  =====================================================  ==========

    WAV, AIFF and CAF data sizes are checked before decoding (:func:`_check_header_sizes`);
    their PCM decodes to exactly the data there is. Everything else has no exact declaration
    and keeps every decoded sample (Matroska, ASF, ADTS, AMR, MP3 with or without a gapless
    header: FFmpeg applies LAME's delay and padding itself).
    """

    def __init__(self, kind: str, stream: Any, declared: int | None = None) -> None:
        self.kind = kind
        self.stream = stream
        self.declared = declared
        self.packets = 0
        self.first_pts: int | None = None
        self.end_pts: int | None = None

    @classmethod
    def of(cls, container: Any, stream: Any) -> _ExactEnd | None:
        cc = stream.codec_context
        rate = int(cc.sample_rate or 0)
        tb = Fraction(stream.time_base) if stream.time_base else None
        if rate <= 0:
            return None
        if cc.name == "flac":
            total = _flac_total_samples(bytes(cc.extradata or b""))
            return cls("FLAC", stream, total) if total else None
        formats = container.format.name.split(",")
        # Timestamps count whole samples only where the time base divides a sample.
        if tb is None or (tb * rate).denominator != 1:
            return None
        if any(f in formats for f in _MP4_FORMATS):
            return cls("MP4", stream)
        if "ogg" in formats and cc.name == "vorbis" and stream.duration:
            return cls("Ogg", stream, int(stream.duration * tb * rate))
        return None

    def see(self, packet: Any) -> bool:
        """Note a demuxed packet; False where it is cut by the end of the file (stop there)."""
        if self.kind != "MP4":
            return True
        if packet.is_corrupt:
            return False
        if packet.size:
            self.packets += 1
            if packet.pts is not None:
                if self.first_pts is None:
                    self.first_pts = packet.pts
                if packet.duration:
                    self.end_pts = max(self.end_pts or 0, packet.pts + packet.duration)
        return True

    def length(self, decoded: int, container: Any) -> int:
        """The exact length, given the samples decoded; raises where the file is truncated."""
        if self.kind == "MP4":
            _check_mp4_complete(self.stream, self.packets)
            if self.first_pts is None or self.end_pts is None:
                return decoded
            # The decoder drops samples before pts 0 (the edit list's start): the stream
            # begins at max(first_pts, 0).
            tb = Fraction(self.stream.time_base) * int(self.stream.codec_context.sample_rate)
            end = _mp4_end(container, self.stream, self.end_pts)
            self.declared = int((end - max(self.first_pts, 0)) * tb)
        assert self.declared is not None
        if self.kind == "FLAC" and decoded < self.declared:
            raise SourceError(f"file is truncated: FLAC header declares {self.declared} samples, only {decoded} decode")
        return min(decoded, self.declared)


def _mp4_end(container: Any, stream: Any, end_pts: int) -> int:
    """Where an MP4 track ends, in its time base: the last packet's end, or the edit list's
    end where that comes first and is exact.

    FFmpeg writes the last packet's true duration in the sample table; Apple's encoders write
    a whole frame and end the edit list inside it. FFmpeg gives the edit list's end as the
    stream's duration, converted from the movie time scale (``mvhd``): exact only where that
    is a multiple of the track's (FFmpeg's own files use 1/1000 s, which would cut samples).
    """
    duration = stream.duration
    if not duration or duration >= end_pts or not stream.time_base:
        return end_pts
    movie = _mp4_movie_timescale(str(container.name))
    track = Fraction(stream.time_base).denominator
    if movie is None or movie % track:
        return end_pts
    return int(duration)


def _mp4_movie_timescale(path: str) -> int | None:
    """The time scale of an MP4/MOV file's movie header (``moov/mvhd``), the unit of its edit lists."""
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            pos, end = 0, size
            while pos + 8 <= end:
                f.seek(pos)
                head = f.read(16)
                length, kind = int.from_bytes(head[:4], "big"), head[4:8]
                header = 8
                if length == 1:
                    length, header = int.from_bytes(head[8:16], "big"), 16
                elif length == 0:
                    length = end - pos
                if length < header:
                    return None
                if kind == b"moov":
                    pos, end = pos + header, pos + length  # walk the movie's children
                    continue
                if kind == b"mvhd":
                    f.seek(pos + header)
                    body = f.read(32)
                    at = 20 if body[:1] == b"\x01" else 12  # version 1: 64-bit creation/modification times
                    return int.from_bytes(body[at : at + 4], "big") or None
                pos += length
    except OSError:
        return None
    return None


def _check_mp4_complete(stream: Any, packets: int) -> None:
    """The MP4 sample table (``stsz``) lists every packet; fewer in the file is truncation."""
    listed = int(stream.frames or 0)
    if packets < listed:
        raise SourceError(
            f"file is truncated: MP4 header lists {listed} audio packets, the file holds {packets} whole ones"
        )


def _flac_total_samples(extradata: bytes) -> int:
    """Total samples from a FLAC ``STREAMINFO`` block (0: unknown or absent).

    FFmpeg gives the bare 34-byte block; some muxers keep the ``fLaC`` marker and the block
    header in front.
    """
    if extradata[:4] == b"fLaC":
        extradata = extradata[8:]
    if len(extradata) < 18:
        return 0
    # 16+16 bits block sizes, 24+24 frame sizes, 20 rate, 3 channels, 5 bits: 36-bit total at bit 108
    return ((extradata[13] & 0x0F) << 32) | int.from_bytes(extradata[14:18], "big")


_UNKNOWN_SIZES = (0, 0xFFFFFFFF, 0xFFFFFFFFFFFFFFFF)
"""Data sizes that streaming writers leave in place of the real one (unknown: to the end)."""


def _check_header_sizes(path: str) -> None:
    """A WAV, RF64, AIFF or CAF file whose audio data chunk declares more bytes than the file
    holds is truncated (FFmpeg's demuxers quietly stop at the end of the file). Placeholder
    sizes (0, all ones) mean "until the end" and are not checked."""
    try:
        with open(path, "rb") as f:
            head = f.read(12)
            size = os.fstat(f.fileno()).st_size
            if head[:4] in (b"RIFF", b"RF64", b"BW64") and head[8:12] == b"WAVE":
                found = _riff_data(f, size, rf64=head[:4] != b"RIFF")
                kind = "WAV"
            elif head[:4] == b"FORM" and head[8:12] in (b"AIFF", b"AIFC"):
                found = _chunk_walk(f, size, 12, b"SSND", big=True, width=4, align=2)
                kind = "AIFF"
            elif head[:4] == b"caff":
                found = _chunk_walk(f, size, 8, b"data", big=True, width=8, align=1)
                kind = "CAF"
            else:
                return
    except OSError:
        return  # unreadable files are reported when FFmpeg opens them
    if found is None:
        return
    declared, available = found
    if declared not in _UNKNOWN_SIZES and declared > available:
        raise SourceError(
            f"file is truncated: {kind} header declares {declared} bytes of audio, the file holds {available}"
        )


def _chunk_walk(
    f: Any, size: int, pos: int, want: bytes, *, big: bool, width: int, align: int
) -> tuple[int, int] | None:
    """``(declared size, bytes after the chunk header)`` of the first chunk named ``want``,
    walking chunks of ``width``-byte sizes padded to ``align`` bytes from ``pos``."""
    while pos + 4 + width <= size:
        f.seek(pos)
        chunk = f.read(4 + width)
        length = int.from_bytes(chunk[4:], "big" if big else "little")
        if chunk[:4] == want:
            return length, size - pos - 4 - width
        if length in _UNKNOWN_SIZES:
            return None
        pos += 4 + width + length + (length % align)
    return None


def _riff_data(f: Any, size: int, *, rf64: bool) -> tuple[int, int] | None:
    found = _chunk_walk(f, size, 12, b"data", big=False, width=4, align=2)
    if found is None or not rf64 or found[0] != 0xFFFFFFFF:
        return found
    # RF64/BW64: the 64-bit data size is in the ds64 chunk that comes first.
    f.seek(12)
    ds64 = f.read(28)
    if ds64[:4] != b"ds64":
        return None
    return int.from_bytes(ds64[16:24], "little"), found[1]
