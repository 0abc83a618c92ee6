"""Annotation sets in maintenance (issue 17, item 4): repair, verify, merge and copy.

Invariant of every test here: an event is compared by its recording's id, never by row
(rows change when repair drops a recording or merge appends parts), and no tool drops a
set or an event without saying so and exiting 1.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zarr

import aacdata
from aacdata import AACStore, Annotations, CorruptDataError
from aacdata.audio._audiofile import write_audio
from aacdata.cli import main
from aacdata.store._annotation_store import combine, remap, survey, write_set
from aacdata.store._copy import copy_store
from aacdata.store._merge import merge_stores
from aacdata.store._repair import rebuild_store
from aacdata.testing import signal

IDS = tuple(f"f{i}.wav" for i in range(5))
CALLS = [
    {"id": "f0.wav", "start": 0.10, "end": 0.30, "label": "bird", "note": "faint"},
    {"id": "f1.wav", "start": 0.05, "end": 0.20, "label": "frog", "low_hz": 300, "high_hz": 2500},
    {"id": "f1.wav", "start": 0.40, "end": 0.60, "label": "bird"},
    {"id": "f2.wav", "start": 0.00, "end": 0.90, "label": "frog", "channel": 0},
    {"id": "f3.wav", "start": 0.25, "end": 0.50, "label": "bird"},
    {"id": "f4.wav", "start": 0.70, "end": 0.80, "label": "insect"},
]
SONGS = [
    {"id": "f1.wav", "start": 0.00, "end": 0.50, "label": "song"},
    {"id": "f3.wav", "start": 0.10, "end": 0.20, "label": "song"},
]

Event = tuple[Any, ...]


@pytest.fixture(scope="module")
def sources(tmp_path_factory: pytest.TempPathFactory) -> Path:
    src = tmp_path_factory.mktemp("annmaint") / "src"
    for i, rid in enumerate(IDS):
        write_audio(src / rid, signal("speech", 16_000 + 700 * i, sample_rate=16_000, seed=i), sample_rate=16_000)
    return src


@pytest.fixture(scope="module")
def annotated(sources: Path) -> Path:
    """Five clips and two sets, ``calls`` (all clips) and ``songs`` (f1, f3)."""
    path = sources.parent / "annotated.zarr"
    assert aacdata.import_audio(sources, path, workers=0, progress=False).ok
    with AACStore.open(path, "a") as st:
        st.write_annotations(Annotations.from_records(CALLS), name="calls")
        st.write_annotations(Annotations.from_records(SONGS), name="songs")
    return path


def _copy(path: Path, tmp_path: Path) -> Path:
    out = tmp_path / "damaged.zarr"
    shutil.copytree(path, out)
    return out


def _events(path: Path, name: str) -> list[Event]:
    """A set's events by recording id (rows are the store's own affair)."""
    with AACStore.open(path) as st:
        ann = st.annotations(name)
        ids = st.ids
    return sorted(_rows(ann, ids))


def _rows(ann: Annotations, ids: tuple[str, ...]) -> list[Event]:
    out = []
    for k in range(len(ann)):
        low, high = float(ann.low_hz[k]), float(ann.high_hz[k])
        out.append(
            (
                ids[int(ann.recording[k])],
                int(ann.start[k]),
                int(ann.stop[k]),
                ann.classes[int(ann.label[k])],
                None if math.isnan(low) else low,
                None if math.isnan(high) else high,
                int(ann.channel[k]),
                str(ann.extra[k]),
            )
        )
    return out


def _flip_recording(path: Path, rid: str) -> None:
    """Damage one byte in the middle of a recording's stored bytes."""
    with AACStore.open(path) as st:
        rec = st.recording(rid)
    f = path / "adts" / "c" / "0"  # the small stores here hold one /adts chunk
    data = bytearray(f.read_bytes())
    assert rec.byte_start + rec.num_bytes <= len(data)
    data[rec.byte_start + rec.num_bytes // 2] ^= 0x40
    f.write_bytes(bytes(data))


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    return code, captured.out


# ---------------------------------------------------------------------- repair


def test_repair_keeps_every_set_of_an_intact_store(
    annotated: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Regression: repair wrote no set at all and said "dropped 0" (exit 0).
    new = tmp_path / "new.zarr"
    code, out = _run(capsys, "repair", str(annotated), "-o", str(new), "--no-progress")
    assert code == 0, out
    assert "kept 2 annotation sets: calls (6 events), songs (2 events)" in out and "dropped:" not in out
    for name in ("calls", "songs"):
        assert _events(new, name) == _events(annotated, name)
        with AACStore.open(new) as a, AACStore.open(annotated) as b:
            info_a, info_b = a.annotation_info(name), b.annotation_info(name)
            assert info_a["classes"] == info_b["classes"] and info_a["sources"] == info_b["sources"]
    assert _run(capsys, "verify", str(new), "--no-progress")[0] == 0


def test_repair_moves_events_to_new_rows_and_lists_those_it_drops(
    annotated: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = _copy(annotated, tmp_path)
    _flip_recording(bad, "f1.wav")
    report = rebuild_store(bad, tmp_path / "new.zarr")
    assert [rid for rid, _ in report.dropped] == ["f1.wav"]
    assert not report.ok
    assert dict(report.annotation_sets) == {"calls": 4, "songs": 1}
    dropped = dict(report.annotations_dropped)
    assert "2 event(s) of 1 dropped recording(s) left out ('f1.wav')" in dropped["calls"]
    assert "1 event(s) of 1 dropped recording(s) left out ('f1.wav')" in dropped["songs"]
    for name in ("calls", "songs"):
        want = [e for e in _events(annotated, name) if e[0] != "f1.wav"]
        assert _events(tmp_path / "new.zarr", name) == want
    with AACStore.open(tmp_path / "new.zarr") as st:  # f2 moved from row 2 to row 1
        calls = st.annotations("calls")
        assert st.ids[1] == "f2.wav" and 1 in calls.recording.tolist()
    code, out = _run(capsys, "repair", str(bad), "-o", str(tmp_path / "other.zarr"), "--no-progress")
    assert code == 1
    assert "dropped: annotation set calls: 2 event(s) of 1 dropped recording(s)" in out


def test_repair_keeps_a_set_whose_recordings_are_all_dropped(annotated: Path, tmp_path: Path) -> None:
    bad = _copy(annotated, tmp_path)
    (bad / "recordings" / "num_samples" / "c" / "0").unlink()  # no recording can be proven
    report = rebuild_store(bad, tmp_path / "new.zarr")
    assert report.kept == () and dict(report.annotation_sets) == {"calls": 0, "songs": 0}
    assert "6 event(s) of 5 dropped recording(s) left out" in dict(report.annotations_dropped)["calls"]
    with AACStore.open(tmp_path / "new.zarr") as st:
        assert st.annotation_info("calls")["classes"] == ["bird", "frog", "insect"]


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        ("chunk", "does not match its CRC-32"),
        ("group_json", "annotations/songs/zarr.json is missing: the set's commit"),
        ("commit", "lacks a CRC-32 for every array"),
    ],
)
def test_repair_drops_a_damaged_set_and_keeps_the_others(
    annotated: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], damage: str, reason: str
) -> None:
    bad = _copy(annotated, tmp_path)
    _damage_songs(bad, damage)
    code, out = _run(capsys, "repair", str(bad), "-o", str(tmp_path / "new.zarr"), "--no-progress")
    assert code == 1, out
    assert "kept 5 recordings" in out and "dropped: annotation set songs: the set is dropped:" in out
    assert reason in out
    with AACStore.open(tmp_path / "new.zarr") as st:
        assert st.annotation_sets == ("calls",)
    assert _events(tmp_path / "new.zarr", "calls") == _events(annotated, "calls")


