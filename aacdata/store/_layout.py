"""The store format: Zarr v3 node names, chunking, attributes, version check.

A store holds a fixed number of arrays whatever the number of recordings::

    /            attributes["aacdata"]: format, codec, committed counts
    /adts        uint8  (num_bytes,)      every recording's ADTS frames back to back
    /index       uint64 (num_frames, 3)   [byte_offset, frame_size, sample_pos] per frame
    /frame_crc   uint32 (num_frames,)     CRC-32 of each frame's bytes, checked on every read
    /recordings/<column>  1-D, one row per recording

Version 2 adds recordings columns (:data:`V2_COLUMNS`): the stored stream's bandwidth,
the rate its headers carry (time expansion), its frame codec (AAC-LC or FLAC: both in the
same byte array and index), samples per frame and FLAC's sample size; the root attribute
names the codecs by number instead of one codec. Version-1 stores are read as if they
had the columns (bandwidth unknown, no time expansion, AAC-LC, 1024 samples a frame), and
the first commit to one adds them for the rows it holds and moves it to version 2.

Only what the root attribute counts declare is committed; rows and bytes past them are
the garbage of an interrupted import, which the next import overwrites.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import warnings
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, TypeGuard

import numpy as np
import zarr
from zarr.codecs import BloscCodec
from zarr.core.sync import sync
from zarr.errors import GroupNotFoundError

from ..codecs import _registry
from ..codecs._adts import SAMPLES_PER_FRAME
from ..codecs._codec import CODEC_AAC_LC
from ..errors import AACDataError, CorruptDataError, StoreFormatError, StoreNotFoundError
from . import _fence, _lock, _remote
from ._chunks import CheckedLocalStore

FORMAT_VERSION = 2
"""The version new stores and commits write."""
READABLE_VERSIONS = (1, 2)
ATTRIBUTE = "aacdata"
ADTS = "adts"
INDEX = "index"
FRAME_CRC = "frame_crc"
RECORDINGS = "recordings"

ADTS_CHUNK_BYTES = 1 << 19
"""512 KiB plain chunks: a window's bytes (~20 KB) sit in one file (rarely two), and the
padded last chunk stays under 0.7 % of the payload of an hour of audio (~72 MB)."""
INDEX_CHUNK_ROWS = 1 << 12
"""Rows per chunk of ``/index`` and ``/frame_crc`` in new stores (~95 s of 44.1 kHz audio):
the first window read in a chunk decodes and checks the whole chunk (~60 µs at 4096 rows,
~400 µs for the 16384 rows of stores made by aacdata 0.1), and a chunk serves the windows of
every recording in it."""
RECORDING_CHUNK_ROWS = 1 << 14

V1_NUMERIC_COLUMNS: dict[str, str] = {
    "frame_start": "uint64",
    "num_frames": "uint64",
    "byte_start": "uint64",
    "num_bytes": "uint64",
    "num_samples": "uint64",
    "sample_rate": "uint32",
    "num_channels": "uint32",
    "encoder_delay": "uint32",
    "bitrate": "uint32",
    "crc32": "uint32",
    "flags": "uint32",
}
"""Numeric recording columns of version 1; ``crc32`` is zlib's CRC-32 of the recording's
stored bytes, ``flags`` a bit set (:data:`FLAG_FRESH_DECODER`, :data:`FLAG_PCE`)."""
V2_COLUMNS: dict[str, str] = {
    "bandwidth_hz": "uint32",
    "stream_sample_rate": "uint32",
    "codec": "uint32",
    "frame_samples": "uint32",
    "bits_per_sample": "uint32",
}
"""Columns version 2 adds. ``bandwidth_hz``: the highest frequency the stored stream
carries (0: unknown, for rows of version 1); ``stream_sample_rate``: the rate the stored
frames are labelled with, which differs from ``sample_rate`` (the true rate) where a
recording is time-expanded; ``codec``: the frame codec (:data:`CODECS`);
``frame_samples``: decoded samples per frame (1024 for AAC, the block size for FLAC);
``bits_per_sample``: FLAC's sample size (0 for AAC)."""
NUMERIC_COLUMNS: dict[str, str] = {**V1_NUMERIC_COLUMNS, **V2_COLUMNS}
"""Numeric recording columns of the current version."""
MAX_FRAME_BYTES = max(codec.max_frame_bytes_limit for codec in _registry.CODECS.values())
"""The largest frame any codec allows (FLAC's 24-bit frame size)."""
CODECS = {number: codec.name for number, codec in _registry.CODECS.items()}
"""Frame codecs by their number in the ``codec`` column."""

