"""Windows of recordings whose AAC stream uses perceptual noise substitution (PNS), as
FFmpeg's encoder makes ``.m4a`` files by default: some scale-factor bands of some frames
are coded as an energy only, and the decoder fills them with noise from its own random
generator. Such a stream is passed through, flagged, and read with a new decoder per window.

The contract tested here: windows are deterministic (the same bytes in any order, process
or DataLoader worker); against the full decode of the stored stream, they differ only in
the bands that carry the decoder's noise (on the stream's own frame grid, see
``pns_frames.py``: every other MDCT coefficient equal to float rounding), and there with
the same energy.

The tolerances below hold a clear margin from what ``benchmarks/bench_pns.py`` measures
on 24 streams (music-like and white noise, mono and stereo, 44.1 and 48 kHz, 64, 96 and
128 kbit/s; 60 random windows of 4096-12288 samples each; ``results/bench_pns.json``)
and from a second sweep of the same streams with other seeds.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from conftest import env_with_package, full_decode
from pns_frames import SWB_LONG, StreamFrames, third_octaves
from torch.utils.data import DataLoader

import aacdata
from aacdata.audio._audiofile import write_audio

# id -> (kind, sample rate, channels, bit rate): white noise in stereo at a low rate (noise
# in most frames, no TNS: every noise band keeps its energy exactly), music-like mono (TNS
# spreads the noise of some frames past its bands).
SOURCES = {
    "noise_2ch.m4a": ("noise", 44_100, 2, 64_000),
    "music_1ch.m4a": ("music", 48_000, 1, 96_000),
}
SECONDS = 1.5
PLAIN = "plain.wav"  # a recording without PNS, read in between (pooled, flushed decoders)

OUTSIDE_TOLERANCE = 1e-5
"""MDCT coefficients outside the noise bands: largest difference relative to the stream's
largest coefficient. Measured at most 1.4e-7 in white-noise streams (float32 rounding) and
8.7e-7 in music-like ones (where TNS spreads the noise, its tail below the noise bands'
threshold, 1e-6); a tone at -80 dBFS added to a window measures 1.3e-3 or more."""
EXACT_DB = 1e-4
"""A noise band's energy per frame equals the full decode's to float rounding: measured
|difference| at most 2.4e-6 dB in every band of streams without TNS."""
SPREAD_DB = 8.0
"""Where TNS spreads the noise (0-4 % of noise bands, 12 % with other seeds; music-like
streams only), a band's energy changes: measured at most 4.0 dB."""
WINDOW_ENERGY_DB = 0.3
"""A window's total energy against the full decode's: measured at most 0.08 dB."""
THIRD_OCTAVE_MEDIAN_DB = 0.5
"""Median |change| of a window's 1/3-octave band energies where the noise reaches them:
measured 0.01-0.07 dB per stream (90th percentile 0.04-1.0 dB, largest 7.6 dB)."""
LOWEST_NOISE_HZ = 4_000
"""FFmpeg's encoder puts no noise below 4 kHz (measured: lowest noise band at 4125 Hz)."""


@pytest.fixture(scope="module")
def pns_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("pns")
    for i, (name, (kind, rate, channels, bitrate)) in enumerate(SOURCES.items()):
        audio = aacdata.testing.signal(kind, int(SECONDS * rate), sample_rate=rate, num_channels=channels, seed=i)
        write_audio(root / "src" / name, audio, sample_rate=rate, bitrate=bitrate, pns=True)
    plain = aacdata.testing.signal("noise", 44_100, sample_rate=44_100, num_channels=2, seed=9)
    write_audio(root / "src" / PLAIN, plain, sample_rate=44_100)
    report = aacdata.import_audio(root / "src", root / "pns.zarr", workers=0, progress=False)
    assert report.passthrough == len(SOURCES) and not report.failed
    return root / "pns.zarr"


@pytest.fixture(scope="module")
def store(pns_store: Path) -> Iterator[aacdata.AACStore]:
    with aacdata.AACStore.open(pns_store) as s:
        assert [s.recording(rid).pns for rid in (*SOURCES, PLAIN)] == [True] * len(SOURCES) + [False]
        yield s


