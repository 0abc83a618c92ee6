"""Annotations: Raven / CSV / records parsing, resolving against a store, the window lookup,
and named sets in a store (round trip, replace, killed writes, damage)."""

from __future__ import annotations

import json
import os
import pickle
import random
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zarr
from conftest import env_with_package, make_file
from hypothesis import given, settings
from hypothesis import strategies as st

import aacdata
from aacdata import AACStore, AnnotationError, Annotations, CorruptDataError, StoreLockedError
from aacdata.annotations import MATCH_FILE, MATCH_ID, MATCH_STEM
from aacdata.store import _annotation_store as sets
from aacdata.store import _lock

RAVEN_HEADER = [
    "Selection",
    "View",
    "Channel",
    "Begin Time (s)",
    "End Time (s)",
    "Low Freq (Hz)",
    "High Freq (Hz)",
    "Annotation",
    "Notes",
]


def write_table(path: Path, header: Sequence[str], rows: Sequence[Sequence[Any]], sep: str = "\t") -> Path:
    """A table as Raven (tabs) or CSV (commas) writes it: header, then one line per row."""
    lines = [sep.join(header)] + [sep.join(str(v) for v in row) for row in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


class FakeStore:
    """What ``resolve`` reads of a store: ids, path and numeric columns."""

    def __init__(self, recordings: dict[str, tuple[int, int, int]]) -> None:
        self.ids = tuple(recordings)
        self.path = "fake.zarr"
        values = list(recordings.values())
        self._columns = {
            "num_samples": np.array([v[0] for v in values], dtype=np.int64),
            "sample_rate": np.array([v[1] for v in values], dtype=np.int64),
            "num_channels": np.array([v[2] for v in values], dtype=np.int64),
        }

    def column(self, name: str) -> np.ndarray:
        return self._columns[name]


FAKE = FakeStore(
    {
        "site1/owl.wav": (160_000, 16_000, 2),  # 10 s
        "site1/bat.flac": (441_000, 44_100, 1),  # 10 s
        "site2/frog.wav": (48_000, 48_000, 1),  # 1 s
    }
)


# ---------------------------------------------------------------------- Raven


def test_raven_multi_view_duplicates_kept_once(tmp_path: Path) -> None:
    rows = [
        [1, "Waveform 1", 1, 1.0, 2.5, 0, 8000, "owl", ""],
        [1, "Spectrogram 1", 1, 1.0, 2.5, 500, 3000, "owl", ""],
        [2, "Waveform 1", 2, 3.25, 3.75, 0, 8000, "owl", "faint"],
        [2, "Spectrogram 1", 2, 3.25, 3.75, 1000.5, 2000, "owl", "faint"],
        [3, "Spectrogram 1", 1, 0.5, 0.75, "", "", "wren", ""],
    ]
    ann = Annotations.from_raven(write_table(tmp_path / "owl.Table.1.selections.txt", RAVEN_HEADER, rows))
    assert not ann.resolved
    assert len(ann) == 3  # one row per selection
    assert ann.classes == ("owl", "wren")
    np.testing.assert_array_equal(ann.start, [1.0, 3.25, 0.5])
    np.testing.assert_array_equal(ann.stop, [2.5, 3.75, 0.75])
    # the spectrogram view's frequencies, NaN where empty
    np.testing.assert_array_equal(ann.low_hz, np.array([500, 1000.5, np.nan], dtype=np.float32))
    np.testing.assert_array_equal(ann.high_hz, np.array([3000, 2000, np.nan], dtype=np.float32))
    np.testing.assert_array_equal(ann.channel, [0, 1, 0])  # Raven counts channels from 1
    np.testing.assert_array_equal(ann.label, [0, 0, 1])
    assert [json.loads(x) for x in ann.extra] == [
        {"Notes": "", "Selection": "1"},
        {"Notes": "faint", "Selection": "2"},
        {"Notes": "", "Selection": "3"},
    ]
    # the recording comes from the table's path and name, matched by stem at resolve time
    assert list(ann.recording) == [str(tmp_path / "owl")] * 3
    assert set(ann.match.tolist()) == {MATCH_STEM}  # type: ignore[union-attr]
    np.testing.assert_array_equal(ann.line, [3, 5, 6])  # the spectrogram rows' lines
    assert ann.sources == (str(tmp_path / "owl.Table.1.selections.txt"),)


def test_raven_begin_file_and_file_offset(tmp_path: Path) -> None:
    header = ["Selection", "View", "Begin Time (s)", "End Time (s)", "Begin File", "File Offset (s)", "Species"]
    rows = [
        [1, "Spectrogram 1", 5.0, 6.5, "owl.wav", 5.0, "owl"],  # first file: offset = begin
        [2, "Spectrogram 1", 12.0, 12.25, "bat.flac", 2.0, "bat"],  # second file, starts at 10 s
        [3, "Spectrogram 1", 19.5, 20.0, "bat.flac", 9.5, "bat"],
    ]
    ann = Annotations.from_raven(write_table(tmp_path / "deployment.txt", header, rows))
    assert list(ann.recording) == ["owl.wav", "bat.flac", "bat.flac"]
    assert set(ann.match.tolist()) == {MATCH_FILE}  # type: ignore[union-attr]
    np.testing.assert_allclose(ann.start, [5.0, 2.0, 9.5])
    np.testing.assert_allclose(ann.stop, [6.5, 2.25, 10.0])
    np.testing.assert_array_equal(ann.channel, [-1, -1, -1])  # no Channel column: all channels
    assert ann.classes == ("bat", "owl")  # Species is the label column when Annotation is absent
    res = ann.resolve(FAKE)
    # sorted by (recording, start): bat.flac is row 1, owl.wav row 0
    np.testing.assert_array_equal(res.recording, [0, 1, 1])
    np.testing.assert_array_equal(res.start, [80_000, 88_200, 418_950])
    np.testing.assert_array_equal(res.stop, [104_000, 99_225, 441_000])


def test_raven_begin_path_with_windows_separators(tmp_path: Path) -> None:
    header = ["Selection", "Begin Time (s)", "End Time (s)", "Begin Path", "Label"]
    rows = [[1, 0.5, 0.75, r"D:\audio\site2\frog.wav", "frog"]]
    ann = Annotations.from_raven(write_table(tmp_path / "t.txt", header, rows))
    assert list(ann.recording) == [r"D:\audio\site2\frog.wav"]  # the path: its folders tell sites apart
    res = ann.resolve(FAKE)
    np.testing.assert_array_equal(res.recording, [2])
    np.testing.assert_array_equal(res.start, [24_000])


def test_raven_several_tables_and_table_names(tmp_path: Path) -> None:
    t1 = write_table(
        tmp_path / "owl.Table.1.selections.txt", RAVEN_HEADER, [[1, "Spectrogram 1", 1, 9, 9.5, 0, 0, "owl", ""]]
    )
    t2 = write_table(
        tmp_path / "frog.Table.2.selections.txt", RAVEN_HEADER, [[1, "Spectrogram 1", 1, 0, 0.5, 1, 2, "frog", "x"]]
    )
    ann = Annotations.from_raven([t1, t2])
    assert ann.sources == (str(t1), str(t2))
    np.testing.assert_array_equal(ann.source, [0, 1])
    assert ann.classes == ("frog", "owl")
    res = ann.resolve(FAKE)
    np.testing.assert_array_equal(res.recording, [0, 2])
    np.testing.assert_array_equal(res.start, [144_000, 0])
    np.testing.assert_array_equal(res.stop, [152_000, 24_000])
    np.testing.assert_array_equal(res.label, [1, 0])
    # recording= overrides the name, one for all tables or one per table
    both = Annotations.from_raven([t1, t2], recording=["site2/frog.wav", "site1/owl.wav"])
    assert list(both.recording) == ["site2/frog.wav", "site1/owl.wav"]
    with pytest.raises(ValueError, match="one per table"):
        Annotations.from_raven([t1, t2], recording=["a"])


def test_raven_label_column_override(tmp_path: Path) -> None:
    header = [*RAVEN_HEADER, "Call Type"]
    rows = [
        [1, "Spectrogram 1", 1, 0, 1, 0, 0, "owl", "", "hoot"],
        [2, "Spectrogram 1", 1, 1, 2, 0, 0, "owl", "", "screech"],
    ]
    ann = Annotations.from_raven(write_table(tmp_path / "a.txt", header, rows), label_column="Call Type", recording="x")
    assert ann.classes == ("hoot", "screech")
    # the unused default label column is kept among the extras
    assert json.loads(ann.extra[0]) == {"Annotation": "owl", "Notes": "", "Selection": "1"}
    with pytest.raises(AnnotationError, match=r"a\.txt, line 1: no column 'Kind'"):
        Annotations.from_raven(tmp_path / "a.txt", label_column="Kind", recording="x")


@pytest.mark.parametrize(
    ("header", "row", "message"),
    [
        (["Selection", "Begin Time (s)", "Annotation"], [1, 0.0, "a"], r"line 1: missing column\(s\) 'End Time \(s\)'"),
        (["Selection", "Begin Time (s)", "End Time (s)"], [1, 0, 1], r"line 1: no label column"),
        (RAVEN_HEADER, [1, "S", 1, 2.0, 1.0, 0, 0, "a", ""], r"line 2: End Time \(s\) 1 is before Begin Time \(s\) 2"),
        (RAVEN_HEADER, [1, "S", 1, -1.0, 1.0, 0, 0, "a", ""], r"line 2: Begin Time \(s\) is '-1.0'; expected a finite"),
        (RAVEN_HEADER, [1, "S", 1, "nan", 1.0, 0, 0, "a", ""], r"line 2: Begin Time \(s\) is 'nan'"),
        (RAVEN_HEADER, [1, "S", 1, 0, "1,5", 0, 0, "a", ""], r"line 2: End Time \(s\) is '1,5'; expected a number"),
        (RAVEN_HEADER, [1, "S", 0, 0, 1, 0, 0, "a", ""], r"line 2: Channel is '0'; expected a channel number from 1"),
        (RAVEN_HEADER, [1, "S", 1, 0, 1, "low", 0, "a", ""], r"line 2: Low Freq \(Hz\) is 'low'"),
        (RAVEN_HEADER, [1, "S", 1, 0, 1, 0, 0, "", ""], r"line 2: Annotation is empty"),
        (RAVEN_HEADER, [1, "S", 1, 0, 1, 0, 0, "a"], r"line 2: 8 tab-separated fields; the header has 9"),
    ],
)
def test_raven_bad_tables(tmp_path: Path, header: list[str], row: list[Any], message: str) -> None:
    path = write_table(tmp_path / "bad.Table.1.selections.txt", header, [row])
    with pytest.raises(AnnotationError, match=r"bad\.Table\.1\.selections\.txt, " + message):
        Annotations.from_raven(path)


def test_raven_bad_tables_whole_file(tmp_path: Path) -> None:
    (tmp_path / "empty.txt").write_text("\n\n")
    with pytest.raises(AnnotationError, match=r"empty\.txt: the file is empty"):
        Annotations.from_raven(tmp_path / "empty.txt")
    unnamed = write_table(tmp_path / "notes.txt", RAVEN_HEADER, [[1, "S", 1, 0, 1, 0, 0, "a", ""]])
    with pytest.raises(AnnotationError, match=r"notes\.txt: cannot tell which recording.*pass recording="):
        Annotations.from_raven(unnamed)
    header = ["Selection", "Begin Time (s)", "End Time (s)", "Begin File", "Label"]
    many = write_table(tmp_path / "many.txt", header, [[1, 0, 1, "a.wav", "x"], [2, 5, 6, "b.wav", "x"]])
    with pytest.raises(AnnotationError, match=r"many\.txt, line 1: the table spans 2 files .* 'File Offset \(s\)'"):
        Annotations.from_raven(many)
    # one file without File Offset: the table's times are that file's
    one = write_table(tmp_path / "one.txt", header, [[1, 0.5, 1, "a.wav", "x"], [2, 5, 6, "a.wav", "x"]])
    np.testing.assert_array_equal(Annotations.from_raven(one).start, [0.5, 5])


def test_raven_latin1_and_bom(tmp_path: Path) -> None:
    path = tmp_path / "t.Table.1.selections.txt"
    text = "\t".join(RAVEN_HEADER) + "\n" + "\t".join(["1", "S", "1", "0", "1", "", "", "Mésange", "été"]) + "\n"
    path.write_bytes(text.encode("latin-1"))
    assert Annotations.from_raven(path).classes == ("Mésange",)
    path.write_bytes(b"\xef\xbb\xbf" + text.encode("utf-8"))
    assert Annotations.from_raven(path).classes == ("Mésange",)


# ---------------------------------------------------------------------- CSV and records


def test_csv_columns_and_extras(tmp_path: Path) -> None:
    header = ["id", "start", "end", "label", "low_hz", "high_hz", "channel", "observer"]
    rows = [
        ["site1/owl.wav", 1.5, 2.0, "owl", 300, 900, 1, "ana"],
        ["site2/frog.wav", 0, 0.5, "frog", "", "", "", "bo"],
        ["site1/owl.wav", 0.25, 0.5, "owl", "", 1200, -1, ""],
    ]
    ann = Annotations.from_csv(write_table(tmp_path / "ann.csv", header, rows, sep=","))
    assert list(ann.recording) == ["site1/owl.wav", "site2/frog.wav", "site1/owl.wav"]
    assert set(ann.match.tolist()) == {MATCH_ID}  # type: ignore[union-attr]
    np.testing.assert_array_equal(ann.channel, [1, -1, -1])
    np.testing.assert_array_equal(ann.low_hz, np.array([300, np.nan, np.nan], dtype=np.float32))
    assert [json.loads(x) for x in ann.extra] == [{"observer": "ana"}, {"observer": "bo"}, {"observer": ""}]
    np.testing.assert_array_equal(ann.line, [2, 3, 4])
    res = ann.resolve(FAKE)
    np.testing.assert_array_equal(res.recording, [0, 0, 2])
    np.testing.assert_array_equal(res.start, [4_000, 24_000, 0])
    np.testing.assert_array_equal(res.stop, [8_000, 32_000, 24_000])
    np.testing.assert_array_equal(res.line, [4, 2, 3])  # provenance follows the sort
    assert json.loads(res.extra[0]) == {"observer": ""}
    other = write_table(
        tmp_path / "more.csv", ["id", "start", "end", "label"], [["site2/frog.wav", 0, 1, "frog"]], sep=","
    )
    both = Annotations.from_csv([tmp_path / "ann.csv", other])
    assert both.sources == (str(tmp_path / "ann.csv"), str(other))
    np.testing.assert_array_equal(both.source, [0, 0, 0, 1])
    np.testing.assert_array_equal(both.line, [2, 3, 4, 2])


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        (["id,start,label", "a,0,x"], r", line 1: missing column\(s\) 'end'"),
        (["id,start,end,label", "a,0,1,x", "a,2,1,x"], r", line 3: end 1 s is before start 2 s"),
        (["id,start,end,label", "a,zero,1,x"], r", line 2: start is 'zero'; expected a number"),
        (["id,start,end,label", "", "a,0,inf,x"], r", line 3: end is 'inf'; expected a finite"),
        (["id,start,end,label", "a,0,1"], r", line 2: 3 fields; the header has 4"),
        (["id,start,end,label,channel", "a,0,1,x,-2"], r", line 2: channel is '-2'; expected a 0-based channel"),
        (["id,start,end,label", ",0,1,x"], r", line 2: id is empty"),
        ([], r": the file is empty"),
    ],
)
def test_csv_bad_tables(tmp_path: Path, lines: list[str], message: str) -> None:
    path = tmp_path / "bad.csv"
    path.write_text("\n".join(lines) + ("\n" if lines else ""))
    with pytest.raises(AnnotationError, match=r"bad\.csv" + message):
        Annotations.from_csv(path)


