"""Helpers shared by the benchmark scripts: timing in interleaved rounds, summaries,
ratio lines with targets, synthetic corpora cached on disk.

Not a public module; the scripts import it as ``_common`` (they run from this folder).
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import resource
import shutil
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

import aacdata
from aacdata import AACDataError, AACStore, _adts, _synth

# ---------------------------------------------------------------------- timing


def time_rounds(
    calls: Mapping[str, Callable[[int], object]],
    num: int,
    round_size: int,
) -> dict[str, np.ndarray]:
    """Time ``call(i)`` for ``i in range(num)`` for every method, in interleaved rounds.

    Round ``r`` runs items ``[r * round_size, (r + 1) * round_size)`` through each method
    in turn, starting with a different method each round, so slow drifts of a noisy
    machine (frequency, other tenants) spread over all methods alike. Returns the time of
    every call in nanoseconds, float64 ``(num,)`` per method.
    """
    names = list(calls)
    out = {name: np.empty(num, dtype=np.float64) for name in names}
    clock = time.perf_counter_ns
    for r, a in enumerate(range(0, num, round_size)):
        b = min(a + round_size, num)
        k = r % len(names)
        for name in names[k:] + names[:k]:
            call, times = calls[name], out[name]
            for i in range(a, b):
                t0 = clock()
                call(i)
                times[i] = clock() - t0
    return out


@dataclass(frozen=True, slots=True)
class Summary:
    """Median and 90th percentile of a set of timings, in the unit they were given."""

    median: float
    p90: float
    count: int

    @classmethod
    def of(cls, values: np.ndarray | Sequence[float]) -> Summary:
        v = np.asarray(values, dtype=np.float64)
        return cls(float(np.median(v)), float(np.percentile(v, 90)), int(v.size))


def print_table(title: str, rows: Sequence[tuple[str, Summary]], baseline: str, unit: str = "µs/window") -> None:
    """A table of methods: median, p90 and the ratio of medians to ``baseline``'s."""
    base = dict(rows)[baseline].median
    width = max(len(name) for name, _ in rows)
    print(f"\n{title}")
    print(f"  {'method':<{width}}  {'median ' + unit:>18}  {'p90':>10}  {'n':>5}  {'/ ' + baseline:>14}")
    for name, s in rows:
        print(f"  {name:<{width}}  {s.median:>18.1f}  {s.p90:>10.1f}  {s.count:>5}  {s.median / base:>14.2f}")


def ratio_line(label: str, value: float, op: str, target: float) -> str:
    """``label  value  target op X  met|MISSED`` (``op`` is ``"<="`` or ``">="``)."""
    ok = value <= target if op == "<=" else value >= target
    return f"  {label:<44} {value:7.2f}   target {op} {target:<5}  {'met' if ok else 'MISSED'}"


def info_line(label: str, value: float, note: str = "") -> str:
    return f"  {label:<44} {value:7.2f}   {note}".rstrip()


class Contention:
    """CPU that other processes (and other VMs: steal time) took while this one measured.

    The reference machine has 2 cores: anything else running (a test suite, another
    benchmark) slows whatever is timed. ``cores()`` is the average number of cores used
    by processes other than this one and its reaped children since ``start()`` (Linux
    ``/proc/stat``; 0 where unavailable).
    """

    def __init__(self, ours: Sequence[int] = ()) -> None:
        self._ours = tuple(ours)  # other processes that are part of the measurement (a local S3 server)
        self.start()

    def start(self) -> None:
        self._t, self._busy, self._own = time.monotonic(), _system_busy(), self._ours_cpu()

    def _ours_cpu(self) -> float:
        return own_cpu() + sum(process_cpu(pid) for pid in self._ours)

    def cores(self) -> float:
        dt = time.monotonic() - self._t
        if dt <= 0 or self._busy is None:
            return 0.0
        busy = _system_busy()
        assert busy is not None
        return max(0.0, (busy - self._busy) - (self._ours_cpu() - self._own)) / dt

    def note(self, when: str = "meanwhile") -> str:
        c = self.cores()
        return f"other processes used {c:.2f} cores {when}" + ("  (busy machine: timings skewed)" if c > 0.25 else "")


