"""import_audio: formats, passthrough, ids, metadata, resume, bad inputs, workers, PNS, crashes, locking."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal as signals
import subprocess
import sys
import time
import wave
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from conftest import EXTENSIONS, env_with_package, full_decode, make_file, peak_lag

import aacdata
import aacdata.store._writer
from aacdata import AACStore, ImportFailedError, StoreLockedError
from aacdata.codecs._adts import parse_adts
from aacdata.testing import signal

MakeAudio = Callable[..., tuple[Path, np.ndarray]]


def _import(sources: object, store: Path, **kwargs: object) -> aacdata.ImportReport:
    options: dict[str, object] = {"workers": 0, "progress": False, **kwargs}
    return aacdata.import_audio(sources, store, **options)  # type: ignore[arg-type]


def _store_files(path: Path) -> dict[str, str]:
    """sha256 of every file of a store (the lock file aside)."""
    return {
        str(p.relative_to(path)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(path.rglob("*"))
        if p.is_file() and p.name != "aacdata.lock"
    }


def _check_consistent(store: AACStore) -> None:
    """Counts, tables and bytes agree, and verify() finds nothing."""
    recs = store.recordings
    assert store.counts.num_recordings == len(recs)
    assert store.counts.num_frames == sum(r.num_frames for r in recs)
    assert store.counts.num_bytes == sum(r.num_bytes for r in recs)
    report = store.verify()
    assert report.ok, report.problems


# ---------------------------------------------------------------------- formats


# ext -> (passthrough, encoder_delay, exact length). Vorbis from FFmpeg's native encoder and
# AAC in Matroska (millisecond timestamps, no end trimming) can come back a little longer,
# never shorter.
FORMATS = {
    ".wav": (False, 1024, True),
    ".flac": (False, 1024, True),
    ".mp3": (False, 1024, True),
    ".ogg": (False, 1024, False),
    ".opus": (False, 1024, True),
    ".m4a": (True, 1024, True),
    ".mp4": (True, 1024, True),
    ".aac": (True, 0, False),
    ".mkv": (False, 1024, False),
    ".webm": (False, 1024, True),
}


@pytest.mark.parametrize("ext", EXTENSIONS)
def test_every_format_imports(tmp_path: Path, ext: str) -> None:
    channels = 2 if ext == ".ogg" else 1
    path, src = make_file(tmp_path / "src" / f"clip{ext}", "speech", 22_050, sample_rate=44_100, num_channels=channels)
    report = _import(path, tmp_path / "s.zarr")
    assert report.failed == ()
    assert report.imported == (f"clip{ext}",)
    passthrough, delay, exact = FORMATS[ext]
    assert report.passthrough == int(passthrough)
    with AACStore.open(tmp_path / "s.zarr") as store:
        rec = store.recording(f"clip{ext}")
        assert rec.source["passthrough"] is passthrough
        assert rec.source["path"] == str(path)
        assert rec.source["checksum"] == "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()
        assert rec.encoder_delay == delay
        assert rec.num_channels == channels
        opus = ext in (".opus", ".webm")  # Opus is always 48 kHz
        assert rec.sample_rate == (48_000 if opus else 44_100)
        expected = 24_000 if opus else 22_050
        if exact:
            assert rec.num_samples == expected
        else:
            assert expected <= rec.num_samples < expected + 2 * 1024
        out = store.read(rec, 0, rec.num_samples)
        assert np.array_equal(out, full_decode(store, rec))
        _check_consistent(store)
    if not opus:
        # aligned with the source: no lost or extra priming (a raw .aac keeps its priming in the timeline)
        lag = peak_lag(src[0].astype(np.float64), out[0].astype(np.float64))
        assert lag == (1024 if ext == ".aac" else 0)


def test_reencode_m4a(tmp_path: Path) -> None:
    path, _ = make_file(tmp_path / "src" / "a.m4a", "chirp", 20_000, sample_rate=44_100)
    _import(path, tmp_path / "pass.zarr")
    report = _import(path, tmp_path / "re.zarr", reencode=True, bitrate=96_000)
    assert report.passthrough == 0
    with AACStore.open(tmp_path / "pass.zarr") as passed, AACStore.open(tmp_path / "re.zarr") as re:
        p, r = passed.recording("a.m4a"), re.recording("a.m4a")
        assert p.source["passthrough"] is True
        assert r.source["passthrough"] is False
        assert (p.encoder_delay, p.num_samples) == (1024, 20_000)
        assert r.encoder_delay == 1024
        # the decoder's end padding is trimmed at the container's last timestamp
        assert r.num_samples == 20_000
        assert passed.adts_bytes(p) != re.adts_bytes(r)
        # both start at the source's first sample
        a = passed.read(p, 0, 20_000)[0].astype(np.float64)
        b = re.read(r, 0, 20_000)[0].astype(np.float64)
        assert peak_lag(a, b) == 0


def test_m4a_passthrough_keeps_the_packets(tmp_path: Path) -> None:
    path, _ = make_file(tmp_path / "a.m4a", "music", 30_000, sample_rate=48_000, num_channels=2)
    with av.open(str(path)) as c:
        packets = [bytes(p) for p in c.demux(c.streams.audio[0]) if p.size]
    _import(path, tmp_path / "s.zarr")
    with AACStore.open(tmp_path / "s.zarr") as store:
        rec = store.recording("a.m4a")
        data = store.adts_bytes(rec)
        rows = store.frame_index(rec).astype(np.int64)
        assert rec.num_frames == len(packets)
        for (offset, size, _), packet in zip(rows, packets, strict=True):
            a = int(offset) - rec.byte_start
            assert data[a + 7 : a + int(size)] == packet  # 7-byte ADTS header, then the untouched payload


def test_raw_aac_passthrough_stores_the_file_bytes(tmp_path: Path) -> None:
    path, _ = make_file(tmp_path / "a.aac", "tone", 12_345, sample_rate=22_050, num_channels=2)
    _import(path, tmp_path / "s.zarr")
    with AACStore.open(tmp_path / "s.zarr") as store:
        rec = store.recording("a.aac")
        assert store.adts_bytes(rec) == path.read_bytes()
        assert rec.num_samples == len(parse_adts(path.read_bytes())) * 1024


def test_resample_and_remix(tmp_path: Path) -> None:
    path, _ = make_file(tmp_path / "six.wav", "tone", 48_000, sample_rate=48_000, num_channels=6)
    _import(path, tmp_path / "s.zarr", sample_rate=16_000, num_channels=2)
    with AACStore.open(tmp_path / "s.zarr") as store:
        rec = store.recording("six.wav")
        assert (rec.sample_rate, rec.num_channels, rec.source["passthrough"]) == (16_000, 2, False)
        assert abs(rec.num_samples - 16_000) <= 4
        assert np.array_equal(store.read(rec, 0, rec.num_samples), full_decode(store, rec))


def test_m4a_with_other_rate_is_reencoded(tmp_path: Path) -> None:
    path, _ = make_file(tmp_path / "a.m4a", "tone", 8000, sample_rate=16_000)
    _import(path, tmp_path / "s.zarr", sample_rate=22_050)
    with AACStore.open(tmp_path / "s.zarr") as store:
        rec = store.recording("a.m4a")
        assert (rec.sample_rate, rec.source["passthrough"]) == (22_050, False)


def test_seven_one_keeps_channel_order(tmp_path: Path) -> None:
    # 8 channels written with the wave module (PyAV cannot build planar 7.1 frames).
    x = signal("tone", 9000, sample_rate=16_000, num_channels=8)
    with wave.open(str(tmp_path / "x.wav"), "wb") as w:
        w.setnchannels(8)
        w.setsampwidth(2)
        w.setframerate(16_000)
        w.writeframes(np.round(x.T * 32767).astype("<i2").tobytes())
    assert _import(tmp_path / "x.wav", tmp_path / "s.zarr").failed == ()
    with AACStore.open(tmp_path / "s.zarr") as store:
        rec = store.recording("x.wav")
        assert (rec.num_channels, rec.num_samples) == (8, 9000)
        out = store.read(rec, 3000, 2000)
        _check_consistent(store)
    for c in range(8):
        if c != 3:  # the LFE channel is low-passed by the encoder: an 880 Hz tone does not survive
            assert np.corrcoef(out[c], x[c, 3000:5000])[0, 1] > 0.95
    again = AACStore.open(tmp_path / "s.zarr").read("x.wav", 3000, 2000)
    assert np.array_equal(out, again)


@pytest.mark.parametrize(
    ("kwargs", "reason"),
    [
        ({"sample_rate": 12_345}, "sample_rate 12345 Hz is not a rate AAC stores"),
        ({"num_channels": 17}, "num_channels must be a whole number from 1 to 16"),
        ({"bitrate": 1000}, "bitrate must be a whole number from 16000"),
    ],
)
def test_targets_no_recording_can_take_are_refused_before_any_work(
    tmp_path: Path, kwargs: dict[str, int], reason: str
) -> None:
    # Invariant: an option value no recording can take is a usage error; no store is made.
    path, _ = make_file(tmp_path / "a.wav", "tone", 4000)
    with pytest.raises(ValueError, match=reason):
        _import(path, tmp_path / "s.zarr", **kwargs)
    assert not (tmp_path / "s.zarr").exists()


def test_nothing_to_import_makes_no_store(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    report = _import(tmp_path / "empty", tmp_path / "s.zarr")
    assert not report.ok and "no audio files found" in report.failed[0].reason
    report = _import(tmp_path / "typo.wav", tmp_path / "s.zarr")
    assert report.failed[0].reason == "file not found"
    assert not (tmp_path / "s.zarr").exists()


def test_raven_tables_among_the_sources_are_passed_over(tmp_path: Path) -> None:
    make_file(tmp_path / "site" / "a.wav", "tone", 4000)
    table = tmp_path / "site" / "a.Table.1.selections.txt"
    table.write_text("Selection\tView\tChannel\tBegin Time (s)\tEnd Time (s)\n1\tWaveform 1\t1\t0.1\t0.2\n")
    report = _import([tmp_path / "site" / "a.wav", table], tmp_path / "s.zarr")
    assert report.ok and report.imported == ("a.wav",)
    assert [(p, n.split(",")[0]) for p, n in report.notes] == [
        (str(table), "a Raven selection table or other tab-separated table")
    ]


# ---------------------------------------------------------------------- ids and sources


def test_ids_are_relative_posix_paths(tmp_path: Path) -> None:
    root = tmp_path / "corpus"
    make_file(root / "a" / "b" / "deep.wav", "tone", 3000)
    make_file(root / "a" / "mid.flac", "chirp", 3000)
    make_file(root / "top.mp3", "speech", 3000)
    (root / "notes.txt").write_text("not audio\n")
    (root / ".hidden.wav").write_bytes(b"")
    direct, _ = make_file(tmp_path / "elsewhere" / "direct.wav", "tone", 3000, seed=3)
    report = _import([root, direct], tmp_path / "s.zarr")
    assert report.failed == ()
    assert sorted(report.imported) == ["a/b/deep.wav", "a/mid.flac", "direct.wav", "top.mp3"]
    with AACStore.open(tmp_path / "s.zarr") as store:
        assert sorted(store.ids) == sorted(report.imported)
        assert store.recording("a/b/deep.wav").source["path"] == str(root / "a" / "b" / "deep.wav")


def test_list_file_paths_are_relative_to_the_list(tmp_path: Path) -> None:
    one, _ = make_file(tmp_path / "data" / "x" / "one.wav", "tone", 3000)
    two, _ = make_file(tmp_path / "data" / "two.flac", "chirp", 3000)
    make_file(tmp_path / "data" / "unlisted.wav", "tone", 3000)
    listing = tmp_path / "data" / "lists" / "files.txt"
    listing.parent.mkdir()
    listing.write_text("# the corpus\n../x/one.wav\n\n   ../two.flac   # trailing comment\n")
    report = _import(listing, tmp_path / "s.zarr")
    assert report.failed == ()
    assert len(report.imported) == 2
    with AACStore.open(tmp_path / "s.zarr") as store:
        paths = sorted(os.path.realpath(r.source["path"]) for r in store)
        assert paths == sorted([os.path.realpath(one), os.path.realpath(two)])
        assert sorted(i.rsplit("/", 1)[-1] for i in store.ids) == ["one.wav", "two.flac"]


def test_list_file_ids_are_paths_below_the_list(tmp_path: Path) -> None:
    make_file(tmp_path / "x" / "one.wav", "tone", 3000)
    make_file(tmp_path / "y" / "one.wav", "chirp", 3000)
    make_file(tmp_path / "z" / "d" / "two.wav", "tone", 3000)
    listing = tmp_path / "files.txt"
    listing.write_text("x/one.wav\ny/one.wav\nz\n")
    report = _import(listing, tmp_path / "s.zarr")
    assert report.failed == ()
    assert sorted(report.imported) == ["x/one.wav", "y/one.wav", "z/d/two.wav"]


def test_on_error_raise_covers_sources_that_are_missing(tmp_path: Path) -> None:
    good, _ = make_file(tmp_path / "good.wav", "tone", 3000)
    with pytest.raises(ImportFailedError, match=r"missing\.wav: file not found"):
        _import([good, tmp_path / "missing.wav"], tmp_path / "s.zarr", on_error="raise")


def test_passthrough_with_pns_reads_repeatably(tmp_path: Path) -> None:
    """An AAC source may use PNS; its reads must still repeat exactly (a fresh decoder each)."""
    x = signal("noise", 44_100, sample_rate=44_100)
    path = tmp_path / "pns.m4a"
    with av.open(str(path), "w") as out:
        stream = out.add_stream("aac", rate=44_100, layout="mono")
        stream.bit_rate = 32_000
        stream.codec_context.options = {"aac_pns": "1"}
        frame = av.AudioFrame.from_ndarray(x, format="fltp", layout="mono")
        frame.sample_rate, frame.pts = 44_100, 0
        for packet in stream.encode(frame) + stream.encode(None):
            out.mux(packet)
    plain, _ = make_file(tmp_path / "plain.m4a", "noise", 44_100)
    report = _import([path, plain], tmp_path / "s.zarr")
    assert report.passthrough == 2
    with AACStore.open(tmp_path / "s.zarr") as store:
        assert store.column("flags").tolist() == [1, 0]  # PNS found in the first only
        first = store.read("pns.m4a", 5000, 4000)
        store.read("pns.m4a", 100, 30_000)
        store.read("plain.m4a", 100, 30_000)
        assert np.array_equal(store.read("pns.m4a", 5000, 4000), first)


def test_list_file_with_missing_entry(tmp_path: Path) -> None:
    make_file(tmp_path / "one.wav", "tone", 3000)
    listing = tmp_path / "l.txt"
    listing.write_text("one.wav\nmissing.wav\n")
    report = _import(listing, tmp_path / "s.zarr")
    assert len(report.imported) == 1
    assert [(f.source, f.reason) for f in report.failed] == [(str(tmp_path / "missing.wav"), "file not found")]


def test_symlinks_are_followed(tmp_path: Path) -> None:
    root = tmp_path / "corpus"
    make_file(root / "real.wav", "tone", 3000)
    outside, _ = make_file(tmp_path / "outside" / "target.wav", "chirp", 3000, seed=1)
    make_file(tmp_path / "outside" / "sub" / "inner.flac", "speech", 3000, seed=2)
    os.symlink(outside, root / "linked.wav")
    os.symlink(tmp_path / "outside", root / "linkdir")
    os.symlink(root, root / "loop")  # a loop: walked once
    report = _import(root, tmp_path / "s.zarr")
    assert report.failed == ()
    assert sorted(report.imported) == ["linkdir/sub/inner.flac", "linkdir/target.wav", "linked.wav", "real.wav"]
    with AACStore.open(tmp_path / "s.zarr") as store:
        assert store.adts_bytes("linked.wav") == store.adts_bytes("linkdir/target.wav")


def test_duplicate_ids_from_two_roots(tmp_path: Path) -> None:
    make_file(tmp_path / "a" / "x.wav", "tone", 3000)
    make_file(tmp_path / "b" / "x.wav", "chirp", 3000)
    report = _import([tmp_path / "a", tmp_path / "b"], tmp_path / "s.zarr")
    assert report.imported == ("x.wav",)
    assert len(report.failed) == 1
    assert report.failed[0].source == str(tmp_path / "b" / "x.wav")
    assert "'x.wav' is also the id of" in report.failed[0].reason


def test_missing_source(tmp_path: Path) -> None:
    report = _import(tmp_path / "nope.wav", tmp_path / "s.zarr")
    assert report.imported == ()
    assert [(f.source, f.reason) for f in report.failed] == [(str(tmp_path / "nope.wav"), "file not found")]


# ---------------------------------------------------------------------- metadata


@pytest.fixture
def two_files(tmp_path: Path) -> Path:
    make_file(tmp_path / "src" / "a.wav", "tone", 3000)
    make_file(tmp_path / "src" / "sub" / "b.flac", "chirp", 3000)
    return tmp_path / "src"


def _metadata(store_path: Path) -> dict[str, dict[str, object]]:
    with AACStore.open(store_path) as store:
        return {r.id: dict(r.metadata) for r in store}


def test_metadata_from_csv(tmp_path: Path, two_files: Path) -> None:
    meta = tmp_path / "meta.csv"
    meta.write_text("id,speaker,lang\na.wav,alice,en\nsub/b.flac,bob,de\nnot-imported.wav,x,y\n")
    assert _import(two_files, tmp_path / "s.zarr", metadata=meta).failed == ()
    assert _metadata(tmp_path / "s.zarr") == {
        "a.wav": {"speaker": "alice", "lang": "en"},
        "sub/b.flac": {"speaker": "bob", "lang": "de"},
    }


def test_metadata_from_jsonl(tmp_path: Path, two_files: Path) -> None:
    meta = tmp_path / "meta.jsonl"
    meta.write_text('{"id": "sub/b.flac", "tags": [1, 2], "nested": {"k": null}}\n\n{"id": "x", "v": 1}\n')
    assert _import(two_files, tmp_path / "s.zarr", metadata=meta).failed == ()
    assert _metadata(tmp_path / "s.zarr") == {"a.wav": {}, "sub/b.flac": {"tags": [1, 2], "nested": {"k": None}}}


def test_metadata_from_dict(tmp_path: Path, two_files: Path) -> None:
    _import(two_files, tmp_path / "s.zarr", metadata={"a.wav": {"label": 3, "ok": True, "name": "é"}})
    assert _metadata(tmp_path / "s.zarr") == {"a.wav": {"label": 3, "ok": True, "name": "é"}, "sub/b.flac": {}}


@pytest.mark.parametrize(
    ("name", "text", "match"),
    [
        ("m.csv", "name,x\na,1\n", "needs a header row with an 'id' column"),
        ("m.jsonl", '{"id": "a.wav"}\nnot json\n', "line 2 is not JSON"),
        ("m.jsonl", '["a.wav"]\n', "line 1 must be a JSON object with an 'id' key"),
        ("m.yaml", "a: 1\n", "must end in .csv or .jsonl"),
    ],
)
def test_bad_metadata_files(tmp_path: Path, two_files: Path, name: str, text: str, match: str) -> None:
    (tmp_path / name).write_text(text)
    with pytest.raises(aacdata.SourceError, match=match):
        _import(two_files, tmp_path / "s.zarr", metadata=tmp_path / name)


def test_metadata_must_be_json(tmp_path: Path, two_files: Path) -> None:
    with pytest.raises(ValueError, match="not JSON-serialisable"):
        _import(two_files, tmp_path / "s.zarr", metadata={"a.wav": {"x": object()}})


# ---------------------------------------------------------------------- resume


def test_second_import_skips_everything(tmp_path: Path, two_files: Path) -> None:
    store = tmp_path / "s.zarr"
    first = _import(two_files, store)
    before = _store_files(store)
    second = _import(two_files, store)
    assert sorted(second.skipped) == sorted(first.imported) == ["a.wav", "sub/b.flac"]
    assert second.imported == ()
    assert second.failed == ()
    assert second.bytes_written == 0
    assert _store_files(store) == before


def test_resume_adds_only_new_files(tmp_path: Path, two_files: Path) -> None:
    store = tmp_path / "s.zarr"
    _import(two_files, store)
    with AACStore.open(store) as s:
        old = {i: s.adts_bytes(i) for i in s.ids}
    make_file(two_files / "c.wav", "speech", 5000)
    report = _import(two_files, store)
    assert report.imported == ("c.wav",)
    assert sorted(report.skipped) == ["a.wav", "sub/b.flac"]
    with AACStore.open(store) as s:
        assert len(s) == 3
        assert {i: s.adts_bytes(i) for i in old} == old
        _check_consistent(s)


def test_same_id_with_other_content_fails(tmp_path: Path, two_files: Path) -> None:
    store = tmp_path / "s.zarr"
    _import(two_files, store)
    before = _store_files(store)
    make_file(two_files / "a.wav", "noise", 3000, seed=9)  # same id, new content
    report = _import(two_files, store)
    assert report.imported == ()
    assert report.skipped == ("sub/b.flac",)
    assert len(report.failed) == 1
    assert report.failed[0].source == str(two_files / "a.wav")
    assert "already in the store with different content" in report.failed[0].reason
    assert _store_files(store) == before


# ---------------------------------------------------------------------- bad inputs


def _empty(d: Path) -> Path:
    p = d / "empty.wav"
    p.write_bytes(b"")
    return p


def _truncated_flac(d: Path) -> Path:
    full, _ = make_file(d / "full" / "t.flac", "chirp", 32_000)
    p = d / "truncated.flac"
    p.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    shutil.rmtree(d / "full")
    return p


def _truncated_wav(d: Path) -> Path:
    full, _ = make_file(d / "full" / "t.wav", "chirp", 32_000)
    p = d / "truncated.wav"
    p.write_bytes(full.read_bytes()[: full.stat().st_size // 2])  # the header still declares all
    shutil.rmtree(d / "full")
    return p


def _random_mp3(d: Path) -> Path:
    p = d / "random.mp3"
    p.write_bytes(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    return p


def _text_wav(d: Path) -> Path:
    p = d / "text.wav"
    p.write_text("this is not audio\n" * 30)
    return p


def _video_only(d: Path) -> Path:
    p = d / "video.mkv"
    with av.open(str(p), "w") as c:
        s = c.add_stream("mpeg4", rate=10)
        s.width, s.height, s.pix_fmt = 32, 32, "yuv420p"
        for i in range(3):
            frame = av.VideoFrame.from_ndarray(np.zeros((32, 32, 3), np.uint8), format="rgb24")
            frame.pts = i
            for packet in s.encode(frame):
                c.mux(packet)
        for packet in s.encode(None):
            c.mux(packet)
    return p


def _zero_samples(d: Path) -> Path:
    p = d / "zero.wav"
    with wave.open(str(p), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16_000)
        w.writeframes(b"")
    return p


def _unreadable(d: Path) -> Path:
    if os.geteuid() == 0:
        pytest.skip("root reads files whatever their mode")
    p, _ = make_file(d / "locked.wav", "tone", 3000)
    p.chmod(0)
    return p


BAD_INPUTS: dict[str, tuple[Callable[[Path], Path], str]] = {
    "empty": (_empty, "file is empty (0 bytes)"),
    "truncated_flac": (_truncated_flac, "decoding failed after"),
    "truncated_wav": (_truncated_wav, "file is truncated: WAV header declares 64000 bytes"),
    "random_bytes_mp3": (_random_mp3, "not a readable audio file"),
    "text_as_wav": (_text_wav, "not a readable audio file"),
    "video_only": (_video_only, "no audio stream"),
    "zero_samples": (_zero_samples, "zero-length audio"),
    "unreadable": (_unreadable, "permission denied"),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_fails_alone(tmp_path: Path, case: str) -> None:
    src = tmp_path / "src"
    make_file(src / "good1.wav", "tone", 5000)
    make_file(src / "good2.flac", "chirp", 7000, num_channels=2)
    maker, reason = BAD_INPUTS[case]
    bad = maker(src)
    report = _import(src, tmp_path / "s.zarr")
    assert len(report.failed) == 1
    assert report.failed[0].source == str(bad)
    assert reason in report.failed[0].reason
    assert str(bad) in str(report.failed[0])
    assert not report.ok
    assert sorted(report.imported) == ["good1.wav", "good2.flac"]
    with AACStore.open(tmp_path / "s.zarr") as store:
        assert sorted(store.ids) == ["good1.wav", "good2.flac"]
        assert report.bytes_written == store.counts.num_bytes
        _check_consistent(store)


def test_on_error_raise_stops_at_the_first_failure(tmp_path: Path) -> None:
    src = tmp_path / "src"
    make_file(src / "a_good.wav", "tone", 5000)
    _text_wav(src).rename(src / "b_bad.wav")
    _random_mp3(src).rename(src / "c_bad.mp3")
    with pytest.raises(ImportFailedError) as info:
        _import(src, tmp_path / "s.zarr", on_error="raise")
    assert isinstance(info.value, RuntimeError)
    assert isinstance(info.value, aacdata.AACDataError)
    assert str(src / "b_bad.wav") in str(info.value)
    assert "not a readable audio file" in str(info.value)
    assert "c_bad" not in str(info.value)
    # what converted before the failure is committed; the store is left readable and unlocked
    with AACStore.open(tmp_path / "s.zarr") as store:
        assert store.ids == ("a_good.wav",)
        _check_consistent(store)
    report = _import(src, tmp_path / "s.zarr")
    assert "a_good.wav" in report.imported + report.skipped
    assert len(report.failed) == 2


def test_bad_arguments(tmp_path: Path, two_files: Path) -> None:
    with pytest.raises(ValueError, match="on_error must be 'skip' or 'raise'"):
        _import(two_files, tmp_path / "s.zarr", on_error="ignore")
    with pytest.raises(ValueError, match="bitrate must be a whole number from 16000"):
        _import(two_files, tmp_path / "s.zarr", bitrate=0)
    with pytest.raises(ValueError, match="workers must be >= 0"):
        _import(two_files, tmp_path / "s.zarr", workers=-1)


# ---------------------------------------------------------------------- workers, bit rate, report


def test_workers_give_the_same_store(tmp_path: Path) -> None:
    src = tmp_path / "src"
    for i, kind in enumerate(("tone", "chirp", "speech", "noise", "music", "tone")):
        make_file(src / f"{i}_{kind}.wav", kind, 6000 + 1000 * i, sample_rate=16_000, num_channels=1 + i % 2, seed=i)
    make_file(src / "p.m4a", "speech", 9000, sample_rate=44_100)
    serial = _import(src, tmp_path / "serial.zarr", workers=0)
    parallel = _import(src, tmp_path / "parallel.zarr", workers=2)
    assert serial.failed == parallel.failed == ()
    assert serial.imported == parallel.imported
    with AACStore.open(tmp_path / "serial.zarr") as a, AACStore.open(tmp_path / "parallel.zarr") as b:
        assert a.ids == b.ids
        for rid in a.ids:
            assert a.adts_bytes(rid) == b.adts_bytes(rid)
            assert a.recording(rid) == b.recording(rid)
            assert np.array_equal(a.frame_index(rid), b.frame_index(rid))


@pytest.mark.parametrize("bitrate", [48_000, 96_000, 192_000])
def test_bitrate_recorded(tmp_path: Path, bitrate: int) -> None:
    path, _ = make_file(tmp_path / "n.wav", "noise", 88_200, sample_rate=44_100)
    report = _import(path, tmp_path / "s.zarr", bitrate=bitrate)
    with AACStore.open(tmp_path / "s.zarr") as store:
        rec = store.recording("n.wav")
        assert rec.bitrate == round(rec.num_bytes * 8 / (rec.num_samples / rec.sample_rate))
        assert 0.75 * bitrate < rec.bitrate < 1.25 * bitrate
        assert report.bytes_written == rec.num_bytes
        assert report.audio_seconds == pytest.approx(2.0)


def test_report_counts(tmp_path: Path) -> None:
    src = tmp_path / "src"
    make_file(src / "a.wav", "tone", 8000, sample_rate=16_000)
    make_file(src / "b.m4a", "tone", 44_100, sample_rate=44_100)
    make_file(src / "c.aac", "tone", 22_050, sample_rate=22_050)
    report = _import(src, tmp_path / "s.zarr")
    assert report.ok
    assert report.passthrough == 2
    with AACStore.open(tmp_path / "s.zarr") as store:
        seconds = sum(r.duration_seconds for r in store)
        assert report.audio_seconds == pytest.approx(seconds)
        assert report.bytes_written == store.counts.num_bytes
    assert report.realtime_factor > 0
    assert "imported=3" in repr(report)


# ---------------------------------------------------------------------- PNS


def _encode_packets(x: np.ndarray, sample_rate: int, bitrate: int, pns: str) -> tuple[list[bytes], bytes]:
    """Raw AAC packets and the AudioSpecificConfig, straight from FFmpeg's encoder."""
    enc = av.CodecContext.create("aac", "w")
    enc.sample_rate = sample_rate
    enc.layout = "mono"
    enc.format = "fltp"
    enc.bit_rate = bitrate
    enc.time_base = Fraction(1, sample_rate)
    enc.options = {"aac_pns": pns}
    enc.open()
    packets = []
    for a in range(0, x.shape[1], 1024):
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(x[:, a : a + 1024]), format="fltp", layout="mono")
        frame.sample_rate = sample_rate
        frame.time_base = Fraction(1, sample_rate)
        frame.pts = a
        packets += [bytes(p) for p in enc.encode(frame)]
    packets += [bytes(p) for p in enc.encode(None)]
    return packets, bytes(enc.extradata)