def _damage_songs(path: Path, damage: str) -> None:
    node = path / "annotations" / "songs"
    if damage == "chunk":
        (node / "v1" / "start" / "c" / "0").unlink()  # the fill value: CRC-32 mismatch
    elif damage == "group_json":
        (node / "zarr.json").unlink()
    elif damage == "garbage_json":
        (node / "zarr.json").write_text("{not json")
    elif damage == "commit":
        meta = json.loads((node / "zarr.json").read_text())
        del meta["attributes"]["aacdata_annotations"]["crc32"]["stop"]
        (node / "zarr.json").write_text(json.dumps(meta))
    else:
        raise AssertionError(damage)


def test_repair_rebuilds_sets_that_a_lost_annotations_group_hides(
    annotated: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = _copy(annotated, tmp_path)
    (bad / "annotations" / "zarr.json").unlink()
    code, out = _run(capsys, "verify", str(bad), "--no-progress")
    assert code == 1 and "annotations/zarr.json is missing" in out
    code, out = _run(capsys, "repair", str(bad), "-o", str(tmp_path / "new.zarr"), "--no-progress")
    assert code == 0, out
    assert "table: annotations:" in out and "kept 2 annotation sets" in out
    assert _events(tmp_path / "new.zarr", "songs") == _events(annotated, "songs")
    assert _run(capsys, "verify", str(tmp_path / "new.zarr"), "--no-progress")[0] == 0


def _write_out_of_range(path: Path) -> None:
    """A set ``bad`` whose checksums hold but whose second event ends past its recording."""
    with AACStore.open(path, "a") as st:
        n = st.recording("f2.wav").num_samples
        ann = Annotations(
            recording=np.array([0, 2]),
            start=np.array([0, n - 10]),
            stop=np.array([100, n + 5]),
            label=np.array([0, 0]),
            classes=("x",),
            low_hz=np.full(2, np.nan),
            high_hz=np.full(2, np.nan),
            channel=np.full(2, -1),
            extra=np.array(["{}", "{}"]),
        )
        write_set(zarr.open_group(st.zarr_store, mode="r+"), "bad", ann, num_recordings=len(st), where=st.path)


def test_verify_and_repair_check_event_ranges(
    annotated: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = _copy(annotated, tmp_path)
    _write_out_of_range(bad)
    code, out = _run(capsys, "verify", str(bad), "--no-progress")
    assert code == 1
    assert "bad: annotation set bad:" in out and "1 event(s) break the rules; event 1:" in out
    assert "ends past recording 'f2.wav'" in out and "2 of 3 annotation sets ok" in out
    report = rebuild_store(bad, tmp_path / "new.zarr")
    assert dict(report.annotation_sets)["bad"] == 1
    assert "left out:" in dict(report.annotations_dropped)["bad"] and not report.ok
    assert _run(capsys, "verify", str(tmp_path / "new.zarr"), "--no-progress")[0] == 0


# ---------------------------------------------------------------------- verify


@pytest.mark.parametrize(
    ("damage", "shown"),
    [
        ("chunk", "bad: annotation set songs:"),
        ("group_json", "bad: annotation set songs:"),
        ("garbage_json", "bad: annotation set songs:"),
        ("commit", "bad: annotation set songs:"),
    ],
)
def test_verify_fails_on_a_set_it_cannot_read(
    annotated: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], damage: str, shown: str
) -> None:
    # Regression: verify did not look at annotation sets (exit 0).
    bad = _copy(annotated, tmp_path)
    _damage_songs(bad, damage)
    with AACStore.open(bad) as st:
        report = st.verify()
    assert not report.ok and report.bad_sets == ("songs",) and report.problems == ()
    assert "songs" in report.annotation_sets and "calls" in report.annotation_sets
    code, out = _run(capsys, "verify", str(bad), "--no-progress")
    assert code == 1 and shown in out and "1 of 2 annotation sets ok" in out


def test_verify_of_a_clean_store_checks_its_sets(annotated: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with AACStore.open(annotated) as st:
        report = st.verify()
    assert report.ok and report.annotation_sets == ("calls", "songs")
    assert (
        repr(report)
        == "VerifyReport(num_recordings=5, num_bad=0, store_problems=0, annotation_sets=2, bad_sets=0, ok=True)"
    )
    code, out = _run(capsys, "verify", str(annotated), "--no-progress")
    assert code == 0 and "2 of 2 annotation sets ok" in out


def test_sets_are_listed_and_read_around_damaged_metadata(annotated: Path, tmp_path: Path) -> None:
    # Regression: a /annotations/zarr.json or set zarr.json that did not parse raised
    # json's JSONDecodeError from store.annotation_sets and store.annotations().
    bad = _copy(annotated, tmp_path)
    (bad / "annotations" / "zarr.json").write_text("{not json")
    with AACStore.open(bad) as st:
        assert st.annotation_sets == ("calls", "songs")
        assert len(st.annotations("songs")) == 2
    _damage_songs(bad, "garbage_json")
    with AACStore.open(bad) as st:
        assert st.annotation_sets == ("calls",)
        with pytest.raises(CorruptDataError, match=r"annotations/songs/zarr.json cannot be read"):
            st.annotations("songs")
    with AACStore.open(bad) as st:
        names, problems = survey(st.zarr_store, where=str(bad))
    assert names == ["calls"] and [n for n, _ in problems] == ["", "songs"]


# ---------------------------------------------------------------------- merge and copy


def _parts(sources: Path, root: Path) -> list[Path]:
    """Two shards, each with the events of its own recordings (so classes differ)."""
    parts = []
    for k in range(2):
        part = root / f"part{k}.zarr"
        assert aacdata.import_audio(sources, part, workers=0, progress=False, shard=(k, 2)).ok
        with AACStore.open(part, "a") as st:
            for name, records in (("calls", CALLS), ("songs", SONGS)):
                mine = [r for r in records if r["id"] in st.ids]
                if mine:
                    st.write_annotations(Annotations.from_records(mine), name=name)
        parts.append(part)
    return parts


def test_merge_carries_sets_by_id_and_runs_again_without_change(sources: Path, annotated: Path, tmp_path: Path) -> None:
    # Regression: merge left every set behind ("was not merged").
    parts = _parts(sources, tmp_path)
    merged = tmp_path / "merged.zarr"
    first = merge_stores(parts[:1], merged)  # one part first: its sets are then in the destination
    with AACStore.open(parts[0]) as st:
        assert dict(first.annotations) == {name: len(st.annotations(name)) for name in st.annotation_sets}
    report = merge_stores(parts, merged)  # combined with the destination's, part 0's events once
    assert dict(report.annotations) == {"calls": 6, "songs": 2} and report.annotation_sets == ()
    for name in ("calls", "songs"):
        assert _events(merged, name) == _events(annotated, name)
    with AACStore.open(merged) as st:
        assert st.annotation_info("calls")["classes"] == ["bird", "frog", "insect"]
        before = {name: st.annotation_info(name)["version"] for name in ("calls", "songs")}
    again = merge_stores(parts, merged)  # resumable: nothing left to add
    assert again.merged == () and dict(again.annotations) == {"calls": 6, "songs": 2}
    with AACStore.open(merged) as st:
        assert {name: st.annotation_info(name)["version"] for name in ("calls", "songs")} == before
        assert st.verify().ok


def test_merge_refuses_a_damaged_set_before_writing(sources: Path, tmp_path: Path) -> None:
    parts = _parts(sources, tmp_path)
    (parts[1] / "annotations" / "calls" / "v1" / "start" / "c" / "0").unlink()
    merged = tmp_path / "merged.zarr"
    with pytest.raises(CorruptDataError, match=r"part1.zarr/annotations/calls/v1/start does not match its CRC-32"):
        merge_stores(parts, merged)
    assert not merged.exists()  # refused before the destination was even created


def test_copy_carries_sets(annotated: Path, tmp_path: Path) -> None:
    out = tmp_path / "copy.zarr"
    copy_store(annotated, out)
    with AACStore.open(out) as st:
        assert st.annotation_sets == ("calls", "songs")
    for name in ("calls", "songs"):
        assert _events(out, name) == _events(annotated, name)


# ---------------------------------------------------------------------- combine and remap


def _table(rows: list[tuple[int, int, int, str]], classes: tuple[str, ...], *, nan: bool = True) -> Annotations:
    n = len(rows)
    return Annotations(
        recording=np.array([r[0] for r in rows], dtype=np.int64),
        start=np.array([r[1] for r in rows], dtype=np.int64),
        stop=np.array([r[2] for r in rows], dtype=np.int64),
        label=np.array([classes.index(r[3]) for r in rows], dtype=np.int32),
        classes=classes,
        low_hz=np.full(n, np.nan if nan else 10.0),
        high_hz=np.full(n, np.nan),
        channel=np.full(n, -1),
        extra=np.array(["{}"] * n),
    )


def test_combine_unites_classes_and_keeps_each_event_once() -> None:
    a = _table([(0, 0, 10, "b"), (0, 0, 10, "b"), (1, 5, 6, "c")], ("b", "c"))
    b = _table([(0, 0, 10, "b"), (2, 1, 2, "a")], ("a", "b"))
    out = combine([a, b])
    assert out.classes == ("a", "b", "c")
    got = [
        (int(r), int(s), int(e), out.classes[int(k)])
        for r, s, e, k in zip(out.recording, out.start, out.stop, out.label, strict=True)
    ]
    # Invariant: an event keeps its class by name; a duplicate within one table stays.
    assert got == [(0, 0, 10, "b"), (0, 0, 10, "b"), (1, 5, 6, "c"), (2, 1, 2, "a")]
    assert len(combine([out, a, b])) == len(out)  # idempotent, NaN frequencies included
    assert len(combine([_table([(0, 0, 1, "b")], ("b",), nan=False), _table([(0, 0, 1, "b")], ("b",))])) == 2
    assert len(combine([])) == 0


def test_remap_moves_rows_and_drops_unmapped() -> None:
    a = _table([(0, 0, 10, "b"), (1, 5, 6, "b"), (2, 0, 1, "b")], ("b",))
    out = remap(a, np.array([1, -1, 0]))
    assert out.recording.tolist() == [0, 1] and out.start.tolist() == [0, 0] and out.stop.tolist() == [1, 10]
