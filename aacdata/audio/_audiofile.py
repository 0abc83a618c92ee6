"""Writing audio files (through PyAV, so no external tool is needed), for the demo, the
examples, the tests and the benchmarks; the signals come from :mod:`aacdata.testing`."""

from __future__ import annotations

import os
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np

from ..testing import KINDS, signal

# (container format, codec, sample format) by file extension.
_WRITERS: dict[str, tuple[str, str, str]] = {
    ".wav": ("wav", "pcm_s16le", "s16"),
    ".flac": ("flac", "flac", "s16"),
    ".mp3": ("mp3", "libmp3lame", "fltp"),
    ".ogg": ("ogg", "vorbis", "fltp"),  # FFmpeg's native Vorbis encoder: stereo only
    ".opus": ("ogg", "libopus", "flt"),
    ".m4a": ("ipod", "aac", "fltp"),
    ".mp4": ("mp4", "aac", "fltp"),
    ".aac": ("adts", "aac", "fltp"),
    ".mkv": ("matroska", "aac", "fltp"),
    ".webm": ("webm", "libopus", "flt"),
}


def write_audio(
    path: str | os.PathLike[str],
    audio: np.ndarray,
    *,
    sample_rate: int,
    bitrate: int = 128_000,
    float_wav: bool = False,
    pns: bool = False,
) -> Path:
    """Write float32 ``(C, T)`` audio to ``path``; the extension picks format and codec.

    WAV and FLAC are 16-bit; ``float_wav=True`` writes 32-bit float WAV, which keeps
    every sample exactly. AAC is written with perceptual noise substitution off unless
    ``pns=True`` (FFmpeg's own default, and that of most ``.m4a`` files).
    """
    path = Path(path)
    try:
        fmt, codec, sample_fmt = _WRITERS[path.suffix.lower()]
    except KeyError:
        raise ValueError(f"cannot write {path.suffix!r}; extensions: {', '.join(_WRITERS)}") from None
    if float_wav and codec == "pcm_s16le":
        codec, sample_fmt = "pcm_f32le", "flt"
    audio = np.asarray(audio, dtype=np.float32)
    channels, total = audio.shape
    layout = {1: "mono", 2: "stereo", 6: "5.1"}.get(channels, f"{channels}c")
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w", format=fmt) as out:
        rate = 48_000 if codec == "libopus" else sample_rate
        stream: Any = out.add_stream(codec, rate=rate, layout=layout)
        if codec not in ("pcm_s16le", "pcm_f32le", "flac"):
            stream.bit_rate = bitrate
        if codec == "aac":
            # PNS off unless asked for (FFmpeg turns it on by default, as in most .m4a files)
            stream.codec_context.options = {"aac_pns": "1" if pns else "0"}
        elif codec == "vorbis":
            if channels != 2:
                raise ValueError(f"the native Vorbis encoder writes stereo only; got {channels} channels")
            stream.codec_context.options = {"strict": "experimental"}
        resampler = av.AudioResampler(format=sample_fmt, layout=layout, rate=rate)
        block = 4096
        for a in range(0, total, block):
            chunk = np.ascontiguousarray(audio[:, a : a + block])
            frame = av.AudioFrame.from_ndarray(chunk, format="fltp", layout=layout)
            frame.sample_rate = sample_rate
            frame.time_base = Fraction(1, sample_rate)
            frame.pts = a
            for f in resampler.resample(frame):
                for packet in stream.encode(f):
                    out.mux(packet)
        for f in resampler.resample(None):
            for packet in stream.encode(f):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return path


def make_corpus(
    directory: str | os.PathLike[str],
    *,
    seconds: float = 180.0,
    num_files: int = 12,
    sample_rates: tuple[int, ...] = (44_100, 16_000),
    extension: str = ".flac",
    seed: int = 0,
) -> list[Path]:
    """A small corpus: every kind of signal, mono and stereo, the given sample rates.

    Files are named ``<kind>/<nn>_<rate>hz_<channels>ch<extension>`` and together last
    about ``seconds``; lengths vary so that no two recordings align.
    """
    rng = np.random.default_rng(seed)
    weights = rng.uniform(0.6, 1.4, num_files)
    lengths = weights / weights.sum() * seconds
    paths = []
    for i in range(num_files):
        kind = KINDS[i % len(KINDS)]
        rate = sample_rates[i % len(sample_rates)]
        channels = 1 + (i // len(KINDS) + i) % 2
        n = int(lengths[i] * rate) + int(rng.integers(0, 1024))
        audio = signal(kind, n, sample_rate=rate, num_channels=channels, seed=seed + i)
        name = Path(directory) / kind / f"{i:02d}_{rate}hz_{channels}ch{extension}"
        paths.append(write_audio(name, audio, sample_rate=rate))
    return paths
