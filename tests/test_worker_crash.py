"""A conversion process that dies takes only its own file down."""

from __future__ import annotations

import multiprocessing
import os
import signal
from pathlib import Path
from typing import Any

import pytest

import aacdata
import aacdata.importer as importer
from aacdata.audio._audiofile import write_audio
from aacdata.testing import signal as make_signal


@pytest.mark.skipif("fork" not in multiprocessing.get_all_start_methods(), reason="patching relies on fork")
def test_crashing_file_fails_alone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for i in range(6):
        audio = make_signal("tone", 8000 + 100 * i, sample_rate=16_000, seed=i)
        write_audio(tmp_path / "src" / f"{i}.wav", audio, sample_rate=16_000)
    real = importer.transcode

    def crash_on_3(path: str, **kw: Any) -> Any:
        if path.endswith("3.wav"):
            os.kill(os.getpid(), signal.SIGKILL)  # as a segfault inside FFmpeg would
        return real(path, **kw)

    monkeypatch.setattr(importer, "transcode", crash_on_3)
    report = aacdata.import_audio(tmp_path / "src", tmp_path / "s.zarr", workers=2, progress=False)
    assert sorted(report.imported) == ["0.wav", "1.wav", "2.wav", "4.wav", "5.wav"]
    assert [(Path(f.source).name, f.reason) for f in report.failed] == [
        ("3.wav", "the conversion process crashed on this file")
    ]
    store = aacdata.AACStore.open(tmp_path / "s.zarr")
    assert sorted(store.ids) == sorted(report.imported)
    assert store.verify().ok
