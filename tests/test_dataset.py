"""AACSegmentDataset: window plans, determinism, workers, exactness against store.read."""

from __future__ import annotations

import copy
import gc
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader
from torch.utils.data.distributed import DistributedSampler

import aacdata
from aacdata import AACStore
from aacdata.audio._audiofile import write_audio
from aacdata.dataset import AACSegmentDataset
from aacdata.testing import signal

RATE = 16_000


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store of mono and stereo recordings at 16 kHz, one shorter than a window, with labels."""
    src = tmp_path_factory.mktemp("ds-src")
    specs = [  # (name, kind, seconds, channels, label)
        ("a/tone.wav", "tone", 3.0, 1, "tone"),
        ("a/chirp.wav", "chirp", 2.5, 2, "chirp"),
        ("b/noise.flac", "noise", 4.0, 1, "noise"),
        ("b/speech.flac", "speech", 3.3, 2, "speech"),
        ("short.wav", "music", 0.3, 1, "music"),
    ]
    meta = src / "labels.csv"
    lines = ["id,label"]
    for i, (name, kind, seconds, channels, label) in enumerate(specs):
        audio = signal(kind, int(seconds * RATE) + 17 * i, sample_rate=RATE, num_channels=channels, seed=i)
        write_audio(src / "corpus" / name, audio, sample_rate=RATE)
        lines.append(f"{name},{label}")
    meta.write_text("\n".join(lines) + "\n")
    store = tmp_path_factory.mktemp("ds-store") / "corpus.zarr"
    report = aacdata.import_audio(src / "corpus", store, workers=0, progress=False, metadata=meta)
    assert report.ok and len(report.imported) == len(specs)
    return store


def _items(ds: AACSegmentDataset, **loader_kw: object) -> list[dict[str, object]]:
    out = []
    for batch in DataLoader(ds, batch_size=4, **loader_kw):  # type: ignore[arg-type]
        for j in range(batch["audio"].shape[0]):
            out.append({k: v[j] for k, v in batch.items()})
    return out


def test_random_windows_equal_store_reads(corpus: Path) -> None:
    ds = AACSegmentDataset(corpus, window_samples=4000, num_channels=2, return_info=True, seed=3)
    store = AACStore.open(corpus)
    assert len(ds) == sum(r.num_samples for r in store.recordings) // 4000
    for i in range(len(ds)):
        item = ds[i]
        w = ds.window(i)
        assert item["recording"] == w.recording and item["start"] == w.start
        rec = store.recording(item["recording"])
        assert item["id"] == rec.id and item["sample_rate"] == RATE
        ref = store.read(rec, item["start"], 4000, pad=True)
        if rec.num_channels == 1:
            ref = np.repeat(ref, 2, axis=0)
        assert item["audio"].dtype == torch.float32
        assert tuple(item["audio"].shape) == (2, 4000)
        np.testing.assert_array_equal(item["audio"].numpy(), ref)
        if rec.num_samples >= 4000:
            assert 0 <= item["start"] <= rec.num_samples - 4000


def test_window_is_a_pure_function_of_seed_epoch_index(corpus: Path) -> None:
    a = AACSegmentDataset(corpus, num_channels=1, window_samples=2000, seed=7, num_windows=50)
    b = AACSegmentDataset(corpus, num_channels=1, window_samples=2000, seed=7, num_windows=50)
    c = AACSegmentDataset(corpus, num_channels=1, window_samples=2000, seed=8, num_windows=50)
    wa = [a.window(i) for i in range(50)]
    assert wa == [b.window(i) for i in reversed(range(50))][::-1]
    assert wa != [c.window(i) for i in range(50)]
    a.set_epoch(1)
    assert wa != [a.window(i) for i in range(50)]
    a.set_epoch(0)
    assert wa == [a.window(i) for i in range(50)]


def test_duration_weighting_is_uniform_over_time(corpus: Path) -> None:
    ds = AACSegmentDataset(corpus, num_channels=1, window_samples=100, num_windows=20_000, seed=1)
    store = AACStore.open(corpus)
    lengths = store.column("num_samples").astype(float)
    counts = np.bincount([ds.window(i).recording for i in range(len(ds))], minlength=len(store))
    expected = lengths / lengths.sum() * len(ds)
    assert np.all(np.abs(counts - expected) < 5 * np.sqrt(expected) + 5)
    by_rec = AACSegmentDataset(
        corpus, num_channels=1, window_samples=100, num_windows=20_000, seed=1, weighting="recording"
    )
    counts = np.bincount([by_rec.window(i).recording for i in range(len(by_rec))], minlength=len(store))
    assert np.all(np.abs(counts - 4000) < 5 * np.sqrt(4000))


@pytest.mark.parametrize("workers", [0, 2])
def test_same_batches_for_any_worker_count(corpus: Path, workers: int) -> None:
    ds = AACSegmentDataset(corpus, window_samples=3000, num_channels=1, return_info=True, seed=11, num_windows=24)
    reference = [ds[i] for i in range(len(ds))]
    items = _items(ds, num_workers=workers)
    assert len(items) == len(reference)
    for got, ref in zip(items, reference, strict=True):
        assert int(got["recording"]) == ref["recording"] and int(got["start"]) == ref["start"]
        np.testing.assert_array_equal(got["audio"].numpy(), ref["audio"].numpy())


@pytest.mark.parametrize("method", ["fork", "spawn", "forkserver"])
def test_start_methods_give_identical_batches(corpus: Path, method: str) -> None:
    ds = AACSegmentDataset(corpus, window_samples=3000, num_channels=1, seed=5, num_windows=16)
    expected = torch.stack([ds[i] for i in range(len(ds))])
    loader = DataLoader(ds, batch_size=8, num_workers=2, multiprocessing_context=method)
    got = torch.cat(list(loader))
    assert torch.equal(got, expected)


def test_getitems_batches_in_request_order(corpus: Path) -> None:
    ds = AACSegmentDataset(corpus, window_samples=1500, num_channels=1, seed=2, num_windows=40)
    order = [37, 3, 3, 20, 0, 39, 11]
    batch = ds.__getitems__(order)
    for i, item in zip(order, batch, strict=True):
        assert torch.equal(item, ds[i])


def test_sliding_windows_cover_every_recording(corpus: Path) -> None:
    store = AACStore.open(corpus)
    window, hop = 4000, 2500
    pad = AACSegmentDataset(corpus, num_channels=1, window_samples=window, hop_seconds=hop / RATE, return_info=True)
    drop = AACSegmentDataset(
        corpus, num_channels=1, window_samples=window, hop_seconds=hop / RATE, last="drop", short="skip"
    )
    expected_pad, expected_drop = 0, 0
    for rec in store.recordings:
        full = (rec.num_samples - window) // hop + 1 if rec.num_samples >= window else 0
        covered = (full - 1) * hop + window if full else 0
        expected_pad += full + (rec.num_samples > covered)
        expected_drop += full
    assert len(pad) == expected_pad and len(drop) == expected_drop
    starts: dict[int, list[int]] = {}
    for i in range(len(pad)):
        w = pad.window(i)
        starts.setdefault(w.recording, []).append(w.start)
    for g, s in starts.items():
        assert s == list(range(0, len(s) * hop, hop))
        assert s[-1] + window >= store.recording(g).num_samples  # the end is covered
    last = pad[len(pad) - 1]
    rec = store.recording(last["recording"])
    tail = rec.num_samples - last["start"]
    assert 0 < tail < window
    assert torch.all(last["audio"][:, tail:] == 0)


def test_explicit_windows_and_labels(corpus: Path) -> None:
    events = [("b/noise.flac", 100, 800), ("a/tone.wav", 0, 800), ("a/chirp.wav", 39_000, 800)]
    ds = AACSegmentDataset(corpus, windows=events, num_channels=1, return_info=True)
    store = AACStore.open(corpus)
    assert len(ds) == 3
    for (rid, start, n), item in zip(events, (ds[i] for i in range(3)), strict=True):
        assert item["id"] == rid and item["start"] == start
        assert item["labels"] == rid.split("/")[-1].split(".")[0]
        ref = store.read(rid, start, n, pad=True).mean(axis=0, keepdims=True, dtype=np.float32)
        np.testing.assert_array_equal(item["audio"].numpy(), ref)
    batch = next(iter(DataLoader(ds, batch_size=3)))
    assert tuple(batch["audio"].shape) == (3, 1, 800)
    assert batch["labels"] == ["noise", "tone", "chirp"]
    with pytest.raises(aacdata.RecordingNotFoundError, match="nope"):
        AACSegmentDataset(corpus, num_channels=1, windows=[("nope", 0, 10)])


def test_short_recordings_pad_or_skip(corpus: Path) -> None:
    store = AACStore.open(corpus)
    short = store.recording("short.wav")
    window = short.num_samples + 1000
    padded = AACSegmentDataset(
        corpus, num_channels=1, window_samples=window, recordings=["short.wav"], return_info=True
    )
    item = padded[0]
    assert item["start"] == 0
    np.testing.assert_array_equal(
        item["audio"][:, : short.num_samples].numpy(), store.read(short, 0, short.num_samples)
    )
    assert torch.all(item["audio"][:, short.num_samples :] == 0)
    skipping = AACSegmentDataset(corpus, num_channels=1, window_samples=window, short="skip", num_windows=200)
    assert short.index not in {skipping.window(i).recording for i in range(200)}
    with pytest.raises(ValueError, match="no recording is at least"):
        AACSegmentDataset(corpus, num_channels=1, window_samples=10**7, short="skip")


def test_recording_filters(corpus: Path) -> None:
    ds = AACSegmentDataset(
        corpus, num_channels=1, window_samples=500, num_windows=300, recordings=lambda m: m.get("label") == "tone"
    )
    store = AACStore.open(corpus)
    assert {ds.window(i).recording for i in range(300)} == {store.index_of("a/tone.wav")}
    ds = AACSegmentDataset(
        corpus, num_channels=1, window_samples=500, num_windows=300, recordings=["a/tone.wav", "b/noise.flac"]
    )
    assert {ds.window(i).recording for i in range(300)} == {
        store.index_of("a/tone.wav"),
        store.index_of("b/noise.flac"),
    }
    with pytest.raises(aacdata.RecordingNotFoundError):
        AACSegmentDataset(corpus, num_channels=1, window_samples=500, recordings=["missing.wav"])


def test_mixed_channels_need_num_channels_to_batch(corpus: Path) -> None:
    mono = AACSegmentDataset(corpus, window_samples=1000, num_channels=1, num_windows=64)
    batch = next(iter(DataLoader(mono, batch_size=64)))
    assert tuple(batch.shape) == (64, 1, 1000)
    with pytest.raises(ValueError, match="recordings have 1, 2 channels; pass num_channels="):
        AACSegmentDataset(corpus, window_samples=1000, num_windows=64)
    stereo = AACSegmentDataset(corpus, window_samples=1000, num_windows=64, recordings=["a/chirp.wav"])
    assert stereo[0].shape == (2, 1000)  # one count kept with recordings=
    too_many = AACSegmentDataset(corpus, window_samples=1000, num_channels=3, windows=[("a/chirp.wav", 0, 1000)])
    with pytest.raises(ValueError, match="cannot make 3"):
        too_many[0]


def test_several_stores_are_one_corpus(corpus: Path, tmp_path: Path) -> None:
    other = tmp_path / "other.zarr"
    write_audio(tmp_path / "src" / "x.wav", signal("chirp", RATE * 2, sample_rate=RATE), sample_rate=RATE)
    aacdata.import_audio(tmp_path / "src", other, workers=0, progress=False)
    ds = AACSegmentDataset([corpus, other], window_samples=800, return_info=True, num_windows=400, num_channels=1)
    n_first = len(AACStore.open(corpus))
    seen = {ds.window(i).recording for i in range(400)}
    assert n_first in seen  # the second store's recording is drawn
    item = next(ds[i] for i in range(400) if ds.window(i).recording == n_first)
    assert item["id"] == "x.wav"
    np.testing.assert_array_equal(item["audio"].numpy(), AACStore.open(other).read(0, item["start"], 800))


def test_mixed_sample_rates_need_a_choice(tmp_path: Path) -> None:
    for rate in (16_000, 22_050):
        write_audio(tmp_path / "src" / f"{rate}.wav", signal("tone", rate, sample_rate=rate), sample_rate=rate)
    store = tmp_path / "s.zarr"
    aacdata.import_audio(tmp_path / "src", store, workers=0, progress=False)
    with pytest.raises(ValueError, match=r"16000 Hz, 22050 Hz.*pass sample_rate="):
        AACSegmentDataset(store, window_seconds=0.1)
    # keeping one rate is the recordings= predicate's job; it sees the table's values
    ds = AACSegmentDataset(store, window_seconds=0.1, recordings=lambda r: r["sample_rate"] == 22_050, num_windows=20)
    assert ds.window_samples == 2205
    assert {ds.window(i).recording for i in range(20)} == {AACStore.open(store).index_of("22050.wav")}
    with pytest.raises(ValueError, match="sample_rate must be a positive integer"):
        AACSegmentDataset(store, window_seconds=0.1, sample_rate=0)


@pytest.mark.parametrize("num_channels", [None, 1])
def test_mixed_rates_batch_at_one_rate(tmp_path: Path, num_channels: int | None) -> None:
    # Invariant: with sample_rate=R every recording is read resampled to R, equal to the
    # store's read at R (remixing before resampling equals remixing after, to 1e-6).
    for rate in (8_000, 16_000, 44_100, 48_000):
        audio = signal("chirp", rate + rate // 3, sample_rate=rate, num_channels=2, seed=rate % 5)
        write_audio(tmp_path / "src" / f"{rate}.wav", audio, sample_rate=rate)
    store = tmp_path / "s.zarr"
    aacdata.import_audio(tmp_path / "src", store, workers=0, progress=False)
    ds = AACSegmentDataset(
        store, window_seconds=0.25, sample_rate=16_000, num_windows=32, num_channels=num_channels, return_info=True
    )
    assert ds.sample_rate == 16_000 and ds.window_samples == 4000
    opened = AACStore.open(store)
    batch = next(iter(DataLoader(ds, batch_size=32, num_workers=2)))
    channels = 2 if num_channels is None else 1
    assert batch["audio"].shape == (32, channels, 4000)
    assert len({int(r) for r in batch["recording"]}) >= 3  # several rates in one batch
    for j in range(32):
        rec, start = int(batch["recording"][j]), int(batch["start"][j])
        expected = opened.read(rec, start, 4000, sample_rate=16_000, pad=True)
        if num_channels == 1:
            expected = expected.mean(axis=0, keepdims=True)
        np.testing.assert_allclose(batch["audio"][j].numpy(), expected, atol=1e-6, rtol=0)
    record = opened.recording("44100.wav")
    whole = record.num_samples_at(16_000)  # exactly one full sliding window at 16 kHz, none longer
    for n, count in ((whole, 1), (whole + 1, 0)):
        sliding = AACSegmentDataset(
            store, window_samples=n, hop_seconds=1.0, last="drop", sample_rate=16_000, recordings=["44100.wav"]
        )
        assert len(sliding) == count


def test_distributed_sampler_shards_are_disjoint_and_cover(corpus: Path) -> None:
    ds = AACSegmentDataset(corpus, num_channels=1, window_samples=1000, num_windows=101, seed=4)
    shards = [list(DistributedSampler(ds, num_replicas=2, rank=r, shuffle=True, seed=9)) for r in range(2)]
    assert len(shards[0]) == len(shards[1]) == 51
    # DistributedSampler pads with one repeated index to make equal shards.
    assert set(shards[0]) | set(shards[1]) == set(range(101))
    assert len(set(shards[0]) & set(shards[1])) <= 1


def test_pickled_dataset_is_small_and_holds_no_handles(corpus: Path) -> None:
    ds = AACSegmentDataset(corpus, num_channels=1, window_samples=1000, num_windows=10)
    ds[0]  # opens the store, decoders and caches in this process
    blob = pickle.dumps(ds)
    assert len(blob) < 20_000
    clone = pickle.loads(blob)
    assert clone._state is None
    assert torch.equal(clone[3], ds[3])


def test_stats_and_clear_caches(corpus: Path) -> None:
    ds = AACSegmentDataset(corpus, window_samples=1000, num_windows=30, num_channels=1)
    for i in range(30):
        ds[i]
    stats = ds.stats()
    assert stats["pid"] == os.getpid() and stats["windows_served"] == 30
    assert stats["index_cache_misses"] <= 5 and stats["index_cache_hits"] == 30 - stats["index_cache_misses"]
    assert stats["decoders_created"] >= 1 and stats["bytes_read"] > 0
    ds.clear_caches()
    assert ds.stats()["windows_served"] == 0


def test_transform_is_applied(corpus: Path) -> None:
    ds = AACSegmentDataset(corpus, window_samples=1000, num_windows=4, num_channels=1, transform=lambda x: x * 2)
    plain = AACSegmentDataset(corpus, window_samples=1000, num_windows=4, num_channels=1)
    assert torch.equal(ds[1], plain[1] * 2)


def test_bad_arguments_are_named(corpus: Path) -> None:
    with pytest.raises(ValueError, match="exactly one of window_seconds"):
        AACSegmentDataset(corpus, num_channels=1)
    with pytest.raises(ValueError, match="weighting"):
        AACSegmentDataset(corpus, num_channels=1, window_samples=10, weighting="uniform")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="hop_seconds"):
        AACSegmentDataset(corpus, num_channels=1, window_samples=10, hop_seconds=0.00001)
    with pytest.raises(aacdata.StoreNotFoundError):
        AACSegmentDataset(corpus.parent / "missing.zarr", window_samples=10)
    ds = AACSegmentDataset(corpus, num_channels=1, window_samples=10, num_windows=5)
    with pytest.raises(IndexError, match="out of range"):
        ds[5]


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc")
@pytest.mark.parametrize("persistent", [False, True])
def test_no_leaks_over_epochs(corpus: Path, persistent: bool) -> None:
    ds = AACSegmentDataset(corpus, window_samples=2000, num_channels=1, num_windows=64)
    loader = DataLoader(ds, batch_size=16, num_workers=2, persistent_workers=persistent)
    counts = []
    for epoch in range(6):
        ds.set_epoch(epoch)
        for _ in loader:
            pass
        gc.collect()
        counts.append(_open_fds())
    del loader
    # A leak of even one descriptor per epoch would add 4 over epochs 1..5.
    assert counts[-1] - counts[1] <= 2, counts


def test_on_error_skip_replaces_a_damaged_window(corpus: Path, tmp_path: Path) -> None:
    import shutil

    damaged = tmp_path / "damaged.zarr"
    shutil.copytree(corpus, damaged)
    store = AACStore.open(damaged)
    rec = store.recording("b/noise.flac")
    row = store.frame_index(rec)[10]
    offset = int(row[0]) + int(row[1]) // 2
    chunk = damaged / "adts" / "c" / str(offset // (1 << 19))
    data = bytearray(chunk.read_bytes())
    data[offset % (1 << 19)] ^= 0xFF
    chunk.write_bytes(bytes(data))
    bad_start = 10 * 1024 - rec.encoder_delay  # decoded frame 10 starts here
    events = [("b/noise.flac", bad_start, 500), ("a/tone.wav", 0, 500)]
    strict = AACSegmentDataset(damaged, windows=events, num_channels=1)
    with pytest.raises(aacdata.CorruptDataError, match=r"'b/noise.flac' frame 10 is damaged"):
        strict[0]
    skipping = AACSegmentDataset(damaged, windows=events, on_error="skip", return_info=True, num_channels=1)
    item = skipping[0]
    assert item["id"] == "a/tone.wav"  # the next good window of the plan
    np.testing.assert_array_equal(item["audio"].numpy(), AACStore.open(corpus).read("a/tone.wav", 0, 500))
    assert skipping.stats()["windows_replaced"] == 1
    assert skipping[1]["id"] == "a/tone.wav"
    assert skipping.stats()["windows_replaced"] == 1


def _epoch_windows(ds: AACSegmentDataset, loader: DataLoader[object]) -> list[tuple[int, int]]:
    return [(int(r), int(s)) for b in loader for r, s in zip(b["recording"], b["start"], strict=True)]


@pytest.mark.parametrize("method", ["fork", "spawn", "forkserver"])
def test_set_epoch_reaches_persistent_workers(corpus: Path, method: str) -> None:
    # Invariant: with persistent workers, epoch e reads exactly the windows of epoch e
    # without them (the plan's windows for (seed, e, i)), whatever the start method.
    ds = AACSegmentDataset(corpus, window_samples=2000, num_channels=1, num_windows=24, return_info=True, seed=5)
    loader = DataLoader(
        ds, batch_size=4, num_workers=2, persistent_workers=True, multiprocessing_context=method, prefetch_factor=2
    )
    seen = []
    for epoch in range(3):
        ds.set_epoch(epoch)
        expected = [(ds.window(i).recording, ds.window(i).start) for i in range(len(ds))]
        got = _epoch_windows(ds, loader)
        assert got == expected, f"epoch {epoch} read other windows than the plan's"
        seen.append(got)
    assert seen[0] != seen[1] != seen[2]  # the epochs differ


def test_plans_and_their_shortcuts_read_the_same_windows(corpus: Path) -> None:
    from aacdata import ExplicitWindows, RandomWindows, SlidingWindows

    pairs = [
        ({"window_seconds": 0.25, "num_windows": 40}, RandomWindows(0.25, num_windows=40)),
        ({"window_seconds": 0.25, "hop_seconds": 0.2, "last": "drop"}, SlidingWindows(0.25, 0.2, last="drop")),
        ({"windows": [("a/tone.wav", 100, 500)]}, ExplicitWindows([("a/tone.wav", 100, 500)])),
    ]
    for kwargs, plan in pairs:
        a = AACSegmentDataset(corpus, num_channels=1, seed=4, **kwargs)  # type: ignore[arg-type]
        b = AACSegmentDataset(corpus, num_channels=1, seed=4, plan=plan)
        assert len(a) == len(b) > 0
        assert [a.window(i) for i in range(len(a))] == [b.window(i) for i in range(len(b))]
        assert torch.equal(a[len(a) - 1], b[len(b) - 1])
    with pytest.raises(ValueError, match="do not also give window_seconds="):
        AACSegmentDataset(corpus, num_channels=1, window_seconds=1.0, plan=RandomWindows(1.0))


def _loader_items(loader: DataLoader[object]) -> list[tuple[int, int, torch.Tensor]]:
    return [
        (int(r), int(s), a)
        for b in loader
        for r, s, a in zip(b["recording"], b["start"], b["audio"], strict=True)  # type: ignore[index]
    ]


def _main_items(ds: AACSegmentDataset) -> list[tuple[int, int, torch.Tensor]]:
    return [(int(it["recording"]), int(it["start"]), it["audio"]) for it in (ds[i] for i in range(len(ds)))]


def _same_items(got: list[tuple[int, int, torch.Tensor]], expected: list[tuple[int, int, torch.Tensor]]) -> bool:
    return len(got) == len(expected) and all(
        g[:2] == e[:2] and torch.equal(g[2], e[2]) for g, e in zip(got, expected, strict=True)
    )


def _persistent(ds: AACSegmentDataset, method: str = "fork") -> DataLoader[object]:
    return DataLoader(ds, batch_size=4, num_workers=2, persistent_workers=True, multiprocessing_context=method)


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_load_state_dict_reaches_persistent_workers(corpus: Path, method: str) -> None:
    # Invariant: after load_state_dict, persistent workers return the items that dataset[i]
    # returns in the main process (the new seed's windows, not those they started with).
    options = {"window_samples": 2000, "num_channels": 1, "num_windows": 16, "return_info": True}
    ds = AACSegmentDataset(corpus, seed=5, **options)  # type: ignore[arg-type]
    state = AACSegmentDataset(corpus, seed=6, **options).state_dict()  # type: ignore[arg-type]
    loader = _persistent(ds, method)
    before = _loader_items(loader)
    assert _same_items(before, _main_items(ds))
    ds.load_state_dict(state)  # another seed, the same epoch (0)
    assert ds.seed == 6 and ds.epoch == 0
    after = _loader_items(loader)
    assert _same_items(after, _main_items(ds)), "the workers kept the old seed's windows"
    assert [i[:2] for i in after] != [i[:2] for i in before]
    state = AACSegmentDataset(corpus, seed=5, **options).state_dict()  # type: ignore[arg-type]
    ds.load_state_dict(state)  # and back
    assert _same_items(_loader_items(loader), before)


@pytest.mark.parametrize("how", ["deepcopy", "pickle"])
def test_a_copy_has_its_own_seed_and_epoch(corpus: Path, how: str) -> None:
    # Invariant: a copy (deep, or pickled and loaded in this process) starts from the
    # original's seed and epoch, and then each follows its own set_epoch, workers included.
    ds = AACSegmentDataset(corpus, window_samples=2000, num_channels=1, num_windows=16, return_info=True, seed=5)
    ds.set_epoch(1)
    loader = _persistent(ds)
    first = _loader_items(loader)
    clone = copy.deepcopy(ds) if how == "deepcopy" else pickle.loads(pickle.dumps(ds))
    assert (clone.seed, clone.epoch) == (5, 1)
    assert _same_items(_main_items(clone), first)
    clone.set_epoch(7)
    assert ds.epoch == 1 and clone.epoch == 7
    assert _same_items(_loader_items(loader), first), "the copy's set_epoch moved the original's workers"
    clone_loader = _persistent(clone)
    assert _same_items(_loader_items(clone_loader), _main_items(clone))
    ds.set_epoch(2)
    assert clone.epoch == 7
    assert _same_items(_loader_items(clone_loader), _main_items(clone)), "the original's set_epoch moved the copy"
    assert _same_items(_loader_items(loader), _main_items(ds))


def test_a_copy_outlives_its_original(corpus: Path) -> None:
    # Invariant: a copy whose original was garbage-collected still reaches its persistent
    # workers with its own set_epoch.
    ds = AACSegmentDataset(corpus, window_samples=2000, num_channels=1, num_windows=16, return_info=True, seed=5)
    clone = copy.deepcopy(ds)
    del ds
    gc.collect()
    loader = _persistent(clone)
    assert _same_items(_loader_items(loader), _main_items(clone))
    clone.set_epoch(3)
    assert _same_items(_loader_items(loader), _main_items(clone)), "the workers missed set_epoch"


def test_pickling_keeps_seed_and_epoch(corpus: Path) -> None:
    ds = AACSegmentDataset(corpus, num_channels=1, window_samples=1000, num_windows=8, seed=5)
    ds.load_state_dict(
        AACSegmentDataset(corpus, num_channels=1, window_samples=1000, num_windows=8, seed=2**64 - 1).state_dict()
    )
    ds.set_epoch(2**64 - 1)
    clone = pickle.loads(pickle.dumps(ds))
    assert (clone.seed, clone.epoch) == (2**64 - 1, 2**64 - 1)
    assert [clone.window(i) for i in range(8)] == [ds.window(i) for i in range(8)]


def test_seed_and_epoch_out_of_range_are_named(corpus: Path) -> None:
    ds = AACSegmentDataset(corpus, num_channels=1, window_samples=1000, num_windows=8, seed=5)
    for bad in (2**70, 2**64, -1):
        with pytest.raises(ValueError, match=rf"epoch must be an integer in \[0, 2\*\*64\); got {bad}"):
            ds.set_epoch(bad)
        with pytest.raises(ValueError, match=rf"seed must be an integer in \[0, 2\*\*64\); got {bad}"):
            AACSegmentDataset(corpus, num_channels=1, window_samples=1000, num_windows=8, seed=bad)
        state = ds.state_dict()
        with pytest.raises(ValueError, match=rf"seed must be an integer in \[0, 2\*\*64\); got {bad}"):
            ds.load_state_dict(state | {"seed": bad})
        with pytest.raises(ValueError, match=rf"epoch must be an integer in \[0, 2\*\*64\); got {bad}"):
            ds.load_state_dict(state | {"epoch": bad})
    with pytest.raises(TypeError, match=r"epoch must be an integer in \[0, 2\*\*64\); got 1.5 \(float\)"):
        ds.set_epoch(1.5)  # type: ignore[arg-type]
    assert (ds.seed, ds.epoch) == (5, 0)  # nothing changed on the way
