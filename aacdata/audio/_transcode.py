"""Source file -> AAC-LC frames in ADTS framing, in memory (PyAV, no ffmpeg binary).

Two paths:

* **encode**: demux + decode the first audio stream, resample/remix if asked, encode with
  FFmpeg's native AAC-LC encoder (PNS off), wrap packets in ADTS headers;
* **passthrough**: an AAC-LC track in MP4/M4A or an ADTS ``.aac`` file is re-wrapped
  without re-encoding, with its encoder delay and exact length from the container.
"""

from __future__ import annotations

import collections
import dataclasses
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

from ..codecs import _adts, _flac
from ..codecs._codec import CODEC_FLAC, StreamConfig
from ..codecs._decoder import decode_batches, new_decoder, planes
from ..codecs._framerun import FrameRun
from ..errors import CorruptDataError, DecodeError, SourceError
from . import _bands
from ._channels import CODED_LAYOUTS, MAX_CHANNELS, coded_channels, remix

log = logging.getLogger("aacdata")

ENCODER_OPTIONS = {"aac_pns": "0"}
"""Encoder options: PNS fills bands from a decoder-side random generator, which would
break exact, repeatable reads; FFmpeg takes unknown option names silently, so a test
proves this one takes effect."""

BITRATE_STEPS: tuple[tuple[int, int], ...] = (
    (4_000, 48_000),
    (8_000, 64_000),
    (16_000, 96_000),
    (24_000, 128_000),
    (32_000, 192_000),
    (48_000, 256_000),
)
"""Default bit rate per channel by the bandwidth the encoder keeps (Hz of the stored
stream, up to and including): the lowest rate at which FFmpeg's encoder kept every octave
band of tones, chirps, white and pink noise and a synthetic field recording within 1 dB
(measured at 8 to 96 kHz, stereo; white noise needs the most). 44.1/48 kHz full band:
128 kbit/s per channel; 96 kHz: 256 kbit/s."""
AAC_MAX_RATE = max(_adts.SAMPLE_RATES)
"""Highest rate AAC frames are labelled with; faster sources are time-expanded to it."""
MAX_SOURCE_RATE = 1_000_000
"""Highest source rate accepted (Hz)."""
MIN_BANDWIDTH = 1_000
"""Lowest bandwidth accepted (Hz)."""
MIN_BITRATE = 16_000
"""Lowest bit rate accepted (bit/s): FFmpeg's encoder takes nothing lower (it would
silently encode at about this rate)."""

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
    """One source converted to ADTS (a :class:`~aacdata.codecs._framerun.FrameRun`), with what
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
    bands: _bands.BandReport | None = None
    """Band energies of the source and of the stored stream (re-encoded sources)."""
    bandwidth_measured: bool = False
    """``bandwidth_hz`` was measured from the decoded stream (passthrough) rather than set."""
    bandwidth_clamped: int = 0
    """The bandwidth asked for, where it was above this recording's Nyquist frequency."""
    size_note: str = ""
    """What the file's header said of its length that was not taken (a placeholder size)."""
    coding_note: str = ""
    """What storing as FLAC changed (samples quantized or clipped)."""

    @property
    def warnings(self) -> tuple[str, ...]:
        """What the conversion lost that a user should hear about: bands of the source's
        spectrum that the stored stream does not hold (see :mod:`aacdata.audio._bands`)."""
        if self.bands is None:
            return ()
        # Frames above full scale are lowered by the encoder: every band then loses alike.
        clipped = "its peaks are above full scale, and the encoder lowered those frames; lower the source's level"
        return tuple(self.bands.problems(clipped if self.peak > 1.0 else "raise the bitrate"))

    @property
    def notes(self) -> tuple[str, ...]:
        """What the conversion changed besides the coding: resampling, remixing, level."""
        out = [n for n in (self.size_note, self.coding_note) if n]
        if self.source_sample_rate and self.source_sample_rate != self.sample_rate:
            out.append(f"resampled from {self.source_sample_rate} Hz to {self.sample_rate} Hz")
        if self.frames_rate != self.sample_rate:
            out.append(
                f"time-expanded {self.sample_rate / self.frames_rate:.4g}x: its {self.sample_rate} Hz samples are "
                f"stored as AAC at {self.frames_rate} Hz (reads, seconds and Hz stay in the true timeline)"
            )
        if self.bandwidth_clamped:
            out.append(
                f"bandwidth {self.bandwidth_clamped} Hz is above its Nyquist frequency; stored full band "
                f"({self.bandwidth_hz} Hz)"
            )
        if self.passthrough and self.random_noise:
            out.append(
                "passed through with perceptual noise substitution (PNS): its windows are deterministic, and equal "
                "a full decode except in the noise-filled bands (each window decodes as a new decoder does); "
                "re-encode with pns='reencode' (CLI: --pns reencode) for bit-identical windows"
            )
        if self.bandwidth_measured:
            out.append(f"passed through: its bandwidth, {self.bandwidth_hz} Hz, is measured from the decoded stream")
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
    bandwidth: int | None = None,
    time_expansion: float | None = None,
    pns: str = "keep",
    codec: str = "aac",
) -> EncodedRecording:
    """Convert one audio file to AAC-LC ADTS frames or FLAC frames, in memory.

    ``bitrate`` is the total of a recording (``None``: by the bandwidth and channels, see
    :func:`default_bitrate`); ``sample_rate`` defaults to the source's rate where AAC
    carries it, the nearest AAC rate above it below 96 kHz, and the source's own rate
    above 96 kHz, which is time-expanded (see :func:`storable_rate` and
    :func:`stream_rate`); ``num_channels`` remixes by :func:`aacdata.audio._channels.remix`
    (``None``: every channel kept, one to one); ``bandwidth`` (Hz of the true timeline,
    ``None``: the Nyquist frequency) is the encoder's low-pass. ``codec``: ``"aac"``,
    ``"flac"`` (lossless, at the source's rate; see :func:`_encode_flac`) or ``"auto"``
    (FLAC for sources above 96 kHz, AAC otherwise: see :func:`chosen_codec`).

    Raises
    ------
    SourceError
        The file cannot be opened, has no audio stream, no samples, is truncated or
        does not decode; the message says which.
    """
    try:
        return _transcode(
            os.fspath(path),
            bitrate=bitrate,
            sample_rate=sample_rate,
            num_channels=num_channels,
            reencode=reencode,
            bandwidth=bandwidth,
            time_expansion=time_expansion,
            pns=pns,
            codec=codec,
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
    name: str,
    *,
    bitrate: int | None,
    sample_rate: int | None,
    num_channels: int | None,
    reencode: bool,
    bandwidth: int | None,
    time_expansion: float | None,
    pns: str = "keep",
    codec: str = "aac",
) -> EncodedRecording:
    if os.path.isfile(name) and os.path.getsize(name) == 0:
        raise SourceError("file is empty (0 bytes)")
    size_note = _check_header_sizes(name)
    encoded = _convert(name, bitrate, sample_rate, num_channels, reencode, bandwidth, time_expansion, pns, codec)
    return dataclasses.replace(encoded, size_note=size_note) if size_note else encoded


