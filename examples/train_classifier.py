"""Train a tiny CNN on log-mel features of a synthetic labelled corpus read with aacdata.

    python examples/train_classifier.py [--epochs 5] [--files-per-class 6] [--num-workers 2]

Four classes (tone, chirp, noise, speech-like bursts) are synthesized, imported with their
labels (``--metadata labels.csv``), and read as random 1 s windows through a DataLoader.
Features use torchaudio's MelSpectrogram when torchaudio is installed, else ``torch.stft``
with a triangular mel filterbank built here.
"""

from __future__ import annotations

import argparse
import csv
import tempfile
from pathlib import Path

import numpy as np
import torch
from torch import nn

import aacdata
from aacdata.audio._audiofile import write_audio
from aacdata.testing import signal

CLASSES = ("tone", "chirp", "noise", "speech")
RATE = 16_000


def make_labelled_corpus(root: Path, files_per_class: int, seconds: float) -> Path:
    """Write the audio files and ``labels.csv`` (columns ``id``, ``label``); return the CSV."""
    rows = []
    for c, kind in enumerate(CLASSES):
        for i in range(files_per_class):
            audio = signal(kind, int(seconds * RATE), sample_rate=RATE, seed=100 * c + i)
            name = f"{kind}/{i:03d}.wav"
            write_audio(root / "audio" / name, audio, sample_rate=RATE)
            rows.append({"id": name, "label": kind})
    labels = root / "labels.csv"
    with labels.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["id", "label"])
        writer.writeheader()
        writer.writerows(rows)
    return labels


def mel_filterbank(n_fft: int, n_mels: int, sample_rate: int) -> torch.Tensor:
    """Triangular mel filters, float32 ``(n_mels, n_fft // 2 + 1)``."""

    def mel(f: np.ndarray) -> np.ndarray:
        return 2595.0 * np.log10(1.0 + f / 700.0)

    def hz(m: np.ndarray) -> np.ndarray:
        return 700.0 * (10 ** (m / 2595.0) - 1.0)

    freqs = np.linspace(0, sample_rate / 2, n_fft // 2 + 1)
    edges = hz(np.linspace(mel(np.array(0.0)), mel(np.array(sample_rate / 2)), n_mels + 2))
    lower, centre, upper = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    fb = np.maximum(0, np.minimum((freqs - lower) / (centre - lower), (upper - freqs) / (upper - centre)))
    return torch.from_numpy(fb.astype(np.float32))


class LogMel(nn.Module):
    """``(B, 1, T)`` audio -> ``(B, 1, n_mels, frames)`` log-mel features."""

    def __init__(self, n_fft: int = 512, hop: int = 160, n_mels: int = 40) -> None:
        super().__init__()
        self.n_fft, self.hop = n_fft, hop
        try:
            import torchaudio

            self.mel: nn.Module | None = torchaudio.transforms.MelSpectrogram(
                sample_rate=RATE, n_fft=n_fft, hop_length=hop, n_mels=n_mels
            )
        except (ImportError, OSError, RuntimeError):  # torchaudio missing or built for another torch
            self.mel = None
            self.register_buffer("fb", mel_filterbank(n_fft, n_mels, RATE))
            self.register_buffer("window", torch.hann_window(n_fft))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x[:, 0]
        if self.mel is not None:
            power = self.mel(x)
        else:
            spec = torch.stft(x, self.n_fft, self.hop, window=self.window, return_complex=True)
            power = self.fb @ spec.abs().pow(2)
        return torch.log(power + 1e-6).unsqueeze(1)


def make_model() -> nn.Module:
    return nn.Sequential(
        LogMel(),
        nn.Conv2d(1, 8, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(8, 16, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(16, len(CLASSES)),
    )


def train(
    workdir: Path, *, epochs: int, files_per_class: int, seconds: float, num_workers: int, batch_size: int = 16
) -> list[float]:
    """Import the corpus, train, and return the mean loss of each epoch."""
    labels = make_labelled_corpus(workdir, files_per_class, seconds)
    store = workdir / "corpus.zarr"
    aacdata.import_audio(workdir / "audio", store, metadata=labels, workers=num_workers, progress=False)

    dataset = aacdata.AACSegmentDataset(store, window_seconds=1.0, return_info=True, num_channels=1, seed=0)
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=batch_size, shuffle=True, num_workers=num_workers, persistent_workers=num_workers > 0
    )
    torch.manual_seed(0)
    model = make_model()
    optimiser = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for epoch in range(epochs):
        dataset.set_epoch(epoch)  # new random windows each epoch
        total, count = 0.0, 0
        for batch in loader:
            target = torch.tensor([CLASSES.index(label) for label in batch["labels"]])
            loss = nn.functional.cross_entropy(model(batch["audio"]), target)
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            total += loss.item() * len(target)
            count += len(target)
        losses.append(total / count)
        print(f"epoch {epoch}: loss {losses[-1]:.3f} over {count} windows")
    return losses


def main(argv: list[str] | None = None) -> list[float]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--files-per-class", type=int, default=6)
    parser.add_argument("--seconds", type=float, default=8.0, help="length of each synthesized file")
    parser.add_argument("--num-workers", type=int, default=2)
    parser.add_argument("--workdir", type=Path, default=None, help="keep the corpus and store here")
    args = parser.parse_args(argv)
    kw = {"epochs": args.epochs, "files_per_class": args.files_per_class, "seconds": args.seconds}
    if args.workdir is not None:
        args.workdir.mkdir(parents=True, exist_ok=True)
        return train(args.workdir, num_workers=args.num_workers, **kw)
    with tempfile.TemporaryDirectory() as tmp:
        return train(Path(tmp), num_workers=args.num_workers, **kw)


if __name__ == "__main__":
    main()
