"""The whole spectrum: full-band AAC by default, band-by-band proof per file, time
expansion for sources above 96 kHz, and stores of format version 1 still read and
appended to.

Energies are measured here with plain FFTs of the source and of what ``read`` returns,
not with the library's own band meter, so a wrong meter cannot hide a lost band.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pytest
from conftest import env_with_package, full_decode

import aacdata
from aacdata.audio._audiofile import write_audio
from aacdata.codecs import _adts

V1_STORE = Path(__file__).parent / "data" / "store_v1.zarr"


def tones(rate: int, fractions: list[float], seconds: float = 2.0, level: float = 0.1) -> np.ndarray:
    """A sum of sines at ``fractions`` of the Nyquist frequency, float32 ``(1, T)``."""
    t = np.arange(int(rate * seconds)) / rate
    x = sum(level * np.sin(2 * np.pi * f * rate / 2 * t + i) for i, f in enumerate(fractions))
    return np.asarray(x, dtype=np.float32)[None]


def tone_db(x: np.ndarray, rate: int, freq: float) -> float:
    """Energy of the spectral peak around ``freq`` (Hann window, +-4 bins), dB."""
    w = np.hanning(x.shape[-1])
    spec = np.abs(np.fft.rfft(x[0] * w)) ** 2
    f = np.fft.rfftfreq(x.shape[-1], 1 / rate)
    k = int(np.argmin(np.abs(f - freq)))
    return float(10 * np.log10(spec[max(k - 4, 0) : k + 5].sum() + 1e-30))


def band_db(x: np.ndarray, rate: int, lo: float, hi: float) -> float:
    """Mean power of ``x`` between ``lo`` and ``hi`` Hz (Welch, 4096-sample Hann blocks), dB."""
    n = 4096
    w = np.hanning(n)
    f = np.fft.rfftfreq(n, 1 / rate)
    total = np.zeros(f.size)
    blocks = 0
    for a in range(0, x.shape[-1] - n + 1, n // 2):
        total += (np.abs(np.fft.rfft(x[..., a : a + n] * w, axis=-1)) ** 2).sum(axis=0)
        blocks += 1
    return float(10 * np.log10(total[(f >= lo) & (f < hi)].sum() / blocks + 1e-30))


def import_one(tmp_path: Path, audio: np.ndarray, rate: int, name: str = "x.wav", **options: object) -> tuple:
    src = write_audio(tmp_path / name, audio, sample_rate=rate, float_wav=True)
    report = aacdata.import_audio(src, tmp_path / f"{name}.zarr", workers=0, progress=False, **options)
    assert report.ok, report.failed
    store = aacdata.AACStore.open(tmp_path / f"{name}.zarr")
    return report, store, store.recording(0)


# ---------------------------------------------------------------------- full band by default


FRACTIONS = [0.05, 0.25, 0.5, 0.75, 0.9, 0.95]


@pytest.mark.parametrize("rate", [16_000, 22_050, 32_000, 44_100, 48_000, 96_000])
def test_tones_up_to_095_nyquist_keep_their_energy(tmp_path: Path, rate: int) -> None:
    # Invariant: with the defaults, every tone from 0.05 to 0.95 of the Nyquist frequency
    # keeps its energy within 1 dB through import and read.
    audio = tones(rate, FRACTIONS)
    report, store, rec = import_one(tmp_path, audio, rate)
    assert rec.bandwidth_hz == rate // 2
    assert rec.stream_sample_rate == rate and rec.time_expansion == 1.0
    got = store.read(rec, 0, rec.num_samples)
    for frac in FRACTIONS:
        loss = tone_db(audio, rate, frac * rate / 2) - tone_db(got, rate, frac * rate / 2)
        assert abs(loss) < 1.0, (rate, frac, loss)
    assert report.warnings == ()


@pytest.mark.parametrize("kind", ["chirp", "noise", "music", "speech"])
@pytest.mark.parametrize("rate", [16_000, 44_100, 96_000])
def test_octave_bands_within_1_db_and_no_warning(tmp_path: Path, kind: str, rate: int) -> None:
    audio = aacdata.testing.signal(kind, rate * 3, sample_rate=rate, num_channels=2, seed=3)
    report, store, rec = import_one(tmp_path, audio, rate)
    got = store.read(rec, 0, rec.num_samples)
    total = band_db(audio, rate, 0, rate / 2)
    lo = rate / 2 / 2**7
    while lo < rate / 2:
        src = band_db(audio, rate, lo, 2 * lo)
        if src >= total - 40:  # a band that carries signal
            assert abs(band_db(got, rate, lo, 2 * lo) - src) < 1.0, (kind, lo)
        lo *= 2
    assert report.warnings == ()


def test_default_bitrate_grows_with_bandwidth() -> None:
    from aacdata.audio._transcode import default_bitrate

    assert default_bitrate(2, 44_100) == 256_000
    assert default_bitrate(1, 96_000) == 256_000
    assert default_bitrate(1, 16_000) == 64_000
    assert default_bitrate(1, 96_000, 8_000) == 64_000
    assert default_bitrate(6, 8_000) <= 0.5 * 8191 * 8 * 8_000 / 1024  # ADTS frames still fit


def test_full_band_is_the_encoders_cutoff_not_its_default(tmp_path: Path) -> None:
    # FFmpeg takes unknown options silently: prove the cutoff option takes effect. Its
    # default low-pass at this bit rate is ~17 kHz, which a 20 kHz tone does not survive.
    audio = tones(44_100, [0.3, 20_000 / 22_050])
    _, store, rec = import_one(tmp_path, audio, 44_100, bitrate=96_000)
    got = store.read(rec, 0, rec.num_samples)
    assert tone_db(got, 44_100, 20_000) > tone_db(audio, 44_100, 20_000) - 1.0


# ---------------------------------------------------------------------- proof and warnings


def test_bands_are_kept_in_the_source_info(tmp_path: Path) -> None:
    _, _, rec = import_one(tmp_path, tones(48_000, [0.1, 0.6]), 48_000)
    bands = rec.source["bands"]
    assert bands["edges_hz"][-1] == 24_000 and bands["edges_hz"][0] == 0
    assert len(bands["source_db"]) == len(bands["stored_db"]) == len(bands["edges_hz"]) - 1
    assert rec.source["bandwidth_hz"] == 24_000
    # the loud bands agree within a dB; 0.6 of Nyquist (14.4 kHz) falls in 12-24 kHz
    src, got = np.array(bands["source_db"][-1]), np.array(bands["stored_db"][-1])
    assert abs(src - got) < 1.0


def test_asking_less_bandwidth_warns_where_the_source_has_more(tmp_path: Path) -> None:
    audio = tones(44_100, [2_000 / 22_050, 12_000 / 22_050])
    report, store, rec = import_one(tmp_path, audio, 44_100, bandwidth=8_000)
    assert rec.bandwidth_hz == 8_000
    assert len(report.warnings) == 1
    rid, text = report.warnings[0]
    assert rid == "x.wav" and "above the stored bandwidth of 8 kHz" in text
    got = store.read(rec, 0, rec.num_samples)
    assert tone_db(got, 44_100, 12_000) < tone_db(audio, 44_100, 12_000) - 30  # really gone
    assert abs(tone_db(got, 44_100, 2_000) - tone_db(audio, 44_100, 2_000)) < 1.0


def test_no_warning_where_nothing_lies_above_the_bandwidth(tmp_path: Path) -> None:
    report, _, rec = import_one(tmp_path, tones(44_100, [2_000 / 22_050]), 44_100, bandwidth=8_000)
    assert rec.bandwidth_hz == 8_000
    assert report.warnings == ()


def test_a_starved_encoder_is_reported_band_by_band(tmp_path: Path) -> None:
    music = aacdata.testing.signal("music", 44_100 * 2, sample_rate=44_100, num_channels=2, seed=1)
    report, _, rec = import_one(tmp_path, music, 44_100, bitrate=16_000)
    assert report.warnings, "16 kbit/s cannot keep dense music's band energies"
    assert "does not keep the source's spectrum" in report.warnings[0][1]
    bands = rec.source["bands"]
    worst = max(abs(a - b) for a, b in zip(bands["stored_db"], bands["source_db"], strict=True))
    assert worst > 3.0
    assert rec.source["warnings"] == [w for _, w in report.warnings]


def test_a_level_above_full_scale_is_named_as_the_cause(tmp_path: Path) -> None:
    loud = 3.0 * aacdata.testing.signal("noise", 44_100 * 2, sample_rate=44_100, seed=2)
    report, _, _ = import_one(tmp_path, loud, 44_100)
    assert report.warnings, "the encoder lowers clipping frames: every band loses"
    assert "peaks are above full scale" in report.warnings[0][1]
    assert "raise the bitrate" not in report.warnings[0][1]


def test_bandwidth_above_nyquist_is_clamped_with_a_note(tmp_path: Path) -> None:
    report, _, rec = import_one(tmp_path, tones(16_000, [0.5]), 16_000, bandwidth=20_000)
    assert rec.bandwidth_hz == 8_000
    assert any("above its Nyquist frequency" in note for _, note in report.notes)


@pytest.mark.parametrize(
    ("option", "value", "error"),
    [
        ("bandwidth", 10, ValueError),
        ("bandwidth", float("nan"), TypeError),
        ("bandwidth", "8000", TypeError),
        ("bandwidth", 10**12, ValueError),
        ("time_expansion", 0.5, ValueError),
        ("time_expansion", float("inf"), ValueError),
        ("time_expansion", float("nan"), ValueError),
        ("time_expansion", True, TypeError),
    ],
)
def test_bad_spectrum_options_are_refused_before_any_work(
    tmp_path: Path, option: str, value: object, error: type
) -> None:
    with pytest.raises(error, match=option):
        aacdata.import_audio(tmp_path / "nothing", tmp_path / "s.zarr", **{option: value})  # type: ignore[arg-type]
    assert not (tmp_path / "s.zarr").exists()


def test_passthrough_measures_its_bandwidth(tmp_path: Path) -> None:
    # PyAV's encoder at its own default low-pass (~17 kHz at 128 kbit/s stereo)
    audio = aacdata.testing.signal("noise", 44_100 * 2, sample_rate=44_100, num_channels=2)
    src = write_audio(tmp_path / "a.m4a", audio, sample_rate=44_100)
    report = aacdata.import_audio(src, tmp_path / "s.zarr", workers=0, progress=False)
    assert report.passthrough == 1
    rec = aacdata.AACStore.open(tmp_path / "s.zarr").recording(0)
    assert 12_000 < rec.bandwidth_hz < 21_000
    assert rec.source["bandwidth_measured"] is True
    assert any("measured from the decoded stream" in note for _, note in report.notes)


# ---------------------------------------------------------------------- time expansion


def bat_sweep(rate: int, seconds: float = 1.0) -> np.ndarray:
    """Bat-like calls: 5 ms downward sweeps from 150 to 20 kHz every 100 ms, over faint noise."""
    n = int(rate * seconds)
    x = 0.001 * np.random.default_rng(0).standard_normal(n)
    d = int(0.005 * rate)
    t = np.arange(d) / rate
    f0, f1 = 150_000.0, 20_000.0
    call = 0.5 * np.sin(2 * np.pi * (f0 * t + (f1 - f0) * t**2 / (2 * t[-1]))) * np.hanning(d)
    for a in range(int(0.01 * rate), n - d, int(0.1 * rate)):
        x[a : a + d] += call
    return x.astype(np.float32)[None]


def test_384k_sweep_is_time_expanded_and_keeps_its_spectrum(tmp_path: Path) -> None:
    rate = 384_000
    audio = bat_sweep(rate)
    report, store, rec = import_one(tmp_path, audio, rate)
    assert (rec.sample_rate, rec.stream_sample_rate, rec.time_expansion) == (rate, 96_000, 4.0)
    assert rec.num_samples == audio.shape[1]
    assert rec.bandwidth_hz == rate // 2
    assert rec.source["time_expansion"] == {"sample_rate": rate, "stream_sample_rate": 96_000}
    assert any("time-expanded 4x" in note for _, note in report.notes)
    got = store.read(rec, 0, rec.num_samples)
    for lo, hi in ((20_000, 40_000), (40_000, 80_000), (80_000, 150_000)):
        assert abs(band_db(got, rate, lo, hi) - band_db(audio, rate, lo, hi)) < 1.0, (lo, hi)
    # exact windows of the stored stream, in the true timeline
    ref = full_decode(store, rec)
    for start in (0, 1023, 96_000, rec.num_samples - 5000):
        np.testing.assert_array_equal(store.read(rec, start, 5000), ref[:, start : start + 5000])
    # the stand-alone stream is the time-expanded one: 96 kHz in its headers
    frames = _adts.parse_adts(store.adts_bytes(rec))
    assert frames.sample_rate == 96_000
    assert store.verify().ok


@pytest.mark.parametrize(
    ("rate", "expansion", "stream"),
    [(250_000, None, 96_000), (192_000, None, 96_000), (384_000, 8, 48_000), (384_000, 10, 32_000)],
)
def test_time_expansion_factor(tmp_path: Path, rate: int, expansion: float | None, stream: int) -> None:
    audio = tones(rate, [0.1, 0.7], seconds=0.3)
    _, _, rec = import_one(tmp_path, audio, rate, time_expansion=expansion)
    assert rec.sample_rate == rate and rec.stream_sample_rate == stream
    assert rec.time_expansion == pytest.approx(rate / stream)
    assert rec.num_samples == audio.shape[1]


def test_explicit_sample_rate_still_resamples_ultrasound(tmp_path: Path) -> None:
    report, _, rec = import_one(tmp_path, tones(192_000, [0.1], seconds=0.3), 192_000, sample_rate=48_000)
    assert (rec.sample_rate, rec.stream_sample_rate) == (48_000, 48_000)
    assert any("resampled from 192000 Hz to 48000 Hz" in note for _, note in report.notes)


def test_annotations_at_60_khz_label_windows_of_a_384k_recording(tmp_path: Path) -> None:
    rate = 384_000
    audio = bat_sweep(rate)
    _, store, _ = import_one(tmp_path, audio, rate)
    store.close()
    ann = aacdata.Annotations.from_records(
        [{"id": "x.wav", "start": 0.31, "end": 0.315, "label": "bat", "low_hz": 55_000, "high_hz": 65_000}]
    )
    with aacdata.AACStore.open(tmp_path / "x.wav.zarr", "a") as s:
        s.write_annotations(ann)
    with aacdata.AACStore.open(tmp_path / "x.wav.zarr") as s:
        stored = s.annotations()
        assert int(stored.start[0]) == round(0.31 * rate) and int(stored.stop[0]) == round(0.315 * rate)
        assert float(stored.low_hz[0]) == 55_000
    plan = aacdata.SlidingWindows(window_seconds=0.1, hop_seconds=0.1)
    ds = aacdata.AACSegmentDataset(tmp_path / "x.wav.zarr", plan=plan, annotations="default", labels="clip")
    labels = [float(ds[i][1][0]) for i in range(len(ds))]
    assert labels == [1.0 if i == 3 else 0.0 for i in range(len(ds))]
    # the dataset resamples a time-expanded recording like any other: from its true rate
    ds16 = aacdata.AACSegmentDataset(tmp_path / "x.wav.zarr", window_seconds=0.1, sample_rate=96_000)
    assert ds16[0].shape == (1, 9_600)


# ---------------------------------------------------------------------- files from other tools


def decode_float(path: Path) -> np.ndarray:
    """A file's samples through FFmpeg, float32 ``(C, T)`` in [-1, 1]."""
    with av.open(str(path)) as c:
        to_float = av.AudioResampler(format="fltp")
        parts = [g.to_ndarray() for f in c.decode(audio=0) for g in to_float.resample(f)]
    return np.concatenate(parts, axis=1).astype(np.float32)


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} is not installed")
    return path


