"""A first real corpus without stumbles: list, look, listen; ids found the way people type
them; datasets that refuse what cannot batch and say what they pad."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import av
import numpy as np
import pytest
from conftest import STORE_IDS, env_with_package, make_file

import aacdata
from aacdata.cli import main


def run_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "aacdata", *args], capture_output=True, text=True, env=env_with_package(), cwd=cwd
    )


def test_ls_lists_recordings_with_their_properties(store_path: Path, small_store: aacdata.AACStore) -> None:
    out = run_cli("ls", str(store_path), "--json")
    assert out.returncode == 0, out.stderr
    rows = [json.loads(line) for line in out.stdout.splitlines()]
    assert [r["id"] for r in rows] == list(small_store.ids)
    assert sorted(small_store.ids) == sorted(STORE_IDS)
    for row, rec in zip(rows, small_store, strict=True):
        assert row["sample_rate"] == rec.sample_rate and row["channels"] == rec.num_channels
        assert row["seconds"] == round(rec.duration_seconds, 3) and row["bandwidth_hz"] == rec.bandwidth_hz
    table = run_cli("ls", str(store_path), "nested/*")
    assert table.returncode == 0
    assert "nested/mono_16k.mp3" in table.stdout and "stereo_44k" not in table.stdout
    assert table.stdout.rstrip().endswith(f"1 of {len(STORE_IDS)} recordings")


def test_ls_counts_events_per_set(tmp_path: Path) -> None:
    make_file(tmp_path / "src" / "a.wav", "tone", 16_000)
    make_file(tmp_path / "src" / "b.wav", "tone", 16_000)
    aacdata.import_audio(tmp_path / "src", tmp_path / "s.zarr", workers=0, progress=False)
    ann = aacdata.Annotations.from_records(
        [
            {"id": "b.wav", "start": 0.1, "end": 0.2, "label": "x"},
            {"id": "b.wav", "start": 0.3, "end": 0.4, "label": "y"},
        ]
    )
    with aacdata.AACStore.open(tmp_path / "s.zarr", "a") as store:
        store.write_annotations(ann, "calls")
    rows = [json.loads(x) for x in run_cli("ls", str(tmp_path / "s.zarr"), "--json").stdout.splitlines()]
    assert [r["events"] for r in rows] == [{"calls": 0}, {"calls": 2}]


def test_export_writes_one_window(store_path: Path, small_store: aacdata.AACStore, tmp_path: Path) -> None:
    rid = "mono_44k.wav"
    out = run_cli("export", str(store_path), rid, str(tmp_path / "w.wav"), "--start", "0.25", "--duration", "0.5")
    assert out.returncode == 0, out.stderr
    assert "[0.25, 0.75) s of" in out.stdout
    with av.open(str(tmp_path / "w.wav")) as c:
        got = np.concatenate([f.to_ndarray() for f in c.decode(audio=0)], axis=1)
    start = round(0.25 * 44_100)
    np.testing.assert_array_equal(got, small_store.read(rid, start, round(0.5 * 44_100)))
    refused = run_cli("export", str(store_path), rid, str(tmp_path / "w.aac"), "--start", "1")
    assert refused.returncode == 2 and ".wav or .flac" in refused.stderr
    past = run_cli("export", str(store_path), rid, str(tmp_path / "w.wav"), "--start", "1000")
    assert past.returncode == 2 and "past the end" in past.stderr


def test_ids_resolve_by_case_or_file_name_with_a_note(store_path: Path, tmp_path: Path) -> None:
    out = run_cli("export", str(store_path), "MONO_16K.MP3", str(tmp_path / "a.wav"))
    assert out.returncode == 0, out.stderr
    assert "note: MONO_16K.MP3 is taken as nested/mono_16k.mp3 (the one id with that file name" in out.stderr
    wrong = run_cli("export", str(store_path), "mono_44.wav", str(tmp_path / "a.wav"))
    assert wrong.returncode == 2
    assert "did you mean 'mono_44k.wav'" in wrong.stderr


def test_ambiguous_file_names_list_the_candidates(tmp_path: Path) -> None:
    for site in ("site_A", "site_B"):
        make_file(tmp_path / "src" / site / "20240501_050000.wav", "tone", 8000)
    aacdata.import_audio(tmp_path / "src", tmp_path / "s.zarr", workers=0, progress=False)
    with aacdata.AACStore.open(tmp_path / "s.zarr") as store:
        with pytest.raises(aacdata.RecordingNotFoundError, match="could be any of 2 recordings"):
            store.resolve_id("20240501_050000.wav")
        with pytest.raises(aacdata.RecordingNotFoundError, match=r"did you mean 'site_A/20240501_050000\.wav'"):
            store.recording("site_A/20240501_05000.wav")


def test_mixed_channel_counts_are_refused_at_construction(store_path: Path) -> None:
    with pytest.raises(ValueError, match=r"recordings have 1, 2, 6 channels; pass num_channels="):
        aacdata.AACSegmentDataset(store_path, window_seconds=0.1, sample_rate=16_000)
    ds = aacdata.AACSegmentDataset(store_path, window_seconds=0.1, sample_rate=16_000, num_channels=2)
    assert ds[0].shape == (2, 1600)


def test_windows_longer_than_recordings_warn_once(store_path: Path) -> None:
    with pytest.warns(UserWarning, match=r"1 of 8 recordings are shorter than the window .*zero-padded") as seen:
        aacdata.AACSegmentDataset(store_path, window_seconds=0.5, sample_rate=16_000, num_channels=1)
    assert len(seen) == 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        aacdata.AACSegmentDataset(store_path, window_seconds=0.01, sample_rate=16_000, num_channels=1)


def test_an_event_plan_longer_than_every_recording_is_refused(store_path: Path) -> None:
    ann = aacdata.Annotations.from_records([{"id": "mono_44k.wav", "start": 0.1, "end": 0.2, "label": "x"}])
    plan = aacdata.EventWindows(ann, window_seconds=60.0)
    with pytest.raises(ValueError, match="longer than every recording"):
        aacdata.AACSegmentDataset(store_path, plan=plan, sample_rate=16_000, num_channels=1)


def _two_label_store(tmp_path: Path) -> Path:
    make_file(tmp_path / "src" / "a.wav", "tone", 32_000)
    aacdata.import_audio(tmp_path / "src", tmp_path / "s.zarr", workers=0, progress=False)
    return tmp_path / "s.zarr"


def test_training_on_a_subset_of_the_classes(tmp_path: Path) -> None:
    store = _two_label_store(tmp_path)
    ann = aacdata.Annotations.from_records(
        [{"id": "a.wav", "start": 0.1, "end": 0.3, "label": "wren"}, {"id": "a.wav", "start": 1.1, "end": 1.3,
                                                                      "label": "robin"}]
    )  # fmt: skip
    plan = aacdata.SlidingWindows(window_seconds=0.5, hop_seconds=0.5)
    with pytest.raises(aacdata.AnnotationError, match=r"other_classes='ignore'"):
        aacdata.AACSegmentDataset(store, plan=plan, annotations=ann, labels="clip", classes=["wren"])
    ds = aacdata.AACSegmentDataset(
        store, plan=plan, annotations=ann, labels="clip", classes=["wren"], other_classes="ignore"
    )
    # Invariant: only the listed class labels windows; the robin's window is a negative.
    assert [float(ds[i][1][0]) for i in range(len(ds))] == [1.0, 0.0, 0.0, 0.0]
    with pytest.raises(ValueError, match="other_classes"):
        aacdata.AACSegmentDataset(store, plan=plan, annotations=ann, labels="clip", other_classes="drop")  # type: ignore[arg-type]


def test_relabel_and_similar_labels() -> None:
    labels = ("Winter Wren", "winter  wren", "Robin", "jay")
    ann = aacdata.Annotations.from_records([{"id": "a", "start": 0, "end": 1, "label": x} for x in labels])
    assert ann.similar_labels() == [("Winter Wren", "winter  wren")]
    lower = ann.relabel(lambda c: " ".join(c.lower().split()))
    assert lower.classes == ("jay", "robin", "winter wren")
    assert [lower.classes[k] for k in lower.label] == ["winter wren", "winter wren", "robin", "jay"]
    assert lower.similar_labels() == []
    merged = ann.relabel({"jay": "corvid", "Robin": "thrush"})
    assert [merged.classes[k] for k in merged.label] == ["Winter Wren", "winter  wren", "thrush", "corvid"]


def test_annotate_warns_of_labels_typed_two_ways_and_normalises_them(tmp_path: Path) -> None:
    store = _two_label_store(tmp_path)
    table = tmp_path / "t.csv"
    table.write_text("id,start,end,label\na.wav,0.1,0.2,Wren\na.wav,0.5,0.6,wren\na.wav,0.8,0.9,jay\n")
    out = run_cli("annotate", str(store), str(table), "--name", "plain")
    assert out.returncode == 0, out.stderr
    assert "labels 'Wren', 'wren' differ only in case" in out.stderr
    out = run_cli("annotate", str(store), str(table), "--name", "lower", "--labels", "lower")
    assert out.returncode == 0 and "differ only" not in out.stderr
    mapping = tmp_path / "map.csv"
    mapping.write_text("from,to\nWren,wren\njay,corvid\n")
    out = run_cli("annotate", str(store), str(table), "--name", "mapped", "--label-map", str(mapping))
    assert out.returncode == 0, out.stderr
    with aacdata.AACStore.open(store) as s:
        assert s.annotations("plain").classes == ("Wren", "jay", "wren")
        assert s.annotations("lower").classes == ("jay", "wren")
        assert s.annotations("mapped").classes == ("corvid", "wren")
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b\n")
    out = run_cli("annotate", str(store), str(table), "--name", "x", "--label-map", str(bad))
    assert out.returncode == 2 and "--label-map" in out.stderr and "from,to" in out.stderr


def _raven(path: Path, rows: list[tuple[float, float, str]], begin_path: str | None = None) -> Path:
    header = ["Selection", "View", "Channel", "Begin Time (s)", "End Time (s)", "Species"]
    header += ["Begin Path", "File Offset (s)"] if begin_path else []
    lines = ["\t".join(header)]
    for k, (a, b, label) in enumerate(rows, start=1):
        cells = [str(k), "Spectrogram 1", "1", str(a), str(b), label] + ([begin_path, str(a)] if begin_path else [])
        lines.append("\t".join(cells))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\r\n".join(lines) + "\r\n")  # Raven on Windows writes CRLF
    return path


def test_raven_tables_beside_audio_with_repeated_timestamp_names(tmp_path: Path) -> None:
    # Invariant: a table beside its audio describes that audio, even where the same file
    # name stands in several sites; a Begin Path's folders tell sites apart too.
    corpus = tmp_path / "corpus"
    for site in ("site_A", "site_B"):
        make_file(corpus / site / "20240501_050000.WAV", "tone", 32_000)
    _raven(corpus / "site_A" / "20240501_050000.Table.1.selections.txt", [(0.1, 0.2, "wren")])
    _raven(corpus / "site_B" / "20240501_050000.Table.1.selections.txt", [(0.5, 0.7, "robin")])
    report = aacdata.import_audio(corpus, tmp_path / "s.zarr", workers=0, progress=False)
    assert report.ok and len(report.imported) == 2
    tables = sorted(str(p) for p in corpus.rglob("*.txt"))
    out = run_cli("annotate", str(tmp_path / "s.zarr"), *tables)
    assert out.returncode == 0, out.stderr
    with aacdata.AACStore.open(tmp_path / "s.zarr") as store:
        ann = store.annotations()
        got = {(store.ids[r], ann.classes[k]) for r, k in zip(ann.recording, ann.label, strict=True)}
        assert got == {("site_A/20240501_050000.WAV", "wren"), ("site_B/20240501_050000.WAV", "robin")}
    one = _raven(
        tmp_path / "elsewhere" / "all.txt", [(1.0, 1.1, "jay")], begin_path=r"E:\field\site_B\20240501_050000.WAV"
    )
    out = run_cli("annotate", str(tmp_path / "s.zarr"), str(one), "--name", "paths")
    assert out.returncode == 0, out.stderr
    with aacdata.AACStore.open(tmp_path / "s.zarr") as store:
        assert store.ids[int(store.annotations("paths").recording[0])] == "site_B/20240501_050000.WAV"
    # a table whose folders say nothing: refused, naming the candidates and the flag
    lost = _raven(tmp_path / "elsewhere" / "20240501_050000.Table.1.selections.txt", [(0.1, 0.2, "x")])
    out = run_cli("annotate", str(tmp_path / "s.zarr"), str(lost), "--name", "lost")
    assert out.returncode == 1
    assert "matches 2 recordings" in out.stderr and "--recording" in out.stderr
    out = run_cli(
        "annotate", str(tmp_path / "s.zarr"), str(lost), "--name", "lost", "--recording", "site_A/20240501_050000.WAV"
    )
    assert out.returncode == 0, out.stderr


def _annotate(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    """``aacdata annotate ...`` in this process (faster than a subprocess): exit status, stderr."""
    code = main(["annotate", *argv])
    return code, capsys.readouterr().err


@pytest.fixture(scope="module")
def two_sites(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store of two recorders' files with the same timestamp name: ``north/0501.WAV`` and
    ``south/0501.WAV``, 2 s each at 16 kHz."""
    root = tmp_path_factory.mktemp("sites")
    for site in ("north", "south"):
        make_file(root / "src" / site / "0501.WAV", "tone", 32_000)
    assert aacdata.import_audio(root / "src", root / "clean.zarr", workers=0, progress=False).ok
    return root / "clean.zarr"


