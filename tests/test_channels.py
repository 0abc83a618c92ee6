"""Channels are stored one to one: a source's N channels read back as N channels with the
same content in the same order, whatever layout, mask or lack of mask the file declares."""

from __future__ import annotations

import struct
import wave
from pathlib import Path

import av
import numpy as np
import pytest
from conftest import full_decode

import aacdata
from aacdata import AACStore
from aacdata.audio._channels import remix
from aacdata.codecs import _adts

RATE = 16_000


def _tones(channels: int, num_samples: int) -> np.ndarray:
    """Channel c: a tone at 250·(c+1) Hz plus a little noise, float32 (C, T)."""
    t = np.arange(num_samples) / RATE
    rng = np.random.default_rng(channels)
    x = [0.3 * np.sin(2 * np.pi * 250 * (c + 1) * t) + 0.01 * rng.standard_normal(num_samples) for c in range(channels)]
    return np.asarray(x, dtype=np.float32)


def _write_plain_wav(path: Path, audio: np.ndarray) -> Path:
    """16-bit PCM WAV, WAVE_FORMAT_PCM: no channel mask at all."""
    pcm = np.clip(np.round(audio.T * 32767), -32768, 32767).astype("<i2").tobytes()
    with wave.open(str(path), "wb") as w:
        w.setnchannels(audio.shape[0])
        w.setsampwidth(2)
        w.setframerate(RATE)
        w.writeframes(pcm)
    return path


def _write_extensible_wav(path: Path, audio: np.ndarray, mask: int) -> Path:
    """16-bit WAVE_FORMAT_EXTENSIBLE with the given channel mask."""
    channels = audio.shape[0]
    pcm = np.clip(np.round(audio.T * 32767), -32768, 32767).astype("<i2").tobytes()
    guid = bytes.fromhex("0100000000001000800000aa00389b71")  # KSDATAFORMAT_SUBTYPE_PCM
    fmt = struct.pack("<HHIIHHHHI", 0xFFFE, channels, RATE, RATE * 2 * channels, 2 * channels, 16, 22, 16, mask) + guid
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", len(pcm)) + pcm
    path.write_bytes(b"RIFF" + struct.pack("<I", len(body)) + body)
    return path


def _write_flac(path: Path, audio: np.ndarray) -> Path:
    channels = audio.shape[0]
    with av.open(str(path), "w", format="flac") as out:
        stream = out.add_stream("flac", rate=RATE, layout=f"{channels}c" if channels > 2 else None)
        pcm = np.clip(np.round(audio.T * 32767), -32768, 32767).astype("<i2").reshape(1, -1)
        frame = av.AudioFrame.from_ndarray(pcm, format="s16", layout=stream.codec_context.layout.name)
        frame.sample_rate = RATE
        frame.pts = 0
        for packet in stream.encode(frame):
            out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return path


def _check_one_to_one(store_path: Path, rid: str, source: np.ndarray) -> None:
    with AACStore.open(store_path) as store:
        rec = store.recording(rid)
        assert rec.num_channels == source.shape[0]
        assert rec.num_samples == source.shape[1]
        got = store.read(rec, 0, rec.num_samples)
        # Exactness: reads equal the stand-alone stream's full decode (PCE layouts included).
        np.testing.assert_array_equal(got, full_decode(store, rec))
        mid = slice(2048, source.shape[1] - 2048)
        for c in range(source.shape[0]):
            errors = [np.sum((got[c, mid] - ref) ** 2) / np.sum(ref**2) for ref in source[:, mid]]
            # channel c holds source channel c (and no mix of others), at AAC's fidelity
            assert int(np.argmin(errors)) == c and errors[c] < 0.05, f"{rid} channel {c}: relative errors {errors}"
        assert store.verify().ok


@pytest.mark.parametrize("channels", [3, 4, 5, 6, 7, 8, 10, 16])
def test_wav_without_mask_keeps_every_channel(tmp_path: Path, channels: int) -> None:
    audio = _tones(channels, RATE * 2 + 123)
    src = _write_plain_wav(tmp_path / f"array{channels}.wav", audio)
    report = aacdata.import_audio(src, tmp_path / "s.zarr", workers=0, progress=False)
    assert report.ok, report.failed
    _check_one_to_one(tmp_path / "s.zarr", src.name, audio)