FLAG_FRESH_DECODER = 1
"""The stream uses PNS (passed through from a source): decode every window with a new
decoder, since PNS noise depends on decoder state that flushing does not reset."""
FLAG_PCE = 2
"""The stream's ADTS headers say ``channel_config = 0``: its layout (6, 7, 8 or 16
full-band channels) is the one :func:`aacdata.codecs._adts.audio_specific_config` gives, which
decoders are configured with."""
KNOWN_FLAGS = FLAG_FRESH_DECODER | FLAG_PCE
TEXT_COLUMNS = ("id", "source", "metadata")
"""String columns: the recording id and two JSON objects (source info, user metadata)."""

INDEX_CODECS = (BloscCodec(cname="lz4", clevel=5, shuffle="shuffle", typesize=8),)
"""Compression of ``/index`` chunks in new stores: LZ4 decompresses a chunk in ~12 µs
(Zstd, the codec of stores made by aacdata 0.1: ~45 µs, for ~1.3 bytes a frame less)."""
FRAME_CRC_CODECS: tuple[Any, ...] | None = None
"""Compression of ``/frame_crc`` chunks in new stores: none (CRC-32s do not compress)."""


@dataclass(frozen=True, slots=True)
class Counts:
    """The committed extent of a store."""

    num_recordings: int = 0
    num_frames: int = 0
    num_bytes: int = 0


def numeric_columns(version: int) -> dict[str, str]:
    """The numeric recordings columns a store of format ``version`` holds."""
    return V1_NUMERIC_COLUMNS if version == 1 else NUMERIC_COLUMNS


