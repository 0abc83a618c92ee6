"""Damaged stores: every failure is an aacdata error, and verify goes on.

A mutation sweep over every node of a small store: each ``zarr.json``, each chunk file of
``/adts``, ``/index``, ``/frame_crc`` and of every recordings column, and the root
attribute, is flipped, truncated, deleted, replaced by a directory or edited (counts,
dtypes, shapes, chunk shapes, nesting, table values). On each damaged copy every way in
is tried: open, reads of every recording, the dataset (``on_error="raise"`` and
``"skip"``), the summary, ``verify`` (library and command), ``export`` to .wav and .aac,
and ``repair``.

Invariant: each outcome is either an :class:`aacdata.AACDataError` or the clean store's
output (the same samples, the same bytes); never another exception. Commands exit 0 or 1
(damage), never 2 (usage), and never with a traceback. Where ``verify`` finds nothing
wrong, every read and every dataset item equals the clean store's.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest
import torch
import zarr
from conftest import make_file

import aacdata
from aacdata import AACSegmentDataset, AACStore
from aacdata.cli import main
from aacdata.errors import AACDataError, CorruptDataError, StoreWriteError
from aacdata.store._layout import column_crc32

WINDOW_SECONDS = 0.25
NUM_ITEMS = 4  # dataset items read per damaged store (all of them in the full sweep)

# id -> (kind, num_samples, num_channels, seed); one rate, so one dataset holds them all.
SOURCES: dict[str, tuple[str, int, int, int]] = {
    "a.wav": ("speech", 21_000, 1, 0),
    "b.wav": ("music", 15_500, 2, 1),
    "c.wav": ("chirp", 9_300, 1, 2),
}


@dataclass(frozen=True)
class Clean:
    """The undamaged store and what every way of reading it gives."""

    path: Path
    ids: tuple[str, ...]
    pcm: dict[str, np.ndarray]
    adts: dict[str, bytes]
    items: list[torch.Tensor]
    files: tuple[str, ...]  # every file of the store, relative to its root


def _dataset(path: Path, on_error: str) -> AACSegmentDataset:
    return AACSegmentDataset(
        path, window_seconds=WINDOW_SECONDS, hop_seconds=WINDOW_SECONDS, num_channels=1, on_error=on_error
    )


@pytest.fixture(scope="module")
def clean(tmp_path_factory: pytest.TempPathFactory) -> Clean:
    root = tmp_path_factory.mktemp("damage")
    for rid, (kind, n, channels, seed) in SOURCES.items():
        make_file(root / "src" / rid, kind, n, sample_rate=16_000, num_channels=channels, seed=seed)
    path = root / "clean.zarr"
    metadata = {rid: {"label": f"class{k}"} for k, rid in enumerate(SOURCES)}
    report = aacdata.import_audio(root / "src", path, workers=0, progress=False, metadata=metadata)
    assert sorted(report.imported) == sorted(SOURCES)
    with AACStore.open(path) as st:
        assert st.verify().ok
        pcm = {r.id: st.read(r, 0, r.num_samples) for r in st}
        adts = {r.id: st.adts_bytes(r) for r in st}
        ids = st.ids
    ds = _dataset(path, "raise")
    items = [ds[i] for i in range(len(ds))]
    assert len(items) > NUM_ITEMS
    files = tuple(
        sorted(
            os.path.relpath(os.path.join(d, f), path) for d, _, fs in os.walk(path) for f in fs if f != "aacdata.lock"
        )
    )
    return Clean(path, ids, pcm, adts, items, files)


# ---------------------------------------------------------------------- mutations

Mutation = Callable[[Path], None]
"""Damages one file of a store copy, given the file's path."""


def _flip(at: float, bit: int = 0x10) -> Mutation:
    def mutate(f: Path) -> None:
        data = bytearray(f.read_bytes())
        if data:
            data[min(int(at * len(data)), len(data) - 1)] ^= bit
        f.write_bytes(bytes(data))

    return mutate


def _truncate(keep: float) -> Mutation:
    def mutate(f: Path) -> None:
        data = f.read_bytes()
        f.write_bytes(data[: int(keep * len(data))])

    return mutate


