"""Random 1 s windows of 44.1 kHz stereo music-like audio, read the way a training loop
reads them (methods interleaved window by window): ``AACStore.read`` and a dataset item
through a DataLoader against the naive PyAV decode loop (the baseline, same run) and
against soundfile on kept-open FLAC files, PyAV container seek on .m4a and torchcodec (if
importable); then the same read in the last minute of long recordings as in the first.

    .venv/bin/python benchmarks/bench_windows.py            # full run
    .venv/bin/python benchmarks/bench_windows.py --quick    # smoke test, < 30 s
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import av
import numpy as np
import torch
from _corpus import (
    KINDS,
    MUSIC_RATE,
    TORCHCODEC_MISSING,
    AudioDecoder,
    ContainerSeek,
    Corpus,
    SoundfileReader,
    TorchcodecReader,
    build_corpus,
    sf,
    torchcodec_version,
)
from _harness import Method, Report, parser

import aacdata
from aacdata import AACSegmentDataset, AACStore
from aacdata.dataset import Window

FRAME = 1024  # samples per AAC-LC frame
MINUTE = 60 * MUSIC_RATE


class NaiveLoop:
    """The baseline: the frames a window needs (pre-roll frame k0-1 through k1) already in
    memory as one ``bytes`` each (cut beforehand, not timed); ``flush_buffers()``, one
    ``av.Packet`` per frame into a kept ``CodecContext``, ``to_ndarray`` per frame,
    ``np.concatenate``, slice."""

    def __init__(self, store: AACStore) -> None:
        self.store = store
        self.ctx = av.CodecContext.create("aac", "r")
        self._recs: dict[int, tuple[np.ndarray, bytes]] = {}

    def prepare(self, w: Window) -> tuple[list[bytes], int, int]:
        """The window's frames and where the window starts in their output."""
        if w.recording not in self._recs:
            rows = self.store.frame_index(w.recording).astype(np.int64)
            self._recs[w.recording] = rows, self.store.adts_bytes(w.recording)
        rows, data = self._recs[w.recording]
        base = int(rows[0, 0])
        d = w.start + self.store.recording(w.recording).encoder_delay  # decoded position of the first sample
        k0, k1 = d // FRAME, (d + w.num_samples - 1) // FRAME
        kp = max(k0 - 1, 0)
        frames = [data[int(o) - base : int(o + n) - base] for o, n in rows[kp : k1 + 1, :2]]
        return frames, d - kp * FRAME, w.num_samples

    def decode(self, job: tuple[list[bytes], int, int]) -> np.ndarray:
        frames, skip, n = job
        self.ctx.flush_buffers()
        parts = [f.to_ndarray() for b in frames for f in self.ctx.decode(av.Packet(b))]
        return np.concatenate(parts, axis=1)[:, skip : skip + n]


MONO = "dataset item, mono 44.1 kHz"
RESAMPLED = "dataset item, 16 kHz mono (resampled on read)"


