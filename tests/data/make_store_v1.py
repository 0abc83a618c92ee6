"""Writes ``store_v1.zarr`` beside this file: a small store in format version 1, the format
of aacdata 0.1, for the tests that old stores stay readable and appendable.

It was made by running this script with aacdata 0.1 (the commit before format version 2)
on the path: ``python tests/data/make_store_v1.py``. Run with a newer aacdata, it would
write the newer format, so keep the committed store as it is.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import numpy as np

import aacdata
from aacdata.audio._audiofile import write_audio

HERE = Path(__file__).parent
OUT = HERE / "store_v1.zarr"


def main() -> None:
    rng = np.random.default_rng(7)
    with tempfile.TemporaryDirectory() as tmp:
        t16 = np.arange(int(16_000 * 1.3)) / 16_000
        write_audio(f"{tmp}/mono16k.wav", (0.3 * np.sin(2 * np.pi * 440 * t16))[None], sample_rate=16_000)
        t44 = np.arange(int(44_100 * 0.9)) / 44_100
        stereo = np.stack([0.2 * np.sin(2 * np.pi * 1000 * t44), 0.1 * rng.standard_normal(t44.size)])
        write_audio(f"{tmp}/stereo44k.wav", stereo, sample_rate=44_100)
        t48 = np.arange(int(48_000 * 0.4)) / 48_000
        six = np.stack([0.1 * np.sin(2 * np.pi * (300 + 200 * c) * t48) for c in range(6)])
        write_audio(f"{tmp}/six48k.wav", six, sample_rate=48_000)
        shutil.rmtree(OUT, ignore_errors=True)
        report = aacdata.import_audio(tmp, OUT, workers=0, progress=False)
        assert report.ok, report.failed
    with aacdata.AACStore.open(OUT, "a") as store:
        ann = aacdata.Annotations.from_records(
            [
                {"id": "mono16k.wav", "start": 0.1, "end": 0.5, "label": "tone"},
                {"id": "stereo44k.wav", "start": 0.2, "end": 0.3, "label": "noise"},
            ]
        )
        store.write_annotations(ann)
    lock = OUT / "aacdata.lock"
    if lock.exists():
        lock.unlink()


if __name__ == "__main__":
    main()