def _convert(
    name: str,
    bitrate: int | None,
    sample_rate: int | None,
    num_channels: int | None,
    reencode: bool,
    bandwidth: int | None,
    time_expansion: float | None,
    pns: str = "keep",
    codec: str = "aac",
) -> EncodedRecording:
    with _open(name) as container:
        stream = _audio_stream(container)
        if chosen_codec(codec, int(sample_rate or stream.codec_context.sample_rate or 0)) == "flac":
            return _encode_flac(container, stream, sample_rate, num_channels)
        if (
            not reencode
            and bandwidth is None
            and _can_pass_through(stream, container.format.name, sample_rate, num_channels)
        ):
            try:
                passed = _pass_through(container, stream, container.format.name)
            except _NotPassableError as e:
                log.debug("%s: re-encoding instead of passthrough: %s", name, e)
            else:
                if not (passed.random_noise and pns == "reencode"):
                    return passed
                log.debug("%s: the stream uses PNS; re-encoding (pns='reencode')", name)
    # Re-encoding starts from a freshly opened file: after a seek back to the start, an
    # AAC decoder misses the priming of the first packets and mutes the head.
    with _open(name) as container:
        stream = _audio_stream(container)
        fmt, codec = container.format.name, stream.codec_context.name
        return _encode(container, stream, fmt, codec, bitrate, sample_rate, num_channels, bandwidth, time_expansion)


