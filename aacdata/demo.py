"""``aacdata demo``: synthesize a small corpus, import it, read it through a DataLoader."""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from .audio import _audiofile
from .data.dataset import AACSegmentDataset
from .importer import import_audio
from .store._store import AACStore

MIN_SECONDS = 12
"""The demo's corpus has 12 files, each read in 1 s windows."""
MAX_SECONDS = 36_000


def run_demo(directory: str | os.PathLike[str] | None = None, *, seconds: float = 180.0, workers: int = 2) -> None:
    """Run the demo in ``directory`` (default: a temporary directory, removed after);
    ``seconds`` of audio (12 to 36000: a second or more for each of its 12 files)."""
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not MIN_SECONDS <= seconds <= MAX_SECONDS:
        raise ValueError(f"seconds must be a number from {MIN_SECONDS} to {MAX_SECONDS}; got {seconds!r}")
    if directory is None:
        with tempfile.TemporaryDirectory(prefix="aacdata-demo-") as tmp:
            _run(Path(tmp), seconds, workers)
    else:
        Path(directory).mkdir(parents=True, exist_ok=True)
        _run(Path(directory), seconds, workers)


def _run(root: Path, seconds: float, workers: int) -> None:
    corpus, store_path = root / "corpus", root / "corpus.zarr"
    print(f"1. synthesizing {seconds:.0f} s of audio in {corpus}")
    t0 = time.perf_counter()
    files = _audiofile.make_corpus(corpus, seconds=seconds)
    flac_bytes = sum(f.stat().st_size for f in files)
    print(
        f"   {len(files)} FLAC files (tone, chirp, noise, speech, music; mono and stereo; 44.1 and 16 kHz), "
        f"{flac_bytes / 1e6:.1f} MB, {time.perf_counter() - t0:.1f} s"
    )

    print(f"2. importing into {store_path}")
    report = import_audio(corpus, store_path, workers=workers, progress=False)
    print(
        f"   {len(report.imported)} recordings, {report.audio_seconds / 60:.1f} min of audio -> "
        f"{report.bytes_written / 1e6:.1f} MB of AAC ({flac_bytes / max(report.bytes_written, 1):.1f}x smaller "
        f"than FLAC), {report.elapsed_seconds:.1f} s ({report.realtime_factor:.0f}x realtime)"
    )
    if report.failed:
        for f in report.failed:
            print(f"   failed: {f}")

    store = AACStore.open(store_path)
    print(f"3. reading random 1 s windows through a DataLoader ({workers} workers, batches of 16)")
    rates = store.summary()["sample_rates"]
    for rate in [*rates, None]:
        # One line per stored rate (its recordings alone), then every recording read at the
        # lowest rate, resampled on read.
        keep = (lambda r, rate=rate: r["sample_rate"] == rate) if rate is not None else None
        ds = AACSegmentDataset(
            store_path,
            window_seconds=1.0,
            sample_rate=rate or min(rates),
            recordings=keep,
            num_channels=1,
            num_windows=640,
            seed=0,
            return_info=True,
        )
        loader = torch.utils.data.DataLoader(ds, batch_size=16, num_workers=workers)
        t0 = time.perf_counter()
        n = 0
        exact = True
        for batch in loader:
            n += batch["audio"].shape[0]
        elapsed = time.perf_counter() - t0
        # Every item equals a direct read of the window its info reports.
        # (resampled windows: to 1e-6, remixing before or after resampling)
        for i in (0, len(ds) // 2, len(ds) - 1):
            item = ds[i]
            ref = store.read(
                item["recording"], item["start"], ds.window_samples or 0, sample_rate=ds.sample_rate, pad=True
            )
            mono = ref.mean(axis=0, keepdims=True, dtype=np.float32)
            got = item["audio"].numpy()
            exact &= bool(np.array_equal(got, mono) if rate else np.max(np.abs(got - mono), initial=0) <= 1e-6)
        label = f"{rate:>6} Hz" if rate else f"all at {ds.sample_rate} Hz"
        print(
            f"   {label}: {n} windows {tuple(batch['audio'].shape[1:])} in {elapsed:.2f} s = "
            f"{n / elapsed:.0f} windows/s (incl. worker start-up), exact: {'yes' if exact else 'NO'}"
        )
    verify = store.verify()
    print(f"4. verify: {verify.num_recordings - len(verify.bad_ids)} of {verify.num_recordings} recordings ok")
    store.close()
