"""Chunk files that are not regular files (issue 17, item 5).

A FIFO in place of a chunk blocked a read forever; a chunk linked to ``/dev/zero`` was read
until memory ran out. Invariant: every way in (read, annotations, verify, repair, copy,
merge) answers with an :class:`aacdata.AACDataError` naming the file, without opening a
FIFO, device or socket for reading and without reading more than a chunk can hold.

Cases that could hang or exhaust memory run in a subprocess with a timeout and a bounded
address space, so that a regression fails the test instead of taking the machine.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import zarr
from conftest import env_with_package, make_file

import aacdata
from aacdata import AACStore, Annotations, CorruptDataError
from aacdata.store._chunks import CheckedLocalStore, DirectChunks

TIMEOUT_S = 120
"""A child that works finishes in seconds; one that blocks is stopped here."""
OPEN_TIMEOUT_S = 30


@pytest.fixture(scope="module")
def clean(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two recordings and an annotation set ``calls`` with events on both."""
    root = tmp_path_factory.mktemp("chunkfiles")
    for k, rid in enumerate(("a.wav", "b.wav")):
        make_file(root / "src" / rid, "speech", 20_000 + 3_000 * k, sample_rate=16_000, seed=k)
    path = root / "clean.zarr"
    assert aacdata.import_audio(root / "src", path, workers=0, progress=False).ok
    with AACStore.open(path, "a") as st:
        records = [
            {"id": "a.wav", "start": 0.1, "end": 0.3, "label": "bird"},
            {"id": "b.wav", "start": 0.2, "end": 0.5, "label": "frog", "low_hz": 200, "high_hz": 3000},
        ]
        st.write_annotations(Annotations.from_records(records), name="calls")
    return path


def _damaged(clean: Path, tmp_path: Path, rel: str, kind: str) -> Path:
    """A copy of the store whose file ``rel`` is replaced by ``kind``."""
    path = tmp_path / "s.zarr"
    shutil.copytree(clean, path)
    target = path / rel
    original = target.read_bytes()
    target.unlink()
    if kind == "fifo":
        os.mkfifo(target)
    elif kind == "zero":
        target.symlink_to("/dev/zero")
    elif kind == "socket":
        with socket.socket(socket.AF_UNIX) as s:
            s.bind(str(target))
    elif kind == "outside":  # a link to a regular file (the chunk's own bytes) outside the store
        outside = tmp_path / "outside.bin"
        outside.write_bytes(original)
        target.symlink_to(outside)
    else:
        raise AssertionError(kind)
    return path


_CHILD = """
import os, resource, sys
import aacdata
from aacdata.cli import main

# The address space as it is now plus 1 GiB: reading /dev/zero whole fails fast here.
with open("/proc/self/status") as f:
    vm = next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmSize:"))
resource.setrlimit(resource.RLIMIT_AS, (vm + (1 << 30), resource.getrlimit(resource.RLIMIT_AS)[1]))
path, out = sys.argv[1], sys.argv[2]

def step(name, fn):
    print("STEP", name, flush=True)
    try:
        result = fn()
    except aacdata.AACDataError as e:
        print("RESULT", name, type(e).__name__, str(e).replace("\\n", " "), flush=True)
    else:
        print("RESULT", name, "ok", result, flush=True)
"""

_STEPS = {
    "read": 'step("read", lambda: [aacdata.AACStore.open(path).read(r, 0, r.num_samples).shape '
    "for r in aacdata.AACStore.open(path)])",
    "open": 'step("open", lambda: len(aacdata.AACStore.open(path)))',
    "annotations": 'step("annotations", lambda: len(aacdata.AACStore.open(path).annotations("calls")))',
    "verify": 'step("verify", lambda: main(["verify", path, "--no-progress"]))',
    "repair": 'step("repair", lambda: main(["repair", path, "-o", out + "/repaired.zarr", "--no-progress"]))',
    "copy": 'from aacdata.store._copy import copy_store\nstep("copy", lambda: copy_store(path, out + "/copy.zarr"))',
    "merge": (
        'from aacdata.store._merge import merge_stores\nstep("merge", lambda: merge_stores([path], out + "/m.zarr"))'
    ),
}


