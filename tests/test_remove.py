"""Changing a store: remove recordings, replace changed sources, compact; each killed at
its steps, refused while another writer holds the lock, and given hostile input."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import zarr
from conftest import env_with_package, make_file

import aacdata
from aacdata import AACStore, RecordingNotFoundError, StoreFormatError, StoreLockedError
from aacdata.cli import main
from aacdata.store import _remove

SOURCES = {
    "a.wav": ("chirp", 20_000, 16_000, 1, 1),
    "b.wav": ("tone", 33_000, 22_050, 2, 2),
    "sub/c.wav": ("noise", 17_000, 16_000, 1, 3),
    "sub/d.flac": ("speech", 40_000, 44_100, 2, 4),
    "e.wav": ("chirp", 9_000, 16_000, 1, 5),
}


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store of :data:`SOURCES` with two annotation sets (events on every recording)."""
    root = tmp_path_factory.mktemp("remove")
    for name, (kind, n, rate, channels, seed) in SOURCES.items():
        (root / "src" / name).parent.mkdir(parents=True, exist_ok=True)
        make_file(root / "src" / name, kind, n, sample_rate=rate, num_channels=channels, seed=seed)
    store = root / "store.zarr"
    report = aacdata.import_audio(root / "src", store, progress=False, workers=0)
    assert report.ok and len(report.imported) == len(SOURCES)
    records = [
        {"id": rid, "start": start, "end": start + 0.2, "label": label}
        for rid in SOURCES
        for start, label in ((0.0, "owl"), (0.3, "wren"))
    ]
    with AACStore.open(store, "a") as st:
        st.write_annotations(aacdata.Annotations.from_records(records))
        st.write_annotations(aacdata.Annotations.from_records(records[::3]), name="birds")
    return root


@pytest.fixture
def store(template: Path, tmp_path: Path) -> Path:
    shutil.copytree(template / "src", tmp_path / "src")
    shutil.copytree(template / "store.zarr", tmp_path / "store.zarr")
    return tmp_path / "store.zarr"


def _snapshot(path: Path) -> dict[str, tuple[np.ndarray, bytes, np.ndarray]]:
    """Per id: the whole recording read, its stored bytes, its index rows relative to its start."""
    with AACStore.open(path) as st:
        out = {}
        for rec in st.recordings:
            rows = st.frame_index(rec).astype(np.int64)
            rows[:, 0] -= rec.byte_start
            out[rec.id] = (st.read(rec, 0, rec.num_samples), st.adts_bytes(rec), rows)
        return out


def _events(path: Path) -> dict[str, list[tuple[str, int, int, str]]]:
    """Per set: its events as (id, start, stop, class), ids rather than rows."""
    with AACStore.open(path) as st:
        out = {}
        for name in st.annotation_sets:
            ann = st.annotations(name)
            out[name] = [
                (st.ids[r], s, e, ann.classes[k])
                for r, s, e, k in zip(
                    ann.recording.tolist(), ann.start.tolist(), ann.stop.tolist(), ann.label.tolist(), strict=True
                )
            ]
        return out


def _check_kept(path: Path, before: dict, events_before: dict, gone: set[str]) -> None:
    """Invariant: the recordings not removed read bit for bit as before, bytes and index
    rows unchanged; removed ids are gone; every set holds exactly the old events of the kept
    recordings; the store verifies."""
    after = _snapshot(path)
    assert set(after) == set(before) - gone
    for rid, (pcm, data, rows) in after.items():
        assert np.array_equal(pcm, before[rid][0]), rid
        assert data == before[rid][1], rid
        assert np.array_equal(rows, before[rid][2]), rid
    events_after = _events(path)
    assert set(events_after) == set(events_before)
    for name, events in events_before.items():
        assert sorted(events_after[name]) == sorted(e for e in events if e[0] not in gone), name
    with AACStore.open(path) as st:
        report = st.verify()
        assert report.ok, report