def _events(store: Path, name: str) -> set[tuple[str, str, float]]:
    """(store id, label, start seconds) of each event of a set."""
    with aacdata.AACStore.open(store) as s:
        ann = s.annotations(name)
        return {
            (s.ids[r], ann.classes[k], a / 16_000)
            for r, k, a in zip(ann.recording.tolist(), ann.label.tolist(), ann.start.tolist(), strict=True)
        }


def test_a_recording_map_names_the_recordings_of_tables_whose_folders_say_nothing(
    two_sites: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Invariant: a mapped event lands on the recording the map names, whatever the table's
    # name, folders, Begin File or Begin Path say.
    store = tmp_path / "s.zarr"
    shutil.copytree(two_sites, store)
    monkeypatch.chdir(tmp_path)  # tables given (and mapped) by relative paths
    card1 = _raven(Path("cards/1/0501.Table.1.selections.txt"), [(0.1, 0.2, "wren")])
    card2 = _raven(Path("cards/2/0501.Table.1.selections.txt"), [(0.5, 0.7, "robin")])
    notes = _raven(Path("cards/notes.txt"), [(1.0, 1.2, "jay")])  # neither Begin File nor a table's name
    code, err = _annotate(capsys, str(store), str(card1), str(card2))
    assert code == 1 and "matches 2 recordings" in err and "--recording-map FILE" in err
    by_table = Path("by_table.csv")
    by_table.write_text(
        "\ufefftable,recording\ncards/1/0501.Table.1.selections.txt,north/0501.WAV\n"
        f"{Path.cwd() / card2},south/0501.WAV\nnotes.txt,0501.WAV\n\n",  # absolute; a bare file name
        encoding="utf-8",
    )
    code, err = _annotate(capsys, str(store), str(card1), str(card2), str(notes), "--recording-map", str(by_table))
    # the map's recordings are looked up like --recording's: a bare file name two sites have is refused
    assert code == 1 and "cards/notes.txt, line 2: the file name '0501.WAV' matches 2 recordings" in err
    by_table.write_text(by_table.read_text().replace("notes.txt,0501.WAV", "notes.txt,south/0501.WAV"))
    code, err = _annotate(capsys, str(store), str(card1), str(card2), str(notes), "--recording-map", str(by_table))
    assert code == 0, err
    assert _events(store, "default") == {
        ("north/0501.WAV", "wren", 0.1),
        ("south/0501.WAV", "robin", 0.5),
        ("south/0501.WAV", "jay", 1.0),
    }
    # name,recording: Begin Paths of memory cards, one name per recorder, in any table
    one = _raven(Path("exports/a.txt"), [(0.3, 0.4, "owl")], begin_path=r"E:\card1\0501.WAV")
    two = _raven(Path("exports/b.txt"), [(0.6, 0.8, "owl")], begin_path=r"E:\card2\0501.WAV")
    three = _raven(Path("exports/c.txt"), [(1.5, 1.6, "tit")], begin_path=r"E:\card1\0501.WAV")
    by_name = Path("by_name.csv")
    by_name.write_text("name,recording\nE:\\card1\\0501.WAV,north/0501.WAV\nE:\\card2\\0501.WAV,south/0501.WAV\n")
    code, err = _annotate(capsys, str(store), str(one), str(two), str(three), "--name", "paths", "--recording-map",
                          str(by_name))  # fmt: skip
    assert code == 0, err
    assert _events(store, "paths") == {
        ("north/0501.WAV", "owl", 0.3),
        ("south/0501.WAV", "owl", 0.6),
        ("north/0501.WAV", "tit", 1.5),
    }


@pytest.mark.parametrize(
    ("header", "rows", "tables", "expected"),
    [
        ("table,recording", ["x.txt,a"], ["t1"], "cannot be read"),  # the map does not exist
        ("id,recording", [], ["t1"], "line 1: expected a CSV table whose header is table,recording or name,recording"),
        ("table,recording", ["t1.txt,"], ["t1"], "line 2: expected two fields, a table and a recording id"),
        ("table,recording", ["t1.txt,a,b"], ["t1"], "line 2: expected two fields"),
        ("table,recording", ["other.txt,a"], ["t1"], "line 2: 'other.txt' is none of the tables given"),
        ("table,recording", ["0501.Table.1.selections.txt,a"], ["d1", "d2"], "line 2: the file name '0501.Table"),
        ("table,recording", ["t1.txt,a", "", "t1.txt,b"], ["t1"], "line 4: the table 't1.txt' is mapped to 'b' here"),
        ("name,recording", ["0501.WAV,a", "0501.WAV,b"], ["t1"], "line 3: the name '0501.WAV' is mapped to 'b' here"),
        ("name,recording", ["E:\\x.WAV,a"], ["t1"], "line 2: no table names the recording 'E:\\\\x.WAV'"),
        ("table,recording", ["t1.txt,north/0501.WAV"], ["t2"], "line 2: the table 't1.txt' names 2 recordings"),
    ],
)
def test_a_bad_recording_map_is_refused_naming_its_file_and_line(
    two_sites: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    header: str,
    rows: list[str],
    tables: list[str],
    expected: str,
) -> None:
    monkeypatch.chdir(tmp_path)
    made = {
        "t1": _raven(Path("t1.txt"), [(0.1, 0.2, "wren")], begin_path="0501.WAV"),
        "t2": Path("t1.txt"),
        "d1": _raven(Path("d1/0501.Table.1.selections.txt"), [(0.1, 0.2, "wren")]),
        "d2": _raven(Path("d2/0501.Table.1.selections.txt"), [(0.1, 0.2, "wren")]),
    }
    if tables == ["t2"]:  # one table over two files, with File Offset (s)
        text = made["t1"].read_text()
        made["t1"].write_text(text + "2\tSpectrogram 1\t1\t0.3\t0.4\tjay\tother.WAV\t0.3\r\n")
    recording_map = Path("map.csv")
    if expected != "cannot be read":
        recording_map.write_text("\n".join([header, *rows]) + "\n")
    code, err = _annotate(capsys, str(two_sites), *(str(made[t]) for t in tables), "--recording-map", "map.csv")
    assert code == 2
    assert err.startswith("aacdata annotate: error: --recording-map 'map.csv'") and expected in err, err
    with aacdata.AACStore.open(two_sites) as s:
        assert s.annotation_sets == ()  # nothing written


def test_recording_and_recording_map_are_refused_together(
    two_sites: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    table = _raven(tmp_path / "t.txt", [(0.1, 0.2, "wren")])
    (tmp_path / "map.csv").write_text(f"table,recording\n{table},north/0501.WAV\n")
    code, err = _annotate(
        capsys,
        str(two_sites),
        str(table),
        "--recording",
        "north/0501.WAV",
        "--recording-map",
        str(tmp_path / "map.csv"),
    )
    assert code == 2 and "--recording and --recording-map" in err


def test_map_recordings_by_table_and_by_name(tmp_path: Path) -> None:
    a = _raven(tmp_path / "x" / "0501.Table.1.selections.txt", [(0.1, 0.2, "wren")])
    b = _raven(tmp_path / "y" / "b.txt", [(0.3, 0.4, "owl")], begin_path=r"E:\card2\0501.WAV")
    ann = aacdata.Annotations.from_raven([a, b])
    by_table = ann.map_recordings({str(a): "north/0501.WAV", "b.txt": "south/0501.WAV"}, by="table")
    assert by_table.recording.tolist() == ["north/0501.WAV", "south/0501.WAV"]
    assert by_table.match.tolist() == [aacdata.annotations.MATCH_FILE] * 2
    by_name = ann.map_recordings({r"E:\card2\0501.WAV": "south/0501.WAV"}, by="name")
    assert by_name.recording.tolist() == [str(tmp_path / "x" / "0501"), "south/0501.WAV"]  # a table's own name stays
    with pytest.raises(ValueError, match="no recording name of the tables"):
        ann.map_recordings({str(tmp_path / "x" / "0501"): "north/0501.WAV"}, by="name")
    with pytest.raises(ValueError, match="is none of the tables"):
        ann.map_recordings({"c.txt": "x"}, by="table")
    with pytest.raises(ValueError, match="by must be 'table' or 'name'"):
        ann.map_recordings({}, by="file")  # type: ignore[arg-type]


def _red_columns(png: Path) -> np.ndarray:
    """x positions (fractions of the width) of the picture's pure-red pixels: event boxes."""
    import matplotlib.image

    img = matplotlib.image.imread(png)[..., :3]
    red = (img[..., 0] > 0.9) & (img[..., 1] < 0.2) & (img[..., 2] < 0.2)
    return np.flatnonzero(red.any(axis=0)) / img.shape[1]


def test_show_draws_the_events_where_they_are(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    store = _two_label_store(tmp_path)  # 2 s of audio
    early = aacdata.Annotations.from_records([{"id": "a.wav", "start": 0.1, "end": 0.3, "label": "wren",
                                               "low_hz": 1000, "high_hz": 3000}])  # fmt: skip
    late = aacdata.Annotations.from_records([{"id": "a.wav", "start": 1.6, "end": 1.8, "label": "robin"}])
    with aacdata.AACStore.open(store, "a") as s:
        s.write_annotations(early, "early")
        s.write_annotations(late, "late")
    for name in ("early", "late"):
        out = run_cli("show", str(store), "a.wav", "-o", str(tmp_path / f"{name}.png"), "--set", name)
        assert out.returncode == 0, out.stderr
    # Invariant: the box lies where its event lies in time (read back from the pixels).
    early_x, late_x = _red_columns(tmp_path / "early.png"), _red_columns(tmp_path / "late.png")
    assert early_x.size and late_x.size
    assert early_x.max() < 0.4 < 0.6 < late_x.min()
    # a window that leaves the event out draws no box
    out = run_cli("show", str(store), "a.wav", "-o", str(tmp_path / "none.png"), "--set", "late", "--duration", "1")
    assert out.returncode == 0 and _red_columns(tmp_path / "none.png").size == 0
    missing = run_cli("show", str(store), "a.wav", "-o", str(tmp_path / "x.png"), "--set", "nope")
    assert missing.returncode == 2 and "no annotation set 'nope'" in missing.stderr
    with aacdata.AACStore.open(store) as s:
        fig = aacdata.show_window(s, "a.wav", start_seconds=1.5, duration_seconds=0.5, annotation_set="late")
        assert len(fig.axes[1].patches) == 1


def test_pns_sources_are_flagged_and_can_be_reencoded(tmp_path: Path) -> None:
    from conftest import full_decode

    from aacdata.audio._audiofile import write_audio

    # An .m4a as FFmpeg makes it by default: perceptual noise substitution on (noise makes it fill bands).
    noise = aacdata.testing.signal("noise", 44_100 * 2, sample_rate=44_100, num_channels=2, seed=4)
    src = write_audio(tmp_path / "pns.m4a", 0.3 * noise, sample_rate=44_100, bitrate=96_000, pns=True)
    kept = aacdata.import_audio(src, tmp_path / "keep.zarr", workers=0, progress=False)
    with aacdata.AACStore.open(tmp_path / "keep.zarr") as store:
        rec = store.recording(0)
        assert kept.passthrough == 1 and rec.pns and rec.source["pns"] is True
        assert store.summary()["pns"] == 1
    assert any("perceptual noise substitution" in note for _, note in kept.notes)
    rows = [json.loads(x) for x in run_cli("ls", str(tmp_path / "keep.zarr"), "--json").stdout.splitlines()]
    assert rows[0]["pns"] is True
    redone = aacdata.import_audio(src, tmp_path / "redo.zarr", workers=0, progress=False, pns="reencode")
    assert redone.passthrough == 0
    with aacdata.AACStore.open(tmp_path / "redo.zarr") as store:
        rec = store.recording(0)
        assert not rec.pns
        ref = full_decode(store, rec)
        for start in (0, 1000, 40_000):  # Invariant: re-encoded windows are bit-identical to a full decode
            np.testing.assert_array_equal(store.read(rec, start, 4096), ref[:, start : start + 4096])
    with pytest.raises(ValueError, match="pns must be"):
        aacdata.import_audio(src, tmp_path / "x.zarr", pns="drop")  # type: ignore[arg-type]