def test_records_and_their_errors() -> None:
    ann = Annotations.from_records(
        [
            {"id": "site1/bat.flac", "start": 0.5, "end": 1, "label": "bat", "call": {"kind": "fm"}},
            {"id": "site1/bat.flac", "start": 0.1, "end": 0.1, "label": "bat", "channel": 0, "high_hz": 9e4},
        ]
    )
    assert ann.sources == ("<records>",)
    assert json.loads(ann.extra[0]) == {"call": {"kind": "fm"}}
    res = ann.resolve(FAKE)
    np.testing.assert_array_equal(res.start, [4_410, 22_050])
    np.testing.assert_array_equal(res.stop, [4_410, 44_100])  # an instant stays one
    with pytest.raises(AnnotationError, match=r"<records>, record 2: missing key\(s\) 'end'"):
        Annotations.from_records(
            [{"id": "a", "start": 0, "end": 1, "label": "x"}, {"id": "a", "start": 0, "label": "x"}]
        )
    with pytest.raises(AnnotationError, match=r"<records>, record 1: end 0.5 s is before start 1"):
        Annotations.from_records([{"id": "a", "start": 1, "end": 0.5, "label": "x"}])
    with pytest.raises(AnnotationError, match=r"record 1: start is None"):
        Annotations.from_records([{"id": "a", "start": None, "end": 0.5, "label": "x"}])
    with pytest.raises(AnnotationError, match=r"record 1: its other keys are not JSON-serializable"):
        Annotations.from_records([{"id": "a", "start": 0, "end": 0.5, "label": "x", "obj": object()}])