def chosen_codec(codec: str, rate: int) -> str:
    """The codec a source of ``rate`` Hz (the rate stored) is stored with: ``"auto"`` is
    FLAC above 96 kHz (ultrasound: lossless rather than time-expanded AAC) and AAC at
    or below it."""
    if codec == "auto":
        return "flac" if rate > AAC_MAX_RATE else "aac"
    return codec


def _encode_flac(container: Any, stream: Any, sample_rate: int | None, num_channels: int | None) -> EncodedRecording:
    """Store a source as FLAC frames: its samples, remixed or resampled only where asked.

    Integer sources of at most 16 bits (and 8-bit ones) are stored as 16-bit FLAC, others
    as 24-bit; a source that is remixed, resampled or not integer PCM (float WAV, lossy
    codecs) is quantized to 24 bits. The proof that nothing else changed: the frames are
    decoded back and must give the very integers that were encoded (a CRC-32 of each).
    """
    src_rate, src_channels = _stream_shape(stream)
    channels = int(num_channels or src_channels)
    if channels > _flac.MAX_CHANNELS:
        raise SourceError(
            f"{channels} channels: FLAC holds at most {_flac.MAX_CHANNELS}; keep fewer with num_channels= "
            "(CLI: --channels), or store the file as AAC (codec='aac', CLI: --codec aac)"
        )
    rate = int(sample_rate or src_rate)
    if rate > _flac.MAX_RATE:
        raise SourceError(
            f"sample rate {rate} Hz is above {_flac.MAX_RATE} Hz, the highest a FLAC frame names; store it as "
            "time-expanded AAC (codec='aac', CLI: --codec aac) or pass a lower sample_rate= (CLI: --sample-rate)"
        )
    src_format = str(stream.codec_context.format.name if stream.codec_context.format else "")
    integer = src_format.rstrip("p") in ("u8", "s16", "s32")
    changed = rate != src_rate or channels != src_channels
    bits = 16 if src_format.rstrip("p") in ("u8", "s16") and not changed else 24
    encoder = _flac.FlacEncoder(rate, channels, bits)
    resampler = _resampler(src_rate, rate, channels)
    source_meter = _bands.BandMeter(src_rate)
    peak, clipped = 0.0, 0

    def feed(block: np.ndarray) -> None:
        nonlocal peak, clipped
        if block.shape[1] == 0:
            return
        peak = max(peak, float(np.max(np.abs(block))))
        ints, n = _flac.quantize(block, bits)
        clipped += n
        encoder.push(ints)

    for block in _decoded_blocks(container, stream, src_channels):
        block = remix(block, channels)
        source_meter.push(block)
        feed(resampler.push(block) if resampler is not None else block)
    if resampler is not None:
        feed(resampler.flush())
    data, sizes, crc = encoder.finish()
    num_samples = encoder.num_samples
    if num_samples == 0:
        raise SourceError("audio stream decodes to no samples (zero-length audio)")
    config = StreamConfig(CODEC_FLAC, rate, channels, _flac.FRAME_SAMPLES, bits, num_samples=num_samples)
    stored_meter = _bands.BandMeter(rate)
    flac = _flac.FlacCodec()
    bounds = np.concatenate(([0], np.cumsum(sizes)))
    got, decoded = 0, 0
    try:
        frames = flac.decode_integers(flac.new_decoder(config), data, bounds, config=config, what="the FLAC frames")
        for _, pcm in frames:
            # The decoder's integers are in the layout the encoder checksummed: compare as they are.
            got = zlib.crc32(np.ascontiguousarray(pcm).data, got)
            stored_meter.push(_flac.as_float(pcm, bits))
            decoded += pcm.shape[0]
    except DecodeError as e:
        raise SourceError(f"the FLAC frames do not decode ({e})") from None
    if decoded != num_samples or got != crc:
        raise SourceError(f"the FLAC frames decode to other samples than were encoded ({decoded} of {num_samples})")
    note = ""
    if clipped:
        note = f"{clipped} samples above full scale were clipped to it (peak {20 * math.log10(peak):+.1f} dBFS)"
    elif not integer or changed:
        why = "resampled or remixed" if changed else f"{src_format} samples"
        note = f"stored as lossless FLAC of its samples quantized to {bits}-bit integers ({why})"
    return EncodedRecording(
        adts=data,
        frame_sizes=sizes,
        num_samples=num_samples,
        sample_rate=rate,
        num_channels=channels,
        encoder_delay=0,
        stream_sample_rate=rate,
        bandwidth_hz=rate // 2,
        codec=CODEC_FLAC,
        frame_samples=_flac.FRAME_SAMPLES,
        bits_per_sample=bits,
        passthrough=False,
        source_format=str(container.format.name),
        source_codec=str(stream.codec_context.name),
        source_sample_rate=src_rate,
        source_num_channels=src_channels,
        bands=_bands.compare(source_meter, stored_meter, rate // 2),
        coding_note=note,
    )


def _stream_shape(stream: Any) -> tuple[int, int]:
    """A source stream's sample rate and channel count, both positive."""
    src_rate = int(stream.codec_context.sample_rate or 0)
    src_channels = int(stream.codec_context.channels or 0)
    if src_rate <= 0 or src_channels <= 0:
        raise SourceError(f"audio stream has sample rate {src_rate} and {src_channels} channels")
    return src_rate, src_channels


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
    if num_samples <= 0 or num_samples > capacity:
        raise _NotPassableError(f"container timing gives {num_samples} samples for {len(payloads)} frames")
    meter = _bands.BandMeter(sr)
    try:
        noise = not decodes_repeatably(adts, sizes, channels, meter=meter, span=(delay, delay + num_samples))
    except av.FFmpegError as e:
        raise SourceError(f"AAC stream does not decode ({_reason(e)})") from None
    return EncodedRecording(
        adts=adts,
        frame_sizes=sizes,
        random_noise=noise,
        num_samples=num_samples,
        sample_rate=sr,
        num_channels=channels,
        encoder_delay=delay,
        bandwidth_hz=_bands.measured_bandwidth(meter),
        bandwidth_measured=True,
        passthrough=True,
        source_format=fmt,
        source_codec="aac",
    )


def decodes_repeatably(
    adts: bytes,
    sizes: np.ndarray,
    channels: int,
    batch: int = 256,
    *,
    meter: _bands.BandMeter | None = None,
    span: tuple[int, int] = (0, 0),
) -> bool:
    """Whether decoding the stream twice through one decoder gives the same samples.

    It does not when frames use perceptual noise substitution: FFmpeg fills those bands
    from a generator that ``flush_buffers()`` does not reset. The first frame is left out
    of the comparison (a flushed decoder's first frame differs from a fresh one's). Where
    ``meter`` is given, the first decode's samples ``[span[0], span[1])`` are pushed to it.
    """
    bounds = np.concatenate(([0], np.cumsum(sizes)))
    dec = new_decoder()

    def digests(meter: _bands.BandMeter | None) -> list[int]:
        out = []
        pos = 0
        try:
            for a, frames in decode_batches(dec, adts, bounds, channels=channels, what="passthrough", batch=batch):
                crc = 0
                for k, frame in enumerate(frames):
                    if a + k > 0:
                        for plane in frame.planes[:channels]:
                            crc = zlib.crc32(memoryview(plane)[: 4 * frame.samples], crc)
                    if meter is not None:
                        lo, hi = max(span[0] - pos, 0), min(span[1] - pos, frame.samples)
                        if hi > lo:
                            meter.push(planes(frame, channels)[:, lo:hi])
                    pos += frame.samples
                out.append(crc)
        except DecodeError as e:
            raise _NotPassableError(str(e)) from None
        return out

    first = digests(meter)
    dec.flush_buffers()
    return digests(None) == first


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
    """The rate a source at ``rate`` Hz is stored at by default: itself where AAC can carry
    it or where it is above 96 kHz (then time-expanded, see :func:`stream_rate`), else the
    nearest AAC rate above it."""
    if rate in _adts.SAMPLE_RATES or rate > AAC_MAX_RATE:
        return rate
    return min(r for r in _adts.SAMPLE_RATES if r > rate)


def stream_rate(rate: int, time_expansion: float | None = None) -> int:
    """The AAC rate the frames of a recording at ``rate`` Hz are labelled with: ``rate``
    itself up to 96 kHz; above it, the highest AAC rate at most ``rate / time_expansion``
    (``None``: 96 kHz, the smallest expansion). The samples are the same; they play
    ``rate / stream_rate`` times slower."""
    if rate <= AAC_MAX_RATE:
        return rate
    factor = rate / AAC_MAX_RATE if time_expansion is None else float(time_expansion)
    fitting = [r for r in _adts.SAMPLE_RATES if r * factor <= rate * (1 + 1e-9)]
    if not fitting:
        raise SourceError(
            f"time expansion {factor:g} leaves {rate / factor:.0f} Hz for a {rate} Hz source, below the lowest "
            f"AAC rate ({min(_adts.SAMPLE_RATES)} Hz); pass a smaller time_expansion= (CLI: --time-expansion)"
        )
    return max(fitting)


def max_bitrate(sample_rate: int) -> int:
    """The highest total bit rate whose frames fit ADTS's 8191-byte frame limit with room
    for the encoder's peaks (frames vary about their average by up to ~2x)."""
    return int(0.5 * 8191 * 8 * sample_rate / _adts.SAMPLES_PER_FRAME)


def default_bitrate(num_channels: int, sample_rate: int, bandwidth: float | None = None) -> int:
    """Total bit rate of a recording when none is given: the per-channel rate of
    :data:`BITRATE_STEPS` for the encoder's bandwidth (Hz of the stored stream at
    ``sample_rate``; ``None``: its Nyquist frequency), lowered where many channels at a low
    rate would overflow ADTS frames."""
    band = sample_rate / 2 if bandwidth is None else bandwidth
    per_channel = next((b for top, b in BITRATE_STEPS if band <= top), BITRATE_STEPS[-1][1])
    return min(per_channel * num_channels, max_bitrate(sample_rate))


def _encode(
    container: Any,
    stream: Any,
    fmt: str,
    codec: str,
    bitrate: int | None,
    sample_rate: int | None,
    num_channels: int | None,
    bandwidth: int | None = None,
    time_expansion: float | None = None,
) -> EncodedRecording:
    src_rate, src_channels = _stream_shape(stream)
    channels = int(num_channels or src_channels)
    if channels > MAX_CHANNELS:
        raise SourceError(
            f"{channels} channels: a recording holds at most {MAX_CHANNELS}; keep fewer with num_channels= "
            "(CLI: --channels), or split the channels into several files"
        )
    rate = int(sample_rate or storable_rate(src_rate))
    if rate > MAX_SOURCE_RATE:
        raise SourceError(
            f"sample rate {rate} Hz is above {MAX_SOURCE_RATE} Hz, the highest aacdata stores; pass a lower "
            "sample_rate= (CLI: --sample-rate)"
        )
    if rate <= AAC_MAX_RATE and rate not in _adts.SAMPLE_RATES:
        raise SourceError(
            f"sample rate {rate} Hz is not an AAC rate; pass sample_rate= (CLI: --sample-rate) one of "
            f"{', '.join(str(r) for r in sorted(_adts.SAMPLE_RATES))}, or a rate above {AAC_MAX_RATE} Hz "
            "(time-expanded)"
        )
    frames_rate = stream_rate(rate, time_expansion)
    # Bandwidth in Hz of the true timeline; the encoder's low-pass is in Hz of its stream.
    clamped = 0
    band = rate // 2 if bandwidth is None else int(bandwidth)
    if band > rate // 2:
        clamped, band = band, rate // 2
    cutoff = band * frames_rate // rate
    coded = coded_channels(channels)
    layout = CODED_LAYOUTS[coded]
    total_bitrate = int(bitrate) if bitrate is not None else default_bitrate(channels, frames_rate, cutoff)
    if total_bitrate > max_bitrate(frames_rate):
        raise SourceError(
            f"bitrate {total_bitrate} bit/s is too high for ADTS frames at {frames_rate} Hz (at most "
            f"{max_bitrate(frames_rate)}); lower bitrate= (CLI: --bitrate)"
        )
    enc = av.CodecContext.create("aac", "w")
    enc.sample_rate = frames_rate
    enc.layout = layout
    enc.format = "fltp"
    enc.bit_rate = total_bitrate
    enc.time_base = Fraction(1, frames_rate)
    enc.thread_count = 1
    enc.options = {**ENCODER_OPTIONS, "cutoff": str(cutoff)}
    try:
        enc.open()
    except av.FFmpegError as e:
        raise SourceError(
            f"AAC encoder refused {frames_rate} Hz, {layout}, {total_bitrate} bit/s ({_reason(e)})"
        ) from None
    if _adts.uses_pce(coded) and _adts.pce_layout(bytes(enc.extradata or b"")) != _adts.PCE_LAYOUTS[coded]:
        # The stored stream is decoded with aacdata's own PCE; it must name the encoder's elements.
        raise SourceError(
            f"this FFmpeg lays out {layout} differently from aacdata's PCE; cannot store {coded} channels"
        )
    # Frames are handed over packed (PyAV mishandles planar frames of 8 or more channels)
    # and converted to the encoder's planar format without any remix: the layouts match.
    to_planar = av.AudioResampler(format="fltp", layout=layout, rate=frames_rate)
    resampler = _resampler(src_rate, rate, channels)
    source_meter = _bands.BandMeter(src_rate)
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
        frame.sample_rate = frames_rate
        frame.pts = None
        encode(to_planar.resample(frame))

    for block in _decoded_blocks(container, stream, src_channels):
        block = remix(block, channels)
        source_meter.push(block)
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
    adts, sizes = _adts.build_adts(payloads, sample_rate=frames_rate, channel_config=config)
    stored_meter = _bands.BandMeter(rate)
    _measure_stored(
        stored_meter, adts, sizes, (frames_rate, coded, _adts.uses_pce(coded)), channels, delay, num_samples
    )
    return EncodedRecording(
        adts=adts,
        frame_sizes=sizes,
        num_samples=num_samples,
        sample_rate=rate,
        num_channels=channels,
        encoder_delay=delay,
        stream_sample_rate=frames_rate,
        bandwidth_hz=band,
        passthrough=False,
        source_format=fmt,
        source_codec=codec,
        source_sample_rate=src_rate,
        source_num_channels=src_channels,
        peak=peak,
        bands=_bands.compare(source_meter, stored_meter, band),
        bandwidth_clamped=clamped,
    )


def _measure_stored(
    meter: _bands.BandMeter,
    adts: bytes,
    sizes: np.ndarray,
    key: tuple[int, int, bool],
    channels: int,
    delay: int,
    num_samples: int,
) -> None:
    """Decode a stored stream whole and push the recording's samples ``[delay, delay +
    num_samples)`` of its first ``channels`` channels to ``meter``."""
    bounds = np.concatenate(([0], np.cumsum(sizes)))
    pos = 0  # decoded position of the next frame's first sample
    end = delay + num_samples
    try:
        for _, frames in decode_batches(new_decoder(key), adts, bounds, channels=key[1], what="the stored stream"):
            for frame in frames:
                a, b = max(delay - pos, 0), min(end - pos, frame.samples)
                if b > a:
                    meter.push(planes(frame, channels)[:, a:b])
                pos += frame.samples
    except DecodeError as e:
        raise SourceError(f"the encoded stream does not decode ({e})") from None


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


_UNKNOWN_SIZES = (0, 0x7FFFFFFF, 0xFFFFFFFF, 0xFFFFFFFFFFFFFFFF)
"""Data sizes that streaming writers (``arecord``, recorders that stream to a card) leave in
place of the real one: unknown, the data runs to the end of the file."""


def _check_header_sizes(path: str) -> str:
    """A WAV, RF64, AIFF or CAF file whose audio data chunk declares more bytes than the file
    holds is truncated (FFmpeg's demuxers quietly stop at the end of the file). Placeholder
    sizes (0, 0x7FFFFFFF, all ones) mean "until the end": not checked, and a note says so
    (returned; "" where there is nothing to say)."""
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
                return ""
    except OSError:
        return ""  # unreadable files are reported when FFmpeg opens them
    if found is None:
        return ""
    declared, available = found
    if declared in _UNKNOWN_SIZES:
        return (
            f"its {kind} header gives a placeholder data size ({declared:#x}, as streaming recorders leave it); "
            f"read to the end of the file ({available} bytes of audio)"
        )
    if declared > available:
        raise SourceError(
            f"file is truncated: {kind} header declares {declared} bytes of audio, the file holds {available}"
        )
    return ""


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