def test_remove_keeps_the_others_bit_exact(store: Path) -> None:
    before, events = _snapshot(store), _events(store)
    adts_before = zarr.open_array(store / "adts").shape[0]
    with AACStore.open(store, "a") as st:
        removed_bytes = st.recording("b.wav").num_bytes + st.recording("sub/c.wav").num_bytes
        report = st.remove(["b.wav", "sub/c.wav"])
        # The object shows the changed store.
        assert st.ids == ("a.wav", "e.wav", "sub/d.flac")
        assert st.counts.num_recordings == 3
    assert report.removed == ("b.wav", "sub/c.wav") and report.kept == 3
    assert dict(report.events_dropped) == {"default": 4, "birds": 1}
    _check_kept(store, before, events, {"b.wav", "sub/c.wav"})
    # The byte array holds exactly the kept recordings' bytes.
    assert zarr.open_array(store / "adts").shape[0] == adts_before - removed_bytes
    assert not (store.parent / f".store.zarr{_remove.REWRITE_SUFFIX}").exists()


def test_remove_from_the_command_line(store: Path, capsys: pytest.CaptureFixture[str]) -> None:
    before, events = _snapshot(store), _events(store)
    # A file name resolves to its one id, as for `export`; a case difference too.
    assert main(["remove", str(store), "c.wav", "E.WAV", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "sub/c.wav" in out and "e.wav" in out
    _check_kept(store, before, events, {"sub/c.wav", "e.wav"})


def test_unknown_ids_change_nothing(store: Path, capsys: pytest.CaptureFixture[str]) -> None:
    def files() -> list[tuple[Path, int]]:  # the lock file aside: taking the lock writes it
        found = store.rglob("*")
        return sorted((p.relative_to(store), p.stat().st_mtime_ns) for p in found if p.name != "aacdata.lock")

    before = files()
    assert main(["remove", str(store), "a.wav", "b.wv", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "no recording with id 'b.wv'" in err and "did you mean 'b.wav'" in err and "nothing was changed" in err
    with pytest.raises(RecordingNotFoundError, match=r"'zzz'.*\(and 1 more\)"):
        _remove.remove_recordings(store, ["zzz", "yyy", "a.wav"])
    assert files() == before


def test_remove_every_recording_leaves_an_empty_valid_store(store: Path) -> None:
    report = _remove.remove_recordings(store, [*SOURCES, "a.wav"])  # a repeated id counts once
    assert len(report.removed) == len(SOURCES) and report.kept == 0
    with AACStore.open(store) as st:
        assert len(st) == 0 and st.counts.num_bytes == 0
        assert st.verify().ok
        assert all(len(st.annotations(name)) == 0 for name in st.annotation_sets)
    # And the empty store takes an import again.
    report2 = aacdata.import_audio(store.parent / "src", store, progress=False, workers=0)
    assert len(report2.imported) == len(SOURCES)


def test_compact_drops_the_tail_of_an_interrupted_import(store: Path) -> None:
    before, events = _snapshot(store), _events(store)
    with AACStore.open(store) as st:
        counts = st.counts
    # What a killed import leaves: bytes and index rows past the committed counts.
    adts = zarr.open_array(store / "adts", mode="r+")
    adts.resize((counts.num_bytes + 700_000,))
    adts[counts.num_bytes :] = np.random.default_rng(0).integers(0, 256, 700_000, dtype=np.uint8)
    index = zarr.open_array(store / "index", mode="r+")
    index.resize((counts.num_frames + 50, 3))
    report = _remove.compact_store(store)
    assert report.removed == () and report.kept == len(SOURCES)
    assert report.bytes_after < report.bytes_before
    assert zarr.open_array(store / "adts").shape[0] == counts.num_bytes
    assert zarr.open_array(store / "index").shape[0] == counts.num_frames
    _check_kept(store, before, events, set())
    assert main(["compact", str(store), "--no-progress"]) == 0


def test_replace_a_changed_source(store: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = store.parent / "src"
    before, events = _snapshot(store), _events(store)
    make_file(src / "b.wav", "noise", 30_000, sample_rate=22_050, num_channels=2, seed=99)
    # Without replace, the changed file fails and says how to replace it.
    report = aacdata.import_audio(src, store, progress=False, workers=0)
    assert [Path(f.source).name for f in report.failed] == ["b.wav"] and "replace" in report.failed[0].reason
    report = aacdata.import_audio(src, store, progress=False, workers=0, replace=True)
    assert report.ok and report.replaced == ("b.wav",) and report.imported == ("b.wav",)
    assert sorted(report.skipped) == sorted(set(SOURCES) - {"b.wav"})
    # The new content is what a fresh import of the changed file gives.
    fresh = store.parent / "fresh.zarr"
    aacdata.import_audio(src / "b.wav", fresh, progress=False, workers=0)
    with AACStore.open(store) as st, AACStore.open(fresh) as ref:
        rec = st.recording("b.wav")
        assert rec.num_samples == 30_000 and rec.index == len(st) - 1  # appended after the others
        assert st.adts_bytes(rec) == ref.adts_bytes("b.wav")
        assert np.array_equal(st.read(rec, 0, 30_000), ref.read("b.wav", 0, 30_000))
        assert "b.wav" not in {st.ids[r] for name in st.annotation_sets for r in st.annotations(name).recording}
    kept = {rid: v for rid, v in before.items() if rid != "b.wav"}
    after = _snapshot(store)
    for rid, (pcm, data, _rows) in kept.items():
        assert np.array_equal(after[rid][0], pcm) and after[rid][1] == data
    assert {n: sorted(e for e in ev if e[0] != "b.wav") for n, ev in events.items()} == {
        n: sorted(ev) for n, ev in _events(store).items()
    }
    # Unchanged now: the command line skips everything.
    assert main(["import", str(src), "-o", str(store), "--replace", "--no-progress", "--workers", "0"]) == 0
    assert "replaced" not in capsys.readouterr().out
    with AACStore.open(store) as st:
        assert len(st) == len(SOURCES) and st.verify().ok


# ---------------------------------------------------------------------- killed at its steps

_PAUSING_CLI = (
    "import sys, time\n"
    "from aacdata.store import _remove\n"
    "from aacdata.cli import main\n"
    "def pause(step):\n"
    "    if step == sys.argv[1]:\n"
    "        print('at', step, flush=True)\n"
    "        time.sleep(600)\n"
    "_remove._step_hook = pause\n"
    "sys.exit(main(sys.argv[2:]))\n"
)


def _kill_at(step: str, args: list[str]) -> None:
    """Run the CLI until it reaches ``step``, then SIGKILL that process alone."""
    proc = subprocess.Popen(
        [sys.executable, "-c", _PAUSING_CLI, step, *args],
        env=env_with_package(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.strip() == f"at {step}", (line, proc.stderr.read() if proc.stderr else "")
        os.kill(proc.pid, signal.SIGKILL)
        assert proc.wait(timeout=30) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.parametrize("step", ["copied", "sets", "swapped", "done"])
def test_remove_killed_at_each_step(store: Path, step: str) -> None:
    # Invariant: a remove killed at any step leaves a store that reads bit-exact and
    # verifies, holding either every recording or all but the removed one; the next run
    # takes the dead process's lock over and finishes.
    before, events = _snapshot(store), _events(store)
    _kill_at(step, ["remove", str(store), "sub/d.flac", "--no-progress"])
    swapped = step in ("swapped", "done")
    _check_kept(store, before, events, {"sub/d.flac"} if swapped else set())
    staging = store.parent / f".store.zarr{_remove.REWRITE_SUFFIX}"
    assert staging.exists() == (step != "done")
    if swapped:
        assert main(["compact", str(store), "--no-progress"]) == 0
    else:
        assert main(["remove", str(store), "sub/d.flac", "--no-progress"]) == 0
    assert not staging.exists()
    _check_kept(store, before, events, {"sub/d.flac"})
    # And an import still resumes into it.
    report = aacdata.import_audio(store.parent / "src", store, progress=False, workers=0)
    assert report.imported == ("sub/d.flac",)


@pytest.mark.parametrize("step", ["copied", "swapped"])
def test_replace_killed_at_its_rewrite(store: Path, step: str) -> None:
    src = store.parent / "src"
    make_file(src / "a.wav", "noise", 12_000, sample_rate=16_000, seed=7)
    args = ["import", str(src), "-o", str(store), "--replace", "--no-progress", "--workers", "0"]
    _kill_at(step, args)
    with AACStore.open(store) as st:
        assert st.verify().ok
        assert st.recording("a.wav").num_samples == (12_000 if step == "swapped" else 20_000)
    assert main(args) == 0
    with AACStore.open(store) as st:
        assert st.recording("a.wav").num_samples == 12_000 and len(st) == len(SOURCES) and st.verify().ok


@pytest.mark.slow
def test_compact_killed_at_random_moments(store: Path) -> None:
    # Invariant: whenever the process dies, the store reads bit-exact and verifies.
    before, events = _snapshot(store), _events(store)
    cmd = [sys.executable, "-m", "aacdata", "compact", str(store), "--no-progress"]
    started = time.perf_counter()
    assert subprocess.run([*cmd[:3], "--version"], env=env_with_package(), capture_output=True).returncode == 0
    startup = time.perf_counter() - started  # kills before the command starts prove nothing
    started = time.perf_counter()
    assert subprocess.run(cmd, env=env_with_package(), capture_output=True).returncode == 0
    seconds = time.perf_counter() - started
    for delay in np.linspace(startup, 0.95 * seconds, 8):
        proc = subprocess.Popen(cmd, env=env_with_package(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            proc.wait(timeout=delay)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
        _check_kept(store, before, events, set())


# ---------------------------------------------------------------------- the lock

_HOLDER = (
    "import sys, time\n"
    "from aacdata import AACStore\n"
    "from aacdata.store._writer import StoreWriter\n"
    "w = StoreWriter(AACStore.open(sys.argv[1], 'a'))\n"
    "print('locked', flush=True)\n"
    "time.sleep(600)\n"
)


def test_refused_while_another_writer_holds_the_lock(store: Path, capsys: pytest.CaptureFixture[str]) -> None:
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, str(store)], env=env_with_package(), stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        with pytest.raises(StoreLockedError, match=rf"process {holder.pid}"):
            _remove.remove_recordings(store, ["a.wav"])
        assert main(["compact", str(store), "--no-progress"]) == 1
        assert "being written by another import" in capsys.readouterr().err
        with AACStore.open(store, "a") as st, pytest.raises(StoreLockedError):
            st.remove("a.wav")
        # The holder dies without releasing the lock (SIGKILL): the next remove takes it over.
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait(timeout=30)
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()
    assert _remove.remove_recordings(store, ["a.wav"]).removed == ("a.wav",)
    # The lock file is released and names no holder.
    assert (store / "aacdata.lock").read_bytes() == b""


# ---------------------------------------------------------------------- hostile input


def test_hostile_inputs(store: Path, tmp_path: Path) -> None:
    with AACStore.open(store) as st, pytest.raises(ValueError, match="mode='a'"):
        st.remove("a.wav")
    with pytest.raises(ValueError, match="at least one"):
        _remove.remove_recordings(store, [])
    with pytest.raises(TypeError, match="strings"):
        _remove.remove_recordings(store, [3])  # type: ignore[list-item]
    for bad in ("", "../a.wav", "a.wav\x00", "/etc/passwd", "*"):
        with pytest.raises(RecordingNotFoundError):
            _remove.remove_recordings(store, [bad])
    with pytest.raises(StoreFormatError, match="local stores only"):
        _remove.remove_recordings("s3://bucket/corpus.zarr", ["a.wav"])
    with pytest.raises(StoreFormatError, match="local stores only"):
        aacdata.import_audio(store.parent / "src", "s3://bucket/corpus.zarr", replace=True, progress=False)
    with pytest.raises(aacdata.StoreNotFoundError):
        _remove.compact_store(tmp_path / "nothing.zarr")
    (tmp_path / "plain").mkdir()
    with pytest.raises(StoreFormatError):
        _remove.compact_store(tmp_path / "plain")
    # Something that is not a leftover of a rewrite stands where it would be built.
    staging = store.parent / f".store.zarr{_remove.REWRITE_SUFFIX}"
    staging.write_text("mine")
    with pytest.raises(StoreFormatError, match="in the way"):
        _remove.compact_store(store)
    assert staging.read_text() == "mine"
    staging.unlink()
    # A damaged recording stops the rewrite before anything changes.
    with AACStore.open(store) as st:
        rec = st.recording("b.wav")
    chunk = store / "adts" / "c" / "0"
    data = bytearray(chunk.read_bytes())
    data[rec.byte_start + 100] ^= 0xFF
    chunk.write_bytes(bytes(data))
    with pytest.raises(aacdata.CorruptDataError, match=r"'b\.wav' fails its checksum"):
        _remove.remove_recordings(store, ["a.wav"])
    with AACStore.open(store) as st:
        assert "a.wav" in st.ids
    assert json.loads((store / "zarr.json").read_text())["attributes"]["aacdata"]["num_recordings"] == len(SOURCES)


def test_a_failed_rewrite_changes_nothing_and_leaves_nothing(store: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    before, events = _snapshot(store), _events(store)

    def no_swap(a: str, b: str, where: str) -> None:
        raise aacdata.StoreWriteError(f"cannot swap the rewritten store into {where!r}: No space left on device")

    monkeypatch.setattr(_remove, "_exchange", no_swap)
    with pytest.raises(aacdata.StoreWriteError, match="Nothing was changed"):
        _remove.remove_recordings(store, ["a.wav"])
    assert not (store.parent / f".store.zarr{_remove.REWRITE_SUFFIX}").exists()
    _check_kept(store, before, events, set())
    monkeypatch.undo()
    assert _remove.remove_recordings(store, ["a.wav"]).removed == ("a.wav",)  # the lock was released


def test_replace_keeps_user_metadata_unless_given(store: Path) -> None:
    src = store.parent / "src"
    fresh = store.parent / "meta.zarr"
    aacdata.import_audio(src, fresh, progress=False, workers=0, metadata={"e.wav": {"site": "north"}})
    make_file(src / "e.wav", "tone", 8_000, sample_rate=16_000, seed=11)
    report = aacdata.import_audio(src, fresh, progress=False, workers=0, replace=True)
    assert report.replaced == ("e.wav",)
    with AACStore.open(fresh) as st:
        assert dict(st.recording("e.wav").metadata) == {"site": "north"}
        assert st.recording("e.wav").num_samples == 8_000


def test_compact_a_version_1_store(tmp_path: Path) -> None:
    fixture = Path(__file__).parent / "data" / "store_v1.zarr"
    shutil.copytree(fixture, tmp_path / "v1.zarr")
    path = tmp_path / "v1.zarr"
    before = _snapshot(path)
    with AACStore.open(path, "a") as st:
        assert st.format_version == 1
        st.compact()
        assert st.format_version == 2
        assert st.verify().ok
    after = _snapshot(path)
    assert set(after) == set(before)
    for rid, (pcm, data, rows) in before.items():
        assert np.array_equal(after[rid][0], pcm) and after[rid][1] == data and np.array_equal(after[rid][2], rows)


def test_a_lock_taken_across_a_swap_is_refused(store: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Invariant: a writer that opened the lock file of the store a rewrite then swapped away
    # does not believe it holds the store's lock.
    import fcntl

    from aacdata.store import _lock

    other = tmp_path / "other.zarr"
    other.mkdir()
    real_lockf = fcntl.lockf

    def swap_then_lock(fd: int, flags: int) -> None:
        _remove._exchange(str(other), str(store), str(store))  # as a rewrite would, in between
        real_lockf(fd, flags)

    monkeypatch.setattr(fcntl, "lockf", swap_then_lock)
    with pytest.raises(StoreLockedError, match="was rewritten"):
        _lock.acquire(zarr.storage.LocalStore(store), str(store))
    assert _lock.held_here(zarr.storage.LocalStore(store)) is None