# ---------------------------------------------------------------------- resolving


def test_resolve_rounds_to_the_nearest_sample() -> None:
    ann = Annotations.from_records(
        [
            {"id": "site1/bat.flac", "start": 1.0 / 44_100 * 0.49, "end": 1.0 / 44_100 * 0.51, "label": "a"},
            {"id": "site1/bat.flac", "start": 312.4 / 100, "end": 313.1 / 100, "label": "a"},
        ]
    )
    res = ann.resolve(FAKE)
    np.testing.assert_array_equal(res.start, [0, 137_768])  # 3.124 s x 44100 = 137768.4
    np.testing.assert_array_equal(res.stop, [1, 138_077])  # 3.131 s x 44100 = 138077.1


def test_resolve_missing_ids_past_end_and_channels() -> None:
    recs = [
        {"id": "site1/owl.wav", "start": 1, "end": 2, "label": "owl"},
        {"id": "nowhere.wav", "start": 0, "end": 1, "label": "owl"},
        {"id": "gone.wav", "start": 0, "end": 1, "label": "owl"},
        {"id": "nowhere.wav", "start": 3, "end": 4, "label": "owl"},
    ]
    with pytest.raises(
        AnnotationError,
        match=r"2 recording name\(s\) match no recording of fake\.zarr: 'nowhere\.wav' "
        r"\(<records>, record 2\); 'gone\.wav' \(<records>, record 3\)",
    ):
        Annotations.from_records(recs).resolve(FAKE)
    res = Annotations.from_records(recs).resolve(FAKE, missing="skip")
    assert len(res) == 1
    assert res.start[0] == 16_000
    with pytest.raises(ValueError, match="missing must be"):
        Annotations.from_records(recs).resolve(FAKE, missing="ignore")  # type: ignore[arg-type]

    past = [
        {"id": "site2/frog.wav", "start": 0.5, "end": 1.5, "label": "frog"},
        {"id": "site2/frog.wav", "start": 1.25, "end": 2, "label": "frog"},
        {"id": "site2/frog.wav", "start": 0, "end": 1.0, "label": "frog"},  # ends exactly at the end
    ]
    with pytest.raises(
        AnnotationError,
        match=r"<records>, record 1: the event \[0.5, 1.5\) s ends at sample 72000, "
        r"past the end of recording 'site2/frog.wav' \(48000 samples .*2 event\(s\) do so",
    ):
        Annotations.from_records(past).resolve(FAKE)
    clipped = Annotations.from_records(past).resolve(FAKE, clip=True)
    np.testing.assert_array_equal(clipped.start, [0, 24_000])  # the one starting past the end is dropped
    np.testing.assert_array_equal(clipped.stop, [48_000, 48_000])

    with pytest.raises(AnnotationError, match=r"record 1: the event is on channel 1 .* 'site2/frog.wav' has 1 channel"):
        Annotations.from_records([{"id": "site2/frog.wav", "start": 0, "end": 1, "label": "x", "channel": 1}]).resolve(
            FAKE
        )
    empty = Annotations.from_records(recs).resolve(FakeStore({}), missing="skip")  # a store without recordings
    assert len(empty) == 0
    with pytest.raises(ValueError, match="already resolved"):
        res.resolve(FAKE)
    with pytest.raises(ValueError, match=r"needs a resolved table"):
        Annotations.from_records(recs).events_in(0, 0, 1)