@pytest.mark.parametrize(("channels", "mask"), [(6, 0x3F), (8, 0x63F), (4, 0x33)])
def test_declared_layouts_with_lfe_keep_full_band_channels(tmp_path: Path, channels: int, mask: int) -> None:
    # Invariant: a source that declares an LFE channel still gets it back full band, in place.
    audio = _tones(channels, RATE * 2)
    src = _write_extensible_wav(tmp_path / "masked.wav", audio, mask)
    report = aacdata.import_audio(src, tmp_path / "s.zarr", workers=0, progress=False)
    assert report.ok, report.failed
    _check_one_to_one(tmp_path / "s.zarr", src.name, audio)


@pytest.mark.parametrize("channels", [4, 6, 8])
def test_multichannel_flac_keeps_every_channel(tmp_path: Path, channels: int) -> None:
    audio = _tones(channels, RATE * 2 + 7)
    src = _write_flac(tmp_path / f"c{channels}.flac", audio)
    report = aacdata.import_audio(src, tmp_path / "s.zarr", workers=0, progress=False)
    assert report.ok, report.failed
    _check_one_to_one(tmp_path / "s.zarr", src.name, audio)


def test_pce_layouts_read_at_any_window(tmp_path: Path) -> None:
    # A PCE stream's headers do not name its layout: windows from the middle must decode too.
    audio = _tones(8, RATE * 3)
    src = _write_plain_wav(tmp_path / "oct.wav", audio)
    aacdata.import_audio(src, tmp_path / "s.zarr", workers=0, progress=False)
    with AACStore.open(tmp_path / "s.zarr") as store:
        rec = store.recording(0)
        whole = full_decode(store, rec)
        for start in (0, 1, 1023, 1024, 20_000, rec.num_samples - 1500):
            np.testing.assert_array_equal(store.read(rec, start, 1500), whole[:, start : start + 1500])
        stream = store.adts_bytes(rec)
        assert _adts.channel_config_of(stream) == 0
        # frame 0 carries the PCE, so the exported stream plays in any decoder from its start
        first = av.CodecContext.create("aac", "r").decode(av.Packet(stream[: _adts.parse_adts(stream).sizes[0]]))
        assert first[0].layout.nb_channels == 8


def test_more_than_sixteen_channels_is_a_clear_error(tmp_path: Path) -> None:
    src = _write_plain_wav(tmp_path / "wide.wav", _tones(17, 4000))
    report = aacdata.import_audio(src, tmp_path / "s.zarr", workers=0, progress=False)
    assert len(report.failed) == 1
    assert "at most 16" in report.failed[0].reason and "num_channels=" in report.failed[0].reason


def test_num_channels_one_is_the_datasets_mean_downmix(tmp_path: Path) -> None:
    audio = _tones(2, RATE * 2)
    src = _write_plain_wav(tmp_path / "st.wav", audio)
    aacdata.import_audio(src, tmp_path / "s.zarr", workers=0, progress=False, num_channels=1)
    expected = remix(audio, 1)
    np.testing.assert_allclose(expected[0], audio.mean(axis=0), atol=1e-7)
    with AACStore.open(tmp_path / "s.zarr") as store:
        rec = store.recording(0)
        got = store.read(rec, 0, rec.num_samples)[0, 2048:-2048]
        ref = expected[0, 2048:-2048]
        assert np.sum((got - ref) ** 2) / np.sum(ref**2) < 0.01
        assert rec.source["num_channels"] == 2


def test_an_aac_source_that_cannot_pass_through_keeps_its_head(tmp_path: Path) -> None:
    # An AAC-LC m4a whose layout needs a PCE (6.0: channel_config 0) is re-encoded, not
    # passed through; the re-encode must start from the file's first sample, not after a
    # seek that mutes the decoder's priming (it lost its first 256-1,800 samples before).
    audio = _tones(6, RATE * 2)
    path = tmp_path / "six.m4a"
    with av.open(str(path), "w", format="ipod") as out:
        stream = out.add_stream("aac", rate=RATE, layout="6.0")
        stream.bit_rate = 384_000
        stream.codec_context.options = {"aac_pns": "0"}
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(audio), format="fltp", layout="6.0")
        frame.sample_rate = RATE
        frame.pts = 0
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            out.mux(packet)
    report = aacdata.import_audio(path, tmp_path / "s.zarr", workers=0, progress=False)
    assert report.ok and report.passthrough == 0
    with AACStore.open(tmp_path / "s.zarr") as store:
        rec = store.recording(0)
        assert rec.num_samples == audio.shape[1] and rec.num_channels == 6
        head = store.read(rec, 0, 256)
        for c in range(6):
            ref = audio[c, :256]
            # the first 256 samples are there (after two lossy codings), not muted
            assert 0.5 < np.sum(head[c] ** 2) / np.sum(ref**2) < 2.0, c
            assert np.sum((head[c] - ref) ** 2) / np.sum(ref**2) < 0.3, c
