"""aacdata.audio._resample: quality of the filter, position addressability, streaming, errors.

Signals are synthetic (tones, noise, DC). ``low`` is ``min(orig_rate, new_rate)``.
"""

from __future__ import annotations

import itertools
import math
import tracemalloc

import numpy as np
import pytest

import aacdata
from aacdata.audio._resample import Resampler, input_span, resample, resample_span

AAC_RATES = [8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000, 64000, 88200, 96000, 7350]
ALL_PAIRS = [(a, b) for a, b in itertools.permutations(AAC_RATES, 2)]
# Pairs for the (slower) quality tests: common conversions, extreme ratios, near-unity ratios.
QUALITY_PAIRS = [
    (44100, 16000),
    (48000, 16000),
    (48000, 44100),
    (44100, 48000),
    (16000, 48000),
    (96000, 8000),
    (8000, 96000),
    (22050, 16000),
    (7350, 8000),
    (88200, 96000),
    (96000, 7350),
    (11025, 44100),
]


def tone(freq: float, rate: int, n: int, phase: float = 0.3) -> np.ndarray:
    return np.sin(2 * np.pi * freq * np.arange(n) / rate + phase)


def interior(y: np.ndarray, rate: int) -> np.ndarray:
    """Leave out 50 ms at both ends (the filter's reach into the zeros around the signal)."""
    m = rate // 20
    return y[..., m:-m]