def test_resolve_ambiguous_names(tmp_path: Path) -> None:
    store = FakeStore({"a/owl.wav": (100, 10, 1), "b/owl.flac": (100, 10, 1), "b/owl.wav": (100, 10, 1)})
    path = write_table(tmp_path / "owl.Table.1.selections.txt", RAVEN_HEADER, [[1, "S", 1, 0, 1, 0, 0, "a", ""]])
    with pytest.raises(
        AnnotationError,
        match=r"owl\.Table\.1\.selections\.txt, line 2: the name \(without extension\) "
        r"'owl' matches 3 recordings",
    ):
        Annotations.from_raven(path).resolve(store)
    with pytest.raises(AnnotationError, match=r"the file name 'owl\.wav' matches 2 recordings"):
        Annotations.from_raven(path, recording="owl.wav").resolve(store)
    # a full id is exact
    res = Annotations.from_raven(path, recording="b/owl.wav").resolve(store)
    np.testing.assert_array_equal(res.recording, [2])


def test_resolve_against_a_real_store_and_store_it(tmp_path: Path) -> None:
    src = tmp_path / "src"
    make_file(src / "site1" / "owl.wav", "chirp", 32_000, sample_rate=16_000, num_channels=2)
    make_file(src / "site2" / "frog.flac", "noise", 22_050, sample_rate=44_100)
    path = tmp_path / "c.zarr"
    aacdata.import_audio(src, path, workers=0, progress=False)
    store = AACStore.open(path)
    assert sorted(store.ids) == ["site1/owl.wav", "site2/frog.flac"]
    table = write_table(
        tmp_path / "owl.Table.1.selections.txt",
        RAVEN_HEADER,
        [
            [1, "Waveform 1", 2, 1.5, 1.75, 0, 0, "owl", ""],
            [1, "Spectrogram 1", 2, 1.5, 1.75, 400, 800, "owl", ""],
            [2, "Spectrogram 1", 1, 0.0, 2.0, 100, 200, "wind", "whole"],
        ],
    )
    csv_path = write_table(
        tmp_path / "frog.csv", ["id", "start", "end", "label"], [["site2/frog.flac", 0.25, 0.5, "frog"]], sep=","
    )
    owl = Annotations.from_raven(table).resolve(store)
    frog = Annotations.from_csv(csv_path).resolve(store)
    owl_row = store.index_of("site1/owl.wav")
    np.testing.assert_array_equal(owl.recording, [owl_row, owl_row])
    np.testing.assert_array_equal(owl.start, [0, 24_000])
    np.testing.assert_array_equal(owl.stop, [32_000, 28_000])
    np.testing.assert_array_equal(owl.channel, [0, 1])
    np.testing.assert_array_equal(frog.start, [11_025])

    # stored beside the recordings; the store stays a valid version-1 store
    group = zarr.open_group(path, mode="r+")
    sets.write_set(group, "owls", owl, num_recordings=len(store))
    sets.write_set(group, "frogs", frog, num_recordings=len(store))
    assert sets.list_sets(zarr.open_group(path, mode="r")) == ["frogs", "owls"]
    again = AACStore.open(path)
    assert again.verify().ok
    assert again.read(owl_row, 24_000, 4_000).shape == (2, 4_000)
    back = sets.read_set(zarr.open_group(path, mode="r"), "owls", num_recordings=len(again))
    assert_same(back, owl)
    assert back.classes == ("owl", "wind")
    window = back.events_in(owl_row, 25_000, 26_000)
    assert [back.classes[k] for k in back.label[window]] == ["wind", "owl"]


