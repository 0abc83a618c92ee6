"""DataLoader throughput per worker count, for ``aacdata bench`` and for sizing loaders."""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from .data.dataset import AACSegmentDataset


@dataclass(frozen=True, slots=True)
class BenchRow:
    """Throughput of one worker count: windows per second and audio seconds per second."""

    num_workers: int
    windows: int
    seconds: float
    window_seconds: float

    @property
    def windows_per_second(self) -> float:
        return self.windows / self.seconds if self.seconds > 0 else 0.0

    @property
    def realtime_factor(self) -> float:
        """Seconds of audio delivered per second of wall time."""
        return self.windows_per_second * self.window_seconds


def bench_dataloader(
    store: str | os.PathLike[str],
    *,
    workers: Sequence[int] = (0, 1, 2),
    window_seconds: float = 1.0,
    batch_size: int = 32,
    num_batches: int = 30,
    progress: bool = False,
    sample_rate: int | None = None,
) -> list[BenchRow]:
    """Time random windows through a ``DataLoader`` for each worker count.

    The first batch of each loader (worker start-up) is not timed. When the store holds
    several sample rates, the most common one is used unless ``sample_rate`` is given.
    """
    if sample_rate is None:
        sample_rate = _most_common_rate(store)
    rows = []
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(workers) * num_batches, unit="batch", desc="bench", dynamic_ncols=True)
    for w in workers:
        ds = AACSegmentDataset(
            store,
            window_seconds=window_seconds,
            sample_rate=sample_rate,
            num_windows=batch_size * (num_batches + 1 + 2 * w),
            num_channels=1,
            seed=w,
        )
        loader = torch.utils.data.DataLoader(ds, batch_size=batch_size, num_workers=w, shuffle=False)
        it = iter(loader)
        next(it)  # start-up: workers fork, open the store, create decoders
        count = 0
        t0 = time.perf_counter()
        for _ in range(num_batches):
            batch = next(it)
            count += int(batch.shape[0])
            if bar is not None:
                bar.update(1)
        elapsed = time.perf_counter() - t0
        del it
        rows.append(BenchRow(w, count, elapsed, window_seconds))
    if bar is not None:
        bar.close()
    return rows


def format_bench(rows: Sequence[BenchRow]) -> str:
    lines = [f"{'workers':>7}  {'windows/s':>10}  {'audio s/s':>10}  {'x realtime':>10}"]
    for r in rows:
        rt = r.realtime_factor
        lines.append(f"{r.num_workers:>7}  {r.windows_per_second:>10.0f}  {rt:>10.0f}  {rt:>9.0f}x")
    return "\n".join(lines)


def _most_common_rate(store: str | os.PathLike[str]) -> int:
    from collections import Counter

    from .store._store import AACStore

    with AACStore.open(store) as s:
        rates = s.column("sample_rate")
        seconds = s.column("num_samples") / rates
        totals: Counter[int] = Counter()
        for r, sec in zip(rates.tolist(), seconds.tolist(), strict=True):
            totals[int(r)] += sec
    if not totals:
        raise ValueError(f"store {os.fspath(store)!r} holds no recordings")
    return totals.most_common(1)[0][0]