@pytest.fixture(scope="module")
def frames(store: aacdata.AACStore) -> dict[str, StreamFrames]:
    return {rid: StreamFrames(store, store.recording(rid)) for rid in SOURCES}


def _windows(rec: aacdata.Recording, count: int, seed: int) -> list[tuple[int, int]]:
    """``count`` random windows ``(start, num_samples)``, 4096 to 12288 samples long."""
    rng = np.random.default_rng(seed)
    sizes = rng.integers(4096, 12_288, count)
    return [(int(rng.integers(0, rec.num_samples - n)), int(n)) for n in sizes]


def _boundary_windows(rec: aacdata.Recording) -> list[tuple[int, int]]:
    """Windows at and one sample off frame boundaries, the first frame and the last one."""
    edge = 10 * 1024 - rec.encoder_delay  # a frame boundary of the source timeline
    return [(0, 3000), (edge, 2048), (edge - 1, 2048), (edge + 1, 4097), (rec.num_samples - 1500, 1500)]


@pytest.mark.parametrize("rid", list(SOURCES))
def test_noise_bands_are_the_streams_noise_coded_bands(frames: dict[str, StreamFrames], rid: str) -> None:
    # Invariant: the bands where the decoder's generator shows up include every band the
    # frames code as noise (the first channel's section data), and are those exactly where
    # no TNS filter spreads the noise (white noise).
    sf = frames[rid]
    long_blocks = [j for j in np.flatnonzero(sf.known) if sf.infos[j].noise_bands is not None]
    coded = np.stack([sf.infos[j].noise_bands for j in long_blocks])
    found = sf.noise[0, long_blocks]
    assert coded.mean() > 0.03  # the input exercises PNS: noise in 3 % of all bands or more
    assert not (coded & ~found).any()
    if rid.startswith("noise"):
        np.testing.assert_array_equal(found, coded)
    lowest_hz = SWB_LONG[np.flatnonzero(sf.noise.any(axis=(0, 1)))[0]] * SOURCES[rid][1] / 2048
    assert lowest_hz >= LOWEST_NOISE_HZ


@pytest.mark.parametrize("rid", list(SOURCES))
def test_windows_equal_the_full_decode_outside_the_noise_bands(
    store: aacdata.AACStore, frames: dict[str, StreamFrames], rid: str
) -> None:
    rec, sf = store.recording(rid), frames[rid]
    ref = full_decode(store, rec)
    # The whole recording as one window is the full decode itself, bit for bit.
    np.testing.assert_array_equal(store.read(rec, 0, rec.num_samples), ref)
    differing, noise_bands, exact_db, spread_db = 0, 0, [], []
    for start, n in _windows(rec, 12, seed=1) + _boundary_windows(rec):
        window = store.read(rec, start, n)
        differing += not np.array_equal(window, ref[:, start : start + n])
        c = sf.compare(window, ref[:, start : start + n], start)
        assert c.outside <= OUTSIDE_TOLERANCE, (start, n, c.outside)
        noise_bands += c.noise.sum()
        exact = np.abs(c.noise_db) <= EXACT_DB
        exact_db.extend(c.noise_db[exact])
        spread_db.extend(c.noise_db[~exact])
    # The noise is there (the windows differ from the full decode, in noise bands) ...
    assert differing >= 10 and noise_bands >= 100, (differing, noise_bands)
    # ... and each noise band of each frame holds the full decode's energy: to float
    # rounding wherever no TNS filter spreads it (every band of white noise; measured
    # 96-100 % of them in music-like streams, 88 % the fewest with other seeds), within
    # SPREAD_DB elsewhere.

    assert len(exact_db) >= (1.0 if rid.startswith("noise") else 0.8) * noise_bands
    assert np.all(np.abs(spread_db) <= SPREAD_DB), max(np.abs(spread_db))