def implied_columns(table: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Values of the version-2 columns for rows written by version 1 (given their
    ``sample_rate``): bandwidth unknown (0), frames labelled with the true rate, AAC-LC."""
    rates = np.asarray(table["sample_rate"], dtype=np.int64)
    return {
        "bandwidth_hz": np.zeros_like(rates),
        "stream_sample_rate": rates.copy(),
        "codec": np.full_like(rates, CODEC_AAC_LC),
        "frame_samples": np.full_like(rates, SAMPLES_PER_FRAME),
        "bits_per_sample": np.zeros_like(rates),
    }


def format_version(attrs: Mapping[str, Any]) -> int:
    """The format version of a store whose root attributes passed :func:`parse_root_attributes`."""
    meta = attrs.get(ATTRIBUTE)
    version = meta.get("format_version") if isinstance(meta, Mapping) else None
    return version if _is_int(version) and version in READABLE_VERSIONS else FORMAT_VERSION


def root_attributes(counts: Counts, column_crc32: Mapping[str, int] | None = None) -> dict[str, Any]:
    """The ``aacdata`` root attribute: format, committed counts, and a CRC-32 of each
    recordings column over its committed rows (so that a lost or damaged table chunk,
    which Zarr would read back as fill values, is noticed). Always the current version."""
    return {
        "format_version": FORMAT_VERSION,
        "codecs": {str(number): name for number, name in CODECS.items()},
        "checksum": "crc32",
        "num_recordings": counts.num_recordings,
        "num_frames": counts.num_frames,
        "num_bytes": counts.num_bytes,
        "column_crc32": dict(column_crc32 or dict.fromkeys((*NUMERIC_COLUMNS, *TEXT_COLUMNS), 0)),
    }


def column_crc32(name: str, values: Any, start: int = 0) -> int:
    """CRC-32 of recordings-column values, continuing from ``start`` (for appended rows).

    Numbers are hashed as their stored little-endian bytes, strings as UTF-8 each
    followed by a NUL byte.
    """
    dtype = NUMERIC_COLUMNS.get(name)
    if dtype is not None:
        return zlib.crc32(np.asarray(values, dtype=np.dtype(dtype).newbyteorder("<")).tobytes(), start)
    crc = start
    for text in values:
        crc = zlib.crc32(str(text).encode("utf-8") + b"\0", crc)
    return crc


def stored_column_crc32(attrs: Mapping[str, Any]) -> dict[str, int]:
    """The per-column CRC-32s recorded at the last commit (empty for a store without them)."""
    meta = attrs.get(ATTRIBUTE)
    crcs = meta.get("column_crc32") if isinstance(meta, Mapping) else None
    if not isinstance(crcs, Mapping):
        return {}
    return {str(k): int(v) for k, v in crcs.items() if isinstance(v, int)}


def column_crc32_problem(attrs: Mapping[str, Any], where: str) -> str | None:
    """What is wrong with the ``column_crc32`` entry of the root attribute, if anything:
    every recordings column needs a CRC-32 (an integer in ``[0, 2**32)``), since a column
    without one would not be checked at all."""
    meta = attrs.get(ATTRIBUTE)
    crcs = meta.get("column_crc32") if isinstance(meta, Mapping) else None
    if not isinstance(crcs, Mapping):
        return (
            f"{where}: the '{ATTRIBUTE}' attribute has column_crc32={_short(crcs)}; expected an object "
            "with the CRC-32 of every recordings column (the store's metadata is damaged)"
        )
    for name in (*numeric_columns(format_version(attrs)), *TEXT_COLUMNS):
        value = crcs.get(name)
        if not _is_int(value) or not 0 <= value < 1 << 32:
            return (
                f"{where}: the '{ATTRIBUTE}' attribute has column_crc32[{name!r}]={_short(value)}; expected "
                "an integer in [0, 2**32) (the store's metadata is damaged)"
            )
    return None


MAX_COUNT = 1 << 52
"""Largest committed count accepted (frames x 1024 samples must fit in 63 bits)."""


def parse_root_attributes(attrs: Mapping[str, Any], where: str) -> Counts:
    """Validate the ``aacdata`` root attribute; return the committed counts."""
    meta = attrs.get(ATTRIBUTE)
    if not isinstance(meta, Mapping):
        raise StoreFormatError(f"{where} is a Zarr group but not an aacdata store (no '{ATTRIBUTE}' attribute)")
    version = meta.get("format_version")
    if not _is_int(version) or version not in READABLE_VERSIONS:
        raise StoreFormatError(
            f"{where} has aacdata format_version {_short(version)}; this aacdata reads versions "
            f"{', '.join(map(str, READABLE_VERSIONS))} (upgrade aacdata, or re-import the corpus)"
        )
    # Version 1 held one codec, named here; later versions name it per recording (``codec``).
    expected: dict[str, Any] = {"codec": "aac-lc", "framing": "adts", "samples_per_frame": SAMPLES_PER_FRAME}
    if version != 1:
        expected = {"codecs": {str(number): name for number, name in CODECS.items()}}
    for key, value in expected.items():
        got = meta.get(key)
        if type(got) is not type(value) or got != value:
            raise StoreFormatError(f"{where} has {key}={_short(got)}; expected {value!r}")
    values: list[int] = []
    for key in ("num_recordings", "num_frames", "num_bytes"):
        value = meta.get(key)
        if not _is_int(value) or not 0 <= value <= MAX_COUNT:
            kind = "negative counts" if _is_int(value) and value < 0 else "damaged counts"
            raise StoreFormatError(
                f"{where}/zarr.json has {kind} in its '{ATTRIBUTE}' attribute: {key}={_short(value)}; expected "
                f"an integer from 0 to 2**52 (the store's metadata is damaged; run `aacdata verify {where}`)"
            )
        values.append(value)
    counts = Counts(*values)
    # Every recording has at least one frame, every frame 7 to 8191 bytes (ADTS header, 13-bit
    # length), or in version 2 up to FLAC's limit.
    largest = 8191 if version == 1 else MAX_FRAME_BYTES
    if not (
        counts.num_recordings <= counts.num_frames
        and 7 * counts.num_frames <= counts.num_bytes <= largest * counts.num_frames
    ):
        raise StoreFormatError(
            f"{where}/zarr.json: the '{ATTRIBUTE}' attribute counts {counts.num_recordings} recordings, "
            f"{counts.num_frames} frames and {counts.num_bytes} bytes, which cannot belong together "
            f"(each recording has frames of 7 to {largest} bytes); the store's metadata is damaged"
        )
    return counts


def _is_int(value: Any) -> TypeGuard[int]:
    """An integer proper: JSON numbers with a fraction or exponent, strings and booleans are not."""
    return type(value) is int


def _short(value: Any, limit: int = 80) -> str:
    """``repr(value)``, cut to ``limit`` characters (a damaged attribute may be huge or deep)."""
    try:
        text = repr(value)
    except RecursionError:
        return f"<a {type(value).__name__} nested too deeply to show>"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def create_layout(store: Any, where: str | None = None) -> zarr.Group:
    """Create a new, empty store under the write lock the caller holds: the root group with
    its attribute first (in one write of ``zarr.json``), then the arrays. A node that exists
    is never overwritten (another creator's, or its commits'); a process killed in between
    leaves a store whose counts are zero and some arrays missing, which
    :func:`complete_layout` finishes."""
    where = where if where is not None else _remote.describe(store)
    _create_missing_nodes(store, where)
    return zarr.open_group(store, mode="r+")


def complete_layout(group: zarr.Group, where: str | None = None) -> None:
    """Create the missing arrays of an empty store whose creation was interrupted, or is
    under way in another import.

    Takes the write lock (unless this process holds it): a store that another import is
    creating raises :class:`~aacdata.errors.StoreLockedError`. Under the lock the counts are
    read again; a store that has commits by now is left as it is, and no node that exists
    is ever overwritten.
    """
    store = group.store
    where = where if where is not None else _remote.describe(store)
    held = _lock.held_here(store)
    with _lock.acquire(store, where) if held is None else contextlib.nullcontext():
        root = zarr.open_group(store, mode="r")
        if parse_root_attributes(root.attrs.asdict(), where) != Counts():
            return  # the import that created it has finished and committed
        _create_missing_nodes(store, where)


def _layout_nodes() -> dict[str, Any]:
    """The ``zarr.json`` of every node of a new, empty store: key -> buffer."""
    nodes: dict[str, Any] = {}
    group = zarr.create_group(zarr.storage.MemoryStore(nodes), attributes={ATTRIBUTE: root_attributes(Counts())})
    group.create_array(
        ADTS,
        shape=(0,),
        dtype="uint8",
        chunks=(ADTS_CHUNK_BYTES,),
        compressors=None,
        fill_value=0,
        chunk_key_encoding={"name": "default", "separator": "/"},
    )
    group.create_array(
        INDEX, shape=(0, 3), dtype="uint64", chunks=(INDEX_CHUNK_ROWS, 3), compressors=INDEX_CODECS, fill_value=0
    )
    group.create_array(
        FRAME_CRC, shape=(0,), dtype="uint32", chunks=(INDEX_CHUNK_ROWS,), compressors=FRAME_CRC_CODECS, fill_value=0
    )
    rec = group.create_group(RECORDINGS)
    for name, dtype in NUMERIC_COLUMNS.items():
        rec.create_array(name, shape=(0,), dtype=dtype, chunks=(RECORDING_CHUNK_ROWS,), fill_value=0)
    with warnings.catch_warnings():
        # zarr flags its variable-length string dtype as not yet in the v3 core spec.
        warnings.simplefilter("ignore")
        for name in TEXT_COLUMNS:
            rec.create_array(name, shape=(0,), dtype=str, chunks=(RECORDING_CHUNK_ROWS,), fill_value="")
    return nodes


def _create_missing_nodes(store: Any, where: str) -> None:
    _fence.create_missing(store, where, dict(_nodes_now()))


def _nodes_key() -> str:
    """What the layout's nodes depend on (the module's chunking and codec settings)."""
    return repr((ADTS_CHUNK_BYTES, INDEX_CHUNK_ROWS, INDEX_CODECS, FRAME_CRC_CODECS, RECORDING_CHUNK_ROWS))


def _nodes_now() -> dict[str, Any]:
    """The layout's nodes for the settings in force, built once per setting."""
    key = _nodes_key()
    nodes = _LAYOUT_NODES.get(key)
    if nodes is None:
        nodes = _LAYOUT_NODES[key] = _layout_nodes()
    return nodes


