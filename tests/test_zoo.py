"""A zoo of everyday audio files: each imports with its exact length, in time (lag 0) and
with every channel in place.

The reference for a file is its own full decode with plain PyAV. Lossless files must give
back the samples written; lossy files the length of that decode, cut where the container
declares the exact end and FFmpeg's decoder does not apply it (MP4 sample tables, the last
Ogg Vorbis granule). Files written by ``ffmpeg``, ``sox`` or ``lame`` are skipped where the
tool is missing.
"""

from __future__ import annotations

import math
import shutil
import struct
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest
from conftest import peak_lag

import aacdata
from aacdata import AACStore
from aacdata.audio import _transcode

RATE = 44_100
N = 22_050 + 123  # not a multiple of any codec's frame size


@dataclass(frozen=True)
class Made:
    """A written source file and what the test knows about it."""

    path: Path
    written: int
    """Samples per channel written (at the file's own rate)."""
    lossless: bool
    options: dict[str, Any] = field(default_factory=dict)
    """Extra ``import_audio`` options."""
    head_loss: int = 0
    """Samples at the head of the written signal that the source's own decode lacks (a
    property of the source codec, measured)."""
    source_lag: int | None = 0
    """Lag of the source's decode against the written signal (``None``: not checked)."""
    passthrough: bool = False
    """AAC-LC kept as it is, not re-encoded."""


# ---------------------------------------------------------------------- signals and writers


def _signal(num_samples: int, rate: int, channels: int, seed: int = 0) -> np.ndarray:
    """float32 ``(C, T)``: a log sweep plus a tone, both different in every channel, so a
    channel is closest to itself and a lag shows as a correlation peak off zero."""
    t = np.arange(num_samples) / rate
    rng = np.random.default_rng(seed)
    f0, f1 = 80.0, min(0.35 * rate, 7_000.0)
    dur = max(num_samples / rate, 1e-3)
    k = math.log(f1 / f0) / dur
    out = np.empty((channels, num_samples), np.float64)
    for c in range(channels):
        sweep = np.sin(2 * np.pi * f0 * (np.exp(k * t) - 1) / k + 1.3 * c)
        tone = np.sin(2 * np.pi * min(300.0 + 170.0 * c, 0.3 * rate) * t + rng.uniform(0, 6))
        out[c] = 0.35 * sweep + 0.25 * tone
    return out.astype(np.float32)


def _need_encoder(*codecs: str) -> None:
    for codec in codecs:
        try:
            av.codec.Codec(codec, "w")
        except av.codec.codec.UnknownCodecError:
            pytest.skip(f"this FFmpeg has no {codec} encoder")


_LAYOUTS = {1: "mono", 2: "stereo", 3: "3.0", 4: "quad", 5: "5.0", 6: "5.1", 7: "6.1", 8: "7.1"}


def _pyav(
    path: Path,
    x: np.ndarray,
    rate: int,
    *,
    fmt: str,
    codec: str,
    bit_rate: int | None = None,
    codec_options: dict[str, str] | None = None,
    container_options: dict[str, str] | None = None,
    out_rate: int | None = None,
) -> Path:
    """Write ``x`` with PyAV. Frames go in packed (PyAV mishandles planar frames of 8
    channels) and are converted to the encoder's format."""
    _need_encoder(codec)
    channels, total = x.shape
    layout = _LAYOUTS[channels]
    out_rate = out_rate or rate
    with av.open(str(path), "w", format=fmt, options=container_options or {}) as out:
        s: Any = out.add_stream(codec, rate=out_rate, layout=layout)
        if bit_rate:
            s.bit_rate = bit_rate
        if codec_options:
            s.codec_context.options = codec_options
        conv = av.AudioResampler(format=s.codec_context.format.name, layout=layout, rate=out_rate)
        for a in range(0, total, 4096):
            block = np.ascontiguousarray(x[:, a : a + 4096].T).reshape(1, -1)
            frame = av.AudioFrame.from_ndarray(block, format="flt", layout=layout)
            frame.sample_rate = rate
            frame.time_base = Fraction(1, rate)
            frame.pts = a
            for f in conv.resample(frame):
                for p in s.encode(f):
                    out.mux(p)
        for f in conv.resample(None):
            for p in s.encode(f):
                out.mux(p)
        for p in s.encode(None):
            out.mux(p)
    return path


