"""The examples run, on small settings."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

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


def test_convert_corpus_runs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    example = _load("convert_corpus")
    store = tmp_path / "out.zarr"
    example.main(["--synthesize", str(tmp_path / "unused"), str(store), "--workers", "0"])
    out = capsys.readouterr().out
    assert "6 recordings in" in out
    assert "ok=True" in out
    assert (store / "zarr.json").is_file()
