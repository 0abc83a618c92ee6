"""Weighted mixing of corpora, and epochs that resume mid-way exactly."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import aacdata
from aacdata import AACSegmentDataset
from aacdata.audio._audiofile import write_audio
from aacdata.testing import signal

RATE = 16_000


def _store(root: Path, name: str, seconds: list[float], metadata: dict[str, dict[str, str]] | None = None) -> Path:
    src = root / f"{name}-src"
    for i, sec in enumerate(seconds):
        write_audio(
            src / f"{name}{i}.wav", signal("noise", int(sec * RATE), sample_rate=RATE, seed=i), sample_rate=RATE
        )
    store = root / f"{name}.zarr"
    report = aacdata.import_audio(src, store, workers=0, progress=False, metadata=metadata)
    assert report.ok
    return store


@pytest.fixture(scope="module")
def two_stores(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("mix")
    # a has 9x the audio of b: duration weighting alone would draw b 10% of the time
    return _store(root, "a", [3.0, 3.0, 3.0]), _store(root, "b", [1.0])


@pytest.mark.parametrize(
    ("weights", "temperature", "share_b"), [([1, 1], 1.0, 0.5), ([3, 1], 1.0, 0.25), ([3, 1], 0.5, 1 / (1 + 3**0.5))]
)
def test_store_weights_set_the_proportions(
    two_stores: tuple[Path, Path], weights: list[float], temperature: float, share_b: float
) -> None:
    # Invariant: a group is drawn with probability weight ** temperature / sum, whatever its size.
    ds = AACSegmentDataset(
        list(two_stores), window_seconds=0.25, num_windows=100_000, weights=weights, temperature=temperature, seed=1
    )
    first_b = len(aacdata.AACStore.open(two_stores[0]))
    drawn_b = sum(ds.window(i).recording >= first_b for i in range(len(ds)))
    assert abs(drawn_b / len(ds) - share_b) < 0.01
    again = AACSegmentDataset(
        list(two_stores), window_seconds=0.25, num_windows=100_000, weights=weights, temperature=temperature, seed=1
    )
    assert [again.window(i) for i in range(0, 100_000, 997)] == [ds.window(i) for i in range(0, 100_000, 997)]


def test_metadata_groups_and_stats(tmp_path: Path) -> None:
    meta = {"g0.wav": {"site": "north"}, "g1.wav": {"site": "north"}, "g2.wav": {"site": "south"}}
    store = _store(tmp_path, "g", [2.0, 2.0, 0.5], metadata=meta)
    ds = AACSegmentDataset(
        store, window_seconds=0.25, num_windows=2000, groups="site", weights={"north": 1, "south": 1}, seed=3
    )
    south = aacdata.AACStore.open(store).index_of("g2.wav")
    share = np.mean([ds.window(i).recording == south for i in range(len(ds))])
    assert abs(share - 0.5) < 0.05
    for i in range(40):
        ds[i]
    stats = ds.stats()
    assert stats["windows_in_group:north"] + stats["windows_in_group:south"] == 40
    assert stats["windows_in_group:south"] == sum(ds.window(i).recording == south for i in range(40))


def test_bad_weights_are_clear_errors(two_stores: tuple[Path, Path]) -> None:
    stores = list(two_stores)
    cases = [
        ({"weights": [1, -1]}, "finite, >= 0"),
        ({"weights": [0, 0]}, "not all 0"),
        ({"weights": [1]}, "one weight per store"),
        ({"weights": [1, 1], "temperature": 0}, "temperature must be > 0"),
        ({"groups": "site"}, "give weights= too"),
        ({"weights": {"x": 1}}, "give groups="),
        ({"weights": [1, 1], "hop_seconds": 0.5}, "SlidingWindows reads every window"),
    ]
    for kwargs, match in cases:
        with pytest.raises(ValueError, match=match):
            AACSegmentDataset(stores, window_seconds=0.25, **kwargs)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="at least two stores"):
        AACSegmentDataset(stores[0], window_seconds=0.25, weights=[1])


def test_state_dict_refuses_another_corpus_or_plan(two_stores: tuple[Path, Path]) -> None:
    ds = AACSegmentDataset(list(two_stores), window_seconds=0.25, num_windows=50, seed=5)
    ds.set_epoch(3)
    state = ds.state_dict()
    fresh = AACSegmentDataset(list(two_stores), window_seconds=0.25, num_windows=50, seed=0)
    fresh.load_state_dict(state)
    assert fresh.epoch == 3 and fresh.seed == 5
    assert [fresh.window(i) for i in range(50)] == [ds.window(i) for i in range(50)]
    with pytest.raises(ValueError, match="another corpus"):
        AACSegmentDataset(two_stores[0], window_seconds=0.25, num_windows=50).load_state_dict(state)
    with pytest.raises(ValueError, match="another window plan"):
        AACSegmentDataset(list(two_stores), window_seconds=0.5, num_windows=50).load_state_dict(state)


_RESUME = textwrap.dedent(
    """
    import json, sys, torch
    from torchdata.stateful_dataloader import StatefulDataLoader
    from aacdata import AACSegmentDataset

    stores, workers, mode, state_path, stop_after = json.loads(sys.argv[1])
    ds = AACSegmentDataset(stores, window_seconds=0.1, num_windows=48, seed=7, return_info=True)
    loader = StatefulDataLoader(ds, batch_size=4, shuffle=True, num_workers=workers,
                                generator=torch.Generator().manual_seed(11))
    seen = []
    if mode == "resume":
        saved = torch.load(state_path, weights_only=False)
        ds.load_state_dict(saved["dataset"])
        loader.load_state_dict(saved["loader"])
        epochs = [saved["epoch"]]
    else:
        epochs = [0, 1]
    for epoch in epochs:
        ds.set_epoch(epoch)
        for k, batch in enumerate(loader):
            seen.append([epoch, batch["recording"].tolist(), batch["start"].tolist(), float(batch["audio"].sum())])
            if mode == "stop" and epoch == 1 and k + 1 == stop_after:
                torch.save({"loader": loader.state_dict(), "dataset": ds.state_dict(), "epoch": epoch}, state_path)
    print(json.dumps(seen))
    """
)


@pytest.mark.parametrize("workers", [0, 2])
def test_stateful_dataloader_resumes_exactly(two_stores: tuple[Path, Path], tmp_path: Path, workers: int) -> None:
    # Invariant: stop after k batches of epoch 1, resume in a new process: the remaining
    # batches equal those of the uninterrupted run.
    pytest.importorskip("torchdata.stateful_dataloader")
    from conftest import env_with_package

    state = tmp_path / "state.pt"

    def run(mode: str) -> list[list[object]]:
        args = json.dumps([[str(p) for p in two_stores], workers, mode, str(state), 5])
        out = subprocess.run(
            [sys.executable, "-c", _RESUME, args], capture_output=True, text=True, env=env_with_package(), timeout=300
        )
        assert out.returncode == 0, out.stderr[-3000:]
        result: list[list[object]] = json.loads(out.stdout.strip().splitlines()[-1])
        return result

    full = run("stop")
    resumed = run("resume")
    epoch1 = [b for b in full if b[0] == 1]
    assert len(epoch1) == 12
    assert resumed == epoch1[5:]