def _system_busy() -> float | None:
    """Seconds of CPU the whole system spent busy (user, nice, system, irq, softirq, steal)."""
    try:
        with open("/proc/stat") as f:
            fields = [int(x) for x in f.readline().split()[1:9]]
    except (OSError, ValueError):
        return None
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def own_cpu() -> float:
    """Seconds of CPU used by this process (all threads) and its reaped children."""
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def process_cpu(pid: int) -> float:
    """Seconds of CPU used by a running process (user + system, threads included; 0 if gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def memory_kib(pid: int | str = "self") -> dict[str, int]:
    """``VmRSS`` (resident now) and ``VmHWM`` (peak resident) of a process, in KiB (Linux)."""
    out = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key in ("VmRSS", "VmHWM"):
                    out[key] = int(value.split()[0])
    except OSError:
        pass
    return out


# ---------------------------------------------------------------------- synthetic audio


class SegmentPool:
    """A few seconds of each signal kind, cut and concatenated into long recordings.

    Generating ``_synth.signal("music", ...)`` costs ~7 s per minute of stereo audio, so
    long corpora are composed from a pool of distinct segments (different seeds) in a
    random order, starting at a random offset. The codec sees no repetition: AAC frames
    are 1024 samples and segments are many seconds long.
    """

    def __init__(
        self,
        kinds: Iterable[str],
        *,
        segments: int,
        segment_seconds: float,
        sample_rate: int,
        num_channels: int,
        seed: int,
    ) -> None:
        n = round(segment_seconds * sample_rate)
        jobs = [
            (k, n, sample_rate, num_channels, seed * 1000 + 17 * j + i)
            for i, k in enumerate(kinds)
            for j in range(segments)
        ]
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
    return _synth.signal(kind, n, sample_rate=sample_rate, num_channels=num_channels, seed=seed)


def parallel_map(fn: Callable[..., Any], jobs: Sequence[tuple[Any, ...]], workers: int = 2) -> list[Any]:
    """``[fn(*job) for job in jobs]`` in forked processes (objects made before the call
    are inherited, not pickled)."""
    if workers <= 1 or len(jobs) <= 1:
        return [fn(*job) for job in jobs]
    ctx = multiprocessing.get_context("fork")
    with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
        futures = [pool.submit(fn, *job) for job in jobs]
        return [f.result() for f in futures]


# ---------------------------------------------------------------------- cache on disk


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


_STORED_BY = ("_adts.py", "_layout.py", "_synth.py", "_transcode.py", "_writer.py", "importer.py")


def aacdata_fingerprint() -> str:
    """A digest of the aacdata modules that decide what a build writes: a change to any of
    them (a new store layout, another encoder setting) invalidates the cached builds."""
    root = Path(_synth.__file__).parent
    h = hashlib.sha1()
    for name in _STORED_BY:
        path = root / name
        h.update(path.read_bytes() if path.exists() else b"")
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


# ---------------------------------------------------------------------- stores built from ADTS


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
    source = _synth.write_audio(
        root / "one" / "speech.aac",
        _synth.signal("speech", 120 * rate, sample_rate=rate, num_channels=1, seed=seed),
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
        audio = _synth.signal("music", round(seconds * MUSIC_RATE), sample_rate=MUSIC_RATE, num_channels=2, seed=seed)
        _synth.write_audio(path, audio, sample_rate=MUSIC_RATE, bitrate=bitrate)
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


def header(title: str, argv: Sequence[str]) -> None:
    print(f"# {title}")
    print(f"# {time.strftime('%Y-%m-%d %H:%M:%S %Z')}  cores={os.cpu_count()}  command: {' '.join(argv)}")
    probe = Contention()
    time.sleep(1.0)
    print(f"# {probe.note('in the second before the start')}; load average {os.getloadavg()[0]:.2f} (1 min)")