def _decode_twice(packets: list[bytes], extradata: bytes | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Decode with one decoder, flush_buffers(), decode again; drop the first two frames
    (flush_buffers is not a full reset)."""
    dec = av.CodecContext.create("aac", "r")
    if extradata:
        dec.extradata = extradata

    def run() -> np.ndarray:
        return np.concatenate([f.to_ndarray() for p in packets for f in dec.decode(av.Packet(p))], axis=1)

    first = run()
    dec.flush_buffers()
    second = run()
    return first[:, 2048:], second[:, 2048:]


@pytest.fixture(scope="module")
def noise() -> np.ndarray:
    return signal("noise", 44_100, sample_rate=44_100, seed=3)


def test_pns_makes_decoding_random(noise: np.ndarray) -> None:
    # The control: with PNS on, one decoder gives different output for the same frames.
    a, b = _decode_twice(*_encode_packets(noise, 44_100, 32_000, "1"))
    assert not np.array_equal(a, b)
    assert float(np.abs(a - b).max()) > 0.05
    a, b = _decode_twice(*_encode_packets(noise, 44_100, 32_000, "0"))
    assert np.array_equal(a, b)


def test_library_encodes_without_pns(tmp_path: Path, noise: np.ndarray) -> None:
    path = tmp_path / "noise.wav"
    from aacdata.audio._audiofile import write_audio

    write_audio(path, noise, sample_rate=44_100, float_wav=True)
    _import(path, tmp_path / "s.zarr", bitrate=32_000)
    with AACStore.open(tmp_path / "s.zarr") as store:
        rec = store.recording("noise.wav")
        ref = full_decode(store, rec)
        data = store.adts_bytes(rec)
        rows = store.frame_index(rec).astype(np.int64) - [rec.byte_start, 0, 0]
        packets = [data[o : o + s] for o, s, _ in rows]
        # the stored stream decodes identically twice through one flushed decoder: no PNS in it
        a, b = _decode_twice(packets)
        assert np.array_equal(a, b)
        # and reads through the store's pooled (flushed) decoders are repeatable and exact
        for start, n in ((0, rec.num_samples), (5000, 4000), (20_000, 10_000), (5000, 4000), (0, rec.num_samples)):
            assert np.array_equal(store.read(rec, start, n), ref[:, start : start + n])


# ---------------------------------------------------------------------- crashes and locking


def _committed(store: Path) -> int:
    try:
        return int(json.loads((store / "zarr.json").read_text())["attributes"]["aacdata"]["num_recordings"])
    except (OSError, ValueError, KeyError):
        return 0


def test_killed_import_leaves_a_readable_store_and_resumes(tmp_path: Path) -> None:
    src = tmp_path / "src"
    for i in range(15):
        make_file(src / f"f{i:02d}.flac", "chirp", 441_000 + 37 * i, sample_rate=44_100, num_channels=2, seed=i)
    store = tmp_path / "killed.zarr"
    cmd = [sys.executable, "-m", "aacdata", "import", str(src), "-o", str(store), "--workers", "0", "--no-progress"]
    proc = subprocess.Popen(cmd, env=env_with_package(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while _committed(store) == 0 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    running = proc.poll() is None
    proc.send_signal(signals.SIGKILL)
    proc.wait()
    assert running, f"the import finished before it could be killed: {proc.stderr.read()!r}"  # type: ignore[union-attr]
    proc.stderr.close()  # type: ignore[union-attr]

    clean = tmp_path / "clean.zarr"
    assert _import(src, clean, workers=2).failed == ()
    with AACStore.open(clean) as ref, AACStore.open(store) as killed:
        committed = killed.ids
        assert 0 < len(committed) < 15
        _check_consistent(killed)
        for rid in committed:
            assert killed.recording(rid) == ref.recording(rid)
            assert killed.adts_bytes(rid) == ref.adts_bytes(rid)
        assert np.array_equal(killed.read(committed[-1], 1000, 5000), ref.read(committed[-1], 1000, 5000))

    report = _import(src, store)
    assert report.failed == ()
    assert sorted(report.skipped) == sorted(committed)
    assert len(report.imported) == 15 - len(committed)
    with AACStore.open(clean) as ref, AACStore.open(store) as resumed:
        assert len(set(resumed.ids)) == len(resumed.ids) == 15
        assert sorted(resumed.ids) == sorted(ref.ids)
        for rid in ref.ids:
            assert resumed.adts_bytes(rid) == ref.adts_bytes(rid)
            assert resumed.recording(rid).num_samples == ref.recording(rid).num_samples
        _check_consistent(resumed)


def test_second_writer_is_locked_out(tmp_path: Path, two_files: Path) -> None:
    from aacdata.store._writer import StoreWriter

    store = tmp_path / "s.zarr"
    _import(two_files, store)
    make_file(two_files / "new.wav", "tone", 3000)
    writer = StoreWriter(AACStore.open(store, "a"))
    try:
        with pytest.raises(StoreLockedError) as info:
            _import(two_files, store)
        assert isinstance(info.value, BlockingIOError)
        assert "being written by another import" in str(info.value)
        assert str(store) in str(info.value)
    finally:
        writer.close()
    report = _import(two_files, store)
    assert report.imported == ("new.wav",)


def test_disk_full_stops_with_a_clear_error_and_keeps_the_commit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import errno

    import zarr

    src = tmp_path / "src"
    for i in range(6):
        make_file(src / f"{i}.wav", "tone", 4000 + i, seed=i)
    monkeypatch.setattr(aacdata.importer, "_COMMIT_RECORDINGS", 2)
    real_set = zarr.storage.LocalStore.set
    real_write = aacdata.store._writer.StoreWriter._write
    state = {"commits": 0}

    def counting_write(self: aacdata.store._writer.StoreWriter, *args: object) -> None:
        real_write(self, *args)  # type: ignore[arg-type]
        state["commits"] += 1

    async def set_until_full(self: zarr.storage.LocalStore, key: str, value: object) -> None:
        if state["commits"] >= 1 and "c/" in key:  # the disk fills up after the first commit
            raise OSError(errno.ENOSPC, "No space left on device")
        await real_set(self, key, value)

    monkeypatch.setattr(aacdata.store._writer.StoreWriter, "_write", counting_write)
    monkeypatch.setattr(zarr.storage.LocalStore, "set", set_until_full)
    with pytest.raises(aacdata.StoreWriteError, match="the disk is full") as info:
        _import(src, tmp_path / "s.zarr")
    assert isinstance(info.value, OSError)
    assert "run the same import again" in str(info.value)
    monkeypatch.setattr(zarr.storage.LocalStore, "set", real_set)
    with AACStore.open(tmp_path / "s.zarr") as store:
        committed = store.ids
        assert 0 < len(committed) < 6
        _check_consistent(store)
    report = _import(src, tmp_path / "s.zarr")
    assert set(report.skipped) == set(committed)
    with AACStore.open(tmp_path / "s.zarr") as store:
        assert sorted(store.ids) == [f"{i}.wav" for i in range(6)]
        _check_consistent(store)


def test_file_name_that_is_not_utf8_fails_alone(tmp_path: Path) -> None:
    src = tmp_path / "src"
    make_file(src / "good.wav", "tone", 3000)
    bad_name = os.fsdecode(b"bad\xff.wav")
    make_file(src / bad_name, "tone", 3000)
    report = _import(src, tmp_path / "s.zarr")
    assert report.imported == ("good.wav",)
    assert [f.reason for f in report.failed] == ["the file name is not valid UTF-8; rename the file"]
    with AACStore.open(tmp_path / "s.zarr") as store:
        _check_consistent(store)


def test_default_workers_isolate_a_single_file(tmp_path: Path) -> None:
    path, _ = make_file(tmp_path / "one.wav", "tone", 3000)
    report = aacdata.import_audio(path, tmp_path / "s.zarr", progress=False)  # workers=None: a process pool
    assert report.imported == ("one.wav",)
