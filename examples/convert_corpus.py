"""Convert a directory of audio files into an aacdata store and look at the result.

    python examples/convert_corpus.py SOURCE_DIR corpus.zarr [--bitrate 256000] [--sample-rate 16000]

Without SOURCE_DIR (``--synthesize``), a small corpus is generated first.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import aacdata
from aacdata.audio._audiofile import make_corpus


def convert(source: Path, store: Path, *, bitrate: int | None, sample_rate: int | None, workers: int | None) -> None:
    report = aacdata.import_audio(
        source,
        store,
        bitrate=bitrate,  # None: by each file's bandwidth (128 kbit/s a channel at 44.1 kHz)
        sample_rate=sample_rate,  # None keeps each file's own rate
        workers=workers,  # None: one process per core
        on_error="skip",  # a bad file is reported, the rest go in
        progress=True,
    )
    print(report)
    for failure in report.failed:
        print("failed:", failure)

    with aacdata.AACStore.open(store) as corpus:
        print(f"{len(corpus)} recordings in {store}")
        for rec in corpus.recordings[:5]:
            print(
                f"  {rec.id}: {rec.duration_seconds:.2f} s, {rec.num_channels} ch, {rec.sample_rate} Hz, "
                f"bandwidth {rec.bandwidth_hz} Hz"
            )
        for rid, warning in report.warnings:
            print("warning:", rid, warning)
        first = corpus.recording(0)
        window = corpus.read(first, 0, min(first.num_samples, first.sample_rate))  # the first second
        print(f"first second of {first.id!r}: float32 array of shape {window.shape}")
        print(corpus.verify())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source", nargs="?", type=Path, help="directory of audio files")
    parser.add_argument("store", nargs="?", type=Path, help="output store (default: a temporary one)")
    parser.add_argument("--synthesize", action="store_true", help="generate a small corpus as the source")
    parser.add_argument("--bitrate", type=int, default=None, help="total bit/s of a recording (default: by bandwidth)")
    parser.add_argument("--sample-rate", type=int, default=None)
    parser.add_argument("--workers", type=int, default=None)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        source = args.source
        if source is None or args.synthesize:
            source = Path(tmp) / "corpus"
            make_corpus(source, seconds=30, num_files=6)
        store = args.store or Path(tmp) / "corpus.zarr"
        convert(source, store, bitrate=args.bitrate, sample_rate=args.sample_rate, workers=args.workers)


if __name__ == "__main__":
    main()
