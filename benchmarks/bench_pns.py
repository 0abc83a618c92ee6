"""Perceptual noise substitution (PNS): what a window of a passed-through PNS recording
shares with the full decode of its stream, and what ``pns="reencode"`` costs.

For each stream (music-like and white noise, mono and stereo, 44.1 and 48 kHz, written as
``.m4a`` by FFmpeg's encoder with PNS on at 64, 96 and 128 kbit/s):

(a) The contract of the default import (``pns="keep"``), over random windows of 4096 to
    12288 samples against the same samples of the full decode (``read(rec, 0,
    num_samples)``, which is the full decode, bit for bit): how many windows differ; the
    SNR of a window against the full decode and its total energy change; the change of
    its 1/3-octave band energies in the bands the noise reaches (the difference's energy
    above -60 dB of the band's); and, on the stream's frame grid (MDCT with the frames'
    own windows, ``tests/pns_frames.py``), the largest difference outside the bands that
    carry the decoder's noise (relative to the stream's largest coefficient) and how many
    noise bands keep their energy per frame to float rounding (|change| <= 1e-4 dB).
(b) The generation loss of ``pns="reencode"`` at the default bit rate: SNR of the
    re-encoded recording's full decode against that of the PNS stream (both read from
    sample 0; the lag of their cross-correlation peak is checked to be 0), beside the SNR
    of the PNS stream against the source itself, and the energy change per octave band.

    .venv/bin/python benchmarks/bench_pns.py            # full run, ~4 min
    .venv/bin/python benchmarks/bench_pns.py --quick    # smoke test, < 30 s
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import av
import numpy as np
from _harness import ROOT, Report, parser

import aacdata
from aacdata.audio._audiofile import write_audio
from aacdata.testing import signal

sys.path.insert(0, str(ROOT / "tests"))
from pns_frames import SWB_LONG, StreamFrames, third_octaves  # the tests' frame analysis

OCTAVES_HZ = (63, 125, 250, 500, 1000, 2000, 4000, 8000, 16000)
"""Centres of the octave bands of (b); each spans centre / sqrt(2) to centre * sqrt(2)."""
EXACT_DB = 1e-4


def octave_energies(x: np.ndarray, sample_rate: int) -> np.ndarray:
    """Energy of ``x`` ``(C, T)`` in the octave bands of :data:`OCTAVES_HZ` (one FFT of the whole signal)."""
    power = (np.abs(np.fft.rfft(x, axis=1)) ** 2).sum(axis=0)
    freqs = np.fft.rfftfreq(x.shape[1], 1 / sample_rate)
    return np.array([power[(freqs >= f / 2**0.5) & (freqs < f * 2**0.5)].sum() for f in OCTAVES_HZ])


def peak_lag(x: np.ndarray, y: np.ndarray, max_lag: int = 2048) -> int:
    """Lag of ``y`` against ``x`` (1-D; positive: ``y`` is late) at their cross-correlation peak."""
    size = 1 << (x.size + y.size - 1).bit_length()
    corr = np.fft.irfft(np.fft.rfft(y, size) * np.conj(np.fft.rfft(x, size)), size)
    lags = np.r_[0 : max_lag + 1, -max_lag:0]
    return int(lags[np.argmax(np.r_[corr[: max_lag + 1], corr[-max_lag:]])])


def snr_db(reference: np.ndarray, other: np.ndarray) -> float:
    ref = reference.astype(np.float64)
    return float(10 * np.log10(np.sum(ref**2) / np.sum((other.astype(np.float64) - ref) ** 2)))


def one_stream(
    workdir: Path, kind: str, rate: int, channels: int, bitrate: int, seconds: float, windows: int, seed: int
) -> tuple[list[object], list[object], dict[str, list[float]]]:
    name = f"{kind}_{rate // 1000}k_{channels}ch_{bitrate // 1000}"
    source = signal(kind, int(seconds * rate), sample_rate=rate, num_channels=channels, seed=seed)
    src = write_audio(workdir / f"{name}.m4a", source, sample_rate=rate, bitrate=bitrate, pns=True)
    decoded = {}
    for mode in ("keep", "reencode"):
        path = workdir / f"{name}_{mode}.zarr"
        shutil.rmtree(path, ignore_errors=True)
        aacdata.import_audio(src, path, workers=0, progress=False, pns=mode)
        decoded[mode] = aacdata.AACStore.open(path)
    store, redone = decoded["keep"], decoded["reencode"]
    rec, rerec = store.recording(0), redone.recording(0)
    assert rec.pns and not rerec.pns and rec.num_samples == rerec.num_samples == source.shape[1]
    full = store.read(rec, 0, rec.num_samples)

    # (a) windows against the full decode
    frames = StreamFrames(store, rec)
    rng = np.random.default_rng(seed)
    differing, snrs, totals, thirds, outside, band_db = 0, [], [], [], 0.0, []
    for _ in range(windows):
        n = int(rng.integers(4096, 12_288))
        start = int(rng.integers(0, rec.num_samples - n))
        window, same = store.read(rec, start, n), full[:, start : start + n]
        if np.array_equal(window, same):
            continue
        differing += 1
        snrs.append(snr_db(same, window))
        w64, s64 = window.astype(np.float64), same.astype(np.float64)
        totals.append(10 * np.log10(np.sum(w64**2) / np.sum(s64**2)))
        ours, theirs = third_octaves(w64, rate), third_octaves(s64, rate)
        reached = third_octaves(w64 - s64, rate) > 1e-6 * theirs
        thirds.extend(10 * np.log10(ours[reached] / theirs[reached]))
        c = frames.compare(window, same, start)
        outside = max(outside, c.outside)
        band_db.extend(c.noise_db)
    bands = np.abs(np.asarray(band_db))
    exact = bands <= EXACT_DB
    spread = bands[~exact]
    lowest = np.flatnonzero(frames.noise.any(axis=(0, 1)))
    label = f"{kind}, {channels} ch, {rate / 1000:g} kHz, {bitrate // 1000} kbit/s"
    t = np.abs(np.asarray(thirds))
    row_a: list[object] = [
        label,
        100 * float(frames.noise[:, frames.known].mean()),
        round(SWB_LONG[lowest[0]] * rate / 2048) if lowest.size else 0,
        f"{differing}/{windows}",
        float(np.median(snrs)) if snrs else float("nan"),
        float(np.min(snrs)) if snrs else float("nan"),
        float(np.max(np.abs(totals))) if totals else 0.0,
        *(float(np.percentile(t, p)) if t.size else 0.0 for p in (50, 90, 99, 100)),
        outside / 1e-7,
        100 * float(exact.mean()) if bands.size else 100.0,
        float(spread.max()) if spread.size else 0.0,
    ]

    # (b) generation loss of pns="reencode"
    again = redone.read(rerec, 0, rerec.num_samples)
    lag = peak_lag(full[0], again[0])
    change = 10 * np.log10(octave_energies(again, rate) / octave_energies(full, rate))
    row_b: list[object] = [
        label,
        rerec.bitrate // 1000,
        lag,
        snr_db(full, again),
        snr_db(source, full),
        float(np.max(np.abs(change))),
        *(float(c) for c in change),
    ]
    summary = {
        "snr": snrs,
        "total": [abs(x) for x in totals],
        "third": t.tolist(),
        "outside": [outside],
        "exact": [float(exact.mean())] if bands.size else [],
        "spread": spread.tolist(),
        "reencode_snr": [snr_db(full, again)],
        "octave": np.abs(change).tolist(),
        "octave_from_500": np.abs(change[OCTAVES_HZ.index(500) :]).tolist(),
        "lag": [abs(lag)],
    }
    return row_a, row_b, summary


def main() -> None:
    args = parser(__doc__, quick="< 30 s").parse_args()
    report = Report(
        "aacdata: perceptual noise substitution", args, f"aacdata {aacdata.__version__}, PyAV {av.__version__}"
    )
    workdir = args.workdir / ("pns-quick" if args.quick else "pns")
    workdir.mkdir(parents=True, exist_ok=True)
    if args.quick:
        streams = [("music", 44_100, 2, 96_000), ("noise", 48_000, 1, 64_000)]
        seconds, windows = 2.0, 20
    else:
        streams = [
            (kind, rate, channels, bitrate)
            for kind in ("music", "noise")
            for rate in (44_100, 48_000)
            for channels in (1, 2)
            for bitrate in (64_000, 96_000, 128_000)
        ]
        seconds, windows = 6.0, 60
    rows_a, rows_b, pooled = [], [], {}
    for i, stream in enumerate(streams):
        row_a, row_b, summary = one_stream(workdir, *stream, seconds, windows, args.seed + i)
        rows_a.append(row_a)
        rows_b.append(row_b)
        for key, values in summary.items():
            pooled.setdefault(key, []).extend(values)
    report.table(
        "(a) pns='keep': windows against the full decode",
        [
            "stream", "noise bands %", "lowest noise Hz", "windows differing", "SNR dB, median", "SNR min",
            "energy change max dB", "1/3-oct change p50 dB", "p90", "p99", "max", "outside, 1e-7", "exact bands %",
            "others max dB",
        ],
        rows_a,
        "SNR and energies over the windows that differ (changes as absolute values, dB); 1/3-octave bands where the "
        "noise reaches; outside: the largest MDCT difference outside the noise bands, relative to the stream's "
        "largest coefficient; exact: noise bands whose energy per frame is the full decode's to 1e-4 dB (others: TNS "
        "spreads the noise there).",
    )  # fmt: skip
    report.table(
        "(b) pns='reencode' at the default bit rate: against the PNS stream's full decode",
        ["stream", "kbit/s", "lag", "SNR dB", "PNS vs source SNR dB", "largest octave change dB",
         *(f"{f} Hz" for f in OCTAVES_HZ)],
        rows_b,
        "lag: cross-correlation peak of the two decodes read from sample 0 (0: aligned); octave columns: energy "
        "change, dB (the largest as an absolute value).",

    )  # fmt: skip
    largest = max(pooled["outside"]) / 1e-7
    report.target("MDCT difference outside the noise bands (1e-7 of the largest coefficient)", largest, "<=", 100)
    report.target("noise bands with their energy to float rounding, fewest (fraction)", min(pooled["exact"]), ">=", 0.8)
    report.target(
        "other noise bands' energy change, largest (dB)", float(max(pooled["spread"], default=0.0)), "<=", 8.0
    )
    report.target("window energy change, largest (dB)", float(max(pooled["total"])), "<=", 0.3)
    report.info("1/3-octave change where the noise reaches, median (dB)", float(np.median(pooled["third"])))
    report.info("1/3-octave change where the noise reaches, p99 (dB)", float(np.percentile(pooled["third"], 99)))
    report.info("window SNR against the full decode, median (dB)", float(np.median(pooled["snr"])))
    report.target("re-encode: lag of the two decodes (samples)", max(pooled["lag"]), "<=", 0)
    report.info("re-encode: SNR against the PNS stream, lowest (dB)", min(pooled["reencode_snr"]))
    report.info("re-encode: SNR against the PNS stream, median (dB)", float(np.median(pooled["reencode_snr"])))
    report.info("re-encode: octave band energy change, largest (dB)", max(pooled["octave"]))
    report.info("re-encode: octave band energy change from 500 Hz up, largest (dB)", max(pooled["octave_from_500"]))
    report.finish()


if __name__ == "__main__":
    main()
