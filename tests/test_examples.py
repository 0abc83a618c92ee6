"""The examples run, on small settings."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path
from types import ModuleType

import pytest

import aacdata

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def _load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_train_classifier_loss_falls(tmp_path: Path) -> None:
    example = _load("train_classifier")
    losses = example.main(
        ["--epochs", "4", "--files-per-class", "3", "--seconds", "4", "--num-workers", "0", "--workdir", str(tmp_path)]
    )
    assert len(losses) == 4
    assert losses[-1] < 0.8 * losses[0], losses


def test_train_detector_finds_every_species(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    example = _load("train_detector")
    f1 = example.main([str(tmp_path / "out"), "--recordings", "4", "--minutes", "0.75", "--epochs", "5"])
    out = capsys.readouterr().out
    assert sorted(f1) == ["chirper", "hooter", "trill"]
    assert min(f1.values()) >= 0.7, out  # answering "present" always scores 0.4 to 0.6 here
    with aacdata.AACStore.open(tmp_path / "out" / "field.zarr") as store:
        assert store.annotation_sets == ("calls",)
        assert store.annotation_info("calls")["classes"] == ["chirper", "hooter", "trill"]
    assert len(list((tmp_path / "out" / "tables").glob("*.Table.1.selections.txt"))) == 4


def test_convert_corpus_runs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    example = _load("convert_corpus")
    store = tmp_path / "out.zarr"
    example.main(["--synthesize", str(tmp_path / "unused"), str(store), "--workers", "0"])
    out = capsys.readouterr().out
    assert "6 recordings in" in out
    assert "ok=True" in out
    assert (store / "zarr.json").is_file()


def test_train_distributed_two_ranks(tmp_path: Path) -> None:
    import os
    import socket
    import subprocess

    from aacdata import import_audio
    from aacdata.audio._audiofile import make_corpus

    make_corpus(tmp_path / "corpus", seconds=20, num_files=4, sample_rates=(16_000,))
    import_audio(tmp_path / "corpus", tmp_path / "s.zarr", workers=0, progress=False)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "PYTHONPATH": str(EXAMPLES.parent)}
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(port)]
    command += [str(EXAMPLES / "train_distributed.py"), str(tmp_path / "s.zarr"), "--epochs", "1"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    # The ranks write to one pipe: find their lines wherever they fall.
    lines = sorted(re.findall(r"rank \d/\d epoch \d+: \d+ windows", done.stdout))
    assert len(lines) == 2, done.stdout
    # 256 windows per epoch, split evenly between the two ranks
    assert lines[0].startswith("rank 0/2 epoch 0: 128 windows")
    assert lines[1].startswith("rank 1/2 epoch 0: 128 windows")