def add_v2_columns(group: zarr.Group, values: Mapping[str, np.ndarray]) -> dict[str, zarr.Array[Any]]:
    """Create the columns version 2 adds in a version-1 store, holding ``values`` for its
    committed rows (the writer's first commit to such a store, under its lock). Arrays
    left by an upgrade that was interrupted are replaced: the root still says version 1,
    so nothing has read them."""
    rec = group[RECORDINGS]
    assert isinstance(rec, zarr.Group)
    out = {}
    for name, dtype in V2_COLUMNS.items():
        data = np.asarray(values[name], dtype=dtype)
        array = rec.create_array(
            name, shape=data.shape, dtype=dtype, chunks=(RECORDING_CHUNK_ROWS,), fill_value=0, overwrite=True
        )
        if data.size:
            array[:] = data
        out[name] = array
    return out


@dataclass(frozen=True, slots=True)
class Arrays:
    """The arrays of a store."""

    adts: zarr.Array[Any]
    index: zarr.Array[Any]
    frame_crc: zarr.Array[Any]
    columns: dict[str, zarr.Array[Any]]


class IncompleteStoreError(StoreFormatError):
    """A node of the layout is missing (for an empty store: its creation was interrupted)."""


MAX_TAIL_BYTES = 1 << 36
"""Largest uncommitted tail of ``/adts`` accepted (64 GiB: one interrupted commit). A
declared shape far past the committed end is damage, and would make the next import's
resize walk every chunk key up to it."""
MAX_TAIL_ROWS = 1 << 32
"""The same for ``/index`` and ``/frame_crc`` rows, and recordings rows."""
MAX_CHUNK_BYTES = 1 << 30
"""Largest chunk accepted (zarr allocates whole chunks when reading or writing)."""