def _pcm_bytes(x: np.ndarray, bits: int, floating: bool, big_endian: bool = False) -> bytes:
    inter = x.T.astype(np.float64)
    if floating:
        return inter.astype(">f4" if big_endian else "<f4").tobytes()
    if bits == 8:  # WAV's 8-bit samples are unsigned
        return (np.round(inter * 127) + 128).astype(np.uint8).tobytes()
    scale = 2.0 ** (bits - 1) - 1
    ints = np.round(inter * scale).astype(np.int64)
    width = bits // 8
    raw = np.ascontiguousarray(ints.astype(">i4" if big_endian else "<i4")).view(np.uint8).reshape(-1, 4)
    keep = raw[:, 4 - width :] if big_endian else raw[:, :width]
    return keep.tobytes()


def _wav(
    path: Path,
    x: np.ndarray,
    rate: int,
    *,
    bits: int = 16,
    floating: bool = False,
    extensible: bool = False,
    mask: int = 0,
    data_size: int | None = None,
    rf64: bool = False,
    trailing: bytes = b"",
) -> Path:
    """A WAV file written byte by byte: the header fields under test are set by hand.

    ``data_size`` overrides the data chunk's size field (placeholders 0 or 0xFFFFFFFF, as
    streaming writers leave them); ``rf64`` writes an RF64 file whose sizes live in ds64.
    """
    channels = x.shape[0]
    data = _pcm_bytes(x, bits, floating)
    block = channels * bits // 8
    tag = 3 if floating else 1
    if extensible:
        guid = struct.pack("<IHH", tag, 0x0000, 0x0010) + bytes.fromhex("800000aa00389b71")
        fmt = struct.pack("<HHIIHHHHI", 0xFFFE, channels, rate, rate * block, block, bits, 22, bits, mask) + guid
    else:
        fmt = struct.pack("<HHIIHH", tag, channels, rate, rate * block, block, bits)
    chunks = b"fmt " + struct.pack("<I", len(fmt)) + fmt
    size_field = len(data) if data_size is None else data_size
    if rf64:
        ds64 = struct.pack("<QQQI", 4 + 36 + 8 + len(chunks) + 8 + len(data), len(data), x.shape[1], 0)
        body = b"WAVE" + b"ds64" + struct.pack("<I", len(ds64)) + ds64 + chunks
        body += b"data" + struct.pack("<I", 0xFFFFFFFF) + data + trailing
        path.write_bytes(b"RF64" + struct.pack("<I", 0xFFFFFFFF) + body)
        return path
    body = b"WAVE" + chunks + b"data" + struct.pack("<I", size_field) + data + trailing
    riff = len(body) if data_size is None else (data_size or 0xFFFFFFFF) & 0xFFFFFFFF
    path.write_bytes(b"RIFF" + struct.pack("<I", riff & 0xFFFFFFFF) + body)
    return path


def _id3v2_with_cover() -> bytes:
    """An ID3v2.3 tag with a title and a front-cover picture (APIC)."""

    def frame(fid: bytes, payload: bytes) -> bytes:
        return fid + struct.pack(">I", len(payload)) + b"\x00\x00" + payload

    picture = bytes.fromhex("89504e470d0a1a0a") + bytes(range(256)) * 8  # PNG signature, then filler
    frames = frame(b"TIT2", b"\x00zoo") + frame(b"APIC", b"\x00image/png\x00\x03cover\x00" + picture)
    size = len(frames)
    synchsafe = bytes((size >> s) & 0x7F for s in (21, 14, 7, 0))
    return b"ID3\x03\x00\x00" + synchsafe + frames


def _need(tool: str) -> str:
    found = shutil.which(tool)
    if found is None:
        pytest.skip(f"{tool} is not installed")
    return found


def _run(*args: str) -> None:
    subprocess.run(args, check=True, capture_output=True, timeout=120)


def _video_stream(out: Any, codec: str, seconds: float) -> list[Any]:
    """Encode ``seconds`` of a small black picture at 10 frames/s; returns the packets."""
    s: Any = out.add_stream(codec, rate=10)
    s.width, s.height, s.pix_fmt = 32, 32, "yuv420p"
    packets = []
    for i in range(round(10 * seconds)):
        frame = av.VideoFrame.from_ndarray(np.zeros((32, 32, 3), np.uint8), format="rgb24")
        frame.pts = i
        packets += s.encode(frame)
    packets += s.encode(None)
    return packets


