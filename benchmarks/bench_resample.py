"""Resampling: speed and quality of ``aacdata.resample`` against PyAV's ``AudioResampler``.

(a) Speed, in seconds per channel-hour: a 60 s mono noise signal resampled whole with
    ``aacdata.resample``, streamed through ``aacdata.audio._resample.Resampler`` in blocks of
    4096 samples, and resampled by PyAV's ``av.AudioResampler`` (libswresample, its
    default settings; one frame in, then flushed) — the baseline, measured in the same
    run, in interleaved rounds. Median and p90 over repetitions, scaled by 60.
(b) Quality, on 10 s tones: SNR of a tone at 0.4 x min(rates) against the analytic tone
    at the new rate, and what is left of a tone at 0.6 x min(rates) when downsampling
    (alias level, dB relative to the tone). PyAV's output is compared after a
    least-squares fit of amplitude and phase (its delay handling differs), ours both
    ways; the ends (5 %) are left out.

    .venv/bin/python benchmarks/bench_resample.py            # full run
    .venv/bin/python benchmarks/bench_resample.py --quick    # smoke test, ~10 s
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's aacdata, installed or not

import av
import numpy as np

from aacdata import resample
from aacdata.audio._resample import Resampler

PAIRS = [(44_100, 16_000), (48_000, 44_100), (16_000, 48_000), (96_000, 8_000)]
QUALITY_PAIRS = [*PAIRS, (48_000, 16_000), (44_100, 48_000), (22_050, 44_100), (96_000, 44_100)]
BLOCK = 4096


def pyav_resample(x: np.ndarray, orig_rate: int, new_rate: int) -> np.ndarray:
    """Mono float32 ``(1, T)`` through libswresample with its default settings."""
    resampler = av.AudioResampler(format="fltp", layout="mono", rate=new_rate)
    frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(x, dtype=np.float32), format="fltp", layout="mono")
    frame.sample_rate = orig_rate
    frame.pts = 0
    out = [f.to_ndarray() for f in resampler.resample(frame)]
    out += [f.to_ndarray() for f in resampler.resample(None)]
    return np.concatenate(out, axis=1) if out else np.zeros((1, 0), dtype=np.float32)


def stream_resample(x: np.ndarray, orig_rate: int, new_rate: int) -> np.ndarray:
    r = Resampler(orig_rate, new_rate, x.shape[0])
    parts = [r.push(x[:, i : i + BLOCK]) for i in range(0, x.shape[1], BLOCK)]
    parts.append(r.flush())
    return np.concatenate(parts, axis=1)


def _call(fn: Callable[[np.ndarray, int, int], np.ndarray], x: np.ndarray, a: int, b: int) -> Callable[[], object]:
    return lambda: fn(x, a, b)


def time_interleaved(methods: dict[str, Callable[[], object]], reps: int) -> dict[str, np.ndarray]:
    """Seconds per call, ``(reps,)`` per method; round ``r`` starts with a different method
    so that slow drifts of a shared machine spread over all methods alike."""
    names = list(methods)
    out = {name: np.empty(reps) for name in names}
    for r in range(reps):
        k = r % len(names)
        for name in names[k:] + names[:k]:
            t0 = time.perf_counter()
            methods[name]()
            out[name][r] = time.perf_counter() - t0
    return out


def speed(seconds: float, reps: int) -> None:
    rng = np.random.default_rng(0)
    scale = 3600.0 / seconds  # to seconds per channel-hour (mono input)
    print(f"\n(a) speed: seconds per channel-hour ({seconds:g} s mono noise, {reps} repetitions, scaled)")
    print(f"  {'rate pair':<14} {'method':<32} {'median':>8} {'p90':>8} {'/ pyav':>8}")
    for orig_rate, new_rate in PAIRS:
        x = (0.1 * rng.standard_normal((1, int(seconds * orig_rate)))).astype(np.float32)
        methods = {
            "aacdata.resample": _call(resample, x, orig_rate, new_rate),
            f"Resampler ({BLOCK}-sample blocks)": _call(stream_resample, x, orig_rate, new_rate),
            "pyav AudioResampler": _call(pyav_resample, x, orig_rate, new_rate),
        }
        for call in methods.values():  # warm up: tap tables, codec setup
            call()
        load0 = os.getloadavg()[0]
        times = time_interleaved(methods, reps)
        base = float(np.median(times["pyav AudioResampler"]))
        pair = f"{orig_rate}->{new_rate}"
        for name, t in times.items():
            med, p90 = float(np.median(t)), float(np.percentile(t, 90))
            print(f"  {pair:<14} {name:<32} {med * scale:>8.2f} {p90 * scale:>8.2f} {med / base:>8.2f}")
        print(f"  (load average {load0:.1f} -> {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)")


def _tone(freq: float, rate: int, n: int) -> np.ndarray:
    return np.sin(2 * np.pi * freq * np.arange(n) / rate + 0.3)


def _snr_analytic(y: np.ndarray, ref: np.ndarray) -> float:
    m = len(ref) // 20
    e = y[m:-m] - ref[m:-m]
    return float(10 * np.log10(np.sum(ref[m:-m] ** 2) / np.sum(e**2)))


def _snr_fit(y: np.ndarray, freq: float, rate: int) -> float:
    """SNR after the best amplitude and phase of a tone at ``freq`` (noise + distortion only)."""
    m = len(y) // 20
    t = np.arange(len(y))[m:-m] / rate
    basis = np.stack([np.sin(2 * np.pi * freq * t), np.cos(2 * np.pi * freq * t)], axis=1)
    coef, *_ = np.linalg.lstsq(basis, y[m:-m], rcond=None)
    fit = basis @ coef
    return float(10 * np.log10(np.sum(fit**2) / np.sum((y[m:-m] - fit) ** 2)))


def _level_db(y: np.ndarray) -> float:
    m = len(y) // 20
    rms = np.sqrt(np.mean(y[m:-m] ** 2))
    return float(20 * np.log10(max(rms, 1e-12) / np.sqrt(0.5)))


def _peers() -> dict[str, Callable[[np.ndarray, int, int], np.ndarray]]:
    """Other resamplers to compare quality with, where they are installed (not dependencies)."""
    peers: dict[str, Callable[[np.ndarray, int, int], np.ndarray]] = {"pyav": pyav_resample}
    try:
        import soxr

        peers["soxr HQ"] = lambda x, a, b: np.asarray(soxr.resample(x.T, a, b, quality="HQ")).T
    except ImportError:
        print("  (soxr not installed: pip install soxr to compare)")
    try:
        import torch
        import torchaudio.functional

        peers["torchaudio"] = lambda x, a, b: torchaudio.functional.resample(torch.from_numpy(x), a, b).numpy()
    except (ImportError, OSError, RuntimeError) as e:
        print(f"  (torchaudio not usable here: {type(e).__name__}; its rows are left out)")
    return peers


def quality(seconds: float) -> None:
    print(f"\n(b) quality ({seconds:g} s tones; low = min(rates)): SNR of a 0.4 low tone, alias of a 0.6 low tone")
    peers = _peers()
    print(f"  {'rate pair':<16} {'method':<12} {'SNR (fit)':>10} {'alias':>10}")
    for orig_rate, new_rate in QUALITY_PAIRS:
        low = min(orig_rate, new_rate)
        n = int(seconds * orig_rate)
        x = _tone(0.4 * low, orig_rate, n)[None].astype(np.float32)
        downsampling = orig_rate > new_rate and 0.6 * low < 0.5 * orig_rate
        xa = _tone(0.6 * low, orig_rate, n)[None].astype(np.float32)
        for name, fn in {"aacdata": resample, **peers}.items():
            y = np.asarray(fn(x, orig_rate, new_rate), dtype=np.float64)[0]
            alias = (
                f"{_level_db(np.asarray(fn(xa, orig_rate, new_rate), dtype=np.float64)[0]):.1f} dB"
                if downsampling
                else "n/a"
            )
            print(f"  {orig_rate}->{new_rate:<9} {name:<12} {_snr_fit(y, 0.4 * low, new_rate):>7.1f} dB {alias:>10}")


def _quality_ours_vs_pyav(seconds: float) -> None:
    print(f"\n(c) aacdata against the analytic tone ({seconds:g} s tones)")
    print(
        f"  {'rate pair':<16} {'ours SNR 0.4 low':>17} {'ours (fit)':>11} {'pyav (fit)':>11}"
        f" {'ours alias 0.6 low':>19} {'pyav alias':>11}"
    )
    for orig_rate, new_rate in QUALITY_PAIRS:
        low = min(orig_rate, new_rate)
        n = int(seconds * orig_rate)
        f = 0.4 * low
        x = _tone(f, orig_rate, n)[None].astype(np.float32)
        ours = resample(x, orig_rate, new_rate)[0].astype(np.float64)
        theirs = pyav_resample(x, orig_rate, new_rate)[0].astype(np.float64)
        snr = _snr_analytic(ours, _tone(f, new_rate, ours.shape[0]))
        alias_ours = alias_pyav = "n/a"
        if orig_rate > new_rate and 0.6 * low < 0.5 * orig_rate:
            xa = _tone(0.6 * low, orig_rate, n)[None].astype(np.float32)
            alias_ours = f"{_level_db(resample(xa, orig_rate, new_rate)[0].astype(np.float64)):.1f} dB"
            alias_pyav = f"{_level_db(pyav_resample(xa, orig_rate, new_rate)[0].astype(np.float64)):.1f} dB"
        pair = f"{orig_rate}->{new_rate}"
        print(
            f"  {pair:<16} {snr:>14.1f} dB {_snr_fit(ours, f, new_rate):>8.1f} dB"
            f" {_snr_fit(theirs, f, new_rate):>8.1f} dB {alias_ours:>19} {alias_pyav:>11}"
        )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smoke test: 10 s signals, 3 repetitions")
    parser.add_argument("--seconds", type=float, default=60.0, help="signal length for the speed table")
    parser.add_argument("--reps", type=int, default=7, help="timed repetitions per method and pair")
    args = parser.parse_args(argv)
    seconds, reps = (10.0, 3) if args.quick else (args.seconds, args.reps)
    print(f"aacdata resampling benchmark (numpy {np.__version__}, PyAV {av.__version__})")
    speed(seconds, reps)
    quality(2.0 if args.quick else 10.0)
    _quality_ours_vs_pyav(2.0 if args.quick else 10.0)


if __name__ == "__main__":
    main()
