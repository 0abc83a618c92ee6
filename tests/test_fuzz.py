"""Fuzzing: the ADTS and AudioSpecificConfig parsers (Hypothesis), damaged source files through
``transcode`` (in a subprocess, so that a crash or a hang shows as a failure), and hostile file
names and recording ids (nothing is written outside the store or the export target)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import av
import numpy as np
import pytest
import zarr
from conftest import env_with_package, make_file
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import aacdata
from aacdata import AACStore
from aacdata.cli import main
from aacdata.codecs._adts import CHANNELS_BY_CONFIG, SAMPLE_RATES, AdtsFrames, parse_adts, parse_audio_specific_config
from aacdata.errors import CorruptDataError
from aacdata.store._layout import column_crc32

# ---------------------------------------------------------------------- ADTS streams

T = TypeVar("T")


def _adts_frame(payload: bytes, *, sr_index: int, config: int, crc: bool, profile: int = 1) -> bytes:
    """One ADTS frame around ``payload``: 7-byte header, or 9 with a (dummy) CRC."""
    size = len(payload) + (9 if crc else 7)
    header = bytes(
        (
            0xFF,
            0xF0 | (0 if crc else 1),
            (profile << 6) | (sr_index << 2) | (config >> 2),
            ((config & 3) << 6) | (size >> 11),
            (size >> 3) & 0xFF,
            ((size & 7) << 5) | 0x1F,
            0xFC,
        )
    )
    return header + (b"\x12\x34" if crc else b"") + payload


@dataclass(frozen=True)
class Stream:
    data: bytes
    sizes: list[int]
    sample_rate: int
    channel_config: int


@st.composite
def adts_streams(draw: st.DrawFn) -> Stream:
    """Valid streams: random payloads (some full of false sync words), some frames with CRC."""
    sr_index = draw(st.integers(0, len(SAMPLE_RATES) - 1))
    config = draw(st.sampled_from(sorted(CHANNELS_BY_CONFIG)))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    n = draw(st.integers(1, 40))
    frames = []
    for _ in range(n):
        size = int(rng.integers(0, 400))
        payload = bytearray(rng.integers(0, 256, size, dtype=np.uint8).tobytes())
        for _ in range(int(rng.integers(0, 4)) if size > 8 else 0):
            # A false sync word with a plausible header inside the payload.
            at = int(rng.integers(0, size - 7))
            payload[at : at + 7] = _adts_frame(b"", sr_index=sr_index, config=config, crc=False)[:7]
        frames.append(_adts_frame(bytes(payload), sr_index=sr_index, config=config, crc=bool(rng.random() < 0.2)))
    return Stream(b"".join(frames), [len(f) for f in frames], SAMPLE_RATES[sr_index], config)


MUTATION = st.tuples(
    st.sampled_from(("flip", "truncate", "insert", "delete", "duplicate", "zero")),
    st.floats(0, 1),
    st.floats(0, 1),
    st.binary(min_size=1, max_size=24),
)


def _mutate(data: bytes, ops: list[tuple[str, float, float, bytes]]) -> bytes:
    """Apply ``(kind, position, extent, bytes)`` edits; positions and extents are fractions."""
    buf = bytearray(data)
    for kind, pos, extent, blob in ops:
        n = len(buf)
        at = min(int(pos * n), max(n - 1, 0))
        length = max(1, int(extent * min(n - at, 64)))
        if kind == "flip" and n:
            for k, b in enumerate(blob[:4]):
                buf[(at + 97 * k) % n] ^= b or 0x80
        elif kind == "truncate":
            del buf[at:]
        elif kind == "insert":
            buf[at:at] = blob
        elif kind == "delete":
            del buf[at : at + length]
        elif kind == "duplicate":
            buf[at:at] = buf[at : at + length]
        elif kind == "zero":
            buf[at : at + length] = bytes(len(buf[at : at + length]))
    return bytes(buf)


def _attempt(parse: Callable[[bytes], T], data: bytes) -> tuple[T | None, str]:
    """``(result, "")``, or ``(None, message)`` when ``parse`` raises CorruptDataError."""
    try:
        return parse(data), ""
    except CorruptDataError as e:
        return None, str(e)


def _assert_tiles(frames: AdtsFrames, data: bytes) -> None:
    """What parse_adts returns is a chain of whole, consistent frames covering ``data`` exactly."""
    offsets, sizes = frames.offsets, frames.sizes
    assert offsets.dtype == np.int64 and sizes.dtype == np.int64
    assert offsets.shape == sizes.shape == (len(frames),)
    if not data:
        assert len(frames) == 0
        return
    assert len(frames) >= 1
    assert offsets[0] == 0
    np.testing.assert_array_equal(offsets[1:], offsets[:-1] + sizes[:-1])
    assert int(offsets[-1] + sizes[-1]) == len(data)
    buf = np.frombuffer(data, dtype=np.uint8)
    assert np.all(buf[offsets] == 0xFF)
    assert np.all((buf[offsets + 1] & 0xF6) == 0xF0)
    assert np.all(sizes >= np.where(buf[offsets + 1] & 1, 7, 9))
    assert frames.sample_rate in SAMPLE_RATES
    assert 1 <= frames.object_type <= 4
    assert 0 <= frames.channel_config <= 7
    config = ((buf[offsets + 2].astype(int) & 1) << 2) | (buf[offsets + 3] >> 6)
    assert np.all(config == frames.channel_config)


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=3000))
def test_parse_adts_arbitrary_bytes(data: bytes) -> None:
    frames, error = _attempt(parse_adts, data)
    if frames is None:
        assert error  # a CorruptDataError with a message; anything else propagates and fails
        return
    _assert_tiles(frames, data)


@settings(max_examples=400, deadline=None)
@given(st.binary(min_size=7, max_size=600), st.integers(0, 15), st.integers(0, 7), st.integers(7, 600))
def test_parse_adts_bytes_behind_a_valid_header(tail: bytes, sr_index: int, config: int, size: int) -> None:
    """Arbitrary bytes behind one plausible header reach the chain-following code."""
    data = _adts_frame(b"", sr_index=sr_index, config=config, crc=False)[:3]
    data += bytes((((config & 3) << 6) | (size >> 11), (size >> 3) & 0xFF, ((size & 7) << 5) | 0x1F)) + tail
    try:
        frames = parse_adts(data)
    except CorruptDataError:
        return
    _assert_tiles(frames, data)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(adts_streams())
def test_parse_adts_valid_streams(stream: Stream) -> None:
    frames = parse_adts(stream.data)
    _assert_tiles(frames, stream.data)
    assert frames.sizes.tolist() == stream.sizes
    assert (frames.object_type, frames.sample_rate, frames.channel_config) == (
        2,
        stream.sample_rate,
        stream.channel_config,
    )


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(adts_streams(), st.lists(MUTATION, min_size=1, max_size=4))
def test_parse_adts_mutated_streams(stream: Stream, ops: list[tuple[str, float, float, bytes]]) -> None:
    data = _mutate(stream.data, ops)
    frames, error = _attempt(parse_adts, data)
    if frames is None:
        assert error  # a CorruptDataError with a message; anything else propagates and fails
        return
    _assert_tiles(frames, data)


# ---------------------------------------------------------------------- AudioSpecificConfig


def _pack(fields: list[tuple[int, int]]) -> bytes:
    """Bit fields ``(value, width)``, most significant bit first, zero-padded to whole bytes."""
    value, width = 0, 0
    for v, w in fields:
        assert 0 <= v < (1 << w)
        value, width = (value << w) | v, width + w
    pad = -width % 8
    return (value << pad).to_bytes((width + pad) // 8, "big")


GA_TYPES = (1, 2, 3, 4, 6, 7)
OTHER_TYPES = tuple(t for t in range(8, 31) if t not in (29,))


@st.composite
def asc_configs(draw: st.DrawFn) -> tuple[bytes, tuple[int, int, int, int, bool]]:
    """An AudioSpecificConfig and the fields the parser must find in it."""
    fields: list[tuple[int, int]] = []

    def object_type(aot: int) -> None:
        fields.extend([(aot, 5)] if aot < 31 else [(31, 5), (aot - 32, 6)])

    def rate() -> int:
        if draw(st.booleans()):
            index = draw(st.integers(0, len(SAMPLE_RATES) - 1))
            fields.append((index, 4))
            return SAMPLE_RATES[index]
        explicit = draw(st.integers(0, (1 << 24) - 1))
        fields.extend([(15, 4), (explicit, 24)])
        return explicit

    aot = draw(st.sampled_from(GA_TYPES) | st.sampled_from(OTHER_TYPES) | st.integers(32, 95))
    hierarchical = draw(st.sampled_from((None, 5, 29)))
    object_type(hierarchical or aot)
    sample_rate = rate()
    config = draw(st.integers(0, 15))
    fields.append((config, 4))
    if hierarchical:
        rate()  # extension sampling frequency
        object_type(aot)
    frame_length = 1024
    if aot in GA_TYPES:
        short = draw(st.booleans())
        frame_length = 960 if short else 1024
        fields.append((int(short), 1))
        core = draw(st.none() | st.integers(0, (1 << 14) - 1))
        fields.extend([(1, 1), (core, 14)] if core is not None else [(0, 1)])
        fields.append((0, 1))  # extensionFlag
    sbr = bool(hierarchical)
    # The backward-compatible explicit SBR signal, where the parser reads it (GA, no PCE, no layerNr).
    if not hierarchical and aot in GA_TYPES and aot != 6 and config != 0 and draw(st.booleans()):
        present = draw(st.booleans())
        fields.extend([(0x2B7, 11), (5, 5), (int(present), 1)])
        if present:
            fields.append((draw(st.integers(0, 12)), 4))
        sbr = present
    return _pack(fields), (aot, sample_rate, config, frame_length, sbr)


@settings(max_examples=400, deadline=None)
@given(asc_configs())
def test_parse_asc_round_trips(case: tuple[bytes, tuple[int, int, int, int, bool]]) -> None:
    data, expected = case
    asc = parse_audio_specific_config(data)
    assert (asc.object_type, asc.sample_rate, asc.channel_config, asc.frame_length, asc.has_sbr_or_ps) == expected


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=48))
def test_parse_asc_arbitrary_bytes(data: bytes) -> None:
    asc, error = _attempt(parse_audio_specific_config, data)
    if asc is None:
        assert error
        return
    assert 0 <= asc.object_type <= 95
    assert 0 <= asc.sample_rate < (1 << 24)
    assert 0 <= asc.channel_config <= 15
    assert asc.frame_length in (960, 1024)
    assert isinstance(asc.has_sbr_or_ps, bool)


@settings(max_examples=300, deadline=None)
@given(asc_configs(), st.lists(MUTATION, min_size=1, max_size=3))
def test_parse_asc_mutated(case: tuple[bytes, Any], ops: list[tuple[str, float, float, bytes]]) -> None:
    data = _mutate(case[0], ops)
    try:
        asc = parse_audio_specific_config(data)
    except CorruptDataError:
        return
    assert asc.frame_length in (960, 1024)
    assert 0 <= asc.channel_config <= 15


# ---------------------------------------------------------------------- damaged source files

# Runs in a fresh interpreter with its address space capped: a crash inside FFmpeg, a hang or a
# runaway allocation fails the test instead of taking pytest down. One JSON line per event.
_FUZZ_CHILD = r"""
import faulthandler, json, os, resource, sys, time
resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30))
faulthandler.enable()
import numpy as np
from aacdata import SourceError
from aacdata.codecs._adts import parse_adts
from aacdata.audio._transcode import transcode