def _run(path: Path, steps: list[str], *, timeout_s: float = TIMEOUT_S) -> dict[str, str]:
    """Run ``steps`` on ``path`` in a child process: ``{step: result line}``."""
    out = path.parent / "out"
    out.mkdir(exist_ok=True)
    code = textwrap.dedent(_CHILD) + "\n".join(_STEPS[s] for s in steps)
    try:
        done = subprocess.run(
            [sys.executable, "-c", code, str(path), str(out)],
            capture_output=True,
            text=True,
            timeout=timeout_s,
            env=env_with_package(),
        )
    except subprocess.TimeoutExpired as e:
        text = e.stdout.decode() if isinstance(e.stdout, bytes) else (e.stdout or "")
        started = [line for line in text.splitlines() if line.startswith("STEP")]
        pytest.fail(f"no result in {timeout_s} s: blocked at {started[-1] if started else 'start-up'}")
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    results = {}
    for line in done.stdout.splitlines():
        if line.startswith("RESULT "):
            _, name, rest = line.split(" ", 2)
            results[name] = rest
    assert sorted(results) == sorted(steps), (done.stdout[-3000:], done.stderr[-3000:])
    return results


@pytest.mark.parametrize(
    ("rel", "kind", "said"),
    [
        ("adts/c/0", "fifo", "is a FIFO (named pipe), not a regular file"),
        ("adts/c/0", "zero", "is a symbolic link to '/dev/zero', outside the store"),
        ("index/c/0/0", "fifo", "is a FIFO (named pipe), not a regular file"),
        ("index/c/0/0", "zero", "is a symbolic link to '/dev/zero', outside the store"),
        ("frame_crc/c/0", "socket", "is a socket, not a regular file"),
    ],
)
def test_reads_refuse_files_that_are_not_regular(clean: Path, tmp_path: Path, rel: str, kind: str, said: str) -> None:
    path = _damaged(clean, tmp_path, rel, kind)
    results = _run(path, ["read"])
    assert results["read"].startswith("CorruptDataError"), results
    assert f"{rel} {said}" in results["read"] and str(path) in results["read"]


def test_adts_fifo_in_every_tool(clean: Path, tmp_path: Path) -> None:
    # repair drops the recordings whose bytes lie in the FIFO (exit 1); copy and merge refuse.
    path = _damaged(clean, tmp_path, "adts/c/0", "fifo")
    results = _run(path, ["copy", "merge", "repair"])
    assert results["copy"].startswith("CorruptDataError") and "adts/c/0 is a FIFO" in results["copy"]
    assert results["merge"].startswith("CorruptDataError") and "adts/c/0 is a FIFO" in results["merge"]
    assert results["repair"] == "ok 1", results
    with AACStore.open(tmp_path / "out" / "repaired.zarr") as st:
        assert len(st) == 0 and st.annotation_sets == ("calls",)
        assert len(st.annotations("calls")) == 0  # the set is kept; its events went with their recordings


def test_merge_refuses_a_part_chunk_linked_to_dev_zero(clean: Path, tmp_path: Path) -> None:
    path = _damaged(clean, tmp_path, "adts/c/0", "zero")
    results = _run(path, ["merge"])
    assert results["merge"].startswith("CorruptDataError") and "/dev/zero" in results["merge"]


def test_annotation_chunk_fifo(clean: Path, tmp_path: Path) -> None:
    path = _damaged(clean, tmp_path, "annotations/calls/v1/start/c/0", "fifo")
    results = _run(path, ["annotations", "verify", "repair"])
    assert results["annotations"].startswith("CorruptDataError")
    assert "annotations/calls/v1/start/c/0 is a FIFO" in results["annotations"]
    assert results["verify"] == "ok 1" and results["repair"] == "ok 1", results


def test_repair_around_a_recordings_column_fifo(clean: Path, tmp_path: Path) -> None:
    path = _damaged(clean, tmp_path, "recordings/num_samples/c/0", "fifo")
    results = _run(path, ["repair"])
    assert results["repair"] == "ok 1", results  # num_samples cannot be read: every recording dropped


@pytest.mark.parametrize(("rel", "step"), [("recordings/num_samples/c/0", "open"), ("index/c/0/0", "verify")])
def test_zarr_reads_of_an_opened_store_refuse_a_fifo(clean: Path, tmp_path: Path, rel: str, step: str) -> None:
    path = _damaged(clean, tmp_path, rel, "fifo")
    results = _run(path, [step], timeout_s=OPEN_TIMEOUT_S)
    assert "is a FIFO" in results[step] or results[step] == "ok 1", results


