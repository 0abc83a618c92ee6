"""Exact reads: every window equals the same slice of a full decode of the stored stream."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from conftest import SAMPLES_PER_FRAME, STORE_IDS, STORE_SOURCES, full_decode, make_file, peak_lag

import aacdata
from aacdata import AACStore, RecordingNotFoundError, WindowError

Reference = Callable[[str], np.ndarray]


def _boundary(rec: aacdata.Recording, k: int) -> int:
    """Source position of decoded frame boundary ``k * 1024`` (decoded d = s + encoder_delay)."""
    return k * SAMPLES_PER_FRAME - rec.encoder_delay


# name -> (start, num_samples) for a recording; clamped to the recording below.
WINDOWS: dict[str, Callable[[aacdata.Recording], tuple[int, int]]] = {
    "start_0": lambda r: (0, 1500),
    "start_1": lambda r: (1, 1500),
    "start_1023": lambda r: (1023, 1500),
    "start_1024": lambda r: (1024, 1500),
    "start_1025": lambda r: (1025, 1500),
    "first_sample": lambda r: (0, 1),
    "priming_boundary": lambda r: (_boundary(r, 1), 1024),  # d = 1024: exactly the second frame
    "boundary_3_minus_1": lambda r: (_boundary(r, 3) - 1, 2),
    "boundary_3": lambda r: (_boundary(r, 3), 1024),
    "boundary_3_plus_1": lambda r: (_boundary(r, 3) + 1, 1024),
    "ends_at_boundary_5": lambda r: (_boundary(r, 5) - 700, 700),
    "ends_at_boundary_5_plus_1": lambda r: (_boundary(r, 5) - 700, 701),
    "spans_many_frames": lambda r: (_boundary(r, 2) + 17, 5 * SAMPLES_PER_FRAME + 3),
    "last_frame": lambda r: (_boundary(r, r.num_frames - 1), r.num_samples),
    "last_two_frames": lambda r: (_boundary(r, r.num_frames - 2) - 5, r.num_samples),
    "ends_at_num_samples": lambda r: (r.num_samples - 777, 777),
    "last_sample": lambda r: (r.num_samples - 1, 1),
    "middle_one_sample": lambda r: (r.num_samples // 3, 1),
    "empty_middle": lambda r: (r.num_samples // 2, 0),
    "empty_at_end": lambda r: (r.num_samples, 0),
    "whole": lambda r: (0, r.num_samples),
}


def _clamp(rec: aacdata.Recording, start: int, n: int) -> tuple[int, int]:
    start = min(max(start, 0), rec.num_samples)
    return start, max(0, min(n, rec.num_samples - start))


def _check(store: AACStore, ref: np.ndarray, rec: aacdata.Recording, start: int, n: int) -> None:
    out = store.read(rec, start, n)
    assert out.dtype == np.float32
    assert out.shape == (rec.num_channels, n)
    assert np.array_equal(out, ref[:, start : start + n]), f"{rec.id} window [{start}, {start + n}) differs"


# ---------------------------------------------------------------------- exactness


@pytest.mark.parametrize("window", list(WINDOWS))
@pytest.mark.parametrize("rid", STORE_IDS)
def test_window_equals_full_decode(small_store: AACStore, reference: Reference, rid: str, window: str) -> None:
    rec = small_store.recording(rid)
    start, n = _clamp(rec, *WINDOWS[window](rec))
    _check(small_store, reference(rid), rec, start, n)


@pytest.mark.parametrize("rid", STORE_IDS)
def test_random_windows_equal_full_decode(small_store: AACStore, reference: Reference, rid: str) -> None:
    rec = small_store.recording(rid)
    rng = np.random.default_rng(abs(hash(rid)) % 2**32)
    for _ in range(25):
        n = int(rng.integers(0, min(rec.num_samples, 6000) + 1))
        start = int(rng.integers(0, rec.num_samples - n + 1))
        _check(small_store, reference(rid), rec, start, n)


def test_every_frame_boundary_of_one_recording(small_store: AACStore, reference: Reference) -> None:
    rec = small_store.recording("stereo_44k.flac")
    ref = reference(rec.id)
    for k in range(1, rec.num_frames):
        b = _boundary(rec, k)
        for start, n in ((b - 1, 2), (b, 1), (b - 3, 3)):
            start, n = _clamp(rec, start, n)
            _check(small_store, ref, rec, start, n)


def test_reference_lengths(small_store: AACStore, reference: Reference) -> None:
    for rid, (_kind, n, rate, channels, _seed) in STORE_SOURCES.items():
        rec = small_store.recording(rid)
        assert reference(rid).shape == (rec.num_channels, rec.num_samples)
        assert rec.sample_rate == rate
        assert rec.num_channels == channels
        assert rec.num_frames * SAMPLES_PER_FRAME >= rec.encoder_delay + rec.num_samples
        if rid.endswith(".aac"):
            # A raw ADTS source carries no delay: the priming samples are part of its timeline.
            assert rec.encoder_delay == 0
            assert rec.num_samples == rec.num_frames * SAMPLES_PER_FRAME
        else:
            assert rec.encoder_delay == 1024
            assert rec.num_samples == n


def test_short_recording_is_one_partial_frame_after_priming(small_store: AACStore, reference: Reference) -> None:
    rec = small_store.recording("short.wav")
    assert rec.num_samples == 700
    assert rec.num_frames == 2  # priming frame + one frame holding 700 samples
    ref = reference(rec.id)
    for start, n in ((0, 700), (0, 1), (699, 1), (100, 300), (350, 0)):
        _check(small_store, ref, rec, start, n)
    # the signal is there, not silence
    assert float(np.abs(ref).max()) > 0.1


# ---------------------------------------------------------------------- history independence


def test_same_result_whatever_was_read_before(small_store: AACStore, reference: Reference) -> None:
    a = ("stereo_44k.flac", 5000, 3000)
    b = ("surround_48k.wav", 9000, 4000)
    c = ("raw.aac", 0, 2048)
    first = small_store.read(*a)
    small_store.read(*b)
    small_store.read(*c)
    again = small_store.read(*a)
    assert np.array_equal(first, again)
    assert np.array_equal(first, reference(a[0])[:, 5000:8000])


def test_random_order_of_many_reads(small_store: AACStore, reference: Reference) -> None:
    rng = np.random.default_rng(1234)
    requests = []
    for rid in STORE_IDS:
        rec = small_store.recording(rid)
        for _ in range(6):
            n = int(rng.integers(1, min(rec.num_samples, 3000) + 1))
            requests.append((rid, int(rng.integers(0, rec.num_samples - n + 1)), n))
    first = {r: small_store.read(*r) for r in requests}
    for j in rng.permutation(len(requests)).tolist() * 2:
        rid, start, n = requests[j]
        out = small_store.read(rid, start, n)
        assert np.array_equal(out, first[requests[j]])
        assert np.array_equal(out, reference(rid)[:, start : start + n])


def test_fresh_store_object_reads_the_same(small_store: AACStore, store_path: Path) -> None:
    with AACStore.open(store_path) as other:
        for rid in STORE_IDS:
            rec = other.recording(rid)
            start = rec.num_samples // 4
            n = min(2000, rec.num_samples - start)
            assert np.array_equal(other.read(rid, start, n), small_store.read(rid, start, n))


# ---------------------------------------------------------------------- padding and errors


@pytest.mark.parametrize("rid", ["mono_44k.wav", "surround_48k.wav", "raw.aac", "short.wav"])
@pytest.mark.parametrize(("before", "after"), [(300, 0), (0, 300), (2000, 2500), (0, 0)])
def test_pad_zero_fills_outside(small_store: AACStore, reference: Reference, rid: str, before: int, after: int) -> None:
    rec = small_store.recording(rid)
    ref = reference(rid)
    start, n = -before, before + rec.num_samples + after
    out = small_store.read(rec, start, n, pad=True)
    assert out.dtype == np.float32
    assert out.shape == (rec.num_channels, n)
    assert not out[:, :before].any()
    assert not out[:, before + rec.num_samples :].any()
    assert np.array_equal(out[:, before : before + rec.num_samples], ref)


def test_pad_partial_windows(small_store: AACStore, reference: Reference) -> None:
    rec = small_store.recording("stereo_16k.wav")
    ref = reference(rec.id)
    out = small_store.read(rec, -10, 1000, pad=True)
    assert not out[:, :10].any()
    assert np.array_equal(out[:, 10:], ref[:, :990])
    out = small_store.read(rec, rec.num_samples - 5, 50, pad=True)
    assert np.array_equal(out[:, :5], ref[:, -5:])
    assert not out[:, 5:].any()
    out = small_store.read(rec, rec.num_samples + 100, 64, pad=True)
    assert out.shape == (2, 64)
    assert not out.any()
    out = small_store.read(rec, -5000, 64, pad=True)
    assert not out.any()
    # in-range windows with pad=True are untouched
    assert np.array_equal(small_store.read(rec, 100, 500, pad=True), ref[:, 100:600])


OUT_OF_RANGE: dict[str, Callable[[int], tuple[int, int, str]]] = {
    "starts_at_minus_1": lambda length: (-1, 10, "starts before 0"),
    "far_before": lambda length: (-5000, 100, "starts before 0"),
    "just_past_end": lambda length: (length, 1, "ends past it"),
    "overlaps_end": lambda length: (length - 10, 20, "ends past it"),
    "empty_past_end": lambda length: (length + 1000, 0, "ends past it"),
}


@pytest.mark.parametrize("case", list(OUT_OF_RANGE))
def test_out_of_range_raises_window_error(small_store: AACStore, case: str) -> None:
    rec = small_store.recording("nested/mono_16k.mp3")
    start, n, fragment = OUT_OF_RANGE[case](rec.num_samples)
    with pytest.raises(WindowError) as info:
        small_store.read(rec, start, n)
    message = str(info.value)
    assert isinstance(info.value, ValueError)
    assert "'nested/mono_16k.mp3'" in message
    assert f"[{start}, {start + n})" in message
    assert f"{rec.num_samples} samples" in message
    assert fragment in message
    assert "pad=True" in message


def test_negative_num_samples_is_a_value_error(small_store: AACStore) -> None:
    with pytest.raises(ValueError, match="num_samples must be >= 0; got -1"):
        small_store.read(0, 0, -1)


def test_read_by_index_id_and_recording(small_store: AACStore) -> None:
    rec = small_store.recording("pass.m4a")
    by_index = small_store.read(rec.index, 1234, 999)
    by_negative_index = small_store.read(rec.index - len(small_store), 1234, 999)
    by_id = small_store.read("pass.m4a", 1234, 999)
    by_rec = small_store.read(rec, 1234, 999)
    by_numpy_int = small_store.read(np.int64(rec.index), np.int64(1234), np.int32(999))
    for other in (by_negative_index, by_id, by_rec, by_numpy_int):
        assert np.array_equal(by_index, other)


@pytest.mark.parametrize("ref", ["nope.wav", "MONO_44K.WAV", 8, -9, 10**9])
def test_unknown_recording(small_store: AACStore, ref: int | str) -> None:
    with pytest.raises(RecordingNotFoundError) as info:
        small_store.read(ref, 0, 1)
    assert isinstance(info.value, KeyError)
    assert str(ref) in str(info.value)
    with pytest.raises(KeyError):
        small_store.recording(ref)


def test_bad_recording_type(small_store: AACStore) -> None:
    with pytest.raises(TypeError, match="an index, an id or a Recording; got float"):
        small_store.read(1.5, 0, 1)  # type: ignore[arg-type]


def test_read_many_equals_reads(small_store: AACStore) -> None:
    big = small_store.index_of("stereo_44k.flac")
    requests = [("mono_44k.wav", 0, 100), (big, 5000, 2048), ("raw.aac", 7, 1), ("short.wav", 0, 700), (0, 10, 0)]
    many = small_store.read_many(requests)
    assert len(many) == len(requests)
    for (rec, start, n), out in zip(requests, many, strict=True):
        assert np.array_equal(out, small_store.read(rec, start, n))
    padded = small_store.read_many([("short.wav", -10, 20)], pad=True)
    assert np.array_equal(padded[0], small_store.read("short.wav", -10, 20, pad=True))
    with pytest.raises(WindowError):
        small_store.read_many([("short.wav", -10, 20)])


# ---------------------------------------------------------------------- alignment with the source


@pytest.fixture(scope="module")
def float_sources(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, np.ndarray]]:
    root = tmp_path_factory.mktemp("float_sources")
    audio = {}
    for i, (kind, channels) in enumerate((("tone", 1), ("chirp", 2), ("speech", 1))):
        n = 44_100 + 333 * i
        _, audio[f"{kind}.wav"] = make_file(
            root / f"{kind}.wav", kind, n, sample_rate=44_100, num_channels=channels, seed=i, float_wav=True
        )
    store = tmp_path_factory.mktemp("float_store") / "s.zarr"
    report = aacdata.import_audio(root, store, workers=0, progress=False, bitrate=160_000)
    assert report.failed == ()
    return store, audio


@pytest.mark.parametrize("name", ["tone.wav", "chirp.wav", "speech.wav"])
def test_read_back_is_aligned_with_source(float_sources: tuple[Path, dict[str, np.ndarray]], name: str) -> None:
    path, audio = float_sources
    src = audio[name]
    with AACStore.open(path) as store:
        rec = store.recording(name)
        assert rec.num_samples == src.shape[1]
        out = store.read(rec, 0, rec.num_samples)
    assert out.shape == src.shape
    for c in range(src.shape[0]):
        assert peak_lag(src[c].astype(np.float64), out[c].astype(np.float64)) == 0
    # a 160 kbit/s encode is close to its source (the chirp's top octave, up to 19.8 kHz, is cut)
    err = np.sqrt(np.mean((out - src) ** 2)) / np.sqrt(np.mean(src**2))
    assert err < (0.2 if name == "chirp.wav" else 0.05)


def test_resampled_import_is_aligned(tmp_path: Path) -> None:
    src_path, src = make_file(tmp_path / "src" / "speech.wav", "speech", 44_100, sample_rate=44_100, float_wav=True)
    target = _fft_resample(src[0].astype(np.float64), 16_000)  # the band-limited source at 16 kHz
    report = aacdata.import_audio(src_path, tmp_path / "s.zarr", sample_rate=16_000, workers=0, progress=False)
    assert report.failed == ()
    with AACStore.open(tmp_path / "s.zarr") as store:
        rec = store.recording("speech.wav")
        assert rec.sample_rate == 16_000
        assert abs(rec.num_samples - 16_000) <= 4
        out = store.read(rec, 0, rec.num_samples)
        assert np.array_equal(out, full_decode(store, rec))
    n = min(out.shape[1], target.size)
    assert peak_lag(target[:n], out[0, :n].astype(np.float64)) == 0


def _fft_resample(x: np.ndarray, num_samples: int) -> np.ndarray:
    spectrum = np.fft.rfft(x)
    keep = min(num_samples // 2 + 1, spectrum.size)
    out = np.zeros(num_samples // 2 + 1, dtype=complex)
    out[:keep] = spectrum[:keep]
    return np.fft.irfft(out, num_samples) * num_samples / x.size


# ---------------------------------------------------------------------- every AAC sample rate

RATES = (8000, 11025, 16000, 22050, 32000, 44100, 48000, 88200, 96000)


@pytest.fixture(scope="module")
def rates_store(tmp_path_factory: pytest.TempPathFactory) -> AACStore:
    root = tmp_path_factory.mktemp("rates")
    for i, rate in enumerate(RATES):
        make_file(root / f"tone_{rate}.wav", "tone", rate // 2 + 123 * i, sample_rate=rate, seed=i)
    path = tmp_path_factory.mktemp("rates_store") / "s.zarr"
    report = aacdata.import_audio(root, path, workers=0, progress=False)
    assert report.failed == ()
    return AACStore.open(path)


@pytest.mark.parametrize("rate", RATES)
def test_every_aac_sample_rate_reads_exactly(rates_store: AACStore, rate: int) -> None:
    rec = rates_store.recording(f"tone_{rate}.wav")
    assert rec.sample_rate == rate
    assert rec.num_samples == rate // 2 + 123 * RATES.index(rate)
    ref = full_decode(rates_store, rec)
    for start, n in (
        (0, 1000),
        (1023, 3),
        (_boundary(rec, 2), 1024),
        (_boundary(rec, 3) - 1, 2),
        (rec.num_samples - 1500, 1500),
        (0, rec.num_samples),
    ):
        _check(rates_store, ref, rec, start, n)
    # the tone survived: the RMS of a 0.5-amplitude sine is ~0.354
    assert 0.3 < float(np.sqrt(np.mean(ref[:, 500:-500] ** 2))) < 0.4
