"""Reads at another rate equal the same slice of the whole resampled recording."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import aacdata
from aacdata import AACStore, WindowError
from aacdata.audio._audiofile import write_audio
from aacdata.codecs._adts import SAMPLE_RATES
from aacdata.testing import signal

RATES = sorted(SAMPLE_RATES)
PAIRS = [(a, b) for a, b in itertools.permutations(RATES, 2)]


@pytest.fixture(scope="module")
def rates_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One recording per AAC rate, 0.3 s plus a partial frame, stereo."""
    src = tmp_path_factory.mktemp("rates-src")
    for rate in RATES:
        audio = signal("chirp", int(0.3 * rate) + 333, sample_rate=rate, num_channels=2, seed=rate % 7)
        write_audio(src / f"r{rate}.wav", audio, sample_rate=rate, float_wav=True)
    store = tmp_path_factory.mktemp("rates-store") / "s.zarr"
    report = aacdata.import_audio(src, store, workers=0, progress=False)
    assert report.ok and len(report.imported) == len(RATES)
    return store


@pytest.fixture(scope="module")
def opened(rates_store: Path) -> AACStore:
    return AACStore.open(rates_store)


@pytest.mark.parametrize(("orig", "new"), PAIRS)
def test_windows_equal_the_whole_resampled_recording(opened: AACStore, orig: int, new: int) -> None:
    # Invariant: read(..., sample_rate=new) == resample(full decode)[:, start:start + n].
    rec = opened.recording(f"r{orig}.wav")
    whole = aacdata.resample(opened.read(rec, 0, rec.num_samples), orig, new)
    length = rec.num_samples_at(new)
    assert whole.shape == (2, length)
    frame = max(1, round(1024 * new / orig))  # a frame's length at the new rate
    for start, n in ((0, 1), (0, 300), (frame - 1, 2), (frame, frame), (length - 1, 1), (length - 257, 257)):
        got = opened.read(rec, start, n, sample_rate=new)
        assert np.max(np.abs(got - whole[:, start : start + n])) <= 1e-6, (start, n)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(pair=st.sampled_from(PAIRS), data=st.data())
def test_any_window_any_pair(opened: AACStore, pair: tuple[int, int], data: st.DataObject) -> None:
    orig, new = pair
    rec = opened.recording(f"r{orig}.wav")
    length = rec.num_samples_at(new)
    whole = aacdata.resample(opened.read(rec, 0, rec.num_samples), orig, new)
    start = data.draw(st.integers(-50, length + 50))
    n = data.draw(st.integers(0, 600))
    got = opened.read(rec, start, n, sample_rate=new, pad=True)
    expected = np.zeros((2, n), np.float32)
    lo, hi = max(start, 0), min(start + n, length)
    if hi > lo:
        expected[:, lo - start : hi - start] = whole[:, lo:hi]
    assert np.max(np.abs(got - expected), initial=0.0) <= 1e-6


def test_read_many_and_errors_at_another_rate(opened: AACStore) -> None:
    rec = opened.recording("r44100.wav")
    length = rec.num_samples_at(16_000)
    batch = opened.read_many([(rec, 0, 100), ("r8000.wav", 5, 50), (rec, 200, 0)], sample_rate=16_000)
    np.testing.assert_array_equal(batch[0], opened.read(rec, 0, 100, sample_rate=16_000))
    np.testing.assert_array_equal(batch[1], opened.read("r8000.wav", 5, 50, sample_rate=16_000))
    assert batch[2].shape == (2, 0)
    with pytest.raises(WindowError, match=f"at 16000 Hz has {length} samples"):
        opened.read(rec, length - 10, 20, sample_rate=16_000)
    for bad in (0, -16_000, 16_000.5, True):
        with pytest.raises(ValueError, match="sample_rate must be a positive integer"):
            opened.read(rec, 0, 10, sample_rate=bad)  # type: ignore[arg-type]
    # the recording's own rate is the plain read
    np.testing.assert_array_equal(opened.read(rec, 7, 99, sample_rate=44_100), opened.read(rec, 7, 99))
