"""Train a small call detector on annotated field recordings read with aacdata.

    python examples/train_detector.py OUT_DIR [--recordings 5] [--minutes 1] [--epochs 6]

Long "field recordings" are synthesized: a bed of noise with a faint hum, and
the calls of three synthetic species at known times:

* ``hooter``: a low, slow hoot, a tone sliding from 1000 to 850 Hz, 0.3 to 0.5 s;
* ``chirper``: a fast upward sweep from 2.5 to 3.5 kHz, 0.15 to 0.25 s;
* ``trill``: a 6 kHz whistle pulsed 25 times a second, 0.4 to 0.7 s.

Each recording gets a Raven selection table (``<name>.Table.1.selections.txt``, as Raven
Pro exports it). The recordings are imported into ``OUT_DIR/field.zarr`` and the tables
stored in it as the annotation set ``calls`` (the same as ``aacdata annotate
OUT_DIR/field.zarr OUT_DIR/tables/*.txt --name calls``). A tiny CNN on a log spectrogram
(``torch.stft``, CPU) is trained on 1 s windows from :class:`aacdata.EventWindows`
(centred on calls, plus background windows with none) with multi-hot ``labels="clip"``
targets, and tested on the sliding windows of the last recording, which it never saw:
per-class precision, recall and F1 are printed.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

import aacdata
from aacdata.audio._audiofile import write_audio

RATE = 16_000
SPECIES = ("chirper", "hooter", "trill")  # sorted: the dataset's class order
RAVEN_HEADER = (
    "Selection",
    "View",
    "Channel",
    "Begin Time (s)",
    "End Time (s)",
    "Low Freq (Hz)",
    "High Freq (Hz)",
    "Species",
)


# ---------------------------------------------------------------------- synthetic field recordings


def call(species: str, rng: np.random.Generator) -> tuple[np.ndarray, float, float]:
    """One call: float32 samples, and its band ``(low_hz, high_hz)`` for the table."""
    if species == "hooter":
        seconds, f0, f1 = rng.uniform(0.3, 0.5), 1000.0, 850.0
    elif species == "chirper":
        seconds, f0, f1 = rng.uniform(0.15, 0.25), 2500.0, 3500.0
    else:
        seconds, f0, f1 = rng.uniform(0.4, 0.7), 6000.0, 6000.0
    n = int(seconds * RATE)
    t = np.arange(n) / RATE
    freq = f0 + (f1 - f0) * t / seconds  # linear frequency sweep
    x = np.sin(2 * np.pi * np.cumsum(freq) / RATE)
    if species == "trill":
        x *= 0.5 * (1 - np.cos(2 * np.pi * 25 * t))  # 25 pulses a second
    x *= np.sin(np.pi * t / seconds) ** 2  # smooth onset and offset
    x *= rng.uniform(0.15, 0.4)
    return x.astype(np.float32), min(f0, f1) - 100, max(f0, f1) + 100


def field_recording(seconds: float, seed: int) -> tuple[np.ndarray, list[tuple[float, float, str, float, float]]]:
    """A noise bed with calls: float32 ``(1, T)`` audio and ``(begin_s, end_s, species,
    low_hz, high_hz)`` per call. Calls of a species do not overlap each other; calls of
    different species may."""
    rng = np.random.default_rng(seed)
    n = int(seconds * RATE)
    # Background: noise falling off with frequency (shaped in the Fourier domain, 1/f in
    # power, flat below 200 Hz), a little white noise and a 50 Hz hum.
    spectrum = np.fft.rfft(rng.standard_normal(n))
    spectrum /= np.sqrt(np.maximum(np.fft.rfftfreq(n, 1 / RATE), 200.0))
    bed = np.fft.irfft(spectrum, n)
    t = np.arange(n) / RATE
    audio = 0.05 * bed / bed.std() + 0.01 * rng.standard_normal(n) + 0.02 * np.sin(2 * np.pi * 50 * t)
    events = []
    for species in SPECIES:
        at = rng.uniform(0.2, 3.0)
        while at < seconds - 1.0:
            x, low, high = call(species, rng)
            k = int(at * RATE)
            audio[k : k + x.size] += x
            events.append((k / RATE, (k + x.size) / RATE, species, low, high))
            at += x.size / RATE + rng.uniform(1.0, 6.0)
    events.sort()
    audio = np.clip(audio, -1, 1).astype(np.float32)[None, :]
    return audio, events


def write_raven_table(path: Path, events: list[tuple[float, float, str, float, float]]) -> None:
    """A Raven Pro selection table: tab-separated, each selection in its spectrogram view."""
    lines = ["\t".join(RAVEN_HEADER)]
    for i, (begin, end, species, low, high) in enumerate(events, start=1):
        lines.append("\t".join(map(str, (i, "Spectrogram 1", 1, f"{begin:.6f}", f"{end:.6f}", low, high, species))))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def make_field_corpus(out: Path, *, recordings: int, seconds: float) -> list[Path]:
    """Write ``site_<k>.flac`` and its table per recording; return the tables."""
    tables = []
    for k in range(recordings):
        audio, events = field_recording(seconds, seed=1000 + k)
        write_audio(out / "audio" / f"site_{k:02d}.flac", audio, sample_rate=RATE)
        table = out / "tables" / f"site_{k:02d}.Table.1.selections.txt"
        table.parent.mkdir(parents=True, exist_ok=True)
        write_raven_table(table, events)
        tables.append(table)
    return tables


# ---------------------------------------------------------------------- the detector


class LogSpectrogram(nn.Module):
    """``(B, 1, T)`` audio -> ``(B, 1, 64, frames)``: log power, 512-point STFT, 64 bands of
    4 bins (125 Hz each at 16 kHz)."""

    def __init__(self, n_fft: int = 512, hop: int = 256) -> None:
        super().__init__()
        self.n_fft, self.hop = n_fft, hop
        self.register_buffer("window", torch.hann_window(n_fft))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        spec = torch.stft(x[:, 0], self.n_fft, self.hop, window=self.window, return_complex=True)
        power = spec.abs().pow(2)[:, :256]  # drop the Nyquist bin: 256 bins
        bands = power.reshape(power.shape[0], 64, 4, -1).mean(dim=2)
        return torch.log(bands + 1e-6).unsqueeze(1)


def make_model() -> nn.Module:
    """Convolutions over (frequency, time), the strongest response over time per band."""
    return nn.Sequential(
        LogSpectrogram(),
        nn.BatchNorm2d(1),
        nn.Conv2d(1, 16, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(16, 16, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveMaxPool2d((8, 1)),  # 8 frequency bands, max over time: where a call is does not matter
        nn.Flatten(),
        nn.Linear(16 * 8, len(SPECIES)),
    )


def f1_scores(predicted: np.ndarray, target: np.ndarray) -> dict[str, tuple[float, float, float]]:
    """Per class: precision, recall, F1 of boolean ``(N, K)`` predictions."""
    out = {}
    for k, name in enumerate(SPECIES):
        tp = float(np.sum(predicted[:, k] & target[:, k]))
        fp = float(np.sum(predicted[:, k] & ~target[:, k]))
        fn = float(np.sum(~predicted[:, k] & target[:, k]))
        precision = tp / (tp + fp) if tp + fp else 0.0
        recall = tp / (tp + fn) if tp + fn else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        out[name] = (precision, recall, f1)
    return out


def run(out: Path, *, recordings: int, minutes: float, epochs: int, batch_size: int = 32) -> dict[str, float]:
    """Synthesize, import, annotate, train and test; return the F1 of each species."""
    began = time.perf_counter()
    tables = make_field_corpus(out, recordings=recordings, seconds=60 * minutes)
    store_path = out / "field.zarr"
    report = aacdata.import_audio(out / "audio", store_path, workers=0, progress=False)
    if not report.ok:
        raise RuntimeError(f"import failed: {report.failed}")
    with aacdata.AACStore.open(store_path, "a") as store:
        calls = aacdata.Annotations.from_raven(tables).resolve(store)
        store.write_annotations(calls, "calls", replace=True)
        ids = sorted(store.ids)
    print(f"{len(calls)} calls of {len(calls.classes)} species in {len(ids)} recordings ({minutes:g} min each)")
    train_ids, test_ids = ids[:-1], ids[-1:]

    # A third of the training windows are background with no call (negatives=0.5 against positives=1).
    train_set = aacdata.AACSegmentDataset(
        store_path,
        plan=aacdata.EventWindows("calls", window_seconds=1.0, negatives=0.5, balance="class"),
        labels="clip",
        min_overlap_fraction=0.5,  # a call labels a window when at least half of it lies inside
        recordings=train_ids,
        seed=0,
    )
    test_set = aacdata.AACSegmentDataset(
        store_path,
        plan=aacdata.SlidingWindows(window_seconds=1.0, hop_seconds=0.5, last="drop"),
        annotations="calls",
        labels="clip",
        min_overlap_fraction=0.5,
        recordings=test_ids,
    )
    assert train_set.classes == SPECIES
    loader = torch.utils.data.DataLoader(train_set, batch_size=batch_size, shuffle=True)
    torch.manual_seed(0)
    model = make_model()
    optimiser = torch.optim.Adam(model.parameters(), lr=3e-3)
    for epoch in range(epochs):
        train_set.set_epoch(epoch)  # new event positions and background windows each epoch
        model.train()
        total, count = 0.0, 0
        for audio, target in loader:  # float32 (B, 1, 16000), float32 (B, 3) multi-hot
            loss = nn.functional.binary_cross_entropy_with_logits(model(audio), target)
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            total += loss.item() * len(target)
            count += len(target)
        print(f"epoch {epoch}: loss {total / count:.3f} over {count} windows")

    model.eval()
    predicted, truth = [], []
    with torch.no_grad():
        for audio, target in torch.utils.data.DataLoader(test_set, batch_size=64):
            predicted.append(torch.sigmoid(model(audio)).numpy() > 0.5)
            truth.append(target.numpy() > 0.5)
    truth_all = np.concatenate(truth)
    scores = f1_scores(np.concatenate(predicted), truth_all)
    # Chance: a detector answering "present" for every window scores 2p / (1 + p), where
    # p is the share of windows the class labels.
    chance = f1_scores(np.ones_like(truth_all), truth_all)
    print(f"\nheld-out recording {test_ids[0]}: {len(test_set)} sliding windows (1 s, hop 0.5 s)")
    print(f"{'species':<10} {'precision':>9} {'recall':>7} {'F1':>6} {'chance F1':>10}")
    for name, (precision, recall, f1) in scores.items():
        print(f"{name:<10} {precision:>9.2f} {recall:>7.2f} {f1:>6.2f} {chance[name][2]:>10.2f}")
    print(f"done in {time.perf_counter() - began:.0f} s")
    return {name: f1 for name, (_, _, f1) in scores.items()}


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path, help="output directory: audio, tables and the store")
    parser.add_argument("--recordings", type=int, default=5, help="field recordings; the last is held out")
    parser.add_argument("--minutes", type=float, default=1.0, help="length of each recording")
    parser.add_argument("--epochs", type=int, default=6)
    args = parser.parse_args(argv)
    if args.recordings < 2:
        parser.error("--recordings must be at least 2: one to train on, one held out")
    args.out.mkdir(parents=True, exist_ok=True)
    return run(args.out, recordings=args.recordings, minutes=args.minutes, epochs=args.epochs)


if __name__ == "__main__":
    main()
