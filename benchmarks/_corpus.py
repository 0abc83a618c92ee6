"""Synthetic inputs shared by the benchmark scripts, built on first use and cached under
``--workdir``: a music-like corpus (store + the same audio as FLAC and .m4a), a store of
many short speech-like clips, and stores of long recordings made from one encoded segment;
and the peers that read the same audio from those files (soundfile on FLAC, PyAV container
seek and torchcodec on .m4a), each keeping its files open.

Not a public module; the scripts import it as ``_corpus`` (they run from this folder).
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import shutil
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av
import numpy as np

import aacdata
from aacdata import AACDataError, AACStore, testing
from aacdata.audio import _audiofile
from aacdata.codecs import _adts
from aacdata.store import _layout

try:
    import soundfile as sf
except ImportError:  # an optional peer
    sf = None
try:
    from torchcodec.decoders import AudioDecoder
except (ImportError, OSError, RuntimeError) as _e:  # missing wheel or FFmpeg libraries
    AudioDecoder = None
    TORCHCODEC_MISSING = f"{type(_e).__name__}: {_e}".splitlines()[0]
else:
    TORCHCODEC_MISSING = ""


class SegmentPool:
    """A few seconds of each signal kind, cut and concatenated into long recordings.

    Generating ``testing.signal("music", ...)`` costs ~7 s per minute of stereo audio, so
    long corpora are composed from a pool of distinct segments (different seeds) in a
    random order, starting at a random offset. The codec sees no repetition: AAC frames
    are 1024 samples and segments are many seconds long.
    """

    def __init__(
        self, kinds: Iterable[str], *, segments: int, seconds: float, rate: int, channels: int, seed: int
    ) -> None:
        n = round(seconds * rate)
        jobs = [(k, n, rate, channels, seed * 1000 + 17 * j + i) for i, k in enumerate(kinds) for j in range(segments)]
        made = parallel_map(_make_segment, jobs)
        self.segments: dict[str, list[np.ndarray]] = {}
        for (kind, *_), audio in zip(jobs, made, strict=True):
            self.segments.setdefault(kind, []).append(audio)

    def compose(self, kind: str, num_samples: int, seed: int) -> np.ndarray:
        """float32 ``(C, num_samples)`` of ``kind``, from pool segments in a seeded order."""
        rng = np.random.default_rng(seed)
        pool = self.segments[kind]
        out = np.empty((pool[0].shape[0], num_samples), dtype=np.float32)
        pos = 0
        offset = int(rng.integers(pool[0].shape[1]))
        while pos < num_samples:
            seg = pool[int(rng.integers(len(pool)))]
            piece = seg[:, offset : offset + num_samples - pos]
            out[:, pos : pos + piece.shape[1]] = piece
            pos += piece.shape[1]
            offset = 0
        return out


def _make_segment(kind: str, n: int, sample_rate: int, num_channels: int, seed: int) -> np.ndarray:
    return testing.signal(kind, n, sample_rate=sample_rate, num_channels=num_channels, seed=seed)


def parallel_map(fn: Callable[..., Any], jobs: Sequence[tuple[Any, ...]], workers: int = 2) -> list[Any]:
    """``[fn(*job) for job in jobs]`` in forked processes (objects made before the call
    are inherited, not pickled)."""
    if workers <= 1 or len(jobs) <= 1:
        return [fn(*job) for job in jobs]
    ctx = multiprocessing.get_context("fork")
    with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
        futures = [pool.submit(fn, *job) for job in jobs]
        return [f.result() for f in futures]


def cached(root: Path, params: Mapping[str, Any], check: Callable[[], object] | None = None) -> bool:
    """Whether ``root`` holds a finished build made with ``params`` that passes ``check``
    (e.g. its stores open with this aacdata); if not, empty it."""
    marker = root / "done.json"
    try:
        if json.loads(marker.read_text()) == json.loads(json.dumps(params)):
            if check is not None:
                check()
            return True
    except (OSError, ValueError, AACDataError):
        pass  # missing, other parameters, or a store this aacdata cannot read: rebuild
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    return False


def aacdata_fingerprint() -> str:
    """What a cached build depends on besides its parameters: the store format version, the
    chunking and codecs of new stores' index arrays, and the synthetic-audio generator.
    Other library changes keep a build as long as its stores still open (the ``check`` of
    :func:`cached`); delete ``--workdir`` to rebuild all."""
    layout = (_layout.FORMAT_VERSION, _layout.INDEX_CHUNK_ROWS, _layout.INDEX_CODECS, _layout.FRAME_CRC_CODECS)
    h = hashlib.sha1(repr(layout).encode())
    h.update(Path(testing.__file__).read_bytes())
    return h.hexdigest()[:12]


def check_stores(*paths: Path) -> Callable[[], None]:
    """A ``check`` for :func:`cached`: every store opens."""

    def check() -> None:
        for p in paths:
            AACStore.open(p).close()

    return check


def mark_built(root: Path, params: Mapping[str, Any]) -> None:
    (root / "done.json").write_text(json.dumps(params, indent=1))


def disk_usage(root: Path, sub: str | None = None) -> tuple[int, int]:
    """``(apparent bytes, allocated bytes)`` of the files under ``root`` (or ``root/sub``),
    like ``du -sb`` and ``du -sB1``."""
    top = root / sub if sub else root
    apparent = allocated = 0
    for dirpath, _dirs, files in os.walk(top):
        for f in files:
            st = os.stat(os.path.join(dirpath, f))
            apparent += st.st_size
            allocated += st.st_blocks * 512
    return apparent, allocated


def build_short_speech(workdir: Path, num: int, seed: int) -> tuple[Path, Path]:
    """Two stores of 16 kHz mono speech-like audio at 32 kbit/s: one recording of 120 s,
    and ``num`` recordings of 3-5 s each (cached under ``workdir / f"many-{num}"``).

    The short recordings are raw ADTS (.aac) files cut at frame boundaries from one encoded
    stream, so making 10,000 of them costs one encode; they import as passthrough
    (``workers=2``). The single recording is that whole stream, imported the same way.
    """
    root = workdir / f"many-{num}"
    params = {"num": num, "seed": seed, "aacdata": aacdata_fingerprint()}
    one, many = root / "one.zarr", root / "many.zarr"
    if cached(root, params, check_stores(one, many)):
        return one, many
    t0 = time.perf_counter()
    rate, frame = 16_000, _adts.SAMPLES_PER_FRAME
    source = _audiofile.write_audio(
        root / "one" / "speech.aac",
        testing.signal("speech", 120 * rate, sample_rate=rate, num_channels=1, seed=seed),
        sample_rate=rate,
        bitrate=32_000,
    )
    data = source.read_bytes()
    frames = _adts.parse_adts(data)
    ends = np.append(frames.offsets, len(data))
    rng = np.random.default_rng(seed)
    lo, hi = -(-3 * rate // frame), 5 * rate // frame  # 3 s .. 5 s in whole frames
    for i in range(num):
        n = int(rng.integers(lo, hi + 1))
        k = int(rng.integers(0, len(frames) - n))
        path = root / "many" / f"{i // 100:03d}" / f"{i:05d}.aac"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data[ends[k] : ends[k + n]])
    for src, dst in ((root / "one", one), (root / "many", many)):
        report = aacdata.import_audio(src, dst, workers=2, progress=False)
        if not report.ok:
            raise RuntimeError(f"import into {dst} failed: {report.failed[:3]}")
    mark_built(root, params)
    print(f"built the 1- and {num:,}-recording stores in {time.perf_counter() - t0:.0f} s")
    return one, many


MUSIC_RATE = 44_100


def music_segment(workdir: Path, *, seconds: float = 30.0, seed: int = 0, bitrate: int = 160_000) -> bytes:
    """``seconds`` of music-like 44.1 kHz stereo audio encoded once as ADTS (cached)."""
    root = workdir / "segment"
    params = {"seconds": seconds, "seed": seed, "bitrate": bitrate, "aacdata": aacdata_fingerprint()}
    path = root / "music.aac"
    if not cached(root, params):
        audio = testing.signal("music", round(seconds * MUSIC_RATE), sample_rate=MUSIC_RATE, num_channels=2, seed=seed)
        _audiofile.write_audio(path, audio, sample_rate=MUSIC_RATE, bitrate=bitrate)
        mark_built(root, params)
    return path.read_bytes()


def build_repeated_stores(
    root: Path, segment: bytes, stores: Mapping[str, Sequence[float]], seed: int
) -> dict[str, Path]:
    """Stores of long 44.1 kHz stereo recordings made by concatenating one encoded ADTS
    segment (concatenated ADTS streams are one valid stream), imported as passthrough with
    ``workers=2`` (cached under ``root``).

    ``stores`` maps a store name to the minimum duration in seconds of each recording; a
    seeded random number of extra frames (less than one segment) is added to each, so
    lengths differ. Costs no encoding: mostly the import's own work (two decodes of every
    stream to detect PNS, checksums, writing).
    """
    frames = _adts.parse_adts(segment)
    ends = np.append(frames.offsets, len(segment)).astype(np.int64)
    n_seg = len(frames)
    rng = np.random.default_rng(seed)
    plan = {
        name: [-(-round(s * MUSIC_RATE) // _adts.SAMPLES_PER_FRAME) + int(rng.integers(n_seg)) for s in seconds]
        for name, seconds in stores.items()
    }
    params = {"frames": plan, "segment": hashlib.sha1(segment).hexdigest()[:12], "aacdata": aacdata_fingerprint()}
    paths = {name: root / f"{name}.zarr" for name in stores}
    if cached(root, params, check_stores(*paths.values())):
        return paths
    t0 = time.perf_counter()
    for name, counts in plan.items():
        src = root / f"{name}-src"
        for i, count in enumerate(counts):
            q, r = divmod(count, n_seg)
            path = src / f"r{i:03d}.aac"
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(path, "wb") as f:
                for _ in range(q):
                    f.write(segment)
                f.write(segment[: ends[r]])
        report = aacdata.import_audio(src, paths[name], workers=2, progress=False)
        if not report.ok or len(report.imported) != len(counts):
            raise RuntimeError(f"import into {paths[name]} failed: {report} {report.failed[:3]}")
        shutil.rmtree(src)  # the store holds the same bytes
        hours = sum(counts) * _adts.SAMPLES_PER_FRAME / MUSIC_RATE / 3600
        print(
            f"built {paths[name].name}: {len(counts)} recordings, {hours:.2f} h, {report.realtime_factor:.0f}x realtime"
        )
    mark_built(root, params)
    print(f"built {', '.join(stores)} in {time.perf_counter() - t0:.0f} s")
    return paths


def warm_page_cache(path: Path) -> tuple[int, float]:
    """Read every file under ``path`` once (so timed reads find them in the page cache);
    returns ``(bytes, seconds)``."""
    t0 = time.perf_counter()
    total = 0
    for dirpath, _dirs, files in os.walk(path):
        for name in files:
            with open(os.path.join(dirpath, name), "rb") as f:
                while block := f.read(1 << 22):
                    total += len(block)
    return total, time.perf_counter() - t0


@dataclass(frozen=True, slots=True)
class Corpus:
    """A store and the same audio as 16-bit FLAC and as .m4a, by store recording index."""

    name: str
    store: Path
    flac: list[Path]
    m4a: list[Path]


KINDS = {"music": ("music",), "sparse": ("tone", "speech")}
"""Corpus name -> signal kinds, alternating over its recordings."""
_POOL: SegmentPool | None = None  # set before forking the writers, inherited by them


def _write_recording(kind: str, num_samples: int, seed: int, flac: Path, m4a: Path) -> None:
    assert _POOL is not None
    audio = _POOL.compose(kind, num_samples, seed)
    _audiofile.write_audio(flac, audio, sample_rate=MUSIC_RATE)
    _audiofile.write_audio(m4a, audio, sample_rate=MUSIC_RATE, bitrate=160_000)


def build_corpus(workdir: Path, name: str, seconds: Sequence[float], seed: int, pool_segments: int = 6) -> Corpus:
    """44.1 kHz stereo recordings of ``seconds`` each (plus < 1 frame), written as FLAC and
    .m4a (160 kbit/s AAC-LC) and the FLAC files imported (160 kbit/s, ``workers=2``)."""
    global _POOL
    kinds = KINDS[name]
    rng = np.random.default_rng(seed)
    lengths = [round(s * MUSIC_RATE) + int(rng.integers(_adts.SAMPLES_PER_FRAME)) for s in seconds]
    names = [f"r{i:02d}_{kinds[i % len(kinds)]}" for i in range(len(lengths))]
    root = workdir / f"{name}-{len(lengths)}-{round(sum(seconds))}"
    params = {"kinds": kinds, "lengths": lengths, "seed": seed, "aacdata": aacdata_fingerprint()}
    store = root / "store.zarr"
    if not cached(root, params, check_stores(store)):
        t0 = time.perf_counter()
        _POOL = SegmentPool(kinds, segments=pool_segments, seconds=10.0, rate=MUSIC_RATE, channels=2, seed=seed)
        jobs = [
            (kinds[i % len(kinds)], n, seed * 7919 + i, root / "flac" / f"{s}.flac", root / "m4a" / f"{s}.m4a")
            for i, (n, s) in enumerate(zip(lengths, names, strict=True))
        ]
        parallel_map(_write_recording, sorted(jobs, key=lambda j: -j[1]))  # longest first: balanced workers
        _POOL = None
        report = aacdata.import_audio(root / "flac", store, workers=2, progress=False)
        if not report.ok or len(report.imported) != len(lengths):
            raise RuntimeError(f"import of the {name} corpus failed: {report} {report.failed}")
        mark_built(root, params)
        print(f"built the {name} corpus: {sum(lengths) / MUSIC_RATE / 60:.1f} min in {time.perf_counter() - t0:.0f} s")
    with AACStore.open(store) as st:
        ids = list(st.ids)
    return Corpus(
        name, store, [root / "flac" / i for i in ids], [root / "m4a" / Path(i).with_suffix(".m4a").name for i in ids]
    )


# Peers: the same windows read from the source files. A window is anything with
# ``recording`` (an index into the reader's paths), ``start`` and ``num_samples`` (samples of
# the source timeline), such as ``aacdata.dataset.Window``.


def torchcodec_version(ffmpeg: bool = False) -> str:
    """torchcodec's version (and, with ``ffmpeg``, that of the FFmpeg it loaded), or why it
    cannot be imported."""
    if AudioDecoder is None:
        return f"missing ({TORCHCODEC_MISSING})"
    import torchcodec

    if not ffmpeg:
        return str(torchcodec.__version__)
    libs = torchcodec._core.get_ffmpeg_library_versions()
    return f"{torchcodec.__version__} (FFmpeg {libs.get('ffmpeg_version', '?')})"


class SoundfileReader:
    """soundfile on FLAC (or any file libsndfile reads): one ``SoundFile`` per path, kept
    open; ``seek`` + ``read`` per window; float32 ``(frames, C)``."""

    def __init__(self, paths: Sequence[Path]) -> None:
        if sf is None:
            raise ImportError("soundfile is not installed")
        self.files = [sf.SoundFile(str(p)) for p in paths]

    def read(self, w: Any) -> np.ndarray:
        f = self.files[w.recording]
        f.seek(w.start)
        return f.read(w.num_samples, dtype="float32", always_2d=True)


class ContainerSeek:
    """PyAV on .m4a, the naive loop: one open container per file, ``seek`` to the window,
    decode until it is covered (no pre-roll: the first frame after a seek decodes
    inexactly); float32 ``(C, num_samples)``."""

    def __init__(self, paths: Sequence[Path]) -> None:
        self.containers = [av.open(str(p)) for p in paths]

    def read(self, w: Any) -> np.ndarray:
        c = self.containers[w.recording]
        s = c.streams.audio[0]
        tb, rate = s.time_base, s.rate
        c.seek(w.start * tb.denominator // (rate * tb.numerator), stream=s)
        parts: list[np.ndarray] = []
        first = pos = -1
        for packet in c.demux(s):
            for f in packet.decode():
                if first < 0:
                    first = pos = int(f.pts * f.time_base * rate)
                    if first > w.start:
                        raise RuntimeError(f"seek to sample {w.start} landed at {first}")
                parts.append(f.to_ndarray())
                pos += f.samples
            if first >= 0 and pos >= w.start + w.num_samples:
                break
        return np.concatenate(parts, axis=1)[:, w.start - first : w.start - first + w.num_samples]


class TorchcodecReader:
    """torchcodec on .m4a: ``AudioDecoder(path).get_samples_played_in_range(start_s, stop_s)``
    with one decoder per path kept open (``per_window=False``) or a new decoder for every
    window, as a Dataset item that holds no state makes (``per_window=True``); float32
    tensor ``(C, ~num_samples)`` (torchcodec rounds the seconds to samples)."""

    def __init__(self, paths: Sequence[Path], *, sample_rate: int, per_window: bool = False) -> None:
        if AudioDecoder is None:
            raise ImportError(f"torchcodec cannot be imported: {TORCHCODEC_MISSING}")
        self.paths = [str(p) for p in paths]
        self.sample_rate = sample_rate
        self.decoders = None if per_window else [AudioDecoder(p) for p in self.paths]

    def read(self, w: Any) -> Any:
        a = w.start / self.sample_rate
        d = AudioDecoder(self.paths[w.recording]) if self.decoders is None else self.decoders[w.recording]
        return d.get_samples_played_in_range(a, a + w.num_samples / self.sample_rate).data
