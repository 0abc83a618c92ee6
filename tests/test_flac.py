"""FLAC frames in the store: windows equal the source's PCM exactly (scaled as soundfile
scales integers), at any rate FLAC carries, for 1-8 channels of 16 and 24 bits; the same
store holds AAC and FLAC; verify, repair, merge, export and the dataset work for both."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

import aacdata
from aacdata import AACStore, CorruptDataError, StoreFormatError, import_audio
from aacdata.cli import main
from aacdata.codecs import _flac
from aacdata.store._merge import merge_stores
from aacdata.store._repair import rebuild_store as repair_store

sf = pytest.importorskip("soundfile")

CASES = [  # name, rate, channels, soundfile subtype
    ("m16.wav", 8000, 1, "PCM_16"),
    ("s16.flac", 44100, 2, "PCM_16"),
    ("t24.wav", 48000, 3, "PCM_24"),
    ("b24.wav", 192000, 2, "PCM_24"),
    ("u24.flac", 384000, 1, "PCM_24"),
    ("e16.wav", 22050, 8, "PCM_16"),
]


def _write(path: Path, rate: int, channels: int, subtype: str, seconds: float = 1.1, seed: int = 0) -> np.ndarray:
    """Noise with a tone per channel, written by soundfile; returns what soundfile reads back
    as float32 ``(C, T)``."""
    rng = np.random.default_rng(seed)
    n = int(rate * seconds) + 77
    t = np.arange(n) / rate
    x = 0.05 * rng.standard_normal((n, channels)) + 0.3 * np.sin(2 * np.pi * (rate / 7) * t)[:, None]
    sf.write(path, x.astype(np.float32), rate, subtype=subtype)
    ref, _ = sf.read(path, dtype="float32", always_2d=True)
    return np.ascontiguousarray(ref.T)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, np.ndarray]]:
    root = tmp_path_factory.mktemp("flac")
    src = root / "src"
    src.mkdir()
    refs = {}
    for k, (name, rate, channels, subtype) in enumerate(CASES):
        refs[name] = _write(src / name, rate, channels, subtype, seed=k)
    store = root / "s.zarr"
    import_audio(src, store, codec="flac", workers=0, progress=False)
    return store, refs


def test_every_window_equals_the_source_pcm(corpus: tuple[Path, dict[str, np.ndarray]]) -> None:
    # Invariant: a FLAC window is the source's integers / 2**(bits-1), bit for bit.
    path, refs = corpus
    rng = np.random.default_rng(5)
    with AACStore.open(path) as store:
        assert len(store) == len(CASES)
        for name, rate, channels, subtype in CASES:
            rec = store.recording(name)
            ref = refs[name]
            assert (rec.codec, rec.sample_rate, rec.num_channels) == ("flac", rate, channels)
            assert rec.bits_per_sample == (16 if subtype == "PCM_16" else 24)
            assert rec.num_samples == ref.shape[1] and rec.encoder_delay == 0
            assert rec.bandwidth_hz == rate // 2 and rec.time_expansion == 1.0
            np.testing.assert_array_equal(store.read(rec, 0, rec.num_samples), ref)
            step = rec.frame_samples
            edges = [0, 1, step - 1, step, step + 1, rec.num_samples - step - 1, rec.num_samples - 1]
            for start in [*edges, *rng.integers(0, rec.num_samples - 1, 30).tolist()]:
                for n in (1, step - 1, step, step + 1, 3 * step + 5):
                    n = min(n, rec.num_samples - start)
                    np.testing.assert_array_equal(store.read(rec, start, n), ref[:, start : start + n])
            padded = store.read(rec, rec.num_samples - 10, 30, pad=True)
            np.testing.assert_array_equal(padded[:, :10], ref[:, -10:])
            assert not padded[:, 10:].any()


def test_verify_export_and_stream(corpus: tuple[Path, dict[str, np.ndarray]], tmp_path: Path) -> None:
    path, refs = corpus
    with AACStore.open(path) as store:
        assert store.verify().ok
        assert store.codec_suffix("u24.flac") == ".flac"
        with pytest.raises(StoreFormatError, match="stored as flac"):
            store.adts_bytes("u24.flac")
    for name in ("u24.flac", "s16.flac", "t24.wav"):
        out = tmp_path / (Path(name).stem + "-out.flac")
        assert main(["export", str(path), name, str(out)]) == 0
        back, _ = sf.read(out, dtype="float32", always_2d=True)
        np.testing.assert_array_equal(back.T, refs[name])
    out = tmp_path / "x.aac"
    assert main(["export", str(path), "u24.flac", str(out)]) != 0


def test_float_sources_are_quantized_to_24_bits(tmp_path: Path) -> None:
    ref = _write(tmp_path / "f.wav", 250_000, 2, "FLOAT")
    import_audio(tmp_path / "f.wav", tmp_path / "s.zarr", codec="flac", workers=0, progress=False)
    with AACStore.open(tmp_path / "s.zarr") as store:
        rec = store.recording(0)
        got = store.read(rec, 0, rec.num_samples)
        assert rec.bits_per_sample == 24
        assert np.abs(got - ref).max() <= 2.0**-24  # half a 24-bit step
        assert any("quantized to 24-bit" in n for n in rec.source["notes"])


def test_one_store_holds_both_codecs_and_the_dataset_reads_them(tmp_path: Path) -> None:
    refs = {n: _write(tmp_path / n, 48000, 2, "PCM_16", seed=i) for i, n in enumerate(("a.wav", "b.wav"))}
    (tmp_path / "b").mkdir()
    shutil.move(tmp_path / "b.wav", tmp_path / "b" / "b.wav")
    store_path = tmp_path / "s.zarr"
    import_audio(tmp_path / "a.wav", store_path, workers=0, progress=False)  # AAC
    import_audio(tmp_path / "b", store_path, codec="flac", workers=0, progress=False)
    with AACStore.open(store_path) as store:
        assert [r.codec for r in store.recordings] == ["aac-lc", "flac"]
        assert store.verify().ok
        np.testing.assert_array_equal(store.read("b.wav", 100, 5000), refs["b.wav"][:, 100:5100])
    ds = aacdata.AACSegmentDataset(store_path, window_seconds=0.25, seed=0)
    loader = torch.utils.data.DataLoader(ds, batch_size=4, num_workers=2, persistent_workers=True)
    batches = list(loader)
    assert batches and all(x.shape[1:] == (2, 12000) for x in batches)
    # Resampling on read works on FLAC rows like on AAC ones.
    with AACStore.open(store_path) as store:
        low = store.read("b.wav", 0, 8000, sample_rate=16000)
        np.testing.assert_allclose(low, aacdata.resample(refs["b.wav"], 48000, 16000)[:, :8000], atol=1e-5)


def test_auto_picks_flac_above_96_khz(tmp_path: Path) -> None:
    _write(tmp_path / "bat.wav", 250_000, 1, "PCM_16")
    _write(tmp_path / "bird.wav", 48000, 1, "PCM_16")
    import_audio(tmp_path, tmp_path / "s.zarr", codec="auto", workers=0, progress=False)
    with AACStore.open(tmp_path / "s.zarr") as store:
        assert {r.id: r.codec for r in store.recordings} == {"bat.wav": "flac", "bird.wav": "aac-lc"}


def test_aac_options_with_flac_are_usage_errors(tmp_path: Path) -> None:
    _write(tmp_path / "a.wav", 48000, 1, "PCM_16")
    for option in ({"bitrate": 96_000}, {"bandwidth": 8000}, {"time_expansion": 2.0}):
        with pytest.raises(ValueError, match="applies to AAC"):
            import_audio(tmp_path / "a.wav", tmp_path / "s.zarr", codec="flac", progress=False, **option)
    with pytest.raises(ValueError, match="codec must be"):
        import_audio(tmp_path / "a.wav", tmp_path / "s.zarr", codec="opus", progress=False)  # type: ignore[arg-type]
    assert not (tmp_path / "s.zarr").exists()
    assert main(["import", str(tmp_path / "a.wav"), "-o", str(tmp_path / "c.zarr"), "--codec", "flac"]) == 0
    assert main(["ls", str(tmp_path / "c.zarr"), "--json"]) == 0


def test_damaged_frames_fail_reads_and_verify_and_repair_keeps_the_rest(
    corpus: tuple[Path, dict[str, np.ndarray]], tmp_path: Path
) -> None:
    path, refs = corpus
    copy = tmp_path / "d.zarr"
    shutil.copytree(path, copy)
    with AACStore.open(copy) as store:
        rec = store.recording("b24.wav")
        at = rec.byte_start + rec.num_bytes // 2
    size = json.loads((copy / "adts" / "zarr.json").read_text())["chunk_grid"]["configuration"]["chunk_shape"][0]
    chunk = copy / "adts" / "c" / str(at // size)
    data = bytearray(chunk.read_bytes())
    data[at % size] ^= 0x40
    chunk.write_bytes(bytes(data))
    with AACStore.open(copy) as store:
        with pytest.raises(CorruptDataError):
            store.read("b24.wav", 0, rec.num_samples)
        report = store.verify()
        assert report.bad_ids == ("b24.wav",)
    repaired = tmp_path / "r.zarr"
    repair_store(copy, repaired)
    with AACStore.open(repaired) as store:
        assert "b24.wav" not in store.ids and len(store) == len(CASES) - 1
        for name in store.ids:
            rec = store.recording(name)
            np.testing.assert_array_equal(store.read(rec, 0, rec.num_samples), refs[name])
        assert store.verify().ok


def test_repair_and_merge_carry_flac_rows_as_they_are(
    corpus: tuple[Path, dict[str, np.ndarray]], tmp_path: Path
) -> None:
    path, refs = corpus
    merged = tmp_path / "m.zarr"
    merge_stores([path], merged)
    repaired = tmp_path / "r.zarr"
    repair_store(path, repaired)
    for out in (merged, repaired):
        with AACStore.open(out) as store:
            assert len(store) == len(CASES) and store.verify().ok
            for name in refs:
                rec = store.recording(name)
                assert rec.codec == "flac"
                np.testing.assert_array_equal(store.read(rec, 0, rec.num_samples), refs[name])


def test_a_version_1_store_takes_flac_rows(tmp_path: Path) -> None:
    v1 = tmp_path / "v1.zarr"
    shutil.copytree(Path(__file__).parent / "data" / "store_v1.zarr", v1)
    ref = _write(tmp_path / "x.wav", 96000, 2, "PCM_24")
    import_audio(tmp_path / "x.wav", v1, codec="flac", workers=0, progress=False)
    with AACStore.open(v1) as store:
        assert store.format_version == 2
        assert store.recording("x.wav").codec == "flac"
        assert {r.codec for r in store.recordings} == {"aac-lc", "flac"}
        np.testing.assert_array_equal(store.read("x.wav", 0, ref.shape[1]), ref)
        assert store.verify().ok
    meta = json.loads((v1 / "zarr.json").read_text())["attributes"]["aacdata"]
    assert meta["codecs"] == {"0": "aac-lc", "1": "flac"}


def test_streaminfo_names_the_recording() -> None:
    from aacdata.codecs._codec import CODEC_FLAC, StreamConfig

    info = _flac.streaminfo(StreamConfig(CODEC_FLAC, 384000, 3, 4096, 24, num_samples=123_456_789))
    value = int.from_bytes(info[:18], "big")
    assert value >> 112 == 4096 << 16 | 4096
    assert (value >> 44) & ((1 << 20) - 1) == 384000
    assert (value >> 41) & 7 == 2 and (value >> 36) & 31 == 23
    assert value & ((1 << 36) - 1) == 123_456_789


def test_remove_and_compact_keep_flac_rows_exact(corpus: tuple[Path, dict[str, np.ndarray]], tmp_path: Path) -> None:
    path, refs = corpus
    copy = tmp_path / "c.zarr"
    shutil.copytree(path, copy)
    with AACStore.open(copy, "a") as store:
        store.remove(["m16.wav"])
        store.compact()
    with AACStore.open(copy) as store:
        assert "m16.wav" not in store.ids and len(store) == len(CASES) - 1
        for name in store.ids:
            rec = store.recording(name)
            assert rec.codec == "flac"
            np.testing.assert_array_equal(store.read(rec, 0, rec.num_samples), refs[name])
        assert store.verify().ok