class Peers:
    """Every method's files and decoders, opened once and kept for all runs."""

    def __init__(self, corpus: Corpus, store: AACStore) -> None:
        self.corpus, self.store = corpus, store
        self.naive = NaiveLoop(store)
        self.seek = ContainerSeek(corpus.m4a)
        self.flac = SoundfileReader(corpus.flac) if sf is not None else None
        self.torchcodec = TorchcodecReader(corpus.m4a, sample_rate=MUSIC_RATE) if AudioDecoder is not None else None

    def methods(self, windows: Sequence[Window], with_dataset: bool = True) -> dict[str, Method]:
        """Fresh methods for one pass over ``windows`` (the dataset's iterator yields them
        in this order; the naive loop's frames are cut here, untimed)."""
        store = self.store
        jobs = {id(w): self.naive.prepare(w) for w in windows}
        out: dict[str, Method] = {"AACStore.read": lambda w: store.read(w.recording, w.start, w.num_samples)}
        if with_dataset:
            ids = store.ids
            ds = AACSegmentDataset(
                str(self.corpus.store), windows=[(ids[w.recording], w.start, w.num_samples) for w in windows]
            )
            it = iter(torch.utils.data.DataLoader(ds, batch_size=None, num_workers=0))
            out["dataset item, DataLoader(num_workers=0)"] = lambda w: next(it)
            # The same windows downmixed, at the stored rate and resampled to 16 kHz on read.
            mono = AACSegmentDataset(str(self.corpus.store), num_channels=1, windows=ds.plan.windows)
            it_mono = iter(torch.utils.data.DataLoader(mono, batch_size=None, num_workers=0))
            out[MONO] = lambda w: next(it_mono)
            at16 = [(rid, start * 16_000 // MUSIC_RATE, 16_000) for rid, start, _ in ds.plan.windows]
            resampled = AACSegmentDataset(str(self.corpus.store), num_channels=1, sample_rate=16_000, windows=at16)
            it_16k = iter(torch.utils.data.DataLoader(resampled, batch_size=None, num_workers=0))
            out[RESAMPLED] = lambda w: next(it_16k)
        out["naive PyAV loop"] = lambda w: self.naive.decode(jobs[id(w)])
        if self.flac is not None:
            out["soundfile (FLAC, kept open)"] = self.flac.read
        out["PyAV container seek (m4a)"] = self.seek.read
        if self.torchcodec is not None:
            out["torchcodec (m4a)"] = self.torchcodec.read
        return out


def bench_corpus(report: Report, corpus: Corpus, windows: int, warmup: int, seed: int) -> None:
    store = AACStore.open(corpus.store)
    peers = Peers(corpus, store)
    ds = AACSegmentDataset(str(corpus.store), window_seconds=1.0, seed=seed, num_windows=windows + warmup)
    plan = [ds.window(i) for i in range(windows + warmup)]
    timed, warm = plan[:windows], plan[windows:]
    minutes = sum(r.num_samples for r in store.recordings) / MINUTE
    stats = report.compare(
        f"[{corpus.name}] random 1 s windows, {len(store)} recordings, {minutes:.1f} min, {windows} windows",
        lambda: peers.methods(warm + timed),
        timed,
        warmup=warm,
        baseline="naive PyAV loop",
    )
    jobs = [peers.naive.prepare(w) for w in timed]  # the contract: read() == the naive loop, bit for bit
    same = sum(
        np.array_equal(store.read(w.recording, w.start, w.num_samples), peers.naive.decode(j))
        for w, j in zip(timed, jobs, strict=True)
    )
    print(f"\nAACStore.read == naive loop, bit for bit: {same}/{len(timed)} windows")
    if AudioDecoder is None:
        print(f"torchcodec skipped: {TORCHCODEC_MISSING}")
    read, base = stats["AACStore.read"].median, stats["naive PyAV loop"].median
    report.target(f"[{corpus.name}] AACStore.read / naive loop", read / base, "<=", 0.8)
    report.target(
        f"[{corpus.name}] dataset item / naive loop",
        stats["dataset item, DataLoader(num_workers=0)"].median / base,
        "<=",
        0.9,
    )
    report.target(f"[{corpus.name}] read == naive loop, windows", same, ">=", len(timed))
    if "soundfile (FLAC, kept open)" in stats:
        sf_ratio = stats["soundfile (FLAC, kept open)"].median / read
        report.target(f"[{corpus.name}] soundfile FLAC / AACStore.read", sf_ratio, ">=", 1.8)
    report.target(
        f"[{corpus.name}] item 16 kHz mono (resampled) / 44.1 kHz mono",
        stats[RESAMPLED].median / stats[MONO].median,
        "<=",
        1.3,
    )
    for name, s in stats.items():
        if name not in ("AACStore.read", "naive PyAV loop", "dataset item, DataLoader(num_workers=0)"):
            report.info(f"[{corpus.name}] {name} / AACStore.read", s.median / read)
    bench_position(report, corpus, peers, windows, warmup, seed)
    store.close()


def bench_position(report: Report, corpus: Corpus, peers: Peers, windows: int, warmup: int, seed: int) -> None:
    """The same read in the first and in the last minute of the long recordings."""
    store = peers.store
    longs = [r for r in store.recordings if r.num_samples >= 2 * MINUTE]
    rng = np.random.default_rng(seed + 1)
    pairs = []
    for _ in range(windows + warmup):
        r = longs[int(rng.integers(len(longs)))]
        a = int(rng.integers(0, MINUTE - MUSIC_RATE))
        b = int(rng.integers(r.num_samples - MINUTE, r.num_samples - MUSIC_RATE))
        pairs.append((Window(r.index, a, MUSIC_RATE), Window(r.index, b, MUSIC_RATE)))

    def make() -> Mapping[str, Method]:
        one = peers.methods([w for p in pairs for w in p], with_dataset=False)
        names = ["AACStore.read", "PyAV container seek (m4a)", "torchcodec (m4a)"]
        return {
            f"{n}, {tag}": (lambda p, f=one[n], k=k: f(p[k]))
            for n in names
            if n in one
            for k, tag in enumerate(("first minute", "last minute"))
        }

    minutes = min(r.num_samples for r in longs) / MINUTE
    stats = report.compare(
        f"[{corpus.name}] position: the first vs the last minute of {len(longs)} recordings of >= {minutes:.1f} min",
        make,
        pairs[:windows],
        warmup=pairs[windows:],
        baseline="AACStore.read, first minute",
    )
    for i, n in enumerate(("AACStore.read", "PyAV container seek (m4a)", "torchcodec (m4a)")):
        if f"{n}, last minute" in stats:
            ratio = stats[f"{n}, last minute"].median / stats[f"{n}, first minute"].median
            (
                report.target(f"[{corpus.name}] {n}, last / first minute", ratio, "<=", 1.1)
                if i == 0
                else report.info(f"[{corpus.name}] {n}, last / first minute", ratio)
            )


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--windows", type=int, help="timed windows per method (default 400, quick 40)")
    p.add_argument(
        "--corpora",
        nargs="+",
        choices=list(KINDS),
        default=["music"],
        help="music: chords, noise, hits; sparse: tones and speech",
    )
    args = p.parse_args()
    report = Report(
        "bench_windows: random 1 s windows, read as a training loop reads them",
        args,
        f"aacdata {aacdata.__version__}, PyAV {av.__version__}, torch {torch.__version__}, "
        f"soundfile {getattr(sf, '__version__', 'missing')}, torchcodec {torchcodec_version()}",
    )
    torch.set_num_threads(1)
    if args.quick:
        seconds, windows, warmup = [125.0, 8.0, 10.0, 12.0], 40, 5
    else:
        seconds, windows, warmup = [480.0] * 2 + list(np.random.default_rng(args.seed).uniform(40, 65, 18)), 400, 40
    for name in args.corpora:
        corpus = build_corpus(args.workdir, name, seconds, args.seed, pool_segments=2 if args.quick else 6)
        bench_corpus(report, corpus, args.windows or windows, warmup, args.seed)
    report.finish()


if __name__ == "__main__":
    main()