seed_dir, work, seed, first, stop = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
case_timeout = float(sys.argv[6])
names = sorted(os.listdir(seed_dir))
blobs = [open(os.path.join(seed_dir, n), "rb").read() for n in names]

def mutate(data, rng):
    buf = bytearray(data)
    ops = []
    for _ in range(int(rng.integers(1, 4))):
        n = len(buf)
        if n == 0:
            break
        op = ("flip", "truncate", "duplicate", "zero", "insert")[int(rng.integers(0, 5))]
        # Headers and container boxes sit near the start: aim there often.
        hi = min(n, 512) if rng.random() < 0.4 else n
        if op == "flip":
            for _ in range(int(rng.integers(1, 9))):
                buf[int(rng.integers(0, hi))] ^= int(rng.integers(1, 256))
        elif op == "truncate":
            del buf[int(rng.integers(0, n)):]
        elif op == "duplicate":
            a = int(rng.integers(0, n))
            length = int(rng.integers(1, min(4096, n - a) + 1))
            at = int(rng.integers(0, n))
            buf[at:at] = buf[a : a + length]
        elif op == "zero":
            a = int(rng.integers(0, hi))
            length = int(rng.integers(1, 512))
            buf[a : a + length] = bytes(len(buf[a : a + length]))
        else:
            at = int(rng.integers(0, hi))
            buf[at:at] = rng.integers(0, 256, int(rng.integers(1, 64)), dtype=np.uint8).tobytes()
        ops.append(op)
    return bytes(buf), ops