def open_arrays(group: zarr.Group, where: str, counts: Counts | None = None, version: int = FORMAT_VERSION) -> Arrays:
    """The arrays of a store of format ``version``, checked: node types, dtypes, dimensions
    and chunk shapes (and, given the counts, long enough to hold them, and not absurdly
    longer). The recordings columns are those of ``version``."""
    node = ADTS
    try:
        adts = group[ADTS]
        node = INDEX
        index = group[INDEX]
        node = FRAME_CRC
        frame_crc = group[FRAME_CRC]
        node = RECORDINGS
        rec = group[RECORDINGS]
        if not isinstance(rec, zarr.Group):
            raise StoreFormatError(f"{where}/{RECORDINGS} is a Zarr array; expected a group of columns")
        columns = {}
        for name in (*numeric_columns(version), *TEXT_COLUMNS):
            node = f"{RECORDINGS}/{name}"
            columns[name] = rec[name]
    except KeyError:
        raise IncompleteStoreError(f"{where} lacks the node {node!r}; the store is incomplete") from None
    except StoreFormatError:
        raise
    # An unreadable zarr.json of a node: bad JSON or values, nested too deeply, a directory...
    except (ValueError, TypeError, AttributeError, RecursionError, OSError, OverflowError, MemoryError) as e:
        raise StoreFormatError(
            f"{where}/{node}/zarr.json is damaged ({type(e).__name__}: {_short(str(e), 200)})"
        ) from None
    adts = _check_array(adts, f"{where}/{ADTS}", "uint8", 1)
    index = _check_array(index, f"{where}/{INDEX}", "uint64", 2)
    if index.shape[1] != 3:
        raise StoreFormatError(
            f"{where}/{INDEX} has shape {index.shape}; expected (N, 3) rows of [byte_offset, frame_size, "
            "sample_pos] (the store's metadata is damaged)"
        )
    frame_crc = _check_array(frame_crc, f"{where}/{FRAME_CRC}", "uint32", 1)
    checked = {
        name: _check_array(column, f"{where}/{RECORDINGS}/{name}", NUMERIC_COLUMNS.get(name, "str"), 1)
        for name, column in columns.items()
    }
    if counts is not None:
        needed: list[tuple[str, Any, int, int]] = [
            (ADTS, adts, counts.num_bytes, MAX_TAIL_BYTES),
            (INDEX, index, counts.num_frames, MAX_TAIL_ROWS),
            (FRAME_CRC, frame_crc, counts.num_frames, MAX_TAIL_ROWS),
        ]
        needed += [(f"{RECORDINGS}/{n}", c, counts.num_recordings, MAX_TAIL_ROWS) for n, c in checked.items()]
        for name, array, rows, tail in needed:
            if array.shape[0] < rows:
                raise StoreFormatError(
                    f"{where}/{name} holds {array.shape[0]} rows but {rows} are committed; the store is damaged"
                )
            if array.shape[0] - rows > tail:
                raise StoreFormatError(
                    f"{where}/{name} declares {array.shape[0]} rows, {array.shape[0] - rows} past the "
                    f"{rows} committed (at most {tail} expected); its zarr.json is damaged"
                )
    return Arrays(adts, index, frame_crc, checked)


