"""The whole spectrum: (a) import speed of full-band AAC at the default bit rates against
the encoder at aacdata 0.1's defaults (80 kbit/s a channel, the encoder's own low-pass),
with the band proof included; (b) reads of a time-expanded 384 kHz recording against
reads of an ordinary 96 kHz one, the same number of samples (hence of frames) per window,
interleaved; (c) bytes per hour per rate and channel count, beside 16-bit WAV and FLAC.

    .venv/bin/python benchmarks/bench_spectrum.py            # full run
    .venv/bin/python benchmarks/bench_spectrum.py --quick    # smoke test, < 60 s
"""

from __future__ import annotations

import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from _harness import Report, parser

import aacdata
from aacdata.audio import _transcode
from aacdata.audio._audiofile import write_audio
from aacdata.testing import signal


def field_recording(rate: int, seconds: float, channels: int, seed: int) -> np.ndarray:
    """Faint pink-ish background, bird-like sweeps in the upper half of the band, and (at
    ultrasonic rates) bat-like calls: what a field recorder hands over."""
    rng = np.random.default_rng(seed)
    n = int(rate * seconds)
    nyq = rate / 2
    out = np.zeros((channels, n), np.float64)
    white = rng.standard_normal((channels, n))
    spec = np.fft.rfft(white, axis=1)
    f = np.fft.rfftfreq(n, 1 / rate)
    spec[:, 1:] /= np.sqrt(f[1:])
    spec[:, 0] = 0
    pink = np.fft.irfft(spec, n, axis=1)
    out += 0.02 * pink / pink.std()
    d = int(0.08 * rate)
    t = np.arange(d) / rate
    for a in range(int(0.05 * rate), n - d, int(0.4 * rate)):
        fa, fb = rng.uniform(0.2, 0.5) * nyq, rng.uniform(0.5, 0.85) * nyq
        out[:, a : a + d] += 0.3 * np.sin(2 * np.pi * (fa * t + (fb - fa) * t**2 / (2 * t[-1]))) * np.hanning(d)
    return (out / max(1.0, np.abs(out).max() / 0.95)).astype(np.float32)


def encode_v01_defaults(path: Path) -> float:
    """Decode the file and encode it as aacdata 0.1 did by default (80 kbit/s a channel,
    the encoder's own low-pass, PNS off): seconds taken. The codec work only, none of the
    import's own (checksums, ADTS, band proof, writing), so the comparison flatters it."""
    t0 = time.perf_counter()
    with av.open(str(path)) as c:
        stream = c.streams.audio[0]
        rate, channels = stream.codec_context.sample_rate, stream.codec_context.channels
        layout = {1: "mono", 2: "stereo"}[channels]
        enc = av.CodecContext.create("aac", "w")
        enc.sample_rate, enc.layout, enc.format = rate, layout, "fltp"
        enc.bit_rate = 80_000 * channels
        enc.time_base = Fraction(1, rate)
        enc.options = {"aac_pns": "0"}
        enc.open()
        to_planar = av.AudioResampler(format="fltp", layout=layout, rate=rate)
        for frame in c.decode(stream):
            frame.pts = None
            for f in to_planar.resample(frame):
                enc.encode(f)
        enc.encode(None)
    return time.perf_counter() - t0


def bench_import(report: Report, workdir: Path, seconds: float, reps: int) -> None:
    rows = []
    for rate, channels in ((44_100, 2), (48_000, 1), (96_000, 2)):
        path = workdir / f"field_{rate}_{channels}.wav"
        if not path.exists():
            write_audio(path, field_recording(rate, seconds, channels, seed=rate), sample_rate=rate)
        new, old = [], []
        for _ in range(reps):  # interleaved: old, new, old, new, ...
            old.append(encode_v01_defaults(path))
            t0 = time.perf_counter()
            encoded = _transcode.transcode(path)
            new.append(time.perf_counter() - t0)
        m_new, m_old = float(np.median(new)), float(np.median(old))
        rows.append(
            [f"{rate} Hz, {channels} ch", seconds / m_old, seconds / m_new, m_new / m_old, encoded.bitrate // 1000,
             max(abs(a - b) for a, b in zip(encoded.bands.source_db, encoded.bands.stored_db, strict=True)
                 if a is not None and b is not None and a > (encoded.bands.source_total_db or 0) - 50)]
        )  # fmt: skip
        report.info(f"import {rate} Hz {channels} ch: full band / 0.1 default encode (time)", m_new / m_old)
    report.table(
        f"Import of {seconds:.0f} s field recordings (medians of {reps}, interleaved)",
        ["source", "0.1 default encode, x realtime", "import full band, x realtime", "time ratio", "kbit/s",
         "worst band change, dB"],
        rows,
        "0.1 default: PyAV decode + encode only; full band: aacdata's whole conversion (decode, encode, ADTS, "
        "decode of the stored stream for the band proof).",
    )  # fmt: skip