# ---------------------------------------------------------------------- in process


def test_a_link_inside_the_store_to_a_regular_file_reads(clean: Path, tmp_path: Path) -> None:
    path = tmp_path / "s.zarr"
    shutil.copytree(clean, path)
    with AACStore.open(path) as st:
        want = st.read("a.wav", 0, 5000)
    chunk = path / "adts" / "c" / "0"
    kept = path / "adts" / "moved-chunk"
    chunk.rename(kept)
    chunk.symlink_to(Path("..") / "moved-chunk")
    with AACStore.open(path) as st:
        assert np.array_equal(st.read("a.wav", 0, 5000), want)


def test_a_link_out_of_the_store_is_damage_even_to_a_regular_file(clean: Path, tmp_path: Path) -> None:
    path = _damaged(clean, tmp_path, "adts/c/0", "outside")
    with AACStore.open(path) as st, pytest.raises(CorruptDataError, match=r"adts/c/0 is a symbolic link to .*outside"):
        st.read("a.wav", 0, 5000)


def test_an_index_chunk_larger_than_a_chunk_can_be_is_not_read(clean: Path, tmp_path: Path) -> None:
    path = tmp_path / "s.zarr"
    shutil.copytree(clean, path)
    chunk = path / "index" / "c" / "0" / "0"
    with open(chunk, "r+b") as f:
        f.truncate(64 << 20)  # sparse: 64 MiB that reading would allocate
    with AACStore.open(path) as st, pytest.raises(CorruptDataError, match=r"index: chunk c/0/0 cannot be read .*holds"):
        st.read("a.wav", 0, 5000)


def test_a_blosc_header_declaring_more_than_a_chunk_is_refused(clean: Path, tmp_path: Path) -> None:
    # zarr would allocate what the header declares (up to 4 GiB) before failing.
    path = tmp_path / "s.zarr"
    shutil.copytree(clean, path)
    chunk = path / "index" / "c" / "0" / "0"
    data = bytearray(chunk.read_bytes())
    data[4:8] = (1 << 31).to_bytes(4, "little")
    chunk.write_bytes(bytes(data))
    with AACStore.open(path) as st, pytest.raises(CorruptDataError, match="Blosc header declares 2147483648 bytes"):
        st.read("a.wav", 0, 5000)
    array = zarr.open_array(zarr.storage.LocalStore(path, read_only=True), path="index", mode="r")
    with pytest.raises(CorruptDataError, match="Blosc header"):
        DirectChunks(array).read(0, 10)


def test_checked_local_store(tmp_path: Path) -> None:
    # Invariant: through the checked store, zarr reads regular files as LocalStore does, and
    # refuses a FIFO, a device and an oversized chunk without opening or reading them.
    root = tmp_path / "z"
    array = zarr.create_array(zarr.storage.LocalStore(root), name="x", shape=(10_000,), chunks=(1000,), dtype="int64")
    array[:] = np.arange(10_000)
    checked = zarr.open_array(CheckedLocalStore(root, read_only=True), path="x", mode="r")
    assert np.array_equal(checked[:], np.arange(10_000))
    assert np.array_equal(checked[2500:2600], np.arange(2500, 2600))
    (root / "x" / "c" / "3").unlink()  # absent: the fill value, as with zarr's own store
    assert np.array_equal(checked[3000:3010], np.zeros(10))
    (root / "x" / "c" / "4").unlink()
    os.mkfifo(root / "x" / "c" / "4")
    with pytest.raises(CorruptDataError, match="x/c/4 is a FIFO"):
        checked[4000:4010]
    (root / "x" / "c" / "5").unlink()
    (root / "x" / "c" / "5").symlink_to("/dev/zero")
    with pytest.raises(CorruptDataError, match="x/c/5 is a symbolic link to '/dev/zero'"):
        checked[5000:5010]
    with open(root / "x" / "c" / "6", "r+b") as f:
        f.truncate(1 << 30)  # sparse
    with pytest.raises(CorruptDataError, match=r"chunk file c/6 holds 1073741824 bytes"):
        checked[6000:6010]
    assert checked.store.with_read_only(True).__class__ is CheckedLocalStore