# ---------------------------------------------------------------------- lookup


def brute_force(recording: np.ndarray, start: np.ndarray, stop: np.ndarray, row: int, a: int, b: int) -> list[int]:
    """Rows of ``row``'s events overlapping [a, b): s < b and e > a; an instant when a <= s < b."""
    out = []
    if b <= a:
        return out
    for i in range(len(start)):
        s, e = int(start[i]), int(stop[i])
        if recording[i] == row and s < b and (e > a if e > s else s >= a):
            out.append(i)
    return out


def resolved(rows: list[tuple[int, int, int]]) -> Annotations:
    """A resolved table from ``(recording, start, length)`` triples (sorted here)."""
    rows = sorted(rows, key=lambda r: (r[0], r[1], r[1] + r[2]))
    n = len(rows)
    return Annotations(
        recording=[r[0] for r in rows],
        start=[r[1] for r in rows],
        stop=[r[1] + r[2] for r in rows],
        label=np.zeros(n),
        classes=("x",),
        low_hz=np.full(n, np.nan),
        high_hz=np.full(n, np.nan),
        channel=np.full(n, -1),
        extra=["{}"] * n,
    )


# Invariant: events_in returns exactly the brute-force overlap set, in row order, for any
# events (nested, equal, instants) and any window, including rows without events.
@settings(max_examples=300, deadline=None)
@given(
    events=st.lists(
        st.tuples(st.integers(0, 4), st.integers(0, 200), st.one_of(st.just(0), st.integers(0, 120))), max_size=60
    ),
    windows=st.lists(st.tuples(st.integers(0, 6), st.integers(-5, 330), st.integers(0, 90)), min_size=1, max_size=20),
)
def test_events_in_matches_brute_force(events: list[tuple[int, int, int]], windows: list[tuple[int, int, int]]) -> None:
    ann = resolved(events)
    for row, a, width in windows:
        got = ann.events_in(row, a, a + width)
        assert got.dtype == np.int64
        assert got.tolist() == brute_force(ann.recording, ann.start, ann.stop, row, a, a + width)
    for row in range(6):
        i, j = ann.rows_of(row)
        assert (ann.recording[i:j] == row).all()
        assert int((ann.recording == row).sum()) == j - i
        part = ann.for_recording(row)
        assert len(part) == j - i
        np.testing.assert_array_equal(part.start, ann.start[i:j])