for case in range(first, stop):
    rng = np.random.default_rng([seed, case])
    k = case % len(names)
    data, ops = mutate(blobs[k], rng)
    path = os.path.join(work, "case" + os.path.splitext(names[k])[1])
    with open(path, "wb") as f:
        f.write(data)
    print(json.dumps({"start": case, "seed_file": names[k], "ops": ops}), flush=True)
    t = time.perf_counter()
    # A watchdog thread that ends the process even while FFmpeg loops in C: a hang, not a wait.
    faulthandler.dump_traceback_later(case_timeout, exit=True)
    try:
        enc = transcode(path)
    except SourceError as e:
        out = {"status": "source_error", "error": str(e)[:200]}
    except BaseException as e:
        tb = e.__traceback__
        while tb.tb_next is not None:
            tb = tb.tb_next
        where = f"{os.path.basename(tb.tb_frame.f_code.co_filename)}:{tb.tb_lineno}"
        out = {"status": "unexpected", "error": f"{type(e).__name__}: {e}"[:300], "where": where}
    else:
        try:
            frames = parse_adts(enc.adts)
            problem = None
            if len(frames) != enc.num_frames or frames.sizes.tolist() != enc.frame_sizes.tolist():
                problem = f"{len(frames)} frames in the ADTS bytes, num_frames={enc.num_frames}"
            elif enc.num_frames * 1024 < enc.encoder_delay + enc.num_samples or enc.num_samples <= 0:
                problem = f"{enc.num_frames} frames for delay {enc.encoder_delay} + {enc.num_samples} samples"
        except Exception as e:
            problem = f"{type(e).__name__}: {e}"
        out = {"status": "inconsistent", "error": problem} if problem else {"status": "ok"}
    faulthandler.cancel_dump_traceback_later()
    out.update(case=case, seconds=round(time.perf_counter() - t, 3))
    print(json.dumps(out), flush=True)
