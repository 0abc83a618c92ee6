"""FLAC frames in the store: a random 1 s window of a FLAC recording against the same
window of an AAC recording of the same source and against soundfile reading the source
``.flac`` (kept open, seeking), interleaved; import time and bytes per store.

    .venv/bin/python benchmarks/bench_flac.py            # full run
    .venv/bin/python benchmarks/bench_flac.py --quick    # smoke test, < 60 s
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import av
import numpy as np
import soundfile as sf
from _harness import Report, parser

import aacdata
from aacdata.testing import signal


def _size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def bench(report: Report, workdir: Path, rate: int, subtype: str, seconds: float, windows: int, seed: int) -> None:
    name = f"{rate // 1000}k_{subtype.lower()}"
    src = workdir / f"{name}.flac"
    audio = signal("music", int(rate * seconds), sample_rate=rate, num_channels=2, seed=seed)
    sf.write(src, np.asarray(audio).T, rate, subtype=subtype)
    stores = {}
    for codec in ("aac", "flac"):
        path = workdir / f"{name}_{codec}.zarr"
        shutil.rmtree(path, ignore_errors=True)
        t0 = time.perf_counter()
        aacdata.import_audio(src, path, codec=codec, workers=0, progress=False)
        report.info(f"{name}: import seconds, {codec}", time.perf_counter() - t0)
        report.info(f"{name}: store bytes / source .flac bytes, {codec}", _size(path) / src.stat().st_size)
        stores[codec] = aacdata.AACStore.open(path)
    n = rate  # 1 s
    rng = np.random.default_rng(seed)
    total = stores["flac"].recording(0).num_samples
    starts = [int(s) for s in rng.integers(0, total - n, windows)]
    reader = sf.SoundFile(src)

    def soundfile_read(s: int) -> np.ndarray:
        reader.seek(s)
        return reader.read(n, dtype="float32", always_2d=True)

    # The FLAC window is the source's PCM, bit for bit.
    assert np.array_equal(stores["flac"].read(0, starts[0], n), soundfile_read(starts[0]).T)
    stats = report.compare(
        f"1 s stereo window, {rate} Hz {subtype}",
        lambda: {
            "aacdata AAC": lambda s: stores["aac"].read(0, s, n),
            "aacdata FLAC": lambda s: stores["flac"].read(0, s, n),
            "soundfile, source .flac kept open": soundfile_read,
        },
        starts,
        warmup=starts[:20],
        baseline="aacdata AAC",
    )
    flac = stats["aacdata FLAC"].median
    report.info(f"{name}: FLAC window / AAC window", flac / stats["aacdata AAC"].median)
    report.info(f"{name}: FLAC window / soundfile", flac / stats["soundfile, source .flac kept open"].median)


def main() -> None:
    args = parser(__doc__, quick="< 60 s").parse_args()
    report = Report("aacdata: FLAC frames", args, f"aacdata {aacdata.__version__}, PyAV {av.__version__}")
    workdir = args.workdir / ("flac-quick" if args.quick else "flac")
    workdir.mkdir(parents=True, exist_ok=True)
    seconds, windows = (10.0, 100) if args.quick else (60.0, 1500)
    bench(report, workdir, 44_100, "PCM_16", seconds, windows, args.seed)
    bench(report, workdir, 192_000, "PCM_24", seconds / 2, windows, args.seed + 1)
    report.finish()


if __name__ == "__main__":
    main()