def test_events_in_with_nested_events_and_overflowing_sums() -> None:
    # a long event containing short ones; then huge sample positions (the per-recording loop)
    ann = resolved([(0, 0, 1000), (0, 10, 5), (0, 20, 5), (0, 600, 10), (1, 5, 0)])
    assert ann.events_in(0, 100, 200).tolist() == [0]
    assert ann.events_in(0, 12, 22).tolist() == [0, 1, 2]
    assert ann.events_in(0, 995, 2000).tolist() == [0]
    assert ann.events_in(1, 5, 6).tolist() == [4] and ann.events_in(1, 0, 5).tolist() == []
    assert ann.events_in(7, 0, 10).tolist() == [] and ann.events_in(0, 10, 10).tolist() == []
    big = 1 << 61
    huge = resolved([(0, big, 10), (1, big, 5), (1, big + 100, 5)])
    assert huge.events_in(1, big + 2, big + 101).tolist() == [1, 2]
    assert huge.events_in(0, big + 2, big + 101).tolist() == [0]


def test_values_are_frozen_and_repr_counts() -> None:
    ann = resolved([(0, 0, 10), (2, 5, 5)])
    with pytest.raises(ValueError, match="read-only"):
        ann.start[0] = 3
    with pytest.raises(ValueError, match="read-only"):
        ann.for_recording(0).label[0] = 1
    assert repr(ann) == "Annotations(2 events, 2 recordings, 1 classes, resolved, sources=())"
    back = pickle.loads(pickle.dumps(ann))  # DataLoader workers get a pickled copy
    assert_same(back, ann)
    assert not back.start.flags.writeable
    assert back.events_in(2, 0, 6).tolist() == [1]
    with pytest.raises(ValueError, match=r"sorted by \(recording, start\)"):
        Annotations(
            recording=[1, 0],
            start=[0, 0],
            stop=[1, 1],
            label=[0, 0],
            classes=("x",),
            low_hz=[0, 0],
            high_hz=[0, 0],
            channel=[-1, -1],
            extra=["{}", "{}"],
        )
    with pytest.raises(ValueError, match="labels must index classes"):
        Annotations(
            recording=[0],
            start=[0],
            stop=[1],
            label=[1],
            classes=("x",),
            low_hz=[0],
            high_hz=[0],
            channel=[-1],
            extra=["{}"],
        )


# ---------------------------------------------------------------------- storage


def assert_same(a: Annotations, b: Annotations) -> None:
    for name in ("recording", "start", "stop", "label", "low_hz", "high_hz", "channel", "extra"):
        x, y = getattr(a, name), getattr(b, name)
        assert x.dtype == y.dtype, name
        np.testing.assert_array_equal(x, y, err_msg=name)
    assert a.classes == b.classes
    assert a.sources == b.sources


def random_table(seed: int, n: int, num_recordings: int = 50) -> Annotations:
    rng = np.random.default_rng(seed)
    rec = np.sort(rng.integers(0, num_recordings, n))
    start = rng.integers(0, 10**6, n)
    order = np.lexsort((start, rec))
    low = rng.uniform(0, 1000, n).astype(np.float32)
    low[rng.random(n) < 0.3] = np.nan
    return Annotations(
        recording=rec[order],
        start=start[order],
        stop=start[order] + rng.integers(0, 10**5, n),
        label=rng.integers(0, 7, n),
        classes=tuple(f"c{k}" for k in range(7)),
        low_hz=low,
        high_hz=low + 100,
        channel=rng.integers(-1, 2, n),
        extra=[json.dumps({"seed": seed, "i": int(i), "note": "é"}) for i in range(n)],
        sources=(f"table{seed}.txt",),
    )