def _with_video(path: Path, x: np.ndarray, rate: int, *, fmt: str, codec: str, video: str) -> Path:
    """Audio plus a video stream twice as long (the container's duration is the video's)."""
    _need_encoder(codec, video)
    channels, total = x.shape
    layout = _LAYOUTS[channels]
    with av.open(str(path), "w", format=fmt) as out:
        vpackets = _video_stream(out, video, 2 * total / rate)
        out_rate = 48_000 if codec == "libopus" else rate
        a: Any = out.add_stream(codec, rate=out_rate, layout=layout)
        conv = av.AudioResampler(format=a.codec_context.format.name, layout=layout, rate=out_rate)
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(x), format="fltp", layout=layout)
        frame.sample_rate = rate
        frame.pts = 0
        apackets = [p for f in [*conv.resample(frame), *conv.resample(None)] for p in a.encode(f)]
        apackets += a.encode(None)
        for p in sorted(vpackets + apackets, key=lambda p: float((p.pts or 0) * p.time_base)):
            out.mux(p)
    return path


def _two_tracks(path: Path, first: np.ndarray, second: np.ndarray, rate: int, codec: str) -> Path:
    """Matroska with two audio tracks of different lengths; the first is imported."""
    with av.open(str(path), "w", format="matroska") as out:
        streams = [out.add_stream(codec, rate=rate, layout=_LAYOUTS[x.shape[0]]) for x in (first, second)]
        packets = []
        for s, x in zip(streams, (first, second), strict=True):
            conv = av.AudioResampler(format=s.codec_context.format.name, layout=s.layout, rate=rate)
            frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(x), format="fltp", layout=s.layout)
            frame.sample_rate = rate
            frame.pts = 0
            packets += [p for f in [*conv.resample(frame), *conv.resample(None)] for p in s.encode(f)]
            packets += s.encode(None)
        for p in sorted(packets, key=lambda p: float((p.pts or 0) * p.time_base)):
            out.mux(p)
    return path


# ---------------------------------------------------------------------- the zoo

Maker = Callable[[Path], Made]


def _lossless_wav(*, channels: int = 2, **kw: Any) -> Maker:
    def make(d: Path) -> Made:
        return Made(_wav(d / "a.wav", _signal(N, RATE, channels), RATE, **kw), N, True)

    return make


def _mp3_pyav(*, xing: bool, id3: bool = False) -> Maker:
    def make(d: Path) -> Made:
        path = _pyav(
            d / "a.mp3", _signal(N, RATE, 2), RATE, fmt="mp3", codec="libmp3lame", bit_rate=128_000,
            container_options={} if xing else {"write_xing": "0"},
        )  # fmt: skip
        if id3:  # a cover picture (FFmpeg shows it as a video stream) and an ID3v1 tag at the end
            trailer = b"TAG" + b"zoo".ljust(125, b"\x00")
            path.write_bytes(_id3v2_with_cover() + path.read_bytes() + trailer)
        # without a Xing/LAME header nothing says where the encoder's delay ends
        return Made(path, N, False, source_lag=0 if xing else 1105)

    return make


def _mp3_lame(*args: str, xing: bool) -> Maker:
    def make(d: Path) -> Made:
        lame = _need("lame")
        src = _wav(d / "src.wav", _signal(N, RATE, 2), RATE)
        _run(lame, "--quiet", *args, *(() if xing else ("-t",)), str(src), str(d / "a.mp3"))
        return Made(d / "a.mp3", N, False, source_lag=0 if xing else 1105)

    return make


def _pyav_file(
    name: str, fmt: str, codec: str, *, channels: int = 2, rate: int = RATE, n: int = N, lossless: bool = False,
    source_lag: int | None = 0, head_loss: int = 0, options: dict[str, Any] | None = None, **kw: Any,
) -> Maker:  # fmt: skip
    def make(d: Path) -> Made:
        x = _signal(n, rate, channels)
        path = _pyav(d / name, x, rate, fmt=fmt, codec=codec, **kw)
        out_rate = kw.get("out_rate") or rate
        written = n if out_rate == rate else math.ceil(n * out_rate / rate)
        return Made(path, written, lossless, dict(options or {}), head_loss, source_lag)

    return make


def _flac24(d: Path) -> Made:
    sf = pytest.importorskip("soundfile")
    x = _signal(N, RATE, 2)
    sf.write(d / "a.flac", x.T, RATE, subtype="PCM_24")
    return Made(d / "a.flac", N, True)


