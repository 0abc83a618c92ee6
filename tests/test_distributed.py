"""Sharded import and distributed training across ranks (gloo, on this machine)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import aacdata
from aacdata import AACSegmentDataset, AACStore
from aacdata.audio._audiofile import write_audio
from aacdata.importer import parse_shard, shard_of
from aacdata.testing import signal

RATE = 16_000
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def sources(tmp_path_factory: pytest.TempPathFactory) -> Path:
    src = tmp_path_factory.mktemp("shard-src")
    for i in range(12):
        audio = signal(("tone", "chirp", "speech")[i % 3], RATE + 500 * i, sample_rate=RATE, seed=i)
        write_audio(src / f"d{i % 2}" / f"f{i:02d}.wav", audio, sample_rate=RATE)
    return src


def test_shards_partition_the_sources(sources: Path, tmp_path: Path) -> None:
    whole = aacdata.import_audio(sources, tmp_path / "whole.zarr", workers=0, progress=False)
    parts = [
        aacdata.import_audio(sources, tmp_path / f"part{k}.zarr", workers=0, progress=False, shard=f"{k}/3")
        for k in range(3)
    ]
    ids = [set(p.imported) for p in parts]
    assert set().union(*ids) == set(whole.imported)
    assert sum(len(i) for i in ids) == len(whole.imported)  # disjoint
    assert all(ids)  # 12 ids spread over 3 shards: none empty for this set
    # Stable: the same shard again imports nothing new; the assignment is the id's hash.
    again = aacdata.import_audio(sources, tmp_path / "part1.zarr", workers=0, progress=False, shard=(1, 3))
    assert again.imported == () and set(again.skipped) == ids[1]
    assert all(shard_of(i, 3) == k for k in range(3) for i in ids[k])
    # The parts read together equal the whole, recording by recording.
    ds = AACSegmentDataset([tmp_path / f"part{k}.zarr" for k in range(3)], window_samples=RATE // 2, hop_seconds=0.5)
    with AACStore.open(tmp_path / "whole.zarr") as store:
        for k in range(3):
            with AACStore.open(tmp_path / f"part{k}.zarr") as part:
                for rec in part.recordings:
                    assert part.adts_bytes(rec) == store.adts_bytes(rec.id)
        total = sum(len(range(0, r.num_samples, RATE // 2)) for r in store.recordings)
    assert len(ds) == total


def test_shard_ids_are_stable_numbers() -> None:
    # The hash must not depend on the process (Python's hash() is salted per process).
    assert [shard_of(f"a/{i}.wav", 4) for i in range(8)] == [shard_of(f"a/{i}.wav", 4) for i in range(8)]
    code = "from aacdata.importer import shard_of; print([shard_of(f'a/{i}.wav', 4) for i in range(8)])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True).stdout
    assert json.loads(out) == [shard_of(f"a/{i}.wav", 4) for i in range(8)]


@pytest.mark.parametrize("bad", ["3/3", "-1/2", "1", "a/b", (2, 1)])
def test_bad_shard_is_a_usage_error(bad: object) -> None:
    with pytest.raises(ValueError, match="K/N"):
        parse_shard(bad)  # type: ignore[arg-type]


def test_cli_shard(sources: Path, tmp_path: Path) -> None:
    from aacdata.cli import main

    assert main(["import", str(sources), "-o", str(tmp_path / "s.zarr"), "--shard", "0/2", "--no-progress"]) == 0
    with AACStore.open(tmp_path / "s.zarr") as store:
        assert store.ids and all(shard_of(i, 2) == 0 for i in store.ids)
    assert main(["import", str(sources), "-o", str(tmp_path / "t.zarr"), "--shard", "2/2"]) == 2


_RANK_SCRIPT = textwrap.dedent(
    """
    import json, os, sys
    import torch.distributed as dist
    from torch.utils.data import DataLoader
    from torch.utils.data.distributed import DistributedSampler
    from aacdata import AACSegmentDataset

    store, out = sys.argv[1], sys.argv[2]
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    ds = AACSegmentDataset(store, window_samples=1600, num_windows=40, seed=3, return_info=True)
    sampler = DistributedSampler(ds, shuffle=True, seed=7, drop_last=True)
    seen = []
    for epoch in range(2):
        sampler.set_epoch(epoch)
        ds.set_epoch(epoch)
        for batch in DataLoader(ds, batch_size=5, sampler=sampler, num_workers=1):
            seen += [[epoch, int(r), int(s), float(a.abs().sum())]
                     for r, s, a in zip(batch["recording"], batch["start"], batch["audio"])]
    gathered = [None] * world
    dist.all_gather_object(gathered, seen)
    if rank == 0:
        json.dump(gathered, open(out, "w"))
    dist.destroy_process_group()
    """
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_two_ranks_get_disjoint_windows_covering_the_epoch(sources: Path, tmp_path: Path) -> None:
    store = tmp_path / "s.zarr"
    aacdata.import_audio(sources, store, workers=0, progress=False)
    script = tmp_path / "rank.py"
    script.write_text(_RANK_SCRIPT)
    out = tmp_path / "seen.json"
    env = {**os.environ, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(_free_port()), "WORLD_SIZE": "2"}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    procs = [
        subprocess.Popen([sys.executable, str(script), str(store), str(out)], env={**env, "RANK": str(r)})
        for r in range(2)
    ]
    assert [p.wait(timeout=240) for p in procs] == [0, 0]
    per_rank = json.loads(out.read_text())
    ds = AACSegmentDataset(store, window_samples=1600, num_windows=40, seed=3)
    for epoch in range(2):
        ds.set_epoch(epoch)
        windows = [[(r, s) for e, r, s, _ in seen if e == epoch] for seen in per_rank]
        assert len(windows[0]) == len(windows[1]) == 20
        expected = {(w.recording, w.start) for w in (ds.window(i) for i in range(40))}
        # Together the ranks read exactly the epoch's 40 windows, each once.
        assert sorted(windows[0] + windows[1]) == sorted((w.recording, w.start) for w in map(ds.window, range(40)))
        assert set(windows[0]) | set(windows[1]) == expected
    with AACStore.open(store) as s:
        epoch, r, start, energy = per_rank[1][0]
        assert np.isclose(energy, float(np.abs(s.read(r, start, 1600, pad=True)).sum()), rtol=1e-5)
