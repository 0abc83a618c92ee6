"""Faults: imports killed at random moments, a second writer and readers during an import, and
damaged stores (chunk files, zarr.json, index rows, checksums)."""

from __future__ import annotations

import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zarr
from conftest import env_with_package, make_file

import aacdata
from aacdata import AACStore, CorruptDataError, StoreFormatError, StoreLockedError
from aacdata.cli import main

# The import command with a commit after every file, so that a kill lands between many commits.
_IMPORT_EVERY_FILE = (
    "import sys\n"
    "import aacdata.importer as importer\n"
    "from aacdata.cli import main\n"
    "importer._COMMIT_SECONDS = 0.0\n"
    "importer._COMMIT_SHARE = float('inf')\n"  # no spacing of commits by their cost either
    "sys.exit(main(sys.argv[1:]))\n"
)


def _import_cmd(src: Path, store: Path) -> list[str]:
    options = ["--workers", "0", "--no-progress"]
    return [sys.executable, "-c", _IMPORT_EVERY_FILE, "import", str(src), "-o", str(store), *options]


def _write_corpus(root: Path, num_files: int, seconds: tuple[float, float], seed: int) -> Path:
    """Short WAV and FLAC files, mono and stereo, three sample rates; ids sort in import order."""
    rng = np.random.default_rng(seed)
    kinds = ("tone", "chirp", "noise", "speech", "music")
    for i in range(num_files):
        rate = (16_000, 22_050, 44_100)[i % 3]
        n = int(rng.uniform(*seconds) * rate)
        ext = ".flac" if i % 2 else ".wav"
        make_file(root / f"{i:03d}{ext}", kinds[i % 5], n, sample_rate=rate, num_channels=1 + (i // 3) % 2, seed=i)
    return root


@dataclass(frozen=True)
class Reference:
    """A clean import of ``src`` by the killed command itself, and how long it took."""

    src: Path
    ids: tuple[str, ...]
    adts: dict[str, bytes]
    pcm: dict[str, bytes]
    num_samples: dict[str, int]
    seconds: float


def _reference(src: Path, store: Path) -> Reference:
    started = time.perf_counter()
    proc = subprocess.run(
        _import_cmd(src, store), env=env_with_package(), capture_output=True, text=True, timeout=300, check=False
    )
    seconds = time.perf_counter() - started
    assert proc.returncode == 0, proc.stderr
    with AACStore.open(store) as ref:
        assert ref.ids == tuple(sorted(os.listdir(src)))
        assert ref.verify().ok
        return Reference(
            src=src,
            ids=ref.ids,
            adts={rid: ref.adts_bytes(rid) for rid in ref.ids},
            pcm={rid: ref.read(rid, 0, ref.recording(rid).num_samples).tobytes() for rid in ref.ids},
            num_samples={rid: ref.recording(rid).num_samples for rid in ref.ids},
            seconds=seconds,
        )


@pytest.fixture(scope="module")
def small_corpus(tmp_path_factory: pytest.TempPathFactory) -> Reference:
    root = tmp_path_factory.mktemp("kill_small")
    src = _write_corpus(root / "src", 12, (0.5, 1.5), seed=1)
    return _reference(src, root / "reference.zarr")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Reference:
    root = tmp_path_factory.mktemp("kill_full")
    src = _write_corpus(root / "src", 30, (0.5, 3.0), seed=2)
    return _reference(src, root / "reference.zarr")


def _kill_delays(count: int, seconds: float, seed: int) -> list[float]:
    """One random delay in each of ``count`` equal slices of ``[0.05, seconds]``: spread, yet seeded.

    The top is trimmed a little: the measured run started cold (bytecode, page cache), and a
    delay past the end of a run kills nothing."""
    rng = np.random.default_rng(seed)
    edges = np.linspace(0.05, 0.9 * seconds, count + 1)
    return [float(rng.uniform(a, b)) for a, b in itertools.pairwise(edges)]


def _run_and_kill(src: Path, store: Path, delay: float) -> bool:
    """Start the import, SIGKILL it after ``delay`` seconds; False if it had finished by then."""
    proc = subprocess.Popen(
        _import_cmd(src, store), env=env_with_package(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        proc.wait(timeout=delay)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(timeout=30) == -signal.SIGKILL
        return True
    assert proc.returncode == 0
    return False


def _creation_interrupted(store: Path) -> bool:
    """The kill landed while the store was being created: nothing committed, arrays missing.

    Such a store refuses to be read (it holds nothing) and the next import completes it.
    """
    if not (store / "zarr.json").exists():
        return True
    try:
        AACStore.open(store)
    except StoreFormatError as e:
        message = str(e)
    else:
        return False
    assert "creation was interrupted; run the import again" in message
    return True


def _check_after_kill(store: Path, ref: Reference) -> tuple[str, ...]:
    """The killed import left a readable store holding a prefix of the reference, exactly."""
    if not store.exists() or not any(store.iterdir()):
        return ()  # killed before the store was created
    if _creation_interrupted(store):
        return ()  # killed while creating the store: the rerun must finish it
    with AACStore.open(store) as st:
        report = st.verify()
        assert report.ok, report.problems
        ids = st.ids
        assert ids == ref.ids[: len(ids)]  # the sources in order, without gaps or repeats
        for rid in ids:
            rec = st.recording(rid)
            assert rec.num_samples == ref.num_samples[rid]
            assert st.read(rid, 0, rec.num_samples).tobytes() == ref.pcm[rid], rid
            assert st.adts_bytes(rid) == ref.adts[rid], rid
    return ids


def _finish_and_check(store: Path, ref: Reference, committed: tuple[str, ...]) -> None:
    """Rerun the import to completion: what was committed is skipped, the rest imported once."""
    report = aacdata.import_audio(ref.src, store, workers=0, progress=False)
    assert report.failed == ()
    assert report.skipped == committed
    assert report.imported == ref.ids[len(committed) :]
    with AACStore.open(store) as st:
        assert len(set(st.ids)) == len(st.ids)
        assert set(st.ids) == set(ref.ids)
        assert st.ids == ref.ids
        assert st.verify().ok
        for rid in ref.ids:
            assert st.adts_bytes(rid) == ref.adts[rid], rid


def _kill_trials(ref: Reference, tmp_path: Path, delays: list[float], kill_resume: dict[int, float]) -> int:
    """One fresh store per delay: kill, check, (kill the resumed import too: ``kill_resume`` maps
    a trial to its second delay,) finish, check. Returns the number of kills."""
    kills = 0
    for k, delay in enumerate(delays):
        store = tmp_path / f"trial{k}.zarr"
        while not _run_and_kill(ref.src, store, delay):
            # This run beat the reference's time: start over, killing earlier.
            shutil.rmtree(store)
            delay *= 0.7
        kills += 1
        committed = _check_after_kill(store, ref)
        if k in kill_resume:
            # Kill the resumed import as well: it overwrites the garbage the first kill left.
            kills += _run_and_kill(ref.src, store, kill_resume[k])
            committed = _check_after_kill(store, ref)
        _finish_and_check(store, ref, committed)
        shutil.rmtree(store)
    return kills


def test_killed_import_three_times(small_corpus: Reference, tmp_path: Path) -> None:
    delays = _kill_delays(3, small_corpus.seconds, seed=3)
    assert _kill_trials(small_corpus, tmp_path, delays, {}) == 3


@pytest.mark.slow
def test_killed_import_many_times(corpus: Reference, tmp_path: Path) -> None:
    delays = _kill_delays(24, corpus.seconds, seed=4)
    rng = np.random.default_rng(5)
    resume = {k: float(rng.uniform(0.05, 0.9 * corpus.seconds)) for k in range(1, 24, 2)}
    kills = _kill_trials(corpus, tmp_path, delays, resume)
    assert kills >= 20


# ---------------------------------------------------------------------- a second writer, readers


def _committed(store: Path) -> int:
    """Committed recordings according to the root attribute (0 while the store is being made)."""
    try:
        meta = json.loads((store / "zarr.json").read_text())
        return int(meta["attributes"]["aacdata"]["num_recordings"])
    except (OSError, ValueError, KeyError):
        return 0


@pytest.fixture
def running_import(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], Path, Path]]:
    """An import of many small files (a commit after each) running in a subprocess."""
    src = _write_corpus(tmp_path / "src", 60, (0.2, 0.4), seed=6)
    store = tmp_path / "s.zarr"
    proc = subprocess.Popen(_import_cmd(src, store), env=env_with_package(), stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while _committed(store) < 2:
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            assert time.monotonic() < deadline
            time.sleep(0.01)
        yield proc, src, store
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()


def test_second_writer_is_locked_out_and_readers_see_snapshots(
    running_import: tuple[subprocess.Popen[bytes], Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    proc, _, store = running_import
    other = tmp_path / "other"
    make_file(other / "intruder.wav", "tone", 4000)

    with pytest.raises(StoreLockedError) as info:
        aacdata.import_audio(other, store, workers=0, progress=False)
    assert isinstance(info.value, BlockingIOError)
    assert isinstance(info.value, aacdata.AACDataError)
    assert str(store) in str(info.value)
    assert main(["import", str(other), "-o", str(store), "--workers", "0", "--no-progress"]) == 1  # not a usage error
    assert "being written by another import" in capsys.readouterr().err

    with AACStore.open(store) as reader:
        snapshot = reader.ids
        assert len(snapshot) >= 2
        passes = []
        for _ in range(2):
            assert reader.verify().ok
            passes.append([reader.read(rid, 0, reader.recording(rid).num_samples).tobytes() for rid in snapshot])
            assert reader.ids == snapshot  # an open store keeps its snapshot
            time.sleep(0.3)  # let the writer commit more
        assert passes[0] == passes[1]
    # Readers opened at many moments of the import: each sees a longer, consistent prefix.
    seen = snapshot
    for _ in range(15):
        with AACStore.open(store) as later:
            assert later.ids[: len(seen)] == seen
            seen = later.ids
            last = later.recording(len(later) - 1)
            assert later.read(last, 0, last.num_samples).shape == (last.num_channels, last.num_samples)
            assert later.verify(decode=False).ok
        time.sleep(0.05)
    assert len(seen) > len(snapshot)  # the writer kept committing while we read
    assert proc.poll() is None  # all of the above ran during the import

    assert proc.wait(timeout=120) == 0
    with AACStore.open(store) as final:
        assert final.ids[: len(snapshot)] == snapshot
        assert "intruder.wav" not in final.ids
        for rid, data in zip(snapshot, passes[0], strict=True):
            assert final.read(rid, 0, final.recording(rid).num_samples).tobytes() == data
        n = len(final)
    # The lock goes with the writer: now the second import runs.
    report = aacdata.import_audio(other, store, workers=0, progress=False)
    assert report.imported == ("intruder.wav",)
    with AACStore.open(store) as final:
        assert len(final) == n + 1 and final.verify().ok


# ---------------------------------------------------------------------- damaged stores


@dataclass(frozen=True)
class GoodStore:
    path: Path
    ids: tuple[str, ...]
    chunk: int  # bytes per /adts chunk file
    ranges: dict[str, tuple[int, int]]  # id -> [byte_start, byte_end) in /adts
    pcm: dict[str, bytes]


@pytest.fixture(scope="module")
def good(tmp_path_factory: pytest.TempPathFactory) -> GoodStore:
    """Eight recordings over several /adts chunk files (high bit rate, dense signals)."""
    root = tmp_path_factory.mktemp("good")
    for i in range(8):
        kind = ("noise", "music")[i % 2]
        make_file(root / "src" / f"r{i}.wav", kind, 6 * 44_100 + 123 * i, sample_rate=44_100, num_channels=2, seed=i)
    path = root / "good.zarr"
    report = aacdata.import_audio(root / "src", path, workers=0, progress=False, bitrate=320_000)
    assert report.failed == ()
    chunk = int(zarr.open_array(path / "adts", mode="r").chunks[0])
    with AACStore.open(path) as st:
        ranges = {r.id: (r.byte_start, r.byte_start + r.num_bytes) for r in st}
        pcm = {r.id: st.read(r, 0, r.num_samples).tobytes() for r in st}
        assert st.counts.num_bytes > 3 * chunk  # damage to one chunk file leaves others intact
        return GoodStore(path, st.ids, chunk, ranges, pcm)


def _copy(good: GoodStore, tmp_path: Path) -> Path:
    path = tmp_path / "damaged.zarr"
    shutil.copytree(good.path, path)
    return path


def _verify_cli(path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, list[str], str]:
    """``aacdata verify``: exit status, the ids it names as bad (in order), and its output."""
    rc = main(["verify", str(path), "--no-progress"])
    out = capsys.readouterr().out
    bad = [line[len("bad: ") :].split(": ", 1)[0] for line in out.splitlines() if line.startswith("bad: ")]
    return rc, bad, out


def _overlapping(good: GoodStore, start: int, stop: int) -> set[str]:
    return {rid for rid, (a, b) in good.ranges.items() if a < stop and start < b}


def _edit_adts(path: Path, good: GoodStore, offset: int, edit: Any) -> None:
    chunk_file = path / "adts" / "c" / str(offset // good.chunk)
    data = bytearray(chunk_file.read_bytes())
    edit(data, offset % good.chunk)
    chunk_file.write_bytes(bytes(data))


def _assert_others_intact(path: Path, good: GoodStore, damaged: set[str]) -> None:
    with AACStore.open(path, check_table=False) as st:  # a damaged table is refused by default
        for rid in good.ids:
            if rid not in damaged:
                rec = st.recording(rid)
                assert st.read(rid, 0, rec.num_samples).tobytes() == good.pcm[rid], rid


def _frame(good: GoodStore, rid: str, k: int) -> tuple[int, int, int]:
    """(byte offset in /adts, size, first source sample) of frame k of a recording."""
    with AACStore.open(good.path) as st:
        rec = st.recording(rid)
        offset, size, pos = (int(x) for x in st.frame_index(rid)[k])
        return offset, size, pos - rec.encoder_delay


def test_flipped_payload_bytes(good: GoodStore, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _copy(good, tmp_path)
    offset, size, start = _frame(good, "r3.wav", 100)

    def flip(data: bytearray, at: int) -> None:
        data[at + size // 2] ^= 0x5A  # inside the payload, behind the header
        data[at + size // 2 + 1] ^= 0xFF

    _edit_adts(path, good, offset, flip)
    rc, bad, out = _verify_cli(path, capsys)
    assert rc == 1
    assert set(bad) == {"r3.wav"}
    assert "7 of 8 recordings ok" in out
    with AACStore.open(path) as st:
        report = st.verify()
        assert report.bad_ids == ("r3.wav",)
        assert any("crc32" in reason.lower() or "checksum" in reason for _, reason in report.problems)
        # Windows that need the damaged frame, as output or as pre-roll, refuse to decode it.
        for window in ((start, 1024), (start + 500, 10), (start + 1024, 100), (start - 3000, 5000)):
            with pytest.raises(CorruptDataError) as info:
                st.read("r3.wav", *window)
            assert "r3.wav" in str(info.value) and "frame" in str(info.value)
        # Windows far from it read as before.
        rec = st.recording("r3.wav")
        reference = np.frombuffer(good.pcm["r3.wav"], dtype=np.float32).reshape(rec.num_channels, -1)
        np.testing.assert_array_equal(st.read("r3.wav", 0, 20_000), reference[:, :20_000])
        np.testing.assert_array_equal(
            st.read("r3.wav", start + 10_000, 5_000), reference[:, start + 10_000 :][:, :5000]
        )
    _assert_others_intact(path, good, {"r3.wav"})


def test_flipped_header_byte(good: GoodStore, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _copy(good, tmp_path)
    offset, _, start = _frame(good, "r5.wav", 50)

    def flip(data: bytearray, at: int) -> None:
        data[at + 4] ^= 0x10  # the frame length field

    _edit_adts(path, good, offset, flip)
    rc, bad, _ = _verify_cli(path, capsys)
    assert (rc, set(bad)) == (1, {"r5.wav"})
    with AACStore.open(path) as st:
        with pytest.raises(aacdata.AACDataError) as info:
            st.read("r5.wav", start, 2048)
        assert "r5.wav" in str(info.value)
    _assert_others_intact(path, good, {"r5.wav"})


def test_truncated_chunk_file(good: GoodStore, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _copy(good, tmp_path)
    chunk_file = path / "adts" / "c" / "1"
    cut = good.chunk // 3
    chunk_file.write_bytes(chunk_file.read_bytes()[:cut])
    damaged = _overlapping(good, good.chunk + cut, 2 * good.chunk)
    assert 1 <= len(damaged) < len(good.ids)
    rc, bad, out = _verify_cli(path, capsys)
    assert rc == 1
    assert set(bad) == damaged
    assert f"{len(good.ids) - len(damaged)} of {len(good.ids)} recordings ok" in out
    with AACStore.open(path) as st:
        for rid in damaged:
            with pytest.raises(CorruptDataError, match="adts/c/1"):
                st.read(rid, 0, st.recording(rid).num_samples)
    _assert_others_intact(path, good, damaged)


def test_deleted_chunk_file(good: GoodStore, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _copy(good, tmp_path)
    (path / "adts" / "c" / "2").unlink()
    damaged = _overlapping(good, 2 * good.chunk, 3 * good.chunk)
    assert 1 <= len(damaged) < len(good.ids)
    rc, bad, _ = _verify_cli(path, capsys)
    assert rc == 1
    assert set(bad) == damaged
    with AACStore.open(path) as st:
        for rid in damaged:
            with pytest.raises(CorruptDataError, match="adts/c/2 is missing"):
                st.read(rid, 0, st.recording(rid).num_samples)
    _assert_others_intact(path, good, damaged)


def _set_attr(**changes: Any) -> Any:
    def edit(meta: dict[str, Any]) -> None:
        for key, value in changes.items():
            if value is _DROP:
                del meta["attributes"]["aacdata"][key]
            else:
                meta["attributes"]["aacdata"][key] = value

    return edit


def _grow(**deltas: int) -> Any:
    def edit(meta: dict[str, Any]) -> None:
        for key, delta in deltas.items():
            meta["attributes"]["aacdata"][key] += delta

    return edit


_DROP = object()

ROOT_DAMAGE: dict[str, Any] = {
    "garbage_json": b"{not json",
    "empty_file": b"",
    "binary": b"\xff\xfe\x00\x01",
    "json_list": b"[]",
    "no_attributes": lambda meta: meta.pop("attributes"),
    "attribute_not_a_dict": lambda meta: meta["attributes"].update(aacdata=[1, 2]),
    "format_version_3": _set_attr(format_version=3),
    "format_version_string": _set_attr(format_version="1"),
    "format_version_missing": _set_attr(format_version=_DROP),
    "codec_he_aac": _set_attr(codecs={"0": "he-aac"}),
    "codecs_missing_flac": _set_attr(codecs={"0": "aac-lc"}),
    "count_not_a_number": _set_attr(num_frames="many"),
    "count_missing": _set_attr(num_bytes=_DROP),
    "count_negative": _set_attr(num_recordings=-1),
    "more_recordings": _grow(num_recordings=1),
    "more_frames": _grow(num_frames=5),
    "more_bytes": _grow(num_bytes=100),
    "everything_bigger": _grow(num_recordings=3, num_frames=300, num_bytes=300_000),
    "fewer_recordings": _grow(num_recordings=-1),
    "node_type_array": lambda meta: meta.update(node_type="array"),
}


@pytest.mark.parametrize("damage", list(ROOT_DAMAGE))
def test_damaged_root_metadata(
    good: GoodStore, tmp_path: Path, capsys: pytest.CaptureFixture[str], damage: str
) -> None:
    path = _copy(good, tmp_path)
    edit = ROOT_DAMAGE[damage]
    if isinstance(edit, bytes):
        (path / "zarr.json").write_bytes(edit)
    else:
        meta = json.loads((path / "zarr.json").read_text())
        edit(meta)
        (path / "zarr.json").write_text(json.dumps(meta))
    damaged_bytes = (path / "zarr.json").read_bytes()
    for mode in ("r", "a"):
        with pytest.raises(StoreFormatError) as info:
            AACStore.open(path, mode)  # type: ignore[arg-type]
        assert isinstance(info.value, ValueError)
        assert str(path) in str(info.value)
    assert main(["verify", str(path), "--no-progress"]) == 1  # verify reports a damaged store with 1
    out = capsys.readouterr().out
    assert out.startswith("damaged: ") and str(path) in out
    source = tmp_path / "new.wav"
    make_file(source, "tone", 3000)
    assert main(["import", str(source), "-o", str(path), "--workers", "0", "--no-progress"]) == 2
    assert str(path) in capsys.readouterr().err
    assert (path / "zarr.json").read_bytes() == damaged_bytes  # the failed import changed nothing


@pytest.mark.parametrize("column", [0, 1, 2], ids=["byte_offset", "frame_size", "sample_pos"])
def test_edited_index_row(good: GoodStore, tmp_path: Path, capsys: pytest.CaptureFixture[str], column: int) -> None:
    path = _copy(good, tmp_path)
    with AACStore.open(good.path) as st:
        row = st.recording("r6.wav").frame_start + 10
    index = zarr.open_array(path / "index", mode="r+")
    values = np.asarray(index[row])
    values[column] += 1
    index[row] = values
    rc, bad, out = _verify_cli(path, capsys)
    assert (rc, set(bad)) == (1, {"r6.wav"})
    assert "index row 10" in out
    with AACStore.open(path) as st:
        with pytest.raises(CorruptDataError) as info:
            st.read("r6.wav", 8 * 1024, 4096)
        assert "r6.wav" in str(info.value)
    _assert_others_intact(path, good, {"r6.wav"})


def test_changed_recording_checksum(good: GoodStore, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _copy(good, tmp_path)
    column = zarr.open_array(path / "recordings" / "crc32", mode="r+")
    stored = int(column[4])
    column[4] = stored ^ 0x1
    rc, bad, out = _verify_cli(path, capsys)
    assert (rc, set(bad)) == (1, {"r4.wav"})
    assert f"{stored:08x}" in out and f"{stored ^ 1:08x}" in out
    assert "damaged: " in out and "recordings column 'crc32' does not match its checksum" in out
    with pytest.raises(aacdata.StoreFormatError, match="'crc32' does not match"):
        AACStore.open(path)
    # The bytes themselves are intact (and pass their per-frame checks): reads are unchanged.
    _assert_others_intact(path, good, set())


def test_verify_subprocess_on_several_damages(good: GoodStore, tmp_path: Path) -> None:
    """The real command on a store damaged in several places: exit 1, each bad id named once."""
    path = _copy(good, tmp_path)

    def flip_last_byte(data: bytearray, at: int) -> None:
        data[at + size - 1] ^= 1

    for rid, k in (("r0.wav", 3), ("r7.wav", 200)):
        offset, size, _ = _frame(good, rid, k)
        _edit_adts(path, good, offset, flip_last_byte)
    column = zarr.open_array(path / "recordings" / "crc32", mode="r+")
    column[2] = (int(column[2]) + 1) % (1 << 32)
    proc = subprocess.run(
        [sys.executable, "-m", "aacdata", "verify", str(path), "--no-progress"],
        env=env_with_package(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 1, proc.stderr
    bad = [line.split(": ", 2)[1] for line in proc.stdout.splitlines() if line.startswith("bad: ")]
    assert set(bad) == {"r0.wav", "r2.wav", "r7.wav"}
    assert "5 of 8 recordings ok" in proc.stdout
    assert "Traceback" not in proc.stderr


def test_flip_every_frame_of_a_recording_never_crashes(good: GoodStore, tmp_path: Path) -> None:
    """One random byte of every frame of a recording damaged: reads of any window raise
    CorruptDataError, verify names only that recording, and nothing crashes."""
    path = _copy(good, tmp_path)
    rng = np.random.default_rng(8)
    with AACStore.open(good.path) as st:
        rows = st.frame_index("r1.wav").astype(np.int64)
    chunks: dict[int, bytearray] = {}
    for offset, size, _ in rows:
        at = int(offset + rng.integers(7, size))  # anywhere behind the header
        if at // good.chunk not in chunks:
            chunks[at // good.chunk] = bytearray((path / "adts" / "c" / str(at // good.chunk)).read_bytes())
        chunks[at // good.chunk][at % good.chunk] ^= int(rng.integers(1, 256))
    for index, data in chunks.items():
        (path / "adts" / "c" / str(index)).write_bytes(bytes(data))
    with AACStore.open(path) as st:
        assert st.verify().bad_ids == ("r1.wav",)
        rec = st.recording("r1.wav")
        for s in rng.integers(0, rec.num_samples - 2048, 20):
            with pytest.raises(CorruptDataError, match=r"r1\.wav"):
                st.read(rec, int(s), 2048)
    _assert_others_intact(path, good, {"r1.wav"})