def noise(rate: int, seconds: float, channels: int = 2, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (0.5 * rng.standard_normal((channels, int(rate * seconds)))).astype(np.float32)


def padded_span(x: np.ndarray, a: int, b: int) -> np.ndarray:
    """``x[:, a:b]`` with zeros where ``[a, b)`` lies outside the signal."""
    out = np.zeros((x.shape[0], b - a), dtype=x.dtype)
    lo, hi = max(a, 0), min(b, x.shape[1])
    if lo < hi:
        out[:, lo - a : hi - a] = x[:, lo:hi]
    return out


# ------------------------------------------------------------------------- quality


@pytest.mark.parametrize(("orig_rate", "new_rate"), QUALITY_PAIRS)
@pytest.mark.parametrize("fraction", [0.01, 0.25, 0.45])
def test_passband_tone_snr(orig_rate: int, new_rate: int, fraction: float) -> None:
    # Invariant: a tone below 0.45 * low comes out as the same tone at the new rate, SNR >= 60 dB.
    low = min(orig_rate, new_rate)
    freq = fraction * low
    x = tone(freq, orig_rate, orig_rate // 2)[None].astype(np.float32)
    y = resample(x, orig_rate, new_rate)[0].astype(np.float64)
    ref = tone(freq, new_rate, y.shape[0])
    err = interior(y - ref, new_rate)
    snr = 10 * np.log10(np.sum(interior(ref, new_rate) ** 2) / np.sum(err**2))
    assert snr >= 60.0, f"{orig_rate}->{new_rate}, tone at {freq:.0f} Hz: SNR {snr:.1f} dB"


@pytest.mark.parametrize(
    ("orig_rate", "new_rate"),
    [(44100, 16000), (48000, 16000), (96000, 8000), (22050, 16000), (11025, 8000), (96000, 44100), (96000, 7350)],
)
@pytest.mark.parametrize("where", [0.0, 0.5, 0.95])
def test_stopband_tone_is_removed(orig_rate: int, new_rate: int, where: float) -> None:
    # Invariant: downsampling leaves <= -60 dB of a tone above 0.55 * low (it would alias).
    # The tone lies between 0.55 * low and the input's Nyquist frequency.
    freq = 0.55 * new_rate + where * (orig_rate / 2 - 0.55 * new_rate)
    x = tone(freq, orig_rate, orig_rate // 2)[None].astype(np.float32)
    y = interior(resample(x, orig_rate, new_rate)[0].astype(np.float64), new_rate)
    level = 20 * np.log10(np.sqrt(np.mean(y**2)) / np.sqrt(0.5))
    assert level <= -60.0, f"{orig_rate}->{new_rate}, tone at {freq:.0f} Hz: {level:.1f} dB left"


@pytest.mark.parametrize(("orig_rate", "new_rate"), ALL_PAIRS[::7] + QUALITY_PAIRS)
def test_dc_gain_is_one(orig_rate: int, new_rate: int) -> None:
    y = resample(np.ones((1, orig_rate // 5), dtype=np.float32), orig_rate, new_rate)
    assert np.abs(interior(y, new_rate) - 1.0).max() <= 1e-3


@pytest.mark.parametrize(("orig_rate", "new_rate"), [(44100, 16000), (16000, 48000), (48000, 44100), (8000, 11025)])
def test_shift_by_one_period_shifts_output(orig_rate: int, new_rate: int) -> None:
    # Invariant: delaying the input by M samples delays the output by L samples (same taps).
    g = math.gcd(orig_rate, new_rate)
    up, down = new_rate // g, orig_rate // g
    x = noise(orig_rate, 0.2, channels=1)
    shifted = np.concatenate([np.zeros((1, down), dtype=np.float32), x], axis=1)
    y, ys = resample(x, orig_rate, new_rate), resample(shifted, orig_rate, new_rate)
    np.testing.assert_allclose(ys[:, up : up + y.shape[1]], y, rtol=0, atol=1e-6)


# ---------------------------------------------------------------- shapes and types


@pytest.mark.parametrize(("orig_rate", "new_rate"), [(44100, 16000), (16000, 44100), (7350, 96000), (96000, 7350)])
@pytest.mark.parametrize("num_samples", [0, 1, 2, 3, 440, 441, 442, 4999, 44100])
def test_output_length_and_dtype(orig_rate: int, new_rate: int, num_samples: int) -> None:
    x = np.random.default_rng(num_samples).standard_normal((3, num_samples)).astype(np.float32)
    y = resample(x, orig_rate, new_rate)
    assert y.shape == (3, math.ceil(num_samples * new_rate / orig_rate))
    assert y.dtype == np.float32
    assert y.flags.c_contiguous


def test_float64_and_non_contiguous_input() -> None:
    x = noise(48000, 0.1, channels=2)
    ref = resample(x, 48000, 16000)
    np.testing.assert_array_equal(resample(x.astype(np.float64), 48000, 16000), ref)
    wide = np.zeros((2, 2 * x.shape[1]), dtype=np.float32)
    wide[:, ::2] = x
    np.testing.assert_array_equal(resample(wide[:, ::2], 48000, 16000), ref)
    np.testing.assert_array_equal(resample(np.asfortranarray(x), 48000, 16000), ref)
    frozen = x.copy()
    frozen.flags.writeable = False
    np.testing.assert_array_equal(resample(frozen, 48000, 16000), ref)
    a, b = input_span(100, 900, 48000, 16000)
    np.testing.assert_array_equal(resample_span(padded_span(frozen, a, b), a, 100, 900, 48000, 16000), ref[:, 100:900])


def test_equal_rates_return_a_copy() -> None:
    x = noise(16000, 0.1)
    y = resample(x, 16000, 16000)
    np.testing.assert_array_equal(y, x)
    assert not np.shares_memory(x, y)
    assert resample(x.astype(np.float64), 16000, 16000).dtype == np.float32


def test_exported_from_package() -> None:
    assert aacdata.resample is resample
    assert "resample" in aacdata.__all__


# ---------------------------------------------------------------------- errors


@pytest.mark.parametrize("rate", [0, -16000, 1.5, 16000.0, True, "16000", None])
def test_invalid_rates_are_named(rate: object) -> None:
    x = np.zeros((1, 10), dtype=np.float32)
    with pytest.raises(ValueError, match=r"orig_rate .*" + repr(rate).replace(".", r"\.")):
        resample(x, rate, 16000)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="new_rate"):
        resample(x, 16000, rate)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="orig_rate"):
        Resampler(rate, 16000, 1)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="new_rate"):
        input_span(0, 10, 16000, rate)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("x", "match"),
    [
        (np.zeros(10, dtype=np.float32), r"shape \(10,\)"),
        (np.zeros((1, 2, 10), dtype=np.float32), r"shape \(1, 2, 10\)"),
        (np.zeros((1, 10), dtype=np.int16), "dtype int16"),
        (np.zeros((1, 10), dtype=np.complex64), "dtype complex64"),
        ([[0.0, 1.0]], "got list"),
    ],
)
def test_invalid_signals_are_named(x: object, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        resample(x, 44100, 16000)  # type: ignore[arg-type]


def test_invalid_spans() -> None:
    with pytest.raises(ValueError, match=r"\[5, 4\)"):
        input_span(5, 4, 44100, 16000)
    with pytest.raises(ValueError, match=r"\[-1, 4\)"):
        input_span(-1, 4, 44100, 16000)
    a, b = input_span(100, 200, 44100, 16000)
    x = np.zeros((1, b - a), dtype=np.float32)
    with pytest.raises(ValueError, match=rf"covers input samples \[{a + 1}, {b + 1}\)"):
        resample_span(x, a + 1, 100, 200, 44100, 16000)
    with pytest.raises(ValueError, match="need"):
        resample_span(x[:, :-1], a, 100, 200, 44100, 16000)
    assert resample_span(x, a, 100, 100, 44100, 16000).shape == (1, 0)


def test_resampler_misuse() -> None:
    r = Resampler(44100, 16000, 2)
    with pytest.raises(ValueError, match="3 channels"):
        r.push(np.zeros((3, 10), dtype=np.float32))
    with pytest.raises(ValueError, match="num_channels"):
        Resampler(44100, 16000, 0)
    r.flush()
    with pytest.raises(ValueError, match="after flush"):
        r.push(np.zeros((2, 10), dtype=np.float32))
    with pytest.raises(ValueError, match="twice"):
        r.flush()


# --------------------------------------------------------- position addressability


def check_spans(x: np.ndarray, orig_rate: int, new_rate: int, spans: list[tuple[int, int]]) -> None:
    # Invariant: resample_span(x[a:b] zero-padded, a, n0, n1) == resample(x)[n0:n1], bit for bit.
    whole = resample(x, orig_rate, new_rate)
    for n0, n1 in spans:
        a, b = input_span(n0, n1, orig_rate, new_rate)
        part = resample_span(padded_span(x, a, b), a, n0, n1, orig_rate, new_rate)
        assert part.shape == (x.shape[0], n1 - n0)
        diff = float(np.abs(part - whole[:, n0:n1]).max()) if n1 > n0 else 0.0
        assert diff <= 1e-6, f"{orig_rate}->{new_rate} [{n0}, {n1}): max abs difference {diff}"
        np.testing.assert_array_equal(part, whole[:, n0:n1])


def spans_for(num_out: int, rng: np.random.Generator, num_random: int) -> list[tuple[int, int]]:
    spans = [(0, 1), (0, 7), (num_out - 1, num_out), (num_out - 9, num_out), (0, num_out), (1, 2), (1, num_out - 1)]
    for _ in range(num_random):
        n0 = int(rng.integers(0, num_out - 1))
        spans.append((n0, int(rng.integers(n0 + 1, min(num_out, n0 + 5000) + 1))))
    return spans


@pytest.mark.parametrize(("orig_rate", "new_rate"), ALL_PAIRS)
def test_span_equals_slice_of_whole(orig_rate: int, new_rate: int) -> None:
    rng = np.random.default_rng(orig_rate * 7 + new_rate)
    x = noise(orig_rate, 0.15, seed=orig_rate + new_rate)
    num_out = resample(x, orig_rate, new_rate).shape[1]
    check_spans(x, orig_rate, new_rate, spans_for(num_out, rng, 3))


@pytest.mark.slow
@pytest.mark.parametrize(("orig_rate", "new_rate"), ALL_PAIRS)
def test_span_equals_slice_of_whole_many_offsets(orig_rate: int, new_rate: int) -> None:
    rng = np.random.default_rng(orig_rate * 11 + new_rate)
    x = noise(orig_rate, 1.3, seed=orig_rate * new_rate)
    num_out = resample(x, orig_rate, new_rate).shape[1]
    check_spans(x, orig_rate, new_rate, spans_for(num_out, rng, 40))


@pytest.mark.parametrize(("orig_rate", "new_rate"), [(44100, 16000), (16000, 48000), (96000, 7350), (7350, 96000)])
def test_input_span_is_what_outputs_depend_on(orig_rate: int, new_rate: int) -> None:
    x = noise(orig_rate, 0.5, channels=1)
    whole = resample(x, orig_rate, new_rate)
    n0, n1 = 1234, 2345  # phases of n0 and n1 - 1 are not 0 for these pairs
    a, b = input_span(n0, n1, orig_rate, new_rate)
    assert a <= n0 * orig_rate // new_rate and b >= -(-n1 * orig_rate // new_rate)
    # About 2 x 23.4 samples of the lower rate of filter reach (see the module's design).
    assert b - a <= (n1 - n0) * orig_rate / new_rate + 2 * (24 * max(1.0, orig_rate / new_rate) + 1)
    outside = x.copy()
    outside[:, :a] = 7.0
    outside[:, b:] = -7.0
    np.testing.assert_array_equal(resample(outside, orig_rate, new_rate)[:, n0:n1], whole[:, n0:n1])
    for k in (a, b - 1):  # both ends of the span do matter
        poked = x.copy()
        poked[:, k] += 1.0
        assert not np.array_equal(resample(poked, orig_rate, new_rate)[:, n0:n1], whole[:, n0:n1])


def test_equal_rates_span() -> None:
    x = noise(16000, 0.1)
    assert input_span(10, 20, 16000, 16000) == (10, 20)
    np.testing.assert_array_equal(resample_span(x[:, 5:30], 5, 10, 20, 16000, 16000), x[:, 10:20])


# ------------------------------------------------------------------------ streaming


def stream(x: np.ndarray, orig_rate: int, new_rate: int, rng: np.random.Generator) -> np.ndarray:
    r = Resampler(orig_rate, new_rate, x.shape[0])
    parts, i = [], 0
    while i < x.shape[1]:
        kind = rng.integers(0, 4)
        size = [0, 1, int(rng.integers(2, 64)), int(rng.integers(64, 6000))][kind]
        out = r.push(x[:, i : i + size])
        assert out.dtype == np.float32 and out.shape[0] == x.shape[0]
        parts.append(out)
        i += size
    parts.append(r.flush())
    return np.concatenate(parts, axis=1)


STREAM_PAIRS = [(44100, 16000), (48000, 44100), (16000, 48000), (96000, 8000), (7350, 96000), (8000, 7350)]


@pytest.mark.parametrize(("orig_rate", "new_rate"), [*STREAM_PAIRS, (16000, 16000)])
def test_stream_equals_whole(orig_rate: int, new_rate: int) -> None:
    # Invariant: the concatenated outputs of push() and flush() equal resample() of the whole input.
    rng = np.random.default_rng(orig_rate + 3 * new_rate)
    x = noise(orig_rate, 0.5, seed=new_rate)
    y = stream(x, orig_rate, new_rate, rng)
    whole = resample(x, orig_rate, new_rate)
    assert y.shape == whole.shape
    assert float(np.abs(y - whole).max()) <= 1e-6
    np.testing.assert_array_equal(y, whole)


@pytest.mark.slow
@pytest.mark.parametrize(("orig_rate", "new_rate"), ALL_PAIRS)
def test_stream_equals_whole_all_pairs(orig_rate: int, new_rate: int) -> None:
    rng = np.random.default_rng(orig_rate * 5 + new_rate)
    x = noise(orig_rate, 0.7, seed=orig_rate)
    np.testing.assert_array_equal(stream(x, orig_rate, new_rate, rng), resample(x, orig_rate, new_rate))


@pytest.mark.parametrize("num_samples", [0, 1, 5])
def test_stream_of_tiny_inputs(num_samples: int) -> None:
    x = noise(44100, 0.01, channels=1)[:, :num_samples]
    r = Resampler(44100, 16000, 1)
    y = np.concatenate([r.push(x), r.flush()], axis=1)
    np.testing.assert_array_equal(y, resample(x, 44100, 16000))


def test_stream_memory_is_bounded() -> None:
    # Invariant: the peak memory of streaming does not grow with the length of the input.
    block = noise(48000, 0.1, channels=2)

    def peak(num_blocks: int) -> int:
        r = Resampler(48000, 44100, 2)
        r.push(block)  # tap tables, first allocations
        tracemalloc.start()
        try:
            for _ in range(num_blocks):
                r.push(block)
            r.flush()
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    short, long = peak(10), peak(100)
    assert long <= 1.5 * short + 100_000, (short, long)


@pytest.mark.parametrize(("orig_rate", "new_rate"), [(8000, 48000), (16000, 44100), (22050, 96000), (44100, 48000)])
@pytest.mark.parametrize("fraction", [0.1, 0.3, 0.45])
def test_upsampling_leaves_no_images(orig_rate: int, new_rate: int, fraction: float) -> None:
    # Invariant: upsampling an in-band tone puts <= -60 dB of energy above 0.55 * low (its images).
    low = min(orig_rate, new_rate)
    x = tone(fraction * low, orig_rate, orig_rate // 2)[None].astype(np.float32)
    y = interior(resample(x, orig_rate, new_rate)[0].astype(np.float64), new_rate)
    spectrum = np.abs(np.fft.rfft(y * np.blackman(y.size))) ** 2
    freqs = np.fft.rfftfreq(y.size, 1 / new_rate)
    images = max(spectrum[freqs > 0.55 * low].sum() / spectrum.sum(), 1e-30)
    assert 10 * np.log10(images) <= -60.0, f"{orig_rate}->{new_rate}: images at {10 * np.log10(images):.1f} dB"