@pytest.mark.parametrize(("rate", "bits"), [(192_000, 24), (250_000, 16), (384_000, 24)])
def test_sox_ultrasound_files(tmp_path: Path, rate: int, bits: int) -> None:
    sox = _tool("sox")
    src = tmp_path / "bat.wav"
    subprocess.run(
        # the rate goes with -n: after it, sox would synthesize at 48 kHz and resample
        [sox, "-r", str(rate), "-n", "-b", str(bits), "-c", "2", str(src), "synth", "0.5", "sine", "30000-80000"],
        check=True,
    )
    ref = decode_float(src)
    report = aacdata.import_audio(src, tmp_path / "s.zarr", workers=0, progress=False)
    assert report.ok, report.failed
    store = aacdata.AACStore.open(tmp_path / "s.zarr")
    rec = store.recording(0)
    assert (rec.sample_rate, rec.num_channels, rec.num_samples) == (rate, 2, int(0.5 * rate))
    assert rec.time_expansion == pytest.approx(rate / 96_000)
    got = store.read(rec, 0, rec.num_samples)
    assert abs(band_db(got, rate, 30_000, 80_000) - band_db(ref, rate, 30_000, 80_000)) < 1.0


def test_ffmpeg_six_channel_192k(tmp_path: Path) -> None:
    ffmpeg = _tool("ffmpeg")
    src = tmp_path / "six.wav"
    subprocess.run(
        [ffmpeg, "-v", "error", "-f", "lavfi", "-i", "sine=frequency=40000:sample_rate=192000:duration=0.3",
         "-af", "pan=5.1|c0=c0|c1=c0|c2=c0|c3=c0|c4=c0|c5=c0", "-c:a", "pcm_s24le", str(src)],
        check=True,
    )  # fmt: skip
    report = aacdata.import_audio(src, tmp_path / "s.zarr", workers=0, progress=False)
    assert report.ok, report.failed
    store = aacdata.AACStore.open(tmp_path / "s.zarr")
    rec = store.recording(0)
    assert (rec.sample_rate, rec.num_channels, rec.stream_sample_rate) == (192_000, 6, 96_000)
    got = store.read(rec, 0, rec.num_samples)
    for c in range(6):
        assert abs(tone_db(got[c : c + 1], 192_000, 40_000) - tone_db(got[:1], 192_000, 40_000)) < 1.0
    assert store.verify().ok


