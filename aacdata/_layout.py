"""The store format, version 1: Zarr v3 node names, chunking, attributes, version check.

A store holds a fixed number of arrays whatever the number of recordings::

    /            attributes["aacdata"]: format, codec, committed counts
    /adts        uint8  (num_bytes,)      every recording's ADTS frames back to back
    /index       uint64 (num_frames, 3)   [byte_offset, frame_size, sample_pos] per frame
    /frame_crc   uint32 (num_frames,)     CRC-32 of each frame's bytes, checked on every read
    /recordings/<column>  1-D, one row per recording

Only what the root attribute counts declare is committed; rows and bytes past them are
the garbage of an interrupted import, which the next import overwrites.
"""

from __future__ import annotations

import warnings
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import zarr
from zarr.codecs import BloscCodec

from ._adts import SAMPLES_PER_FRAME
from .errors import StoreFormatError

FORMAT_VERSION = 1
ATTRIBUTE = "aacdata"
ADTS = "adts"
INDEX = "index"
FRAME_CRC = "frame_crc"
RECORDINGS = "recordings"

ADTS_CHUNK_BYTES = 1 << 19
"""512 KiB plain chunks: a window's bytes (~20 KB) sit in one file (rarely two), and the
padded last chunk stays under 0.7 % of the payload of an hour of audio (~72 MB)."""
INDEX_CHUNK_ROWS = 1 << 14
"""Rows per chunk of ``/index`` and ``/frame_crc`` (~6 minutes of 44.1 kHz audio): small
enough that reading the rows of one recording decompresses little around them."""
RECORDING_CHUNK_ROWS = 1 << 14