def bench_reads(report: Report, workdir: Path, windows: int, seed: int) -> None:
    store_path = workdir / "spectrum_reads.zarr"
    if not store_path.exists():
        write_audio(workdir / "in" / "bat_384k.wav", field_recording(384_000, 20, 1, 1), sample_rate=384_000)
        write_audio(workdir / "in" / "plain_96k.wav", field_recording(96_000, 80, 1, 2), sample_rate=96_000)
        aacdata.import_audio(workdir / "in", store_path, workers=0, progress=False)
    store = aacdata.AACStore.open(store_path)
    bat, plain = store.recording("bat_384k.wav"), store.recording("plain_96k.wav")
    assert bat.time_expansion == 4.0 and plain.time_expansion == 1.0
    n = 96_000  # one second of the 96 kHz recording, 0.25 s of the 384 kHz one: ~94 frames each
    rng = np.random.default_rng(seed)
    starts = [(int(rng.integers(0, bat.num_samples - n)), int(rng.integers(0, plain.num_samples - n)))
              for _ in range(windows)]  # fmt: skip
    stats = report.compare(
        f"{n} samples: time-expanded 384 kHz recording vs ordinary 96 kHz one",
        lambda: {
            "96 kHz (not expanded)": lambda w: store.read(plain, w[1], n),
            "384 kHz (expanded 4x)": lambda w: store.read(bat, w[0], n),
        },
        starts,
        warmup=starts[:20],
        baseline="96 kHz (not expanded)",
    )
    ratio = stats["384 kHz (expanded 4x)"].median / stats["96 kHz (not expanded)"].median
    report.target("time-expanded / ordinary window (same samples)", ratio, "<=", 1.2)


def bench_sizes(report: Report, workdir: Path, seconds: float) -> None:
    rows = []
    for rate, channels, kind in ((16_000, 1, "speech"), (44_100, 2, "music"), (96_000, 2, "field"),
                                 (384_000, 1, "field")):  # fmt: skip
        audio = (
            field_recording(rate, seconds, channels, seed=3)
            if kind == "field"
            else signal(kind, int(rate * seconds), sample_rate=rate, num_channels=channels, seed=3)
        )
        wav = write_audio(workdir / f"size_{rate}_{channels}.wav", audio, sample_rate=rate)
        flac = write_audio(workdir / f"size_{rate}_{channels}.flac", audio, sample_rate=rate)
        encoded = _transcode.transcode(wav)
        per_hour = 3600 / seconds
        rows.append(
            [f"{rate} Hz, {channels} ch, {kind}", encoded.bitrate // 1000, len(encoded.adts) * per_hour / 1e6,
             wav.stat().st_size * per_hour / 1e6, flac.stat().st_size * per_hour / 1e6,
             wav.stat().st_size / len(encoded.adts)]
        )  # fmt: skip
    report.table(
        "Bytes per hour (MB), default bit rates",
        ["source", "AAC kbit/s", "AAC MB/h", "WAV 16-bit MB/h", "FLAC MB/h", "WAV / AAC"],
        rows,
    )


def main() -> None:
    p = parser(__doc__, quick="< 60 s")
    args = p.parse_args()
    report = Report("aacdata: the whole spectrum", args, f"aacdata {aacdata.__version__}, PyAV {av.__version__}")
    workdir = args.workdir / ("spectrum-quick" if args.quick else "spectrum")
    workdir.mkdir(parents=True, exist_ok=True)
    bench_import(report, workdir, 10.0 if args.quick else 60.0, 1 if args.quick else 5)
    bench_reads(report, workdir, 60 if args.quick else 600, args.seed)
    bench_sizes(report, workdir, 5.0 if args.quick else 30.0)
    report.finish()


if __name__ == "__main__":
    main()