def test_storage_round_trip_replace_and_names(tmp_path: Path) -> None:
    group = zarr.open_group(tmp_path / "s.zarr", mode="a")
    assert sets.list_sets(group) == []
    first = random_table(1, 1000)
    sets.write_set(group, "default", first)
    assert_same(sets.read_set(group, "default"), first)
    assert sets.set_info(group, "default") == {
        "num_events": 1000,
        "classes": list(first.classes),
        "sources": ["table1.txt"],
        "version": "v1",
    }
    with pytest.raises(
        AnnotationError, match=r"already has an annotation set 'default' \(1000 events\); pass replace=True"
    ):
        sets.write_set(group, "default", random_table(2, 10))
    second = random_table(2, 300_000)  # more than one chunk
    sets.write_set(group, "default", second, replace=True)
    assert_same(sets.read_set(zarr.open_group(tmp_path / "s.zarr", mode="r"), "default"), second)
    assert sorted(os.listdir(tmp_path / "s.zarr" / "annotations" / "default")) == ["v2", "zarr.json"]
    empty = random_table(3, 0)
    sets.write_set(group, "empty", empty)
    assert len(sets.read_set(group, "empty")) == 0
    assert sets.list_sets(group) == ["default", "empty"]
    with pytest.raises(AnnotationError, match=r"has no annotation set 'other' \(sets: 'default', 'empty'\)"):
        sets.read_set(group, "other")
    for bad in ("", "../x", "a/b", ".hidden", "x" * 200):
        with pytest.raises(ValueError, match="is not allowed"):
            sets.write_set(group, bad, first)
    with pytest.raises(AnnotationError, match="not resolved"):
        sets.write_set(group, "p", Annotations.from_records([{"id": "a", "start": 0, "end": 1, "label": "x"}]))
    with pytest.raises(AnnotationError, match=r"events of recording row 49, but .* has 10 recordings"):
        sets.write_set(group, "p", first, num_recordings=10)
    with pytest.raises(CorruptDataError, match=r"recording holds row 49, but the store has 10 recordings"):
        sets.read_set(group, "default", num_recordings=10)


def test_storage_takes_the_write_lock(tmp_path: Path) -> None:
    group = zarr.open_group(tmp_path / "s.zarr", mode="a")
    with _lock.acquire(group.store, "s.zarr") as held:
        with pytest.raises(StoreLockedError, match="being written"):
            sets.write_set(group, "a", random_table(1, 5))
        sets.write_set(group, "a", random_table(1, 5), lock=held)  # the caller's lock
    sets.write_set(group, "b", random_table(1, 5))  # released again
    assert sets.list_sets(group) == ["a", "b"]


def test_a_half_written_set_is_invisible(tmp_path: Path) -> None:
    group = zarr.open_group(tmp_path / "s.zarr", mode="a")
    # what a writer killed before its commit leaves: arrays without the commit attribute
    node = group.require_group("annotations").require_group("new")
    node.create_group("v1").create_array("start", shape=(5,), dtype="int64")
    assert sets.list_sets(group) == []
    with pytest.raises(AnnotationError, match="has no annotation set 'new'"):
        sets.read_set(group, "new")
    table = random_table(4, 20)
    sets.write_set(group, "new", table)  # not an existing set: no replace needed
    assert_same(sets.read_set(group, "new"), table)


def chunk_files(root: Path, name: str, column: str) -> list[Path]:
    version = sets.set_info(zarr.open_group(root, mode="r"), name)["version"]
    base = root / "annotations" / name / version / column
    return sorted(p for p in base.rglob("*") if p.is_file() and p.name != "zarr.json")


