"""``aacdata annotate`` and the annotation sets in ``aacdata info``: tables written by the
tests, exit statuses, messages, replacing, and an ``annotate`` killed at random moments."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import env_with_package, make_file

import aacdata
from aacdata import AACStore, Annotations
from aacdata.cli import main

RATE = 16_000
RAVEN_HEADER = ("Selection", "View", "Channel", "Begin Time (s)", "End Time (s)", "Low Freq (Hz)", "High Freq (Hz)")


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def write_raven(path: Path, rows: Sequence[tuple[float, float, str]], *, label: str = "Species") -> Path:
    """A Raven selection table: each selection listed in a waveform and a spectrogram view."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = ["\t".join((*RAVEN_HEADER, label))]
    for i, (begin, end, species) in enumerate(rows, start=1):
        for view in ("Waveform 1", "Spectrogram 1"):
            lines.append("\t".join(map(str, (i, view, 1, begin, end, 500, 4000, species))))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def clean_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store of two 3 s mono recordings, ``owl.wav`` and ``frog.wav``, at 16 kHz."""
    root = tmp_path_factory.mktemp("annotate")
    make_file(root / "src" / "owl.wav", "chirp", 3 * RATE, sample_rate=RATE)
    make_file(root / "src" / "frog.wav", "tone", 3 * RATE, sample_rate=RATE, seed=1)
    report = aacdata.import_audio(root / "src", root / "clean.zarr", workers=0, progress=False)
    assert report.ok
    return root / "clean.zarr"


@pytest.fixture
def store(clean_store: Path, tmp_path: Path) -> Path:
    path = tmp_path / "s.zarr"
    shutil.copytree(clean_store, path)
    return path


@pytest.fixture
def tables(tmp_path: Path) -> list[Path]:
    owl = write_raven(tmp_path / "owl.Table.1.selections.txt", [(0.5, 1.0, "Strix aluco"), (2.0, 2.25, "Strix aluco")])
    frog = write_raven(tmp_path / "frog.Table.1.selections.txt", [(0.1, 0.2, "Rana temporaria")])
    return [owl, frog]


def test_annotate_then_info(capsys: pytest.CaptureFixture[str], store: Path, tables: list[Path]) -> None:
    code, out, err = _run(capsys, "annotate", str(store), *map(str, tables))
    assert code == 0, err
    assert "events      3" in out
    assert "recordings  2 of 2" in out
    assert "classes     2: Rana temporaria, Strix aluco" in out
    with AACStore.open(store) as s:
        assert s.annotation_sets == ("default",)
        ann = s.annotations()
        owl, frog = s.ids.index("owl.wav"), s.ids.index("frog.wav")
    # each selection once (two views each), nearest samples, rows sorted by (recording, start)
    got = sorted(zip(ann.recording.tolist(), ann.start.tolist(), ann.stop.tolist(), strict=True))
    assert got == sorted([(owl, 8000, 16000), (owl, 32000, 36000), (frog, 1600, 3200)])
    assert [ann.classes[k] for k in ann.label[np.argsort(ann.start)]] == [
        "Rana temporaria",
        "Strix aluco",
        "Strix aluco",
    ]
    np.testing.assert_array_equal(ann.channel, [0, 0, 0])

    code, out, _ = _run(capsys, "info", str(store))
    assert code == 0
    assert f"annotations default  3 events, 2 classes (Rana temporaria, Strix aluco); from {tables[0]}" in out

    code, out, _ = _run(capsys, "info", str(store), "--json")
    assert code == 0
    sets = json.loads(out)["annotations"]
    assert sets == [
        {
            "name": "default",
            "num_events": 3,
            "classes": ["Rana temporaria", "Strix aluco"],
            "sources": [str(tables[0]), str(tables[1])],
            "version": sets[0]["version"],
        }
    ]


def test_info_without_sets(capsys: pytest.CaptureFixture[str], store: Path) -> None:
    code, out, _ = _run(capsys, "info", str(store))
    assert code == 0
    assert "\n  annotations   -\n" in out
    code, out, _ = _run(capsys, "info", str(store), "--json")
    assert json.loads(out)["annotations"] == []


def test_replace(capsys: pytest.CaptureFixture[str], store: Path, tables: list[Path], tmp_path: Path) -> None:
    assert _run(capsys, "annotate", str(store), str(tables[0]), "--name", "birds")[0] == 0
    other = write_raven(tmp_path / "b" / "owl.Table.1.selections.txt", [(1.0, 1.5, "Bubo bubo")], label="Annotation")
    code, _, err = _run(capsys, "annotate", str(store), str(other), "--name", "birds")
    assert code == 1
    assert "aacdata annotate: error:" in err and "birds" in err and "replace" in err
    with AACStore.open(store) as s:
        assert s.annotations("birds").classes == ("Strix aluco",)  # unchanged
    code, _, err = _run(capsys, "annotate", str(store), str(other), "--name", "birds", "--replace")
    assert code == 0, err
    with AACStore.open(store) as s:
        assert s.annotation_sets == ("birds",)
        ann = s.annotations("birds")
        assert (ann.classes, ann.start.tolist(), ann.stop.tolist()) == (("Bubo bubo",), [16000], [24000])


def test_csv_by_suffix_and_label_column(
    capsys: pytest.CaptureFixture[str], store: Path, tmp_path: Path, tables: list[Path]
) -> None:
    table = tmp_path / "events.csv"
    table.write_text("id,start,end,label,notes\nowl.wav,0.25,0.5,hoot,faint\nfrog.wav,1,2,croak,\n")
    code, out, err = _run(capsys, "annotate", str(store), str(table), "--name", "csv")
    assert code == 0, err
    assert "events      2" in out
    # a Raven table with its label in another column
    raven = write_raven(tmp_path / "calls" / "owl.Table.1.selections.txt", [(0.5, 0.75, "song")], label="Call Type")
    code, _, err = _run(capsys, "annotate", str(store), str(raven), "--name", "calls", "--format", "raven")
    assert code == 1
    assert "no label column" in err
    code, _, err = _run(capsys, "annotate", str(store), str(raven), "--name", "calls", "--label-column", "Call Type")
    assert code == 0, err
    with AACStore.open(store) as s:
        assert s.annotation_sets == ("calls", "csv")
        assert s.annotations("csv").classes == ("croak", "hoot")
        assert s.annotation_info("calls")["num_events"] == 1


def test_a_bad_table_names_file_and_line(
    capsys: pytest.CaptureFixture[str], store: Path, tables: list[Path], tmp_path: Path
) -> None:
    bad = tmp_path / "bad" / "owl.Table.1.selections.txt"
    bad.parent.mkdir()
    text = tables[0].read_text().splitlines()
    text[4] = text[4].replace("2.25", "soon")  # line 5: the second selection's spectrogram view
    bad.write_text("\n".join(text) + "\n")
    code, out, err = _run(capsys, "annotate", str(store), str(bad))
    assert code == 1
    assert out == ""
    assert f"aacdata annotate: error: {bad}, line 5: End Time (s) is 'soon'; expected a number of seconds" in err
    with AACStore.open(store) as s:
        assert s.annotation_sets == ()


@pytest.mark.parametrize(
    ("rows", "flag", "message", "kept"),
    [
        ([(2.5, 3.5, "owl")], "--clip", "past the end of recording 'owl.wav'", [(40_000, 48_000)]),
        ([(0.5, 1.0, "owl")], "--skip-missing", "match no recording", []),
    ],
)
def test_events_past_the_end_and_unknown_recordings(
    capsys: pytest.CaptureFixture[str],
    store: Path,
    tmp_path: Path,
    rows: list[tuple[float, float, str]],
    flag: str,
    message: str,
    kept: list[tuple[int, int]],
) -> None:
    name = "owl" if flag == "--clip" else "bat"  # no recording is named bat.*
    table = write_raven(tmp_path / f"{name}.Table.1.selections.txt", rows)
    code, _, err = _run(capsys, "annotate", str(store), str(table))
    assert code == 1
    assert message in err
    code, out, err = _run(capsys, "annotate", str(store), str(table), flag)
    assert code == 0, err
    with AACStore.open(store) as s:
        ann = s.annotations()
    assert list(zip(ann.start.tolist(), ann.stop.tolist(), strict=True)) == kept
    if not kept:
        assert "events      0 (1 dropped)" in out


def test_usage_errors(capsys: pytest.CaptureFixture[str], store: Path, tables: list[Path], tmp_path: Path) -> None:
    missing_store = tmp_path / "none.zarr"
    code, _, err = _run(capsys, "annotate", str(missing_store), str(tables[0]))
    assert code == 2
    assert not missing_store.exists()  # not created
    code, _, err = _run(capsys, "annotate", str(store), str(tmp_path / "absent.txt"))
    assert (code, "no table at" in err) == (2, True)
    code, _, err = _run(capsys, "annotate", str(store), str(tables[0]), "--name", "no/slash")
    assert (code, "not allowed" in err) == (2, True)
    csv = tmp_path / "e.csv"
    csv.write_text("id,start,end,label\n")
    code, _, err = _run(capsys, "annotate", str(store), str(tables[0]), str(csv))
    assert (code, "mix .csv and Raven" in err) == (2, True)
    assert _run(capsys, "annotate", str(store))[0] == 2  # no table
    with AACStore.open(store) as s:
        assert s.annotation_sets == ()


def test_a_locked_store(capsys: pytest.CaptureFixture[str], store: Path, tables: list[Path]) -> None:
    holder = subprocess.Popen(
        [sys.executable, "-c", LOCK_HOLDER.format(store=str(store))],
        stdout=subprocess.PIPE,
        env=env_with_package(),
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        code, _, err = _run(capsys, "annotate", str(store), str(tables[0]))
        assert code == 1
        assert "aacdata annotate: error:" in err and "lock" in err.lower()
    finally:
        holder.kill()
        holder.wait(timeout=60)
    assert _run(capsys, "annotate", str(store), str(tables[0]))[0] == 0  # the lock died with its holder


LOCK_HOLDER = """
import sys, time
from aacdata.store import _lock
from aacdata.store import AACStore
store = AACStore.open({store!r}, "a")
with _lock.acquire(store.zarr_store, {store!r}):
    print("locked", flush=True)
    time.sleep(120)
