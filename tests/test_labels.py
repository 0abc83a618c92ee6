"""Labelled windows: targets from events against a brute-force overlap computation, event
windows that contain their event, negatives that contain none, class balance, and the
dataset end to end."""

from __future__ import annotations

import pickle
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.utils.data import DataLoader

import aacdata
from aacdata import AACSegmentDataset, Annotations
from aacdata.audio._audiofile import write_audio
from aacdata.data._labels import CorpusView, WindowLabels, collate
from aacdata.plans import Corpus, EventWindows
from aacdata.testing import signal

RATE = 1000


def _view(lengths: list[int]) -> CorpusView:
    n = len(lengths)
    return CorpusView(
        [f"r{i}" for i in range(n)],
        {
            "sample_rate": np.full(n, RATE, np.int64),
            "num_samples": np.asarray(lengths, np.int64),
            "num_channels": np.ones(n, np.int64),
        },
        "corpus",
    )


def _events(records: list[tuple[int, int, int, str]], lengths: list[int]) -> Annotations:
    table = Annotations.from_records(
        {"id": f"r{r}", "start": s / RATE, "end": e / RATE, "label": lab} for r, s, e, lab in records
    )
    return table.resolve(_view(lengths))


event_lists = st.lists(
    st.tuples(st.integers(0, 2), st.integers(0, 4000), st.integers(0, 800), st.sampled_from(["a", "b", "c"])).map(
        lambda t: (t[0], t[1], min(t[1] + t[2], 5000), t[3])
    ),
    max_size=25,
)


@settings(max_examples=150, deadline=None)
@given(
    records=event_lists,
    windows=st.lists(st.tuples(st.integers(0, 2), st.integers(-300, 5000), st.integers(1, 1500)), max_size=10),
    min_seconds=st.sampled_from([None, 0.0, 0.05, 0.3]),
    fraction=st.sampled_from([None, 0.25, 0.5, 1.0]),
    small=st.sampled_from([0, 1024]),
    loop=st.sampled_from([0, 2, 32]),
    kept=st.sampled_from([3, 1 << 17]),
)
def test_clip_and_frame_targets_equal_a_brute_force_overlap(
    records: list[tuple[int, int, int, str]],
    windows: list[tuple[int, int, int]],
    min_seconds: float | None,
    fraction: float | None,
    small: int,
    loop: int,
    kept: int,
) -> None:
    # Invariant: the targets follow the documented rule exactly, event by event, on both
    # paths (recordings of few events labelled from lists, unless a window has more than
    # _LOOP_MAX candidates; others through events_in), for each combination of thresholds
    # given (none, seconds only, fraction only, both).
    lengths = [5000, 5000, 5000]
    events = _events(records, lengths)
    hop = 0.1
    with mock.patch.multiple(aacdata.data._labels, _SMALL=small, _LOOP_MAX=loop, _SMALL_EVENTS=kept):
        _check_against_brute_force(records, windows, min_seconds, fraction, events, hop)


def _labels_window(a: int, b: int, s: int, e: int, min_seconds: float | None, fraction: float | None) -> bool:
    """The documented rule, written out: does event ``[s, e)`` label window ``[a, b)``?"""
    if s == e:  # an instant labels the windows it lies in
        return a <= s < b
    o = max(0, min(b, e) - max(a, s))
    if o == 0:
        return False
    if min_seconds is None and fraction is None:
        return True
    by_seconds = min_seconds is not None and o >= min_seconds * RATE
    by_fraction = fraction is not None and o >= fraction * (e - s)
    return by_seconds or by_fraction


def _check_against_brute_force(
    records: list[tuple[int, int, int, str]],
    windows: list[tuple[int, int, int]],
    min_seconds: float | None,
    fraction: float | None,
    events: Annotations,
    hop: float,
) -> None:
    labels = WindowLabels(
        events,
        classes=["a", "b", "c"],
        sample_rate=RATE,
        min_overlap_seconds=min_seconds,
        min_overlap_fraction=fraction,
        label_hop_seconds=hop,
    )
    for rec, a, n in windows:
        b = a + n
        clip = np.zeros(3, np.float32)
        frames = np.zeros((3, labels.num_frames(n)), np.float32)
        for r, s, e, lab in records:
            if r != rec:
                continue
            k = "abc".index(lab)
            if _labels_window(a, b, s, e, min_seconds, fraction):
                clip[k] = 1
            for j in range(frames.shape[1]):
                centre = a + (j + 0.5) * hop * RATE
                if s <= centre < e:
                    frames[k, j] = 1
        np.testing.assert_array_equal(labels.clip(rec, a, b), clip)
        np.testing.assert_array_equal(labels.frames(rec, a, b), frames)