@pytest.mark.parametrize("rid", list(SOURCES))
def test_window_energies_equal_the_full_decode(store: aacdata.AACStore, rid: str) -> None:
    rec = store.recording(rid)
    ref = full_decode(store, rec)
    changes = []
    for start, n in _windows(rec, 12, seed=2):
        window, same = store.read(rec, start, n).astype(np.float64), ref[:, start : start + n].astype(np.float64)
        total_db = 10 * np.log10(np.sum(window**2) / np.sum(same**2))
        assert abs(total_db) <= WINDOW_ENERGY_DB, (start, n, total_db)
        ours, theirs = third_octaves(window, rec.sample_rate), third_octaves(same, rec.sample_rate)
        reached = third_octaves(window - same, rec.sample_rate) > 1e-6 * theirs  # bands the noise reaches
        changes.extend(10 * np.log10(ours[reached] / theirs[reached]))
    assert len(changes) >= 10
    assert np.median(np.abs(changes)) <= THIRD_OCTAVE_MEDIAN_DB


def _read_all(store: aacdata.AACStore, order: list[tuple[str, int, int]]) -> list[bytes]:
    return [store.read(rid, start, n).tobytes() for rid, start, n in order]


def _differing(got: list[bytes], expected: list[bytes]) -> list[int]:
    """Indices of the windows whose bytes differ (all of them where the counts differ)."""
    if len(got) != len(expected):
        return list(range(max(len(got), len(expected))))
    return [i for i, (a, b) in enumerate(zip(got, expected, strict=True)) if a != b]


def _plan(store: aacdata.AACStore) -> list[tuple[str, int, int]]:
    """Windows of every PNS recording, random and at frame boundaries."""
    out = []
    for rid in SOURCES:
        rec = store.recording(rid)
        out += [(rid, s, n) for s, n in _windows(rec, 4, seed=3) + _boundary_windows(rec)]
    return out


def test_reads_repeat_in_any_order(store: aacdata.AACStore) -> None:
    plan = _plan(store)
    first = _read_all(store, plan)
    # Invariant: a window's bytes do not depend on what was read before it: A, B, A again;
    # the plan reversed; each window after a read of the recording without PNS (whose
    # pooled decoder is flushed, not renewed) and after an overlapping window.
    again = _read_all(store, [w for pair in zip(plan, plan[1:] + plan[:1], strict=True) for w in pair])
    assert _differing(again[::2], first) == []
    assert _differing(again[1::2], first[1:] + first[:1]) == []
    assert _differing(_read_all(store, plan[::-1]), first[::-1]) == []
    for (rid, start, n), expected in zip(plan, first, strict=True):
        store.read(PLAIN, 0, 5000)
        store.read(rid, max(0, start - 700), n)
        assert store.read(rid, start, n).tobytes() == expected, (rid, start, n)
    # A new store object (new decoders) reads the same.
    with aacdata.AACStore.open(store.target) as other:
        assert _differing(_read_all(other, plan), first) == []


def test_reads_repeat_in_another_process(store: aacdata.AACStore, pns_store: Path, tmp_path: Path) -> None:
    plan = _plan(store)
    out = tmp_path / "windows.npz"
    script = (
        "import sys, numpy as np, aacdata\n"
        "plan = eval(sys.argv[3])\n"
        "with aacdata.AACStore.open(sys.argv[1]) as s:\n"
        "    np.savez(sys.argv[2], *[s.read(rid, start, n) for rid, start, n in reversed(plan)])\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(pns_store), str(out), repr(plan)],
        capture_output=True,
        text=True,
        env=env_with_package(),
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    with np.load(out) as got:
        theirs = [got[f"arr_{i}"].tobytes() for i in range(len(plan))][::-1]
    assert _differing(theirs, _read_all(store, plan)) == []


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_reads_repeat_in_dataloader_workers(store: aacdata.AACStore, pns_store: Path, method: str) -> None:
    rid = "noise_2ch.m4a"
    plan = [w for w in _plan(store) if w[0] == rid]
    dataset = aacdata.AACSegmentDataset(pns_store, windows=plan, recordings=[rid])
    expected = [torch.from_numpy(store.read(*w)) for w in plan]
    # Two persistent workers take alternate batches, each reading after its own previous
    # windows; the second epoch reuses the same workers (and their decoders).
    loader: DataLoader[Any] = DataLoader(
        dataset, batch_size=1, num_workers=2, persistent_workers=True, multiprocessing_context=method
    )
    for _epoch in range(2):
        got = [batch[0] for batch in loader]
        assert len(got) == len(expected)
        assert [i for i, (a, b) in enumerate(zip(got, expected, strict=True)) if not torch.equal(a, b)] == []