"""


# ---------------------------------------------------------------------- killed


def _annotate(store: Path, table: Path, name: str, *options: str) -> list[str]:
    return [sys.executable, "-m", "aacdata", "annotate", str(store), str(table), "--name", name, *options]


def _same(a: Annotations, b: Annotations) -> bool:
    columns = ("recording", "start", "stop", "label", "low_hz", "high_hz", "channel", "extra")
    return a.classes == b.classes and all(
        np.array_equal(getattr(a, c), getattr(b, c), equal_nan=c.endswith("hz")) for c in columns
    )


# Invariant: an ``aacdata annotate`` killed at any moment leaves a store that opens and
# verifies, in which the set is either absent or whole (never half-written), and which a
# later ``annotate`` writes to (the lock died with the process).
@pytest.mark.slow
def test_killed_annotate_leaves_the_set_absent_or_whole(store: Path, tmp_path: Path) -> None:
    rng = np.random.default_rng(7)
    n = 60_000
    start = rng.uniform(0, 2.5, n).round(4)
    records: list[dict[str, Any]] = [
        {"id": ("owl.wav", "frog.wav")[i % 2], "start": s, "end": s + 0.25, "label": f"c{i % 7}"}
        for i, s in enumerate(start.tolist())
    ]
    table = tmp_path / "many.csv"
    lines = ["id,start,end,label"] + [f"{r['id']},{r['start']},{r['end']},{r['label']}" for r in records]
    table.write_text("\n".join(lines) + "\n")
    with AACStore.open(store) as s:
        expected = Annotations.from_csv(table).resolve(s)

    done = subprocess.run(_annotate(store, table, "first"), env=env_with_package(), capture_output=True, timeout=300)
    assert done.returncode == 0, done.stderr

    # Half of the kills land while the set is being written (its folder has appeared), the
    # others anywhere in the run (start-up, parsing, resolving, writing, after).
    picks = random.Random(11)
    outcomes = []
    for k in range(6):
        name = f"killed{k}"
        proc = subprocess.Popen(_annotate(store, table, name), env=env_with_package(), stdout=subprocess.DEVNULL)
        if k % 2 == 0:
            folder = store / "annotations" / name
            while not folder.exists() and proc.poll() is None:
                time.sleep(0.001)
            time.sleep(picks.uniform(0, 1.0))  # writing and exiting take about 1.5 s here
        else:
            time.sleep(picks.uniform(0, 8))
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
        with AACStore.open(store) as s:
            assert s.verify().ok
            if name in s.annotation_sets:
                assert _same(s.annotations(name), expected)
                outcomes.append("whole")
            else:
                outcomes.append("absent")
            assert _same(s.annotations("first"), expected)
    # a later run completes over whatever the kills left (stale versions, the dead lock)
    command = _annotate(store, table, "killed0", "--replace")
    done = subprocess.run(command, env=env_with_package(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    with AACStore.open(store) as s:
        assert s.verify().ok
        assert _same(s.annotations("killed0"), expected)
    print(outcomes)