def _bound(plan: EventWindows, records: list[tuple[int, int, int, str]], lengths: list[int], seed: int = 0):
    events = _events(records, lengths)
    corpus = Corpus(np.asarray(lengths, np.int64), RATE, np.arange(len(lengths)), [f"r{i}" for i in range(3)])
    corpus = Corpus(corpus.lengths, RATE, corpus.eligible, corpus.ids, lambda _: events)
    return plan.bind(corpus, seed=seed), events


RECORDS = [(0, 1000, 1200, "a"), (0, 3000, 3050, "b"), (1, 200, 2600, "a"), (2, 4000, 4100, "c")] + [
    (1, 3000 + 10 * i, 3005 + 10 * i, "a") for i in range(20)
]


def test_positive_windows_contain_their_event_and_negatives_none() -> None:
    plan, events = _bound(EventWindows(window_samples=500, negatives=1.0, min_gap_seconds=0.1), RECORDS, [5000] * 3)
    assert len(plan) == 2 * len(RECORDS)
    starts, stops, recs = np.asarray(events.start), np.asarray(events.stop), np.asarray(events.recording)
    for i in range(len(plan)):
        w = plan.window(i, 0)
        a, b = w.start, w.start + w.num_samples
        assert a >= 0 and b <= 5000
        same = recs == w.recording
        if i < len(RECORDS):  # positives: some event fully inside, or the window inside a long event
            inside = same & (((starts >= a) & (stops <= b)) | ((starts <= a) & (stops >= b)))
            assert inside.any(), (i, w)
        else:  # negatives: nothing within 100 samples
            near = same & (starts < b + 100) & (stops > a - 100)
            assert not near.any(), (i, w)


def test_event_windows_are_pure_and_pickle() -> None:
    plan, _ = _bound(EventWindows(window_samples=300, negatives=0.5), RECORDS, [5000] * 3, seed=3)
    copy = pickle.loads(pickle.dumps(plan))
    assert [plan.window(i, 2) for i in range(len(plan))] == [copy.window(i, 2) for i in reversed(range(len(plan)))][
        ::-1
    ]
    assert [plan.window(i, 2) for i in range(len(plan))] != [plan.window(i, 3) for i in range(len(plan))]


def test_class_balance_draws_rare_classes_as_often() -> None:
    plan, events = _bound(EventWindows(window_samples=300, balance="class", num_windows=6000), RECORDS, [5000] * 3)
    counts = {"a": 0, "b": 0, "c": 0}
    for i in range(len(plan)):
        w = plan.window(i, 0)
        rows = events.events_in(w.recording, w.start, w.start + w.num_samples)
        labels = {events.classes[int(k)] for k in events.label[rows]}
        for c in labels:
            counts[c] += 1
    # Each class is drawn 1/3 of the time (±5 standard deviations); windows may hold others too.
    for c in ("b", "c"):
        assert abs(counts[c] / 6000 - 1 / 3) < 5 * np.sqrt(2 / 9 / 6000) + 0.02, counts
    unbalanced, _ = _bound(EventWindows(window_samples=300, num_windows=6000), RECORDS, [5000] * 3)
    drawn_c = sum(
        1
        for i in range(len(unbalanced))
        if unbalanced.window(i, 0).recording == 2 and unbalanced.window(i, 0).start > 3000
    )
    assert drawn_c < 6000 / 10  # 1 of 24 events: rarely drawn without balance


def test_no_background_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="no negative window exists"):
        _bound(EventWindows(window_samples=4900, negatives=1.0, min_gap_seconds=0.5), RECORDS, [5000] * 3)


@pytest.fixture(scope="module")
def field_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    src = tmp_path_factory.mktemp("field")
    for i in range(3):
        write_audio(src / f"site{i}.wav", signal("noise", 16_000 * 6, sample_rate=16_000, seed=i), sample_rate=16_000)
    store = tmp_path_factory.mktemp("field-store") / "f.zarr"
    assert aacdata.import_audio(src, store, workers=0, progress=False).ok
    return store


