"""Shared fixtures: synthetic audio written into temporary directories, a small imported store,
and the reference full decode that every exact read is compared with."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
try:
    import aacdata
except ModuleNotFoundError:  # not installed (pip install -e .): run from the checkout
    sys.path.insert(0, str(ROOT))
    import aacdata

import av  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from aacdata.audio._audiofile import write_audio  # noqa: E402
from aacdata.testing import signal  # noqa: E402

EXTENSIONS = (".wav", ".flac", ".mp3", ".ogg", ".opus", ".m4a", ".mp4", ".aac", ".mkv", ".webm")
"""Every container the tests write; ``.ogg`` (native Vorbis encoder) is stereo only."""

SAMPLES_PER_FRAME = 1024

# The session store: id -> (kind, num_samples, sample_rate, num_channels, seed). Lengths are
# not multiples of 1024 so that the last frame is always partial.
STORE_SOURCES: dict[str, tuple[str, int, int, int, int]] = {
    "mono_44k.wav": ("speech", 50_000, 44_100, 1, 0),
    "stereo_44k.flac": ("music", 40_000, 44_100, 2, 1),
    "nested/mono_16k.mp3": ("chirp", 20_000, 16_000, 1, 2),
    "stereo_16k.wav": ("noise", 17_000, 16_000, 2, 3),
    # seed 4: the encoded payload holds FF F1 .. with a zero length field (a false sync word)
    "surround_48k.wav": ("tone", 30_000, 48_000, 6, 4),
    "short.wav": ("tone", 700, 16_000, 1, 6),
    "pass.m4a": ("speech", 30_000, 44_100, 2, 7),
    "raw.aac": ("chirp", 15_000, 22_050, 1, 8),
}
STORE_IDS = tuple(STORE_SOURCES)


def env_with_package() -> dict[str, str]:
    """Environment for a ``python -m aacdata`` subprocess that finds this checkout."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    return env


def make_file(
    path: str | os.PathLike[str],
    kind: str = "chirp",
    num_samples: int = 16_000,
    *,
    sample_rate: int = 16_000,
    num_channels: int = 1,
    seed: int = 0,
    float_wav: bool = False,
) -> tuple[Path, np.ndarray]:
    """Write a synthetic signal to ``path``; returns the path and the float32 ``(C, T)`` audio."""
    audio = signal(kind, num_samples, sample_rate=sample_rate, num_channels=num_channels, seed=seed)
    return write_audio(path, audio, sample_rate=sample_rate, float_wav=float_wav), audio


def full_decode(store: aacdata.AACStore, rec: aacdata.Recording) -> np.ndarray:
    """The exactness reference: decode the whole stored stream frame by frame with a fresh
    decoder and cut the source timeline out of it; float32, shape ``(C, num_samples)``."""
    data = store.adts_bytes(rec)  # the stand-alone stream (a PCE layout's PCE in frame 0)
    frames = aacdata.codecs._adts.parse_adts(data)
    assert len(frames) == rec.num_frames
    dec = av.CodecContext.create("aac", "r")
    planes = []
    for offset, size in zip(frames.offsets.tolist(), frames.sizes.tolist(), strict=True):
        for frame in dec.decode(av.Packet(data[offset : offset + size])):
            # read plane by plane: PyAV's to_ndarray mishandles planar frames of 8+ channels
            channels = frame.layout.nb_channels
            planes.append(
                np.stack([np.frombuffer(frame.planes[c], np.float32, frame.samples) for c in range(channels)])
            )
    decoded = np.concatenate(planes, axis=1)
    assert decoded.shape[1] == rec.num_frames * SAMPLES_PER_FRAME
    return decoded[: rec.num_channels, rec.encoder_delay : rec.encoder_delay + rec.num_samples]


def peak_lag(x: np.ndarray, y: np.ndarray, max_lag: int = 2048) -> int:
    """Lag of y relative to x (positive: y is late) at the cross-correlation peak, via FFT."""
    n = x.size + y.size
    size = 1 << (n - 1).bit_length()
    corr = np.fft.irfft(np.fft.rfft(y, size) * np.conj(np.fft.rfft(x, size)), size)
    lags = np.concatenate((np.arange(0, max_lag + 1), np.arange(-max_lag, 0)))
    values = np.concatenate((corr[: max_lag + 1], corr[-max_lag:]))
    return int(lags[np.argmax(values)])


@pytest.fixture
def make_audio(tmp_path: Path) -> Callable[..., tuple[Path, np.ndarray]]:
    """Factory: ``make_audio("name.ext", kind, num_samples, sample_rate=..., ...)`` writes into ``tmp_path``."""

    def make(name: str, kind: str = "chirp", num_samples: int = 16_000, **kwargs: Any) -> tuple[Path, np.ndarray]:
        return make_file(tmp_path / name, kind, num_samples, **kwargs)

    return make


@pytest.fixture(scope="session")
def store_sources(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Directory of the session store's source files (see ``STORE_SOURCES``)."""
    root = tmp_path_factory.mktemp("store_sources")
    for rid, (kind, n, rate, channels, seed) in STORE_SOURCES.items():
        make_file(root / rid, kind, n, sample_rate=rate, num_channels=channels, seed=seed)
    return root


@pytest.fixture(scope="session")
def store_path(store_sources: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("stores") / "small.zarr"
    report = aacdata.import_audio(store_sources, path, workers=0, progress=False)
    assert report.failed == ()
    assert sorted(report.imported) == sorted(STORE_IDS)
    return path


@pytest.fixture(scope="session")
def small_store(store_path: Path) -> aacdata.AACStore:
    """The session store, read-only. Do not corrupt it: copy ``store_path`` first."""
    return aacdata.AACStore.open(store_path)


@pytest.fixture(scope="session")
def reference(small_store: aacdata.AACStore) -> Callable[[str], np.ndarray]:
    """``reference(id)``: cached :func:`full_decode` of a session-store recording."""
    cache: dict[str, np.ndarray] = {}

    def get(rid: str) -> np.ndarray:
        if rid not in cache:
            cache[rid] = full_decode(small_store, small_store.recording(rid))
        return cache[rid]

    return get


# ---------------------------------------------------------------------- object storage


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def s3_endpoint() -> Any:
    """moto's S3 server on 127.0.0.1, started for the module that uses it and stopped after it."""
    pytest.importorskip("s3fs")
    moto_server = pytest.importorskip("moto.server")
    port = _free_port()
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


@pytest.fixture
def bucket(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> str:
    """A new bucket, with the standard AWS variables pointing at the server."""
    boto3 = pytest.importorskip("boto3")
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    name = "b-" + request.node.name.lower().replace("_", "-")[:40].strip("-[]")
    name = "".join(c if c.isalnum() or c == "-" else "-" for c in name)
    boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1").create_bucket(Bucket=name)
    return name
