"""Window plans: which windows exist, apart from how they are read."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

import aacdata
from aacdata.plans import Corpus, ExplicitWindows, RandomWindows, SlidingWindows, Window

RATE = 1000


def _corpus(lengths: list[int], eligible: list[int] | None = None) -> Corpus:
    arr = np.asarray(lengths, dtype=np.int64)
    rows = np.arange(arr.size) if eligible is None else np.asarray(eligible)
    return Corpus(arr, RATE, rows.astype(np.int64), [f"r{i}" for i in range(arr.size)])


def test_random_windows_are_a_pure_function_of_seed_epoch_index() -> None:
    # Invariant: the same (seed, epoch, index) gives the same window, whatever was drawn before.
    plan = RandomWindows(0.5).bind(_corpus([5000, 800, 12000]), seed=7)
    again = pickle.loads(pickle.dumps(plan))
    forward = [plan.window(i, 3) for i in range(len(plan))]
    backward = [again.window(i, 3) for i in reversed(range(len(plan)))][::-1]
    assert forward == backward
    assert forward != [plan.window(i, 4) for i in range(len(plan))]
    assert len(plan) == (5000 + 800 + 12000) // 500


def test_random_windows_fit_inside_recordings_at_least_as_long() -> None:
    plan = RandomWindows(window_samples=900).bind(_corpus([5000, 800, 901]), seed=1)
    lengths = [5000, 800, 901]
    for i in range(len(plan)):
        w = plan.window(i, 0)
        assert w.num_samples == 900
        if lengths[w.recording] >= 900:
            assert 0 <= w.start <= lengths[w.recording] - 900
        else:
            assert w.start == 0  # shorter than the window: read from 0, zero-padded


def test_duration_weighting_follows_lengths() -> None:
    plan = RandomWindows(window_samples=10, num_windows=20_000).bind(_corpus([1000, 3000]), seed=0)
    share = np.mean([plan.window(i, 0).recording for i in range(len(plan))])
    assert abs(share - 0.75) < 0.02  # 3000 of 4000 samples
    uniform = RandomWindows(window_samples=10, num_windows=20_000, weighting="recording").bind(
        _corpus([1000, 3000]), seed=0
    )
    share = np.mean([uniform.window(i, 0).recording for i in range(len(uniform))])
    assert abs(share - 0.5) < 0.02


def test_short_skip_leaves_short_recordings_out() -> None:
    plan = RandomWindows(window_samples=900, short="skip").bind(_corpus([5000, 800, 901]), seed=1)
    assert {plan.window(i, 0).recording for i in range(len(plan))} <= {0, 2}
    with pytest.raises(ValueError, match="no recording is at least"):
        RandomWindows(window_samples=10_000, short="skip").bind(_corpus([5000]))


@pytest.mark.parametrize("last", ["pad", "drop"])
def test_sliding_windows_cover_each_recording_in_order(last: str) -> None:
    plan = SlidingWindows(window_samples=400, hop_seconds=0.3, last=last).bind(_corpus([1100, 300, 400]))  # type: ignore[arg-type]
    got = [plan.window(i, 0) for i in range(len(plan))]
    expected = [Window(0, 0, 400), Window(0, 300, 400), Window(0, 600, 400)]
    if last == "pad":
        expected += [Window(0, 900, 400), Window(1, 0, 400)]
    expected += [Window(2, 0, 400)]
    assert got == expected
    assert plan.window(1, 0) == plan.window(1, 99)  # no randomness


def test_explicit_windows_resolve_ids_and_respect_filters() -> None:
    plan = ExplicitWindows([("r1", 5, 10), ("r0", -3, 4)]).bind(_corpus([100, 100]))
    assert [plan.window(i, 0) for i in range(2)] == [Window(1, 5, 10), Window(0, -3, 4)]
    assert plan.window_samples is None
    with pytest.raises(aacdata.RecordingNotFoundError, match="nope"):
        ExplicitWindows([("nope", 0, 1)]).bind(_corpus([100]))
    with pytest.raises(ValueError, match="filters leave out"):
        ExplicitWindows([("r1", 0, 1)]).bind(_corpus([100, 100], eligible=[0]))


def test_unbound_plans_and_bad_parameters_say_what_to_do() -> None:
    with pytest.raises(RuntimeError, match="AACSegmentDataset\\(plan="):
        len(RandomWindows(1.0))
    with pytest.raises(ValueError, match="exactly one of"):
        RandomWindows().bind(_corpus([100]))
    with pytest.raises(ValueError, match="hop_seconds"):
        SlidingWindows(1.0)
    with pytest.raises(ValueError, match="weighting"):
        RandomWindows(1.0, weighting="time")  # type: ignore[arg-type]
    with pytest.raises(IndexError, match="out of range"):
        RandomWindows(window_samples=10).bind(_corpus([100])).window(10, 0)
    assert "RandomWindows(window_seconds=1.0" in repr(RandomWindows(1.0))
    assert "10 windows" in repr(RandomWindows(window_samples=10).bind(_corpus([100])))