def test_dataset_items_carry_targets_and_events(field_store: Path) -> None:
    ann = Annotations.from_records(
        [
            {"id": "site0.wav", "start": 1.0, "end": 1.5, "label": "frog"},
            {"id": "site1.wav", "start": 2.0, "end": 2.2, "label": "bird", "low_hz": 2000, "high_hz": 6000},
            {"id": "site2.wav", "start": 0.5, "end": 4.0, "label": "insect"},
        ]
    )
    ds = AACSegmentDataset(
        field_store, plan=EventWindows(ann, 1.0, negatives=1.0), labels="clip", classes=["bird", "frog", "insect"]
    )
    assert ds.classes == ("bird", "frog", "insect")
    audio, target = ds[0]
    assert audio.shape == (1, 16_000) and target.dtype == torch.float32 and target.shape == (3,)
    positives = [ds[i][1] for i in range(3)]
    assert all(t.sum() >= 1 for t in positives)
    assert all(ds[i][1].sum() == 0 for i in range(3, 6))  # negatives
    batch = next(iter(DataLoader(ds, batch_size=6, num_workers=2)))
    assert batch[0].shape == (6, 1, 16_000) and batch[1].shape == (6, 3)
    assert torch.equal(batch[1], torch.stack([ds[i][1] for i in range(6)]))
    frames = AACSegmentDataset(field_store, plan=EventWindows(ann, 1.0), labels="frames", label_hop_seconds=0.1)
    assert frames[0][1].shape == (3, 10)
    info = AACSegmentDataset(field_store, plan=EventWindows(ann, 1.0), labels="clip", return_info=True)
    items = [info[i] for i in range(3)]
    assert all(len(item["events"]["label"]) >= 1 for item in items)
    collated = collate(items)
    assert collated["target"].shape == (3, 3) and len(collated["events"]) == 3
    with pytest.raises(aacdata.AnnotationError, match="classes= does not list"):
        AACSegmentDataset(field_store, plan=EventWindows(ann, 1.0), labels="clip", classes=["bird"])


def test_stored_sets_label_sliding_windows(field_store: Path, tmp_path: Path) -> None:
    import shutil

    store_path = tmp_path / "s.zarr"
    shutil.copytree(field_store, store_path)
    ann = Annotations.from_records([{"id": "site1.wav", "start": 2.0, "end": 2.2, "label": "bird"}])
    with aacdata.AACStore.open(store_path, "a") as store:
        store.write_annotations(ann, "calls")
    ds = AACSegmentDataset(store_path, window_seconds=1.0, hop_seconds=1.0, annotations="calls", labels="clip")
    hits = [(ds.window(i).recording, ds.window(i).start) for i in range(len(ds)) if ds[i][1].sum() > 0]
    assert hits == [(1, 32_000)]  # the window [2 s, 3 s) of site1 alone


@pytest.mark.parametrize(
    ("min_seconds", "fraction"), [(None, None), (0.05, None), (None, 0.5), (0.05, 0.5), (0.0, 1.0), (None, 1.0)]
)
def test_targets_event_by_event_equal_the_vectorised_ones(
    monkeypatch: pytest.MonkeyPatch, min_seconds: float | None, fraction: float | None
) -> None:
    # Invariant: the scalar path (few events in a window), the numpy path (many) and the
    # lists of small recordings give the same clip and frame targets, instants and events
    # past the window included, and the clip targets follow the rule.
    import aacdata.data._labels as labels_module

    rng = np.random.default_rng(5)
    starts = rng.integers(0, 4900, 400)
    records = [
        (int(r), int(s), int(min(s + d, 5000)), str(lab))
        for r, s, d, lab in zip(
            rng.integers(0, 3, 400),
            starts,
            rng.choice([0, 1, 30, 400], 400),
            rng.choice(["a", "b", "c"], 400),
            strict=True,
        )
    ]
    labels = WindowLabels(
        _events(records, [5000, 5000, 5000]),
        classes=["c", "a", "b"],
        sample_rate=RATE,
        min_overlap_seconds=min_seconds,
        min_overlap_fraction=fraction,
        label_hop_seconds=0.03,
    )
    windows = [
        (int(r), int(a), int(a + n))
        for r, a, n in zip(
            rng.integers(0, 3, 300), rng.integers(-500, 5000, 300), rng.integers(1, 2000, 300), strict=True
        )
    ]
    got = {}
    for few, small in ((-1, 0), (10**9, 0), (labels_module._FEW, labels_module._SMALL)):
        monkeypatch.setattr(labels_module, "_FEW", few)
        monkeypatch.setattr(labels_module, "_SMALL", small)
        got[few, small] = [(labels.clip(*w), labels.frames(*w)) for w in windows]
    assert max(len(labels.events.events_in(*w)) for w in windows) > 8  # both paths ran by default
    expected = []
    for rec, a, b in windows:
        clip = np.zeros(3, np.float32)
        for r, s, e, lab in records:
            if r == rec and _labels_window(a, b, s, e, min_seconds, fraction):
                clip["cab".index(lab)] = 1
        expected.append(clip)
    reference = got[-1, 0]
    for variant in got.values():
        for (c1, f1), (c2, f2), clip in zip(reference, variant, expected, strict=True):
            np.testing.assert_array_equal(c2, clip)
            np.testing.assert_array_equal(c1, c2)
            np.testing.assert_array_equal(f1, f2)