def _delete(f: Path) -> None:
    f.unlink()


def _directory(f: Path) -> None:
    f.unlink()
    f.mkdir()
    (f / "0").write_bytes(b"\0" * 16)


def _edit_json(edit: Callable[[dict[str, Any]], Any]) -> Mutation:
    def mutate(f: Path) -> None:
        meta = json.loads(f.read_text())
        edit(meta)
        f.write_text(json.dumps(meta))

    return mutate


def _raw_json(text: Callable[[dict[str, Any]], str]) -> Mutation:
    """Replace a zarr.json by text built from its content (for what json.dumps will not write)."""

    def mutate(f: Path) -> None:
        f.write_text(text(json.loads(f.read_text())))

    return mutate


def _deep(depth: int) -> str:
    return "[" * depth + "]" * depth


def _set(*keys: str | int, value: Any) -> Callable[[dict[str, Any]], None]:
    def edit(meta: dict[str, Any]) -> None:
        target: Any = meta
        for key in keys[:-1]:
            target = target[key]
        target[keys[-1]] = value

    return edit


def _drop(*keys: str) -> Callable[[dict[str, Any]], None]:
    def edit(meta: dict[str, Any]) -> None:
        target: Any = meta
        for key in keys[:-1]:
            target = target[key]
        del target[keys[-1]]

    return edit


def _length(value: Any) -> Callable[[dict[str, Any]], None]:
    def edit(meta: dict[str, Any]) -> None:
        meta["shape"][0] = value

    return edit


FILE_MUTATIONS: dict[str, Mutation] = {
    "flip_middle": _flip(0.5),
    "truncate_half": _truncate(0.5),
    "delete": _delete,
    "directory": _directory,
}
FILE_MUTATIONS_SLOW: dict[str, Mutation] = {
    "flip_first": _flip(0.0, 0x01),
    "flip_third": _flip(0.33, 0x80),
    "flip_last": _flip(1.0, 0x04),
    "truncate_empty": _truncate(0.0),
    "truncate_last_byte": lambda f: f.write_bytes(f.read_bytes()[:-1]),
    "append_garbage": lambda f: f.write_bytes(f.read_bytes() + b"\xff" * 33),
}

