"""The compiled window decoder against the pure-Python loop over PyAV: the same samples for
every window (PNS and PNS-free streams, 1-5 channels, frame edges), the same errors, and
PNS windows from a reset pooled decoder equal to those of new decoders."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import env_with_package, full_decode

import aacdata
from aacdata.audio._audiofile import write_audio
from aacdata.codecs import _aac
from aacdata.codecs._fast import fastaac
from aacdata.errors import DecodeError

needs_compiled = pytest.mark.skipif(fastaac is None, reason="the compiled decoder was not built here")

_READ_WINDOWS = """
import json, sys
import numpy as np
import aacdata
from aacdata.codecs import _aac
store = aacdata.AACStore.open(sys.argv[1])
out = {}
for rid, start, n in json.loads(sys.argv[2]):
    out[f"{rid}:{start}:{n}"] = store.read(rid, start, n).tobytes().hex()
json.dump({"windows": out, "compiled": _aac.fastaac is not None, "noise_reset": _aac._noise.proven}, sys.stdout)
"""


def _read_in_process(store: Path, windows: list[tuple[str, int, int]], *, pure: bool) -> dict:
    env = env_with_package()
    env["AACDATA_PURE_PYTHON"] = "1" if pure else "0"
    done = subprocess.run(
        [sys.executable, "-c", _READ_WINDOWS, str(store), json.dumps(windows)],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    return json.loads(done.stdout)


@pytest.fixture(scope="module")
def pns_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("compiled")
    sources = []
    for channels, pns in ((2, True), (1, True), (2, False), (3, False), (5, True)):
        x = aacdata.testing.signal("music", 44_100 * 3, sample_rate=44_100, num_channels=channels, seed=channels)
        noise = aacdata.testing.signal("noise", 44_100 * 3, sample_rate=44_100, num_channels=channels, seed=9)
        name = f"c{channels}_{'pns' if pns else 'plain'}.m4a"
        sources.append(
            write_audio(root / name, 0.5 * x + 0.2 * noise, sample_rate=44_100, bitrate=64_000 * channels, pns=pns)
        )
    report = aacdata.import_audio(sources, root / "s.zarr", workers=0, progress=False)
    assert report.ok and report.passthrough == len(sources) - 1  # 3 channels are re-encoded
    return root / "s.zarr"


def _windows(store: Path, count: int, seed: int) -> list[tuple[str, int, int]]:
    rng = np.random.default_rng(seed)
    out = []
    with aacdata.AACStore.open(store) as s:
        for rec in s:
            edges = [0, 1, 1023, 1024, 1025, 2047, 2048, rec.num_samples - 5000]
            for start in edges + rng.integers(0, rec.num_samples - 5000, count).tolist():
                out.append((rec.id, int(start), int(rng.integers(1, 5000))))
    return out


@needs_compiled
def test_compiled_and_pure_python_windows_are_identical(pns_store: Path) -> None:
    # Invariant: the compiled decoder changes the speed of a read, never its samples, in
    # PNS streams too (where it resets the noise generator of a pooled decoder).
    windows = _windows(pns_store, 25, seed=1)
    compiled = _read_in_process(pns_store, windows, pure=False)
    pure = _read_in_process(pns_store, windows, pure=True)
    assert compiled["compiled"] and not pure["compiled"]
    assert compiled["noise_reset"]  # the reset was proven on a PNS window of this store
    assert compiled["windows"] == pure["windows"]


@needs_compiled
def test_pns_windows_from_a_reset_decoder_equal_new_decoders(pns_store: Path) -> None:
    with aacdata.AACStore.open(pns_store) as store:
        rec = store.recording("c2_pns.m4a")
        assert rec.pns
        rng = np.random.default_rng(2)
        starts = rng.integers(1024, rec.num_samples - 4096, 40).tolist()
        first = [store.read(rec, s, 4096) for s in starts]
        created = store._decoders.decoders_created
        again = [store.read(rec, s, 4096) for s in reversed(starts)][::-1]
        assert _aac._noise.proven
        assert store._decoders.decoders_created == created  # no new decoder per PNS window
    for a, b in zip(first, again, strict=True):
        np.testing.assert_array_equal(a, b)
    # the reference: each window from a new PyAV decoder (what every PNS window got before)
    config = store.stream_config(rec)
    with aacdata.AACStore.open(pns_store) as store:
        plan = store._plan(rec, starts[0], 4096, False)
        data = store._bytes.read(plan.byte_start, plan.byte_stop)
    ref = np.empty((rec.num_channels, 4096), np.float32)
    _aac._decoder.decode_into(
        _aac.AacCodec().new_decoder(config),
        data,
        num_frames=plan.num_frames,
        preroll=plan.first_frame - plan.preroll_frame,
        skip=plan.skip,
        out=ref,
        what="ref",
    )
    np.testing.assert_array_equal(first[0], ref)


@needs_compiled
def test_plain_windows_equal_a_full_decode(pns_store: Path) -> None:
    with aacdata.AACStore.open(pns_store) as store:
        for rid in ("c2_plain.m4a", "c3_plain.m4a"):
            rec = store.recording(rid)
            ref = full_decode(store, rec)
            for start in (0, 1, 1023, 5000, rec.num_samples - 3000):
                np.testing.assert_array_equal(store.read(rec, start, 3000), ref[:, start : start + 3000])


@needs_compiled
def test_compiled_decoder_errors_are_decode_errors(pns_store: Path) -> None:
    with aacdata.AACStore.open(pns_store) as store:
        rec = store.recording("c2_plain.m4a")
        frames = store.adts_bytes(rec)
        config = store.stream_config(rec)
    codec = _aac.AacCodec()
    out = np.empty((2, 2048), np.float32)
    ctx = fastaac.Decoder()
    with pytest.raises(DecodeError, match=r"frames gave|decoder failed"):
        codec.decode_into(ctx, b"\xff\xf1" + bytes(100), config=config, num_frames=3, preroll=0, skip=0, out=out,
                          what="x")  # fmt: skip
    ctx = fastaac.Decoder()
    with pytest.raises(DecodeError, match="window needs 2048"):  # one frame cannot fill 2048 samples
        codec.decode_into(ctx, frames[: _first_frame_size(frames)], config=config, num_frames=1, preroll=0, skip=0,
                          out=out, what="x")  # fmt: skip
    with pytest.raises(ValueError, match="2-D float32"):
        ctx.decode_into(b"", 0, 0, 0, np.empty((2, 4), np.float64), 2)
    with pytest.raises(ValueError, match="2-D float32"):
        ctx.decode_into(b"", 0, 0, 0, np.empty((3, 4), np.float32), 2)  # more rows than coded channels
    with pytest.raises(ValueError, match="outside the context"):
        ctx.reset_noise(1 << 40)


def _first_frame_size(adts: bytes) -> int:
    return ((adts[3] & 0x03) << 11) | (adts[4] << 3) | (adts[5] >> 5)


@needs_compiled
def test_compiled_frame_checksums_agree_with_zlib() -> None:
    from aacdata.store import _verify

    rng = np.random.default_rng(7)
    for _ in range(100):
        sizes = rng.integers(0, 900, int(rng.integers(0, 50)))
        data = rng.integers(0, 256, int(sizes.sum()), dtype=np.uint8).tobytes()
        bounds = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64) + int(rng.integers(0, 1 << 40))
        crcs = np.array([_verify.zlib.crc32(data[a:b]) for a, b in zip(bounds[:-1] - bounds[0], bounds[1:] - bounds[0],
                                                                        strict=True)], np.uint32)  # fmt: skip
        assert _verify.frames_failing_crc(data, bounds, crcs, stop_at_first=True) == []
        if sizes.size:
            k = int(rng.integers(sizes.size))
            bad = crcs.copy()
            bad[k] ^= 1 << int(rng.integers(32))
            assert _verify.frames_failing_crc(data, bounds, bad, stop_at_first=True) == [(k, int(crcs[k]))]
            assert _verify.frames_failing_crc(data, bounds, bad) == [(k, int(crcs[k]))]  # the pure loop
    with pytest.raises(ValueError, match="outside data"):
        fastaac.first_bad_frame(b"abc", np.array([0, 5], np.int64), np.zeros(1, np.uint32))
    with pytest.raises(ValueError, match="one int64 more"):
        fastaac.first_bad_frame(b"abc", np.array([0], np.int64), np.zeros(1, np.uint32))


@needs_compiled
def test_a_store_shared_by_threads_refuses_instead_of_crashing(pns_store: Path) -> None:
    # A store is for one thread at a time; several threads on one store get a clear error
    # for the windows that collide (the compiled decoder lets go of the GIL) and exact
    # samples for the others, never a crash or mixed-up samples.
    from concurrent.futures import ThreadPoolExecutor

    with aacdata.AACStore.open(pns_store) as store:
        rec = store.recording("c2_plain.m4a")
        starts = np.random.default_rng(4).integers(1024, rec.num_samples - 8192, 200).tolist()
        with aacdata.AACStore.open(pns_store) as alone:
            expected = {s: alone.read(rec, s, 8192) for s in starts}

        def read(s: int) -> tuple[int, np.ndarray | str]:
            try:
                return s, store.read(rec, s, 8192)
            except RuntimeError as e:
                return s, str(e)

        with ThreadPoolExecutor(4) as pool:
            results = list(pool.map(read, starts))
    for s, got in results:
        if isinstance(got, str):
            assert "an AACStore is for one thread at a time" in got
        else:
            np.testing.assert_array_equal(got, expected[s])