def _check_array(array: Any, where: str, dtype: str, ndim: int) -> zarr.Array[Any]:
    """A node must be an array of the layout's dtype and dimensions, with sane chunks."""
    if not isinstance(array, zarr.Array):
        raise StoreFormatError(f"{where} is a Zarr group; expected an array (the store is damaged)")
    got = array.dtype
    if dtype == "str":
        ok = getattr(got, "kind", None) in ("T", "O", "U")
    else:
        want = np.dtype(dtype)
        ok = isinstance(got, np.dtype) and (got.kind, got.itemsize) == (want.kind, want.itemsize)
    if not ok:
        raise StoreFormatError(
            f"{where} has dtype {got}; expected {dtype} (its zarr.json is damaged; run `aacdata verify`)"
        )
    if array.ndim != ndim:
        raise StoreFormatError(f"{where} has shape {array.shape}; expected a {ndim}-D array (its zarr.json is damaged)")
    grid = getattr(array.metadata, "chunk_grid", None)
    shapes = [tuple(array.chunks), tuple(getattr(grid, "chunk_shape", array.chunks))]
    itemsize = np.dtype(dtype).itemsize if dtype != "str" else 64
    for chunks in shapes:
        if len(chunks) != ndim or any(c <= 0 for c in chunks) or math.prod(chunks) * itemsize > MAX_CHUNK_BYTES:
            raise StoreFormatError(
                f"{where} has chunk shape {chunks}; expected {ndim} positive sizes of at most "
                f"{MAX_CHUNK_BYTES} bytes in all (its zarr.json is damaged)"
            )
    return array


# ---------------------------------------------------------------------- opening and creating


def open_root(
    path_or_url: Any, mode: str, *, storage_options: Mapping[str, Any] | None = None
) -> tuple[zarr.Group, str]:
    """The root group of the store at a local path, URL or zarr ``Store`` (created, empty,
    where ``mode="a"`` finds none), and the store's name for messages.

    Creation happens under the write lock, so that two imports racing to create a store do
    not build the layout over each other; opening errors say what is there instead.
    """
    where = _remote.describe(path_or_url)
    if _remote.is_local(path_or_url):
        local = _remote.local_path(path_or_url)
        if mode == "r":
            if not os.path.exists(local):
                raise StoreNotFoundError(f"no store at {where!r} (create one with `aacdata import SOURCES -o {where}`)")
            return _open_local(local, "r"), where
        if os.path.isfile(os.path.join(local, "zarr.json")):
            return _open_or_create_local(local, create=False), where
        with _lock.acquire(zarr.storage.LocalStore(local), where):
            return _open_or_create_local(local, create=True), where
    zstore = _remote.open_store(path_or_url, read_only=mode == "r", storage_options=storage_options)
    if mode == "a" and not _remote_exists(zstore, where):
        with _lock.acquire(zstore, where):
            return _open_remote(zstore, where, mode, create=True), where
    return _open_remote(zstore, where, mode), where


def _open_local(where: str, mode: Literal["r", "r+"]) -> zarr.Group:
    """Open the Zarr group at a local path, with errors that say what is there instead."""
    if not os.path.isdir(where):
        raise StoreFormatError(f"{where!r} is a file, not a store directory")
    meta_path = os.path.join(where, "zarr.json")
    if not os.path.exists(meta_path):
        hint = " (a Zarr v2 store?)" if os.path.exists(os.path.join(where, ".zgroup")) else ""
        raise StoreFormatError(f"{where!r} is a directory without zarr.json{hint}, not an aacdata store")
    try:
        with open(meta_path, "rb") as f:
            node_type = json.load(f).get("node_type")
    except (OSError, ValueError, AttributeError, RecursionError) as e:  # RecursionError: nested too deeply
        raise StoreFormatError(f"{where!r}: its zarr.json cannot be read ({type(e).__name__}: {e})") from None
    if node_type != "group":
        raise StoreFormatError(f"{where!r} is a Zarr {node_type or 'node'}, not an aacdata store (a group)")
    try:
        return zarr.open_group(CheckedLocalStore(where, read_only=mode == "r"), mode=mode)
    except (GroupNotFoundError, OSError, ValueError, KeyError, TypeError, RecursionError) as e:
        raise StoreFormatError(f"{where!r}: the Zarr group cannot be opened ({type(e).__name__}: {e})") from None