@pytest.mark.parametrize("column", ["recording", "start", "stop", "label", "low_hz", "high_hz", "channel", "extra"])
def test_damage_is_found_and_named(tmp_path: Path, column: str) -> None:
    root = tmp_path / "s.zarr"
    group = zarr.open_group(root, mode="a")
    table = random_table(5, 2000)
    sets.write_set(group, "d", table)
    chunk = chunk_files(root, "d", column)[0]
    data = bytearray(chunk.read_bytes())
    # A value changed through zarr (a valid chunk that disagrees with the CRC-32).
    array = zarr.open_array(root / "annotations" / "d" / "v1" / column, mode="r+")
    old = array[7]
    array[7] = "{}" if column == "extra" else 5 if np.isnan(old) else old + 1
    with pytest.raises(CorruptDataError, match=rf"annotations/d/v1/{column} does not match its CRC-32"):
        sets.read_set(zarr.open_group(root, mode="r"), "d")
    # Flipped bytes in the compressed chunk.
    data[len(data) // 2] ^= 0xFF
    chunk.write_bytes(bytes(data))
    with pytest.raises(CorruptDataError, match=rf"annotations/d/v1/{column}"):
        sets.read_set(zarr.open_group(root, mode="r"), "d")
    # A lost chunk reads as fill values.
    chunk.unlink()
    with pytest.raises(CorruptDataError, match=rf"annotations/d/v1/{column} does not match its CRC-32"):
        sets.read_set(zarr.open_group(root, mode="r"), "d")


def test_damaged_commit_and_missing_nodes(tmp_path: Path) -> None:
    root = tmp_path / "s.zarr"
    sets.write_set(zarr.open_group(root, mode="a"), "d", random_table(6, 10))
    meta_path = root / "annotations" / "d" / "zarr.json"
    meta = json.loads(meta_path.read_text())
    record = meta["attributes"]["aacdata_annotations"]
    for key, value, message in [
        ("num_events", -1, "num_events=-1"),
        ("current", "../x", "current='../x'"),
        ("classes", ["b", "a"], "classes that are not a sorted list"),
        ("crc32", {}, "lacks a CRC-32"),
        ("format_version", 2, "format_version=2"),
    ]:
        meta["attributes"]["aacdata_annotations"] = {**record, key: value}
        meta_path.write_text(json.dumps(meta))
        with pytest.raises(
            CorruptDataError, match=rf"annotations/d/zarr\.json: the 'aacdata_annotations' attribute .*{message}"
        ):
            sets.read_set(zarr.open_group(root, mode="r"), "d")
        with pytest.raises(CorruptDataError):
            sets.set_info(zarr.open_group(root, mode="r"), "d")
    meta["attributes"]["aacdata_annotations"] = {**record, "num_events": 11}
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(CorruptDataError, match=r"v1/recording is not a 1-D array of at least 11 rows"):
        sets.read_set(zarr.open_group(root, mode="r"), "d")
    meta["attributes"]["aacdata_annotations"] = record
    meta_path.write_text(json.dumps(meta))
    import shutil

    shutil.rmtree(root / "annotations" / "d" / "v1" / "label")
    with pytest.raises(CorruptDataError, match=r"annotations/d/v1/label is missing"):
        sets.read_set(zarr.open_group(root, mode="r"), "d")


# ---------------------------------------------------------------------- killed writes

WRITER = textwrap.dedent(
    """
    import sys, zarr
    sys.path.insert(0, {tests!r})
    from test_annotations import random_table
    from aacdata.store import _annotation_store as sets
    group = zarr.open_group({root!r}, mode="a")
    if {loop!r}:
        tables = [random_table(11, 100_000), random_table(12, 1_000)]
        print("ready", flush=True)
        k = 0
        while True:  # replace, alternating two tables, until killed
            sets.write_set(group, "s", tables[k % 2], replace=True)
            k += 1
    else:
        table = random_table(13, 100_000)
        print("ready", flush=True)
        sets.write_set(group, {name!r}, table)
        print("done", flush=True)
    """
)


def killed_writer(root: Path, *, loop: bool, delay: float, name: str = "") -> None:
    """Run a writer in a subprocess; SIGKILL it ``delay`` seconds after it starts writing."""
    script = WRITER.format(tests=str(Path(__file__).parent), root=str(root), loop=loop, name=name)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, env=env_with_package(), text=True)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready"
        time.sleep(delay)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=60)


# Invariant: after a SIGKILL at any moment, a set reads as one whole committed table (the
# previous or the new one), or as absent for a set never committed; never half of one.
@pytest.mark.slow
def test_killed_writes_leave_a_committed_state(tmp_path: Path) -> None:
    rng = random.Random(1234)
    root = tmp_path / "s.zarr"
    group = zarr.open_group(root, mode="a")
    tables = {len(t): t for t in (random_table(11, 100_000), random_table(12, 1_000))}
    fresh = random_table(13, 100_000)
    t0 = time.perf_counter()
    sets.write_set(group, "timing", fresh)  # how long one write takes here, to spread the kills over
    seconds = time.perf_counter() - t0
    sets.write_set(group, "s", tables[1_000])
    outcomes: dict[str, set[Any]] = {"replace": set(), "fresh": set()}
    for _ in range(5):
        killed_writer(root, loop=True, delay=rng.uniform(0, 3 * seconds))
        got = sets.read_set(zarr.open_group(root, mode="r"), "s")
        assert_same(got, tables[len(got)])
        outcomes["replace"].add(len(got))
    for k in range(5):
        name = f"fresh{k}"
        killed_writer(root, loop=False, delay=rng.uniform(0, 1.3 * seconds), name=name)
        reader = zarr.open_group(root, mode="r")
        if name in sets.list_sets(reader):
            assert_same(sets.read_set(reader, name), fresh)
            outcomes["fresh"].add("whole")
        else:
            with pytest.raises(AnnotationError, match=f"has no annotation set '{name}'"):
                sets.read_set(reader, name)
            outcomes["fresh"].add("absent")
            sets.write_set(group, name, fresh)  # the name is free; stale versions are overwritten
            assert_same(sets.read_set(group, name), fresh)
    # a write after the kills works, and clears stale versions
    sets.write_set(group, "s", tables[1_000], replace=True)
    assert_same(sets.read_set(group, "s"), tables[1_000])
    assert len([p for p in (root / "annotations" / "s").iterdir() if p.is_dir()]) == 1
    print(outcomes)