# ---------------------------------------------------------------------- the CLI


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "aacdata", *args], capture_output=True, text=True, env=env_with_package(), timeout=300
    )


def test_cli_bandwidth_time_expansion_info_and_export(tmp_path: Path) -> None:
    write_audio(tmp_path / "in" / "bat.wav", bat_sweep(384_000, 0.3), sample_rate=384_000, float_wav=True)
    write_audio(tmp_path / "in" / "wren.wav", tones(44_100, [0.1, 0.6], 0.5), sample_rate=44_100)
    out = run_cli(
        "import", str(tmp_path / "in"), "-o", str(tmp_path / "s.zarr"), "--no-progress", "--bandwidth", "8000"
    )
    assert out.returncode == 0, out.stderr
    assert "warning: wren.wav: the source has energy above the stored bandwidth of 8 kHz" in out.stderr
    assert "warning: bat.wav: the source has energy above the stored bandwidth" in out.stderr
    assert "note: bat.wav: time-expanded 4x" in out.stderr
    info = run_cli("info", str(tmp_path / "s.zarr"), "--json")
    summary = json.loads(info.stdout)
    assert summary["bandwidths_hz"] == [8000] and summary["time_expanded"] == 1
    assert summary["format_version"] == 2
    exported = run_cli("export", str(tmp_path / "s.zarr"), "bat.wav", str(tmp_path / "bat.aac"))
    assert exported.returncode == 0 and "time-expanded 4x" in exported.stdout
    with av.open(str(tmp_path / "bat.aac")) as c:
        assert c.streams.audio[0].codec_context.sample_rate == 96_000
    out = run_cli("import", str(tmp_path / "in"), "-o", str(tmp_path / "t.zarr"), "--time-expansion", "0")
    assert out.returncode == 2 and "--time-expansion" in out.stderr