NUMERIC_COLUMNS: dict[str, str] = {
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
"""Numeric recording columns; ``crc32`` is zlib's CRC-32 of the recording's stored bytes,
``flags`` a bit set (:data:`FLAG_FRESH_DECODER`)."""

FLAG_FRESH_DECODER = 1
"""The stream uses PNS (passed through from a source): decode every window with a new
decoder, since PNS noise depends on decoder state that flushing does not reset."""
TEXT_COLUMNS = ("id", "source", "metadata")
"""String columns: the recording id and two JSON objects (source info, user metadata)."""

_INDEX_CODECS = (BloscCodec(cname="zstd", clevel=5, shuffle="bitshuffle", typesize=8),)


@dataclass(frozen=True, slots=True)
class Counts:
    """The committed extent of a store."""

    num_recordings: int = 0
    num_frames: int = 0
    num_bytes: int = 0


def root_attributes(counts: Counts, column_crc32: Mapping[str, int] | None = None) -> dict[str, Any]:
    """The ``aacdata`` root attribute: format, committed counts, and a CRC-32 of each
    recordings column over its committed rows (so that a lost or damaged table chunk,
    which Zarr would read back as fill values, is noticed)."""
    return {
        "format_version": FORMAT_VERSION,
        "codec": "aac-lc",
        "framing": "adts",
        "samples_per_frame": SAMPLES_PER_FRAME,
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


def parse_root_attributes(attrs: Mapping[str, Any], where: str) -> Counts:
    """Validate the ``aacdata`` root attribute; return the committed counts."""
    meta = attrs.get(ATTRIBUTE)
    if not isinstance(meta, Mapping):
        raise StoreFormatError(f"{where} is a Zarr group but not an aacdata store (no '{ATTRIBUTE}' attribute)")
    version = meta.get("format_version")
    if version != FORMAT_VERSION:
        raise StoreFormatError(
            f"{where} has aacdata format_version {version!r}; this aacdata reads version {FORMAT_VERSION} "
            "(upgrade aacdata, or re-import the corpus)"
        )
    expected = {"codec": "aac-lc", "framing": "adts", "samples_per_frame": SAMPLES_PER_FRAME}
    for key, value in expected.items():
        if meta.get(key) != value:
            raise StoreFormatError(f"{where} has {key}={meta.get(key)!r}; expected {value!r}")
    try:
        counts = Counts(int(meta["num_recordings"]), int(meta["num_frames"]), int(meta["num_bytes"]))
    except (KeyError, TypeError, ValueError):
        raise StoreFormatError(f"{where} has damaged counts in its '{ATTRIBUTE}' attribute: {dict(meta)}") from None
    if min(counts.num_recordings, counts.num_frames, counts.num_bytes) < 0:
        raise StoreFormatError(f"{where} has negative counts in its '{ATTRIBUTE}' attribute: {dict(meta)}")
    return counts


def create_layout(store: Any) -> zarr.Group:
    """Create a new, empty store: the root group with its attribute first (in one write of
    ``zarr.json``), then the arrays. A process killed in between leaves a store whose
    counts are zero and some arrays missing, which :func:`complete_layout` finishes."""
    group = zarr.open_group(store, mode="w", attributes={ATTRIBUTE: root_attributes(Counts())})
    complete_layout(group)
    return group


def complete_layout(group: zarr.Group) -> None:
    """Create the arrays of an empty store (again, if a creation was interrupted)."""
    group.create_array(
        ADTS,
        shape=(0,),
        dtype="uint8",
        chunks=(ADTS_CHUNK_BYTES,),
        compressors=None,
        fill_value=0,
        chunk_key_encoding={"name": "default", "separator": "/"},
        overwrite=True,
    )
    group.create_array(
        INDEX,
        shape=(0, 3),
        dtype="uint64",
        chunks=(INDEX_CHUNK_ROWS, 3),
        compressors=_INDEX_CODECS,
        fill_value=0,
        overwrite=True,
    )
    group.create_array(FRAME_CRC, shape=(0,), dtype="uint32", chunks=(INDEX_CHUNK_ROWS,), fill_value=0, overwrite=True)
    rec = group.create_group(RECORDINGS, overwrite=True)
    for name, dtype in NUMERIC_COLUMNS.items():
        rec.create_array(name, shape=(0,), dtype=dtype, chunks=(RECORDING_CHUNK_ROWS,), fill_value=0)
    with warnings.catch_warnings():
        # zarr flags its variable-length string dtype as not yet in the v3 core spec.
        warnings.simplefilter("ignore")
        for name in TEXT_COLUMNS:
            rec.create_array(name, shape=(0,), dtype=str, chunks=(RECORDING_CHUNK_ROWS,), fill_value="")


@dataclass(frozen=True, slots=True)
class Arrays:
    """The arrays of a store."""

    adts: zarr.Array[Any]
    index: zarr.Array[Any]
    frame_crc: zarr.Array[Any]
    columns: dict[str, zarr.Array[Any]]


class IncompleteStoreError(StoreFormatError):
    """A node of the layout is missing (for an empty store: its creation was interrupted)."""


def open_arrays(group: zarr.Group, where: str, counts: Counts | None = None) -> Arrays:
    """The arrays of a store, checked (and, given the counts, long enough to hold them)."""
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
            raise StoreFormatError(f"{where}/{RECORDINGS} must be a group")
        columns = {}
        for name in (*NUMERIC_COLUMNS, *TEXT_COLUMNS):
            node = f"{RECORDINGS}/{name}"
            columns[name] = rec[name]
    except KeyError:
        raise IncompleteStoreError(f"{where} lacks the node {node!r}; the store is incomplete") from None
    except (ValueError, TypeError, AttributeError) as e:  # unreadable zarr.json of a node
        raise StoreFormatError(f"{where}/{node}/zarr.json is damaged ({type(e).__name__}: {e})") from None
    if not isinstance(adts, zarr.Array) or adts.dtype != np.uint8 or adts.ndim != 1:
        raise StoreFormatError(f"{where}/{ADTS} must be a 1-D uint8 array")
    if not isinstance(index, zarr.Array) or index.ndim != 2 or index.shape[1] != 3:
        raise StoreFormatError(f"{where}/{INDEX} must be a uint64 array of shape (N, 3)")
    if not isinstance(frame_crc, zarr.Array) or frame_crc.ndim != 1:
        raise StoreFormatError(f"{where}/{FRAME_CRC} must be a 1-D uint32 array")
    if not all(isinstance(c, zarr.Array) and c.ndim == 1 for c in columns.values()):
        raise StoreFormatError(f"{where}/{RECORDINGS} columns must be 1-D arrays")
    if counts is not None:
        needed: list[tuple[str, Any, int]] = [(ADTS, adts, counts.num_bytes), (INDEX, index, counts.num_frames)]
        needed.append((FRAME_CRC, frame_crc, counts.num_frames))
        needed += [(f"{RECORDINGS}/{n}", c, counts.num_recordings) for n, c in columns.items()]
        for name, array, rows in needed:
            if array.shape[0] < rows:
                raise StoreFormatError(
                    f"{where}/{name} holds {array.shape[0]} rows but {rows} are committed; the store is damaged"
                )
    return Arrays(adts, index, frame_crc, columns)  # type: ignore[arg-type]