def _aiff24(d: Path) -> Made:
    return _pyav_file("a.aiff", "aiff", "pcm_s24be", lossless=True)(d)


def _ffmpeg(
    name: str, *args: str, channels: int = 2, lossless: bool = False, head_loss: int = 0, source_lag: int | None = 0
) -> Maker:
    def make(d: Path) -> Made:
        ffmpeg = _need("ffmpeg")
        src = _wav(d / "src.wav", _signal(N, RATE, channels), RATE)
        _run(ffmpeg, "-nostdin", "-loglevel", "error", "-y", "-i", str(src), *args, str(d / name))
        return Made(d / name, N, lossless, head_loss=head_loss, source_lag=source_lag)

    return make


def _sox(name: str, *args: str, lossless: bool = False) -> Maker:
    def make(d: Path) -> Made:
        sox = _need("sox")
        src = _wav(d / "src.wav", _signal(N, RATE, 2), RATE)
        _run(sox, str(src), *args, str(d / name))
        return Made(d / name, N, lossless)

    return make


def _ffmpeg_pipe_wav(d: Path) -> Made:
    """``ffmpeg -f wav pipe:`` cannot seek back: both RIFF and data sizes stay 0xFFFFFFFF."""
    ffmpeg = _need("ffmpeg")
    src = _wav(d / "src.wav", _signal(N, RATE, 2), RATE)
    out = subprocess.run(
        [ffmpeg, "-nostdin", "-loglevel", "error", "-i", str(src), "-f", "wav", "pipe:"],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    (d / "a.wav").write_bytes(out.stdout)
    return Made(d / "a.wav", N, True)


def _adts(**options: Any) -> Maker:
    def make(d: Path) -> Made:
        # 10 s, louder and quieter, with faint noise in the middle: FFmpeg guesses an ADTS
        # file's duration from the bit rate of its first frames, here 0.5 s more than there is
        n = 10 * RATE
        x = _signal(n, RATE, 2) * (0.3 + 0.7 * np.sin(np.arange(n) / RATE * 0.7) ** 2).astype(np.float32)
        x[:, n // 3 : n // 2] = 0.01 * np.random.default_rng(0).standard_normal((2, n // 2 - n // 3))
        path = _pyav(d / "a.aac", x, RATE, fmt="adts", codec="aac", bit_rate=128_000)
        # a raw ADTS stream carries no delay: its decode starts with the encoder's priming
        return Made(path, n, False, dict(options), source_lag=1024, passthrough=not options)

    return make


def _amr(d: Path) -> Made:
    path = _pyav(d / "a.amr", _signal(16_123, 8_000, 1), 8_000, fmt="amr", codec="libopencore_amrnb", bit_rate=12_200)
    return Made(path, 16_123, False, source_lag=None)  # a speech codec: the waveform's lag is not defined


def _mkv_video(audio_codec: str, fmt: str = "matroska", video: str = "mpeg4", name: str = "a.mkv") -> Maker:
    def make(d: Path) -> Made:
        path = _with_video(d / name, _signal(N, RATE, 2), RATE, fmt=fmt, codec=audio_codec, video=video)
        lossless = audio_codec == "flac"
        written = N if audio_codec != "libopus" else math.ceil(N * 48_000 / RATE)
        return Made(path, written, lossless, source_lag=0 if audio_codec != "libopus" else None)

    return make


def _mkv_two_tracks(first_longer: bool) -> Maker:
    def make(d: Path) -> Made:
        a, b = _signal(N, RATE, 2), _signal(2 * N + 1000, RATE, 1, seed=5)
        first, second = (b, a) if first_longer else (a, b)
        path = _two_tracks(d / "a.mkv", first, second, RATE, "flac")
        return Made(path, first.shape[1], True, source_lag=None if first_longer else 0)

    return make


def _m4a(edit_list: bool, n: int = N) -> Maker:
    options = {} if edit_list else {"use_editlist": "0"}

    def make(d: Path) -> Made:
        x = _signal(n, RATE, 2)
        path = _pyav(d / "a.m4a", x, RATE, fmt="ipod", codec="aac", bit_rate=128_000, container_options=options)
        # without an edit list the priming stays in the file's timeline
        return Made(path, n, False, source_lag=0 if edit_list else 1024, passthrough=True)

    return make


ZOO: dict[str, Maker] = {
    # MP3
    "mp3_cbr_xing": _mp3_pyav(xing=True),
    "mp3_cbr_no_xing": _mp3_pyav(xing=False),
    "mp3_id3v2_cover": _mp3_pyav(xing=True, id3=True),
    "mp3_lame_cbr_xing": _mp3_lame("-b", "128", xing=True),
    "mp3_lame_cbr_no_xing": _mp3_lame("-b", "128", xing=False),
    "mp3_lame_vbr_xing": _mp3_lame("-V", "2", xing=True),
    "mp3_lame_vbr_no_xing": _mp3_lame("-V", "2", xing=False),
    # WAV
    "wav_u8": _lossless_wav(bits=8),
    "wav_s16": _lossless_wav(bits=16),
    "wav_s24": _lossless_wav(bits=24),
    "wav_s32": _lossless_wav(bits=32),
    "wav_float": _lossless_wav(bits=32, floating=True),
    "wav_extensible_mask": _lossless_wav(bits=24, extensible=True, mask=0x3),
    "wav_extensible_no_mask": _lossless_wav(bits=16, extensible=True, mask=0),
    "wav_extensible_6ch": _lossless_wav(bits=16, extensible=True, mask=0x3F, channels=6),
    "wav_rf64": _lossless_wav(bits=24, rf64=True),
    "wav_data_size_0": _lossless_wav(data_size=0),
    "wav_data_size_ffffffff": _lossless_wav(data_size=0xFFFFFFFF),
    "wav_data_size_7fffffff": _lossless_wav(data_size=0x7FFFFFFF),
    "wav_ffmpeg_pipe": _ffmpeg_pipe_wav,
    "wav_ffmpeg_rf64": _ffmpeg("a.wav", "-c:a", "pcm_s24le", "-rf64", "always", lossless=True),
    # AIFF, CAF
    "aiff_s16": _pyav_file("a.aiff", "aiff", "pcm_s16be", lossless=True),
    "aiff_s24": _aiff24,
    "aiff_sox": _sox("a.aiff", lossless=True),
    "caf_pcm": _pyav_file("a.caf", "caf", "pcm_s16le", lossless=True),
    "caf_alac_ffmpeg": _ffmpeg("a.caf", "-c:a", "alac", lossless=True),
    "caf_sox": _sox("a.caf", lossless=True),
    # FLAC
    "flac_s16": _pyav_file("a.flac", "flac", "flac", lossless=True),
    "flac_s24": _flac24,
    "flac_sox_s24": _sox("a.flac", "-b", "24", lossless=True),
    "ogg_flac": _pyav_file("a.oga", "ogg", "flac", lossless=True),
    **{f"flac_{c}ch": _pyav_file("a.flac", "flac", "flac", channels=c, n=12_345, lossless=True) for c in range(3, 9)},
    # Ogg, Opus
    "ogg_vorbis": _pyav_file("a.ogg", "ogg", "vorbis", codec_options={"strict": "experimental"}),
    "ogg_vorbis_sox": _sox("a.ogg"),
    "ogg_vorbis_ffmpeg_mono": _ffmpeg("a.ogg", "-c:a", "libvorbis", channels=1),
    "opus": _pyav_file("a.opus", "ogg", "libopus", rate=48_000),
    "opus_from_44k": _pyav_file("a.opus", "ogg", "libopus", out_rate=48_000, source_lag=None),
    # MP4 family
    "m4a_aac_edit_list": _m4a(edit_list=True),
    "m4a_aac_no_edit_list": _m4a(edit_list=False),
    "m4a_aac_reencoded": lambda d: Made(_m4a(True)(d).path, N, False, {"reencode": True}),
    "m4a_alac": _pyav_file("a.m4a", "ipod", "alac", lossless=True),
    "m4a_alac_ffmpeg": _ffmpeg("a.m4a", "-c:a", "alac", lossless=True),
    "mp4_opus": _pyav_file("a.mp4", "mp4", "libopus", rate=48_000),
    # MP3 in MP4 keeps no gapless info: the decode starts with LAME's delay
    "mp4_mp3": _pyav_file("a.mp4", "mp4", "libmp3lame", bit_rate=128_000, source_lag=None),
    # raw ADTS
    "adts_passthrough": _adts(),
    "adts_reencoded": _adts(reencode=True),
    "adts_to_mono": _adts(num_channels=1),
    # speech and Windows codecs
    "amr_nb": _amr,
    # FFmpeg's WMA decoder drops the first frame's output, which its encoder does not prime (measured)
    "wma_v2": _pyav_file("a.wma", "asf", "wmav2", bit_rate=128_000, head_loss=2048, source_lag=None),
    "wma_v1_ffmpeg": _ffmpeg("a.wma", "-c:a", "wmav1", "-b:a", "128k", head_loss=2048, source_lag=None),
    # Matroska / WebM
    "mkv_flac": _pyav_file("a.mkv", "matroska", "flac", lossless=True),
    "mkv_aac": _pyav_file("a.mkv", "matroska", "aac"),
    "mkv_flac_video": _mkv_video("flac"),
    "mkv_aac_video": _mkv_video("aac"),
    "webm_opus_video": _mkv_video("libopus", fmt="webm", video="libvpx", name="a.webm"),
    "mkv_two_tracks_first_shorter": _mkv_two_tracks(first_longer=False),
    "mkv_two_tracks_first_longer": _mkv_two_tracks(first_longer=True),
    # lengths
    "wav_1_sample": lambda d: Made(_wav(d / "a.wav", _signal(1, RATE, 1), RATE), 1, True),
    "flac_1_sample": _pyav_file("a.flac", "flac", "flac", channels=1, n=1, lossless=True),
    "wav_1000_samples": lambda d: Made(_wav(d / "a.wav", _signal(1000, RATE, 2), RATE), 1000, True),
    "mp3_1000_samples": _pyav_file("a.mp3", "mp3", "libmp3lame", n=1000, bit_rate=128_000),
    "m4a_1000_samples": _m4a(edit_list=True, n=1000),
    "opus_1000_samples": _pyav_file("a.opus", "ogg", "libopus", rate=48_000, n=1000),
}


# ---------------------------------------------------------------------- reference and checks


def _source_decode(path: Path) -> np.ndarray:
    """The file's first audio stream decoded by plain PyAV, float64 ``(C, T)``, cut at the
    container's exact end where it declares one that the decoder does not apply."""
    blocks = []
    with av.open(str(path)) as c:
        s = c.streams.audio[0]
        for frame in c.decode(s):
            conv = av.AudioResampler(format="flt", layout=frame.layout, rate=frame.sample_rate)
            frame.pts = None
            for f in conv.resample(frame):
                blocks.append(f.to_ndarray().reshape(-1, f.layout.nb_channels).T)
        channels = s.codec_context.channels
    x = np.concatenate(blocks, axis=1) if blocks else np.zeros((channels, 0))
    end = _exact_end(path)
    return x[:, :end].astype(np.float64) if end is not None else x.astype(np.float64)


def _exact_end(path: Path) -> int | None:
    with av.open(str(path)) as c:
        s = c.streams.audio[0]
        rate = s.codec_context.sample_rate
        if "mp4" in c.format.name.split(","):
            # sample tables: the end of the last packet, from the first sample the decoder keeps
            times = [(p.pts, p.duration) for p in c.demux(s) if p.size]
            first, end = times[0][0], max(a + b for a, b in times)
            return round((end - max(first, 0)) * s.time_base * rate)
        if c.format.name == "ogg" and s.codec_context.name == "vorbis":
            return round(s.duration * s.time_base * rate)  # the last page's granule position
    return None


def _relative_error(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-12))


def _check(made: Made, tmp_path: Path) -> None:
    store = tmp_path / "s.zarr"
    report = aacdata.import_audio(made.path, store, workers=0, progress=False, **made.options)
    assert report.failed == (), report.failed[0].reason
    assert report.passthrough == int(made.passthrough)
    ref = _source_decode(made.path)
    if made.options.get("num_channels"):
        ref = aacdata.audio._channels.remix(ref.astype(np.float32), made.options["num_channels"]).astype(np.float64)
    if made.lossless:
        assert ref.shape[1] == made.written
    else:  # a lossy decode may add the codec's padding, never lose what was written
        assert ref.shape[1] >= made.written - made.head_loss
    with AACStore.open(store) as s:
        rec = s.recordings[0]
        assert rec.num_samples == ref.shape[1]
        out = s.read(rec, 0, rec.num_samples).astype(np.float64)
    assert out.shape == ref.shape
    if out.shape[1] < 2048:  # too short for the encoder to settle
        return
    for c in range(out.shape[0]):
        assert peak_lag(ref[c], out[c]) == 0, f"channel {c}"
        errors = [_relative_error(out[c], ref[k]) for k in range(ref.shape[0])]
        assert errors[c] < 0.3, f"channel {c}: relative error {errors[c]:.3f}"
        assert errors[c] == min(errors), f"channel {c} is closest to channel {int(np.argmin(errors))}"
    if made.source_lag is not None and not made.options.get("num_channels"):
        written = _signal(made.written, rec.sample_rate, 1)[0].astype(np.float64)
        assert peak_lag(written, out[0]) == made.source_lag


@pytest.mark.parametrize("case", list(ZOO))
def test_zoo_imports_exactly(tmp_path: Path, case: str) -> None:
    _check(ZOO[case](tmp_path), tmp_path)


def _apple_style_m4a(path: Path, n: int) -> Path:
    """An m4a as Apple's encoders write it: the last packet keeps a whole frame's duration in
    the sample table, and an edit list in a sample-exact movie time scale ends inside it."""
    x = _signal(n, RATE, 2)
    _pyav(
        path, x, RATE, fmt="ipod", codec="aac", bit_rate=128_000, container_options={"movie_timescale": str(RATE)}
    )  # fmt: skip
    data = bytearray(path.read_bytes())
    stts = data.index(b"stts")
    (entries,) = struct.unpack(">I", data[stts + 8 : stts + 12])
    last = stts + 12 + 8 * (entries - 1)
    data[last + 4 : last + 8] = struct.pack(">I", 1024)
    path.write_bytes(bytes(data))
    return path


@pytest.mark.parametrize("reencode", [False, True])
def test_m4a_edit_list_ends_inside_the_last_packet(tmp_path: Path, reencode: bool) -> None:
    path = _apple_style_m4a(tmp_path / "a.m4a", N)
    with av.open(str(path)) as c:  # FFmpeg decodes the whole last frame
        assert sum(f.samples for f in c.decode(audio=0)) > N
    report = aacdata.import_audio(path, tmp_path / "s.zarr", workers=0, progress=False, reencode=reencode)
    assert report.failed == ()
    assert report.passthrough == int(not reencode)
    with AACStore.open(tmp_path / "s.zarr") as s:
        rec = s.recordings[0]
        assert rec.num_samples == N
        out = s.read(rec, 0, N).astype(np.float64)
    for c, channel in enumerate(_signal(N, RATE, 2).astype(np.float64)):
        assert peak_lag(channel, out[c]) == 0


# ---------------------------------------------------------------------- long files


def _write_long_wav(path: Path, seconds: int, rate: int) -> int:
    """A mono 16-bit WAV of ``seconds``, written in one-minute pieces (never whole in memory)."""
    total = seconds * rate
    with path.open("wb") as f:
        f.write(b"RIFF" + struct.pack("<I", 36 + 2 * total) + b"WAVE")
        f.write(b"fmt " + struct.pack("<IHHIIHH", 16, 1, 1, rate, 2 * rate, 2, 16))
        f.write(b"data" + struct.pack("<I", 2 * total))
        for a in range(0, total, 60 * rate):
            f.write(_pcm_bytes(_long_signal(a, min(60 * rate, total - a), rate), 16, False))
    return total


def _long_signal(start: int, num_samples: int, rate: int) -> np.ndarray:
    """Samples ``[start, start + num_samples)`` of a signal that changes every second."""
    n = np.arange(start, start + num_samples)
    second = n // rate
    f = 200.0 + 37.0 * (second % 50)
    return (0.4 * np.sin(2 * np.pi * f * n / rate) + 0.2 * np.sin(2 * np.pi * 55.0 * n / rate))[None].astype(np.float32)


def _check_long(tmp_path: Path, seconds: int, rate: int) -> None:
    path = tmp_path / "long.wav"
    total = _write_long_wav(path, seconds, rate)
    report = aacdata.import_audio(path, tmp_path / "s.zarr", workers=0, progress=False)
    assert report.failed == ()
    with AACStore.open(tmp_path / "s.zarr") as s:
        rec = s.recordings[0]
        assert rec.num_samples == total
        for start in (0, total // 2 - 777, total - 3 * rate):  # head, middle, the very end
            out = s.read(rec, start, 3 * rate)[0].astype(np.float64)
            src = np.round(_long_signal(start, 3 * rate, rate)[0].astype(np.float64) * 32767) / 32767
            assert peak_lag(src, out) == 0
            assert _relative_error(out, src) < 0.1


def test_one_minute(tmp_path: Path) -> None:
    _check_long(tmp_path, 60, 16_000)


@pytest.mark.slow
def test_ten_minutes(tmp_path: Path) -> None:
    _check_long(tmp_path, 600, 16_000)


@pytest.mark.slow
def test_two_hours(tmp_path: Path) -> None:
    _check_long(tmp_path, 7200, 16_000)


# ---------------------------------------------------------------------- truncated files


def _cut(path: Path, keep: int) -> Path:
    data = path.read_bytes()
    path.write_bytes(data[:keep])
    return path


def _truncated_rf64(d: Path) -> Path:
    path = _wav(d / "a.wav", _signal(N, RATE, 2), RATE, rf64=True)
    return _cut(path, path.stat().st_size // 2)


def _truncated_aiff(d: Path) -> Path:
    path = _pyav(d / "a.aiff", _signal(N, RATE, 2), RATE, fmt="aiff", codec="pcm_s16be")
    return _cut(path, path.stat().st_size // 2)


def _truncated_caf(d: Path) -> Path:
    path = _pyav(d / "a.caf", _signal(N, RATE, 2), RATE, fmt="caf", codec="pcm_s16le")
    return _cut(path, path.stat().st_size // 2)


def _flac_cut_between_frames(d: Path) -> Path:
    """Cut exactly where a frame starts: every frame left decodes, STREAMINFO says more."""
    path = _pyav(d / "a.flac", _signal(8 * N, RATE, 2), RATE, fmt="flac", codec="flac")
    with av.open(str(path)) as c:
        positions = [p.pos for p in c.demux(c.streams.audio[0]) if p.size]
    return _cut(path, positions[len(positions) // 2])


def _m4a_cut(d: Path) -> Path:
    """moov first (faststart): the sample table lists packets that are no longer there."""
    path = _pyav(
        d / "a.m4a", _signal(8 * N, RATE, 2), RATE, fmt="ipod", codec="aac", bit_rate=128_000,
        container_options={"movflags": "faststart"},
    )  # fmt: skip
    return _cut(path, path.stat().st_size * 2 // 3)


TRUNCATED: dict[str, tuple[Callable[[Path], Path], str]] = {
    "rf64": (_truncated_rf64, "file is truncated: WAV header declares"),
    "aiff": (_truncated_aiff, "file is truncated: AIFF header declares"),
    "caf": (_truncated_caf, "file is truncated: CAF header declares"),
    "flac_between_frames": (_flac_cut_between_frames, "file is truncated: FLAC header declares"),
    "m4a": (_m4a_cut, "file is truncated"),
}


@pytest.mark.parametrize("case", list(TRUNCATED))
@pytest.mark.parametrize("reencode", [False, True])
def test_truncated_files_are_refused(tmp_path: Path, case: str, reencode: bool) -> None:
    maker, reason = TRUNCATED[case]
    path = maker(tmp_path)
    report = aacdata.import_audio(path, tmp_path / "s.zarr", workers=0, progress=False, reencode=reencode)
    assert report.imported == ()
    assert len(report.failed) == 1
    assert reason in report.failed[0].reason


def test_flac_streaminfo_total_samples(tmp_path: Path) -> None:
    path = _pyav(tmp_path / "a.flac", _signal(N, RATE, 2), RATE, fmt="flac", codec="flac")
    with av.open(str(path)) as c:
        streaminfo = bytes(c.streams.audio[0].codec_context.extradata)
    assert len(streaminfo) == 34
    assert _transcode._flac_total_samples(streaminfo) == N
    # as some muxers keep it: the "fLaC" marker and the metadata block header in front
    assert _transcode._flac_total_samples(b"fLaC" + b"\x80\x00\x00\x22" + streaminfo) == N
    assert _transcode._flac_total_samples(b"") == 0


@pytest.mark.parametrize("size", [0, 0x7FFFFFFF, 0xFFFFFFFF])
def test_placeholder_wav_sizes_read_to_the_end_with_a_note(tmp_path: Path, size: int) -> None:
    made = _lossless_wav(data_size=size)(tmp_path)
    report = aacdata.import_audio(made.path, tmp_path / "s.zarr", workers=0, progress=False)
    assert report.ok, report.failed
    assert aacdata.AACStore.open(tmp_path / "s.zarr").recording(0).num_samples == made.written
    (note,) = (n for _, n in report.notes if "placeholder" in n)
    assert f"placeholder data size ({size:#x}" in note and "read to the end of the file" in note