"""

_FUZZ_SEEDS = {
    # name: (kind, num_samples, sample_rate, num_channels)
    "a.wav": ("speech", 6000, 16_000, 1),
    "b.wav": ("noise", 5000, 44_100, 2),
    "c.flac": ("music", 6000, 22_050, 2),
    "d.mp3": ("chirp", 6000, 16_000, 1),
    "e.m4a": ("speech", 8000, 44_100, 2),
    "f.aac": ("chirp", 6000, 22_050, 1),
    "g.ogg": ("music", 6000, 16_000, 2),  # the native Vorbis encoder: stereo only
    "h.opus": ("speech", 6000, 16_000, 1),
    "i.mp4": ("tone", 6000, 32_000, 1),
    "j.mkv": ("noise", 5000, 16_000, 2),
    "k.webm": ("chirp", 6000, 48_000, 1),
}

# Failures that are known aacdata bugs, reported and left out of the assertion until fixed:
# (outcome, text that identifies it). Remove an entry once its bug is fixed.
_KNOWN_BUGS: tuple[tuple[str, str], ...] = ()  # (status, text in the error) of bugs not fixed yet


@pytest.fixture(scope="module")
def fuzz_seeds(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("fuzz_seeds")
    for i, (name, (kind, n, rate, channels)) in enumerate(_FUZZ_SEEDS.items()):
        make_file(root / name, kind, n, sample_rate=rate, num_channels=channels, seed=i)
    return root


_CASE_TIMEOUT_S = 30.0
"""One damaged file of under a second of audio that takes longer than this hangs."""


def _fuzz(seed_dir: Path, work: Path, *, seed: int, num_cases: int, timeout: float) -> list[dict[str, Any]]:
    """Run cases ``[0, num_cases)`` in child processes; a child that dies is restarted after the
    case that killed it. Returns one record per case, with ``status`` ``crashed`` or ``hung``
    for a child that died or ran out of time on it."""
    records: list[dict[str, Any]] = []
    first = 0
    while first < num_cases:
        args = (seed_dir, work, seed, first, num_cases, _CASE_TIMEOUT_S)
        cmd = [sys.executable, "-c", _FUZZ_CHILD, *map(str, args)]
        try:
            proc = subprocess.run(
                cmd, env=env_with_package(), capture_output=True, text=True, timeout=timeout, check=False
            )
            stdout, stderr, rc = proc.stdout, proc.stderr, proc.returncode
        except subprocess.TimeoutExpired as e:
            stdout = e.stdout.decode() if isinstance(e.stdout, bytes) else (e.stdout or "")
            stderr, rc = "", None
        started: dict[str, Any] | None = None
        for line in stdout.splitlines():
            event = json.loads(line)
            if "start" in event:
                started = event
            else:
                assert started is not None and started["start"] == event["case"]
                records.append({**started, **event})
                started = None
        if rc == 0 and started is None:
            assert records and records[-1]["case"] == num_cases - 1, stderr[-2000:]
            break
        if started is None:  # died before its first case
            raise AssertionError(f"fuzz child exited with {rc} before any case:\n{stderr[-3000:]}")
        status = "hung" if rc is None or "Timeout (" in stderr else "crashed"
        records.append({**started, "case": started["start"], "status": status, "error": f"rc={rc}\n{stderr[-3000:]}"})
        first = started["start"] + 1
    return records


def _check_fuzz(records: list[dict[str, Any]], num_cases: int) -> dict[str, int]:
    assert [r["case"] for r in records] == list(range(num_cases))
    counts: dict[str, int] = {}
    failures = []
    for r in records:
        status = r["status"]
        counts[status] = counts.get(status, 0) + 1
        if status in ("ok", "source_error"):
            continue
        if any(status == s and text in r["error"] for s, text in _KNOWN_BUGS):
            counts["known_bug"] = counts.get("known_bug", 0) + 1
            continue
        failures.append(r)
    assert not failures, "\n".join(json.dumps(f)[:1500] for f in failures[:10])
    # The mutations leave some files importable and break others: both paths ran.
    assert counts.get("ok", 0) >= num_cases // 50
    assert counts.get("source_error", 0) >= num_cases // 4
    return counts


def test_mutated_sources_short(fuzz_seeds: Path, tmp_path: Path) -> None:
    records = _fuzz(fuzz_seeds, tmp_path, seed=20240601, num_cases=220, timeout=120)
    _check_fuzz(records, 220)


@pytest.mark.slow
def test_mutated_sources_long(fuzz_seeds: Path, tmp_path: Path) -> None:
    records = _fuzz(fuzz_seeds, tmp_path, seed=2, num_cases=30_000, timeout=1800)
    counts = _check_fuzz(records, 30_000)
    print(f"mutated sources: {counts}")


# ---------------------------------------------------------------------- hostile names and ids


def _tree(root: Path, skip: Path | None = None) -> dict[str, tuple[int, int, bool]]:
    """Every path below ``root`` (not following links) -> (size, mtime_ns, is_dir); ``skip`` left out."""
    out: dict[str, tuple[int, int, bool]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        if skip is not None and Path(dirpath) == skip.parent:
            dirnames[:] = [d for d in dirnames if Path(dirpath, d) != skip]
        for name in (*dirnames, *filenames):
            p = Path(dirpath, name)
            if p == skip:
                continue
            st_ = p.lstat()
            is_dir = p.is_dir() and not p.is_symlink()
            # A directory's own size and time change with its entries; those are compared instead.
            out[os.fsdecode(p.relative_to(root))] = (0, 0, True) if is_dir else (st_.st_size, st_.st_mtime_ns, False)
    return out


def _walk_files(root: Path) -> Iterator[Path]:
    for dirpath, _dirs, files in os.walk(root):
        for f in files:
            yield Path(dirpath, f)


HOSTILE_NAMES = (
    "x..wav",
    "...wav",
    "a\nb.wav",
    "tab\tand\rcr.wav",
    "ünïcødé 😀.wav",
    "-rf.wav",
    "sp ace.wav",
    "back\\slash.wav",
    "co:lon;semi|pipe.wav",
    "quote'\"$(echo x).wav",
    ".../inner.wav",  # in a directory named "..."
    "-/dash-dir.wav",
    "z" * 200 + ".wav",
)


def test_hostile_source_names_import_inside_the_store(tmp_path: Path) -> None:
    src = tmp_path / "corpus" / "src"
    for i, name in enumerate(HOSTILE_NAMES):
        make_file(src / name, "tone", 2000 + 37 * i, seed=i)
    outside = tmp_path / "corpus" / "outside.wav"
    make_file(outside, "chirp", 2500)
    make_file(tmp_path / "corpus" / "elsewhere" / "linked.wav", "noise", 2600)
    (src / "link").symlink_to(tmp_path / "corpus" / "elsewhere", target_is_directory=True)
    listing = src / "list.txt"
    # Entries that climb out of the list's directory: their ids are bare names, never paths. The
    # directory walk leaves out hidden files ("...wav"); the list brings it in.
    listing.write_text(f"a/../../outside.wav\n../outside.wav\n{outside}\n./x..wav\n...wav\n", encoding="utf-8")
    meta = tmp_path / "corpus" / "meta.jsonl"
    lines = [
        {"id": "../../etc/passwd", "x": 1},
        {"id": "/etc/passwd", "x": 2},
        {"id": "a\nb.wav", "path": "../../etc/passwd", "nul": "\u0000", "deep": {"k": ["..", "/"]}},
        {"id": "outside.wav", "note": "../" * 50},
    ]
    meta.write_text("".join(json.dumps(x) + "\n" for x in lines), encoding="utf-8")
    store_path = tmp_path / "s.zarr"
    before = _tree(tmp_path)

    # A direct source spelled with "..": its id is its name.
    sources = [src, listing, src / "..." / ".." / "x..wav"]
    report = aacdata.import_audio(sources, store_path, workers=0, progress=False, metadata=meta)

    assert _tree(tmp_path, skip=store_path) == before  # nothing but the store changed
    assert all(p.resolve().is_relative_to(store_path.resolve()) for p in _walk_files(store_path))
    expected_ids = {name.replace(os.sep, "/") for name in HOSTILE_NAMES} | {"outside.wav", "link/linked.wav"}
    assert set(report.imported) == expected_ids
    # "a/../../outside.wav" needs a directory "a" that does not exist; the same file under other
    # spellings is imported once.
    assert [(Path(f.source).name, f.reason) for f in report.failed] == [("outside.wav", "file not found")]
    store = AACStore.open(store_path)
    assert set(store.ids) == expected_ids and len(store.ids) == len(expected_ids)
    assert not any(".." in rid.split("/") or rid.startswith("/") for rid in store.ids)
    assert dict(store.recording("a\nb.wav").metadata) == {k: v for k, v in lines[2].items() if k != "id"}
    assert dict(store.recording("outside.wav").metadata) == {"note": "../" * 50}
    assert store.verify().ok
    for i, name in enumerate(HOSTILE_NAMES):
        rec = store.recording(name)
        assert rec.num_samples == 2000 + 37 * i
        assert store.read(rec, 0, rec.num_samples).shape == (1, rec.num_samples)


@pytest.fixture
def hostile_store(tmp_path: Path) -> tuple[Path, list[str]]:
    """A store whose id column was rewritten to path-like ids (a store from an untrusted source)."""
    src = tmp_path / "src"
    for i in range(5):
        make_file(src / f"{i}.wav", "speech", 3000 + 100 * i, seed=i)
    store_path = tmp_path / "stores" / "s.zarr"
    aacdata.import_audio(src, store_path, workers=0, progress=False)
    ids = ["../../../../escape.wav", "/tmp/abs/escape.wav", "a/../../b.aac", "line\nbreak", "-rf"]
    column = zarr.open_array(store_path / "recordings" / "id", mode="r+")
    column[:] = np.asarray(ids, dtype=object)
    # A crafted store is consistent: its table checksum matches the hostile ids.
    group = zarr.open_group(store_path, mode="r+")
    meta = dict(group.attrs["aacdata"])
    meta["column_crc32"] = {**meta["column_crc32"], "id": column_crc32("id", ids)}
    group.attrs["aacdata"] = meta
    return store_path, ids


@pytest.mark.parametrize("suffix", [".aac", ".wav", ".flac"])
def test_export_writes_only_out(
    hostile_store: tuple[Path, list[str]], tmp_path: Path, suffix: str, capsys: pytest.CaptureFixture[str]
) -> None:
    store_path, ids = hostile_store
    store = AACStore.open(store_path)
    assert list(store.ids) == ids
    work = tmp_path / "work"
    work.mkdir()
    abs_target_existed = Path("/tmp/abs").exists()
    for k, rid in enumerate(ids):
        out = work / f"out{k}{suffix}"
        before = _tree(tmp_path)
        argv = ["export", "--", str(store_path), rid, str(out)]
        if k == 0 and suffix == ".aac":  # the real command line once; in-process otherwise (faster)
            proc = subprocess.run(
                [sys.executable, "-m", "aacdata", *argv],
                env=env_with_package(),
                capture_output=True,
                text=True,
                timeout=120,
                check=False,
            )
            assert proc.returncode == 0, proc.stderr
            stdout = proc.stdout
        else:
            assert main(argv) == 0
            stdout = capsys.readouterr().out
        assert stdout.startswith(f"wrote {out} (")
        after = _tree(tmp_path)
        assert set(after) - set(before) == {os.fsdecode(out.relative_to(tmp_path))}
        assert {key: v for key, v in after.items() if key in before} == before
        rec = store.recording(rid)
        if suffix == ".aac":
            assert out.read_bytes() == store.adts_bytes(rec)
        else:
            with av.open(str(out)) as c:
                samples = sum(f.samples for f in c.decode(audio=0))
            assert samples == rec.num_samples
    assert Path("/tmp/abs").exists() == abs_target_existed
    # An id that is not in the store: an error naming it, and nothing written.
    before = _tree(tmp_path)
    assert main(["export", str(store_path), "../../etc/passwd", str(work / f"missing{suffix}")]) == 2
    assert "no recording with id '../../etc/passwd'" in capsys.readouterr().err
    assert _tree(tmp_path) == before