def test_a_fraction_alone_applies(field_store: Path) -> None:
    # The README's example: min_overlap_fraction=0.5 alone labels a window that holds at
    # least half of an event, never one that holds a tenth of it.
    rate = 16_000
    ann = Annotations.from_records([{"id": "site0.wav", "start": 1.0, "end": 2.0, "label": "frog"}])
    windows = [
        ("site0.wav", int(1.9 * rate), rate),  # holds [1.9, 2.0): a tenth of the event
        ("site0.wav", int(1.5 * rate), rate),  # holds [1.5, 2.0): half
        ("site0.wav", int(0.5 * rate), rate),  # holds [1.0, 1.5): half
        ("site0.wav", int(1.0 * rate), rate),  # holds all of it
        ("site0.wav", int(0.1 * rate), int(0.85 * rate)),  # ends 0.05 s before it
    ]

    def targets(**thresholds: float) -> list[float]:
        ds = AACSegmentDataset(field_store, windows=windows, annotations=ann, labels="clip", **thresholds)
        return [float(ds[i][1][0]) for i in range(len(windows))]

    assert targets(min_overlap_fraction=0.5) == [0, 1, 1, 1, 0]
    assert targets() == [1, 1, 1, 1, 0]  # no threshold: any overlap
    assert targets(min_overlap_seconds=0.2) == [0, 1, 1, 1, 0]
    assert targets(min_overlap_seconds=0.6) == [0, 0, 0, 1, 0]
    assert targets(min_overlap_seconds=0.6, min_overlap_fraction=0.5) == [0, 1, 1, 1, 0]  # either suffices
    assert targets(min_overlap_seconds=0.05, min_overlap_fraction=0.5) == [1, 1, 1, 1, 0]


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        (
            {"min_overlap_fraction": 0.0},
            ValueError,
            r"min_overlap_fraction must be None or a finite number in \(0, 1\]; got 0.0 \(leave it at None",
        ),
        ({"min_overlap_fraction": 1.5}, ValueError, r"min_overlap_fraction .* got 1.5"),
        ({"min_overlap_fraction": float("nan")}, ValueError, r"min_overlap_fraction .* got nan"),
        (
            {"min_overlap_seconds": -0.1},
            ValueError,
            r"min_overlap_seconds must be None or a finite number >= 0; got -0.1",
        ),
        ({"min_overlap_seconds": float("inf")}, ValueError, r"min_overlap_seconds .* got inf"),
        ({"min_overlap_seconds": "0.5"}, TypeError, r"min_overlap_seconds .* got '0.5' \(str\)"),
        ({"min_overlap_fraction": True}, TypeError, r"min_overlap_fraction .* got True \(bool\)"),
    ],
)
def test_bad_thresholds_are_named(field_store: Path, kwargs: dict[str, object], error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        WindowLabels(_events(RECORDS, [5000] * 3), classes=None, sample_rate=RATE, label_hop_seconds=0.1, **kwargs)  # type: ignore[arg-type]
    with pytest.raises(error, match=match):  # refused by the dataset too, annotations or not
        AACSegmentDataset(field_store, window_seconds=1.0, **kwargs)  # type: ignore[arg-type]


def test_thresholds_accept_numpy_numbers_and_ints() -> None:
    labels = WindowLabels(
        _events(RECORDS, [5000] * 3),
        classes=None,
        sample_rate=RATE,
        min_overlap_seconds=np.float64(0.05),
        min_overlap_fraction=1,
        label_hop_seconds=0.1,
    )
    # Event a [1000, 1200) of recording 0: 50 samples of it are 0.05 s (seconds suffice).
    assert labels.clip(0, 1150, 2000).tolist() == [1, 0, 0]
    assert labels.clip(0, 1151, 2000).tolist() == [0, 0, 0]