def _open_remote(zstore: Any, where: str, mode: str, *, create: bool = False) -> zarr.Group:
    # An outage is a RemoteStoreError (from _remote.RemoteStore, or here for other Store
    # objects), never "no store here": a caller may create a store where none is found.
    # ``create``: the caller holds the write lock, and a store found missing is created.
    try:
        exists = sync(zstore.exists("zarr.json"))
    except AACDataError:
        raise
    except Exception as e:  # any client error: name the store and the cause
        raise _remote.remote_error(where, "checking", "zarr.json", e) from e
    if not exists:
        if mode == "r" or not create:
            raise StoreNotFoundError(f"no store at {where!r} (create one with `aacdata import SOURCES -o {where}`)")
        return create_layout(zstore, where)
    try:
        group = zarr.open_group(zstore, mode="r" if mode == "r" else "r+")
    except (GroupNotFoundError, FileNotFoundError, ValueError, KeyError, TypeError, RecursionError) as e:
        raise StoreFormatError(f"{where!r}: the Zarr group cannot be opened ({e})") from None
    return group


def _remote_exists(zstore: Any, where: str) -> bool:
    try:
        return bool(sync(zstore.exists("zarr.json")))
    except Exception:  # noqa: BLE001 - opening the group reports the client error with its cause
        return True


def _open_or_create_local(where: str, *, create: bool) -> zarr.Group:
    """Open the store at a local path; ``create``: the caller holds the write lock, and an
    empty (or missing) directory becomes a new store."""
    if os.path.exists(where) and not os.path.isdir(where):
        raise StoreFormatError(f"{where!r} is a file, not a store directory; choose another output path")
    store = CheckedLocalStore(where)
    if os.path.exists(os.path.join(where, "zarr.json")):
        group = _open_local(where, "r+")
        parse_root_attributes(group.attrs.asdict(), where)
        return group
    if not create:
        raise StoreNotFoundError(f"no store at {where!r}: its zarr.json vanished while it was opened")
    if os.path.isdir(where) and set(os.listdir(where)) - {_lock.LOCK_FILE}:
        raise StoreFormatError(f"{where!r} is a non-empty directory without zarr.json; choose a new path for the store")
    return create_layout(store, where)


def is_damage(e: Exception, local: bool) -> bool:
    """Whether an exception from reading stored chunks means they are damaged: a codec or
    shape failure, or for a local store any I/O error (a chunk that is a directory, say).
    For a remote store an I/O error is an outage, not damage, and is not relabelled."""
    if isinstance(e, AACDataError):
        return False
    if isinstance(e, (RuntimeError, ValueError, TypeError, IndexError, KeyError, ArithmeticError, MemoryError)):
        return True
    return local and isinstance(e, OSError)


def chunk_keys(array: zarr.Array[Any], start: int, stop: int) -> str:
    """The key(s) of the chunks holding rows ``[start, stop)`` of an array, for messages."""
    try:
        rows = int(getattr(array.metadata.chunk_grid, "chunk_shape", array.chunks)[0])
        first, last = start // rows, max(stop - 1, start) // rows
        tail = (0,) * (array.ndim - 1)
        keys = [array.metadata.encode_chunk_key((ci, *tail)) for ci in dict.fromkeys((first, last))]
    except Exception:  # noqa: BLE001 - only a message: damaged metadata names no keys
        return f"rows {start}..{stop - 1}"
    return " .. ".join(keys)


def read_rows(array: zarr.Array[Any], node: str, start: int, stop: int, *, where: str, local: bool) -> np.ndarray:
    """Rows ``[start, stop)`` of a node of the store at ``where``; chunks that cannot be read
    or decoded (truncated, flipped bits, a directory in place of a file) raise
    :class:`CorruptDataError` naming the node and the chunks."""
    if stop <= start:
        return np.asarray(array[0:0])
    try:
        return np.asarray(array[start:stop])
    except Exception as e:
        if not is_damage(e, local):
            raise
        reason = f"{type(e).__name__}: {e}"
        raise CorruptDataError(
            f"{where}/{node}: chunk {chunk_keys(array, start, stop)} cannot be read "
            f"({reason[:200]}); the store is damaged (run `aacdata verify {where}`)"
        ) from e


_LAYOUT_NODES: dict[str, dict[str, Any]] = {_nodes_key(): _layout_nodes()}
"""The ``zarr.json`` of every node of a new store, made once when the module is imported:
a process forked from one with zarr's I/O thread running (a test runner, a DataLoader
parent) then creates stores without building zarr arrays in memory first, which could
hang in such a child."""