ARRAY_META_MUTATIONS: dict[str, Mutation] = {
    "chunk_shape_0": _edit_json(
        lambda m: _set("chunk_grid", "configuration", "chunk_shape", value=[0] * len(m["shape"]))(m)
    ),
    "wrong_dtype": _edit_json(
        lambda m: _set("data_type", value="float32" if m["data_type"] != "float32" else "int8")(m)
    ),
    "shape_1e15": _edit_json(_length(10**15)),
    "nested_json": _raw_json(lambda m: json.dumps(m)[:-1] + ', "deep": ' + _deep(100_000) + "}"),
}
ARRAY_META_MUTATIONS_SLOW: dict[str, Mutation] = {
    "chunk_shape_huge": _edit_json(
        lambda m: _set("chunk_grid", "configuration", "chunk_shape", value=[2**40] * len(m["shape"]))(m)
    ),
    "chunk_shape_half": _edit_json(
        lambda m: _set(
            "chunk_grid",
            "configuration",
            "chunk_shape",
            value=[max(1, c // 2) for c in m["chunk_grid"]["configuration"]["chunk_shape"]],
        )(m)
    ),
    "shape_0": _edit_json(_length(0)),
    "shape_negative": _edit_json(_length(-5)),
    "shape_float": _edit_json(_length(1.5)),
    "shape_2d": _edit_json(lambda m: m.update(shape=[*m["shape"], 2])),
    "dtype_int_of_same_size": _edit_json(
        lambda m: m.update(
            data_type={"uint64": "int64", "uint32": "int32", "uint8": "int8"}.get(m["data_type"], "bool")
        )
    ),
    "dtype_unknown": _edit_json(_set("data_type", value="complex-banana")),
    "node_type_group": _edit_json(_set("node_type", value="group")),
    "codecs_none": _edit_json(_set("codecs", value=[])),
    "codecs_bytes_only": _edit_json(_set("codecs", value=[{"name": "bytes", "configuration": {"endian": "little"}}])),
    "fill_value_string": _edit_json(_set("fill_value", value="x")),
    "chunk_key_dot": _edit_json(
        _set("chunk_key_encoding", value={"name": "default", "configuration": {"separator": "."}})
    ),
    "zarr_format_2": _edit_json(_set("zarr_format", value=2)),
    "infinity_shape": _raw_json(lambda m: json.dumps({**m, "shape": ["@"]}).replace('"@"', "Infinity")),
    "garbage": lambda f: f.write_bytes(b"{\x00garbage"),
    "list": lambda f: f.write_text("[]"),
}


def _root_attr(**changes: Any) -> Mutation:
    def edit(meta: dict[str, Any]) -> None:
        attr = meta["attributes"]["aacdata"]
        for key, value in changes.items():
            if value is _DROP:
                attr.pop(key, None)
            else:
                attr[key] = value

    return _edit_json(edit)


_DROP = object()


def _root_raw(key: str, token: str) -> Mutation:
    """Set a root-attribute value to a JSON token json.dumps does not write (Infinity, NaN)."""

    def text(meta: dict[str, Any]) -> str:
        meta["attributes"]["aacdata"][key] = "@@"
        return json.dumps(meta).replace('"@@"', token)

    return _raw_json(text)


def _crc_edit(edit: Callable[[dict[str, Any]], None]) -> Mutation:
    def change(meta: dict[str, Any]) -> None:
        edit(meta["attributes"]["aacdata"]["column_crc32"])

    return _edit_json(change)


ROOT_MUTATIONS: dict[str, Mutation] = {
    "frames_infinity": _root_raw("num_frames", "Infinity"),
    "recordings_string": _root_attr(num_recordings="3"),
    "bytes_negative": _root_attr(num_bytes=-7),
    "frames_huge": _root_attr(num_frames=10**30),
    "recordings_bool": _root_attr(num_recordings=True),
    "nested_attribute": _raw_json(
        lambda m: json.dumps(m).replace('"codec": "aac-lc"', '"codec": "aac-lc", "deep": ' + _deep(100_000))
    ),
    "column_crc32_removed": _root_attr(column_crc32=_DROP),
    "column_crc32_partial": _crc_edit(lambda crcs: crcs.pop("sample_rate")),
}
ROOT_MUTATIONS_SLOW: dict[str, Mutation] = {
    "recordings_nan": _root_raw("num_recordings", "NaN"),
    "bytes_minus_infinity": _root_raw("num_bytes", "-Infinity"),
    "frames_float": _root_attr(num_frames=12.0),
    "bytes_exponent": _root_raw("num_bytes", "1e3"),
    "recordings_null": _root_attr(num_recordings=None),
    "recordings_list": _root_attr(num_recordings=[3]),
    "bytes_string_huge": _root_attr(num_bytes="9" * 5000),
    "frames_2_63": _root_attr(num_frames=2**63),
    "all_counts_zero": _root_attr(num_recordings=0, num_frames=0, num_bytes=0),
    "fewer_frames": _edit_json(
        lambda m: m["attributes"]["aacdata"].update(num_frames=m["attributes"]["aacdata"]["num_frames"] - 1)
    ),
    "column_crc32_string": _crc_edit(lambda crcs: crcs.update(id=str(crcs["id"]))),
    "column_crc32_negative": _crc_edit(lambda crcs: crcs.update(num_samples=-1)),
    "column_crc32_huge": _crc_edit(lambda crcs: crcs.update(crc32=2**40)),
    "column_crc32_list": _root_attr(column_crc32=[1, 2]),
    "attribute_nested_dict": _raw_json(
        lambda m: json.dumps(m).replace('"codec": "aac-lc"', '"codec": ' + '{"a":' * 50_000 + "1" + "}" * 50_000)
    ),
    "codecs_string": _root_attr(codecs="aac-lc"),
    "format_version_bool": _root_attr(format_version=True),
    "format_version_float": _root_attr(format_version=1.0),
}


def _table_values(column: str, value: Any, row: int = 1) -> Callable[[Path], None]:
    """Rewrite one recordings value and its column checksum, as a crafted store would."""

    def mutate(path: Path) -> None:
        array = zarr.open_array(path / "recordings" / column, mode="r+")
        values = np.asarray(array[:])
        values[row] = value
        array[:] = values
        group = zarr.open_group(path, mode="r+")
        meta = dict(group.attrs["aacdata"])
        n = meta["num_recordings"]
        meta["column_crc32"] = {**meta["column_crc32"], column: column_crc32(column, values[:n].tolist())}
        group.attrs["aacdata"] = meta

    return mutate


TABLE_MUTATIONS: dict[str, Callable[[Path], None]] = {
    "sample_rate_0": _table_values("sample_rate", 0),
    "num_channels_huge": _table_values("num_channels", 2**31),
    "num_samples_huge": _table_values("num_samples", 2**62),
    "metadata_not_json": _table_values("metadata", "{not json"),
}
TABLE_MUTATIONS_SLOW: dict[str, Callable[[Path], None]] = {
    "sample_rate_huge": _table_values("sample_rate", 2**32 - 1),
    "num_channels_0": _table_values("num_channels", 0),
    "num_samples_2_64": _table_values("num_samples", 2**64 - 1),
    "encoder_delay_huge": _table_values("encoder_delay", 2**32 - 1),
    "num_frames_0": _table_values("num_frames", 0),
    "num_bytes_2_63": _table_values("num_bytes", 2**63),
    "frame_start_shifted": _table_values("frame_start", 5),
    "byte_start_shifted": _table_values("byte_start", 1),
    "crc32_other": _table_values("crc32", 12345),
    "flags_all": _table_values("flags", 2**32 - 1),
    "bitrate_0": _table_values("bitrate", 0),
    "source_list": _table_values("source", "[1, 2]"),
    "source_nested": _table_values("source", _deep(100_000)),
    "metadata_string": _table_values("metadata", '"text"'),
    "id_duplicate": _table_values("id", "a.wav"),
    "id_empty": _table_values("id", ""),
}


@dataclass(frozen=True)
class Case:
    name: str
    target: str | None  # a file of the store, relative to its root; None: the mutation takes the store
    mutate: Callable[[Path], None]


def _cases(clean_files: tuple[str, ...], *, slow: bool) -> Iterator[Case]:
    files = dict(FILE_MUTATIONS, **(FILE_MUTATIONS_SLOW if slow else {}))
    array_meta = dict(ARRAY_META_MUTATIONS, **(ARRAY_META_MUTATIONS_SLOW if slow else {}))
    for rel in clean_files:
        for name, mutate in files.items():
            yield Case(f"{rel}:{name}", rel, mutate)
        if rel.endswith("zarr.json") and rel != "zarr.json" and rel != "recordings/zarr.json":
            for name, mutate in array_meta.items():
                yield Case(f"{rel}:{name}", rel, mutate)
    root = dict(ROOT_MUTATIONS, **(ROOT_MUTATIONS_SLOW if slow else {}))
    for name, mutate in root.items():
        yield Case(f"root:{name}", "zarr.json", mutate)
    table = dict(TABLE_MUTATIONS, **(TABLE_MUTATIONS_SLOW if slow else {}))
    for name, mutate in table.items():
        yield Case(f"table:{name}", None, mutate)


# The layout's files, as a clean store of SOURCES holds them (checked against the store).
NODES = (
    "adts",
    "index",
    "frame_crc",
    *(f"recordings/{c}" for c in (
        "bandwidth_hz", "bitrate", "bits_per_sample", "byte_start", "codec", "crc32", "encoder_delay", "flags",
        "frame_samples", "frame_start", "id", "metadata", "num_bytes", "num_channels", "num_frames", "num_samples",
        "sample_rate", "source", "stream_sample_rate",
    )),
)  # fmt: skip
CHUNK_FILE = {"adts": "adts/c/0", "index": "index/c/0/0"}
LAYOUT_FILES = tuple(
    sorted(
        ["zarr.json", "recordings/zarr.json"]
        + [f"{n}/zarr.json" for n in NODES]
        # No chunk for the flags, codec and bits_per_sample columns: all their values are the fill value.
        + [
            CHUNK_FILE.get(n, f"{n}/c/0")
            for n in NODES
            if n not in ("recordings/flags", "recordings/codec", "recordings/bits_per_sample")
        ]
    )
)

# The default suite: every mutation once, on a representative node of each kind.
FAST_TARGETS = {
    "adts/c/0": ("flip_middle", "truncate_half", "delete", "directory"),
    "index/c/0/0": ("flip_middle", "truncate_half", "delete", "directory"),
    "frame_crc/c/0": ("flip_middle", "truncate_half", "directory"),
    "recordings/sample_rate/c/0": ("flip_middle", "truncate_half", "delete", "directory"),
    "recordings/stream_sample_rate/c/0": ("flip_middle", "delete"),
    "recordings/bandwidth_hz/zarr.json": ("wrong_dtype", "delete"),
    "recordings/frame_samples/c/0": ("flip_middle", "delete"),
    "recordings/id/c/0": ("truncate_half", "directory"),
    "recordings/metadata/c/0": ("flip_middle", "truncate_half"),
    "index/zarr.json": (
        "flip_middle", "truncate_half", "delete", "directory", "chunk_shape_0", "wrong_dtype", "shape_1e15",
        "nested_json",
    ),
    "adts/zarr.json": ("chunk_shape_0", "shape_1e15", "directory"),
    "frame_crc/zarr.json": ("wrong_dtype",),
    "recordings/num_samples/zarr.json": ("wrong_dtype", "shape_1e15", "nested_json", "delete"),
    "recordings/source/zarr.json": ("wrong_dtype",),
    "recordings/zarr.json": ("truncate_half", "directory"),
    "zarr.json": ("flip_middle", "truncate_half", "directory"),
}  # fmt: skip


def _fast_cases() -> list[Case]:
    out = []
    for case in _cases(LAYOUT_FILES, slow=False):
        group, _, name = case.name.rpartition(":")
        if group in ("root", "table") or name in FAST_TARGETS.get(group, ()):
            out.append(case)
    return out


# ---------------------------------------------------------------------- the checks


class Outcome:
    """What the ways into one damaged store gave: per step, 'ok' or the error's class name."""

    def __init__(self) -> None:
        self.steps: dict[str, str] = {}

    def attempt(self, step: str, fn: Callable[[], Any]) -> Any:
        """Run one step: an AACDataError is an accepted outcome, anything else fails the test."""
        try:
            result = fn()
        except AACDataError as e:
            self.steps[step] = f"{type(e).__name__}: {e}" if str(e) else f"{type(e).__name__} WITHOUT A MESSAGE"
            return None
        self.steps[step] = "ok"
        return result


def _equal(a: Any, b: Any) -> bool:
    return isinstance(a, np.ndarray) and a.shape == b.shape and a.tobytes() == b.tobytes()


def _run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    code = main(list(argv))
    out = capsys.readouterr()
    assert "Traceback" not in out.err
    assert code in (0, 1), f"aacdata {argv[0]} exited {code}: {out.err}"
    return code, out.out


def _check_damaged(
    path: Path, clean: Clean, work: Path, capsys: pytest.CaptureFixture[str], *, thorough: bool
) -> Outcome:
    o = Outcome()
    # Open, then read every recording: the clean samples or an aacdata error.
    store = o.attempt("open", lambda: AACStore.open(path))
    reads_ok = store is not None
    if store is not None:
        with store:
            for rid in clean.ids:
                got = o.attempt(f"read {rid}", lambda rid=rid: store.read(rid, 0, store.recording(rid).num_samples))
                assert got is None or _equal(got, clean.pcm[rid]), f"{rid}: wrong samples from a damaged store"
                reads_ok &= got is not None
                got = o.attempt(f"adts {rid}", lambda rid=rid: store.adts_bytes(rid))
                assert got is None or got == clean.adts[rid], f"{rid}: wrong bytes from a damaged store"
            many = o.attempt("read_many", lambda: store.read_many([(r, 0, len(clean.pcm[r][0])) for r in clean.ids]))
            assert many is None or all(_equal(a, clean.pcm[r]) for a, r in zip(many, clean.ids, strict=True))
            summary = o.attempt("summary", store.summary)
            assert summary is None or summary["num_recordings"] == len(clean.ids)
    # The dataset: raise gives the clean item or an error; skip gives a clean item (maybe a
    # later one, as the replacement) or an error, never another exception.
    for on_error in ("raise", "skip"):
        ds = o.attempt(f"dataset {on_error}", lambda on_error=on_error: _dataset(path, on_error))
        if ds is None:
            continue
        for i in range(len(clean.items) if thorough else NUM_ITEMS):
            item = o.attempt(f"item {on_error} {i}", lambda i=i, ds=ds: ds[i])
            if item is None:
                continue
            candidates = clean.items[i : i + 1] if on_error == "raise" else clean.items[i:] + clean.items[:i]
            assert any(torch.equal(item, c) for c in candidates), f"dataset item {i} ({on_error}) is wrong"
    # verify: a report (or an error naming why the store cannot be opened at all).
    checking = o.attempt("open unchecked", lambda: AACStore.open(path, check_table=False))
    verified_ok = False
    if checking is not None:
        with checking:
            report = o.attempt("verify", checking.verify)
        verified_ok = report is not None and report.ok
    code, out = _run_cli(capsys, "verify", str(path), "--no-progress")
    assert (code == 0) == verified_ok, out
    if verified_ok:  # verify calls it clean: then everything reads as the clean store
        assert reads_ok and all(v == "ok" for v in o.steps.values()), o.steps
    _run_cli(capsys, "info", str(path))
    # export: exit 1 and nothing written, or the clean samples and bytes.
    for rid in clean.ids if thorough else clean.ids[1:2]:
        for suffix in (".wav", ".aac"):
            out_file = work / f"export{suffix}"
            code, _ = _run_cli(capsys, "export", str(path), rid, str(out_file))
            if code == 0:
                if suffix == ".aac":
                    assert out_file.read_bytes() == clean.adts[rid]
                else:
                    assert _equal(_read_wav(out_file), clean.pcm[rid])
                out_file.unlink()
            else:
                assert not out_file.exists()
    # repair: what it keeps reads as the clean store; it exits 0 only when it dropped nothing.
    new = work / "repaired.zarr"
    code, out = _run_cli(capsys, "repair", str(path), "-o", str(new), "--no-progress")
    assert code == 1 or "dropped: " not in out, out
    if new.exists() and (new / "zarr.json").exists():
        with AACStore.open(new) as repaired:
            assert repaired.verify().ok
            for rec in repaired:
                assert _equal(repaired.read(rec, 0, rec.num_samples), clean.pcm[rec.id])
    return o


def _read_wav(path: Path) -> np.ndarray:
    """A float WAV file as float32 ``(C, T)``."""
    parts = []
    with av.open(str(path)) as container:
        for frame in container.decode(audio=0):
            a = frame.to_ndarray()
            if not frame.format.is_planar:  # interleaved: (1, T * C)
                a = a.reshape(-1, frame.layout.nb_channels).T
            parts.append(a)
    return np.ascontiguousarray(np.concatenate(parts, axis=1), dtype=np.float32)


def _damaged_copy(clean: Clean, case: Case, work: Path) -> Path:
    path = work / "damaged.zarr"
    shutil.copytree(clean.path, path)
    if case.target is None:
        case.mutate(path)
    else:
        case.mutate(path / case.target)
    return path


def _sweep(
    clean: Clean, cases: list[Case], tmp_path: Path, capsys: pytest.CaptureFixture[str], *, thorough: bool = False
) -> list[str]:
    """Run every case; return what went wrong, one line per failing case."""
    failures = []
    for k, case in enumerate(cases):
        work = tmp_path / f"case{k}"
        work.mkdir()
        path = _damaged_copy(clean, case, work)
        try:
            outcome = _check_damaged(path, clean, work, capsys, thorough=thorough)
            assert not any(v.endswith("WITHOUT A MESSAGE") for v in outcome.steps.values()), outcome.steps
        except AssertionError as e:
            failures.append(f"{case.name}: {e}")
        except Exception as e:  # noqa: BLE001 - the finding: an exception that is not an AACDataError
            failures.append(f"{case.name}: raw {type(e).__name__}: {e}")
        shutil.rmtree(work)
    return failures


# ---------------------------------------------------------------------- tests


def test_layout_files_are_the_store(clean: Clean) -> None:
    """The sweep's list of files is the store's: no node escapes it."""
    assert clean.files == LAYOUT_FILES


@pytest.mark.parametrize("case", _fast_cases(), ids=lambda c: c.name)
def test_damage(clean: Clean, case: Case, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    failures = _sweep(clean, [case], tmp_path, capsys)
    assert not failures, failures[0]


@pytest.mark.slow
def test_damage_full_sweep(clean: Clean, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Every mutation on every file of the store (~750 damaged stores)."""
    cases = list(_cases(LAYOUT_FILES, slow=True))
    assert len(cases) > 700
    failures = _sweep(clean, cases, tmp_path, capsys, thorough=True)
    assert not failures, f"{len(failures)} of {len(cases)} damaged stores:\n" + "\n".join(failures)


# ---------------------------------------------------------------------- specific findings


def _copy(clean: Clean, tmp_path: Path) -> Path:
    path = tmp_path / "store.zarr"
    shutil.copytree(clean.path, path)
    return path


def test_damaged_index_chunk_is_reported_per_recording_and_verify_goes_on(
    clean: Clean, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _copy(clean, tmp_path)
    chunk = path / "index" / "c" / "0" / "0"
    chunk.write_bytes(chunk.read_bytes()[:20])
    with AACStore.open(path) as st:
        with pytest.raises(aacdata.CorruptDataError, match=r"index: chunk c/0/0 cannot be read"):
            st.read("a.wav", 0, 100)
        report = st.verify()
    assert report.bad_ids == clean.ids  # one index chunk holds every recording's rows
    assert all("index: chunk c/0/0" in reason for _, reason in report.problems)
    code, out = _run_cli(capsys, "verify", str(path), "--no-progress")
    assert code == 1 and "0 of 3 recordings ok" in out
    # The dataset skips what it cannot read, to the end of its replacements.
    ds = _dataset(path, "skip")
    with pytest.raises(aacdata.CorruptDataError, match="no readable window"):
        ds[0]


def test_missing_column_crc32_is_damage(clean: Clean, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _copy(clean, tmp_path)
    _root_attr(column_crc32=_DROP)(path / "zarr.json")
    with pytest.raises(aacdata.StoreFormatError, match="column_crc32=None; expected an object"):
        AACStore.open(path)
    with AACStore.open(path, check_table=False) as st:
        report = st.verify()
    assert not report.ok and any("column_crc32" in p for p in report.store_problems)
    code, out = _run_cli(capsys, "verify", str(path), "--no-progress")
    assert code == 1 and "damaged: " in out and "column_crc32" in out


@pytest.mark.parametrize(
    ("value", "shown"),
    [("3", "num_recordings='3'"), (True, "num_recordings=True"), (3.0, "num_recordings=3.0")],
)
def test_counts_must_be_integers(clean: Clean, tmp_path: Path, value: Any, shown: str) -> None:
    path = _copy(clean, tmp_path)
    _root_attr(num_recordings=value)(path / "zarr.json")
    with pytest.raises(aacdata.StoreFormatError, match=f"{shown}; expected an integer"):
        AACStore.open(path)


def test_export_aac_checks_the_bytes(clean: Clean, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _copy(clean, tmp_path)
    with AACStore.open(path) as st:
        rec = st.recording("b.wav")
    chunk = path / "adts" / "c" / "0"
    data = bytearray(chunk.read_bytes())
    data[rec.byte_start + rec.num_bytes // 2] ^= 0x01
    chunk.write_bytes(bytes(data))
    out = tmp_path / "b.aac"
    code = main(["export", str(path), "b.wav", str(out)])
    err = capsys.readouterr().err
    assert code == 1 and "fails its checksum" in err and "b.wav" in err
    assert not out.exists()
    with AACStore.open(path) as st:
        assert st.adts_bytes("b.wav", check=False) == bytes(data[rec.byte_start : rec.byte_start + rec.num_bytes])


def test_ids_are_shown_escaped(clean: Clean, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """An id cannot forge lines of verify's or repair's output, nor move the terminal's cursor."""
    path = _copy(clean, tmp_path)
    evil = "b.wav\nbad: a.wav: forged\x1b[2J"
    _table_values("id", evil, row=1)(path)
    with AACStore.open(path) as st:
        rec = st.recording(evil)
    chunk = path / "adts" / "c" / "0"
    data = bytearray(chunk.read_bytes())
    data[rec.byte_start + rec.num_bytes // 2] ^= 0x01
    chunk.write_bytes(bytes(data))
    for argv in (["verify", str(path), "--no-progress"], ["repair", str(path), "-o", str(tmp_path / "new.zarr")]):
        code, out = _run_cli(capsys, *argv, "--no-progress") if argv[0] == "repair" else _run_cli(capsys, *argv)
        assert code == 1
        assert "\x1b" not in out
        named = [line for line in out.splitlines() if line.startswith(("bad: ", "dropped: "))]
        assert named and all(repr(evil) in line for line in named), out
        assert not any(line.startswith("bad: a.wav") for line in out.splitlines())


def _plant(path: Path, rel: str, outside: Path) -> None:
    """Replace a file or folder of the store by a link to a copy of it outside the store."""
    target = path / rel
    copy = outside / rel.replace("/", "_")
    if target.is_dir():
        shutil.copytree(target, copy)
        shutil.rmtree(target)
    else:
        shutil.copy(target, copy)
        target.unlink()
    target.symlink_to(copy, target_is_directory=copy.is_dir())


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("rel", ["adts/c/0", "adts/c", "index", "recordings/id/c", "recordings"])
def test_appending_refuses_links(clean: Clean, tmp_path: Path, rel: str, capsys: pytest.CaptureFixture[str]) -> None:
    path = _copy(clean, tmp_path)
    outside = tmp_path / "outside"
    outside.mkdir()
    _plant(path, rel, outside)
    before = _tree(outside)
    with AACStore.open(path) as st:
        if rel == "adts/c/0":  # issue 17: a chunk file that is a link out of the store is damage
            with pytest.raises(CorruptDataError, match=r"symbolic link to .*outside the store"):
                st.read("a.wav", 0, 1000)
        else:  # reading through a linked folder is harmless: the data is the same
            assert _equal(st.read("a.wav", 0, 1000), clean.pcm["a.wav"][:, :1000])
    with pytest.raises(StoreWriteError, match="symbolic link") as info:
        AACStore.open(path, "a")
    assert rel in str(info.value)
    source = tmp_path / "new" / "d.wav"
    make_file(source, "tone", 5000, sample_rate=16_000)
    with pytest.raises(AACDataError):
        aacdata.import_audio(source.parent, path, workers=0, progress=False, on_error="raise")
    assert main(["import", str(source.parent), "-o", str(path), "--workers", "0", "--no-progress"]) != 0
    assert "symbolic link" in capsys.readouterr().err
    assert _tree(outside) == before


def test_verify_reports_a_row_with_absurd_values_and_continues(clean: Clean, tmp_path: Path) -> None:
    path = _copy(clean, tmp_path)
    _table_values("num_channels", 2**31, row=1)(path)
    with pytest.raises(aacdata.StoreFormatError, match=r"recordings/num_channels row 1 \(recording 'b.wav'\)"):
        AACStore.open(path)
    with AACStore.open(path, check_table=False) as st:
        report = st.verify()
        assert report.bad_ids == ("b.wav",)
        with pytest.raises(aacdata.CorruptDataError, match="num_channels"):
            st.read("b.wav", 0, 10)
        assert _equal(st.read("a.wav", 0, st.recording("a.wav").num_samples), clean.pcm["a.wav"])