# ---------------------------------------------------------------------- format version 1


@pytest.fixture
def v1_store(tmp_path: Path) -> Path:
    dst = tmp_path / "v1.zarr"
    shutil.copytree(V1_STORE, dst)
    return dst


def test_version_1_store_reads_as_written(v1_store: Path) -> None:
    with aacdata.AACStore.open(v1_store) as store:
        assert store.format_version == 1 and len(store) == 3
        for rec in store:
            assert rec.bandwidth_hz == 0 and rec.stream_sample_rate == rec.sample_rate and rec.codec == "aac-lc"
            ref = full_decode(store, rec)
            np.testing.assert_array_equal(store.read(rec, 0, rec.num_samples), ref)
        assert store.verify().ok
        assert len(store.annotations()) == 2


def test_version_1_store_is_appended_to_and_becomes_version_2(v1_store: Path, tmp_path: Path) -> None:
    with aacdata.AACStore.open(v1_store) as store:
        before = {rec.id: full_decode(store, rec) for rec in store}
    src = write_audio(tmp_path / "new.wav", tones(96_000, [0.1, 0.9], 0.5), sample_rate=96_000)
    report = aacdata.import_audio(src, v1_store, workers=0, progress=False)
    assert report.ok
    with aacdata.AACStore.open(v1_store) as store:
        assert store.format_version == 2 and len(store) == 4
        for rid, ref in before.items():
            rec = store.recording(rid)
            assert rec.bandwidth_hz == 0 and rec.stream_sample_rate == rec.sample_rate
            np.testing.assert_array_equal(store.read(rec, 0, rec.num_samples), ref)
        assert store.recording("new.wav").bandwidth_hz == 48_000
        assert store.verify().ok
        assert len(store.annotations()) == 2
    # and what version 2 holds survives a repair
    from aacdata.store._repair import rebuild_store

    repaired = rebuild_store(v1_store, tmp_path / "repaired.zarr")
    assert repaired.ok and len(repaired.kept) == 4
    with aacdata.AACStore.open(tmp_path / "repaired.zarr") as store:
        assert store.recording("new.wav").bandwidth_hz == 48_000


def test_an_interrupted_upgrade_leaves_version_1(
    v1_store: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A commit that dies after adding the new columns but before the root moves leaves
    # a version-1 store that reads as before and whose next import finishes the upgrade.
    from aacdata.store import _layout

    def crash(*args: object, **kwargs: object) -> None:
        raise OSError(5, "simulated I/O error")

    src = write_audio(tmp_path / "new.wav", tones(16_000, [0.2], 0.5), sample_rate=16_000)
    monkeypatch.setattr(_layout, "root_attributes", crash)
    with pytest.raises(aacdata.StoreWriteError, match="simulated I/O error"):
        aacdata.import_audio(src, v1_store, workers=0, progress=False)
    monkeypatch.undo()
    assert (v1_store / "recordings" / "bandwidth_hz" / "zarr.json").exists()  # the upgrade had begun
    with aacdata.AACStore.open(v1_store) as store:
        assert store.format_version == 1 and len(store) == 3
        assert store.verify().ok
    assert aacdata.import_audio(src, v1_store, workers=0, progress=False).ok
    with aacdata.AACStore.open(v1_store) as store:
        assert store.format_version == 2 and len(store) == 4 and store.verify().ok
