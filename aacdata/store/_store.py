"""AACStore: open a store, list its recordings, read exact sample windows, verify it."""

from __future__ import annotations

import difflib
import json
import logging
import operator
import os
import zlib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Literal, NamedTuple

import numpy as np
import zarr
from zarr.abc.store import Store

from ..annotations import Annotations
from ..audio._resample import RateSpan, parse_rate, samples_at, window_array, window_inside
from ..codecs._adts import SAMPLE_RATES
from ..codecs._codec import CODEC_AAC_LC, FrameCodec, StreamConfig
from ..codecs._decoder import DecoderPool
from ..codecs._registry import CODECS, codec_of
from ..errors import (
    AACDataError,
    CorruptDataError,
    RecordingNotFoundError,
    StoreFormatError,
    StoreWriteError,
)
from . import _annotation_store, _layout, _lock, _remote
from ._bytes import ByteReader
from ._chunks import DirectChunks
from ._index import FrameIndex
from ._remote import StoreTarget
from ._verify import Progress, VerifyReport, frames_failing_crc, verify_store

if TYPE_CHECKING:
    from ._remove import ChangeReport

log = logging.getLogger("aacdata")

DEFAULT_INDEX_CACHE_BYTES = 128 << 20
"""Per-process budget for decoded index chunks (frame sizes, offset anchors and CRC-32s,
~6 bytes a frame): ~20 million frames, ~130 hours of 44.1 kHz audio. Larger corpora work
within it: the least recently used chunks are dropped, and a miss decodes and checks one
chunk of 4096 frames (~60 µs; ~0.4 ms for the 16384-frame chunks of stores made by
aacdata 0.1), which serves every recording in it."""

MAX_SAMPLE_RATE = 1_000_000
"""Largest sample rate (Hz) a recordings row may hold; AAC itself stops at 96 kHz."""
MAX_CHANNELS = 255
"""Largest channel count a recordings row may hold."""
_JSON_COLUMNS = frozenset({"source", "metadata"})
_PLACEMENT_COLUMNS = frozenset({"frame_start", "num_frames", "byte_start", "num_bytes"})


@dataclass(frozen=True, slots=True, eq=True)
class Recording:
    """One recording of a store (a row of its recordings table).

    Sample positions are in the recording's **source timeline**: sample 0 is the first
    sample of the source file (after resampling, when the import resampled).
    """

    index: int
    id: str
    num_samples: int
    sample_rate: int
    num_channels: int
    encoder_delay: int
    num_frames: int
    frame_start: int
    byte_start: int
    num_bytes: int
    bitrate: int
    crc32: int
    bandwidth_hz: int = 0
    """Highest frequency the stored stream carries, Hz of the true timeline (0: unknown,
    a recording stored by aacdata 0.1)."""
    stream_sample_rate: int = 0
    """The rate the stored frames are labelled with (``adts_bytes`` plays at it): the true
    ``sample_rate`` unless the recording is time-expanded (0: the same as ``sample_rate``)."""
    codec: str = "aac-lc"
    """The frame codec of the stored stream: ``"aac-lc"`` (ADTS frames) or ``"flac"``."""
    frame_samples: int = 1024
    """Decoded samples per stored frame (AAC: 1024; FLAC: its block size)."""
    bits_per_sample: int = 0
    """Sample size of a FLAC recording (16 or 24); 0 for AAC."""
    pns: bool = False
    """The stream uses perceptual noise substitution (an AAC source passed through): its
    windows are deterministic and equal a full decode outside the noise-filled bands; each
    is read with a fresh decoder."""
    source: Mapping[str, Any] = field(default_factory=dict, compare=False)
    metadata: Mapping[str, Any] = field(default_factory=dict, compare=False)

    @property
    def duration_seconds(self) -> float:
        return self.num_samples / self.sample_rate

    @property
    def time_expansion(self) -> float:
        """``sample_rate / stream_sample_rate``: how much slower the stored stream plays than
        the recording was made (1.0: not time-expanded). Samples, seconds and Hz are always
        of the true timeline."""
        return self.sample_rate / self.stream_sample_rate if self.stream_sample_rate else 1.0

    def num_samples_at(self, sample_rate: int) -> int:
        """The recording's length resampled to ``sample_rate``:
        ``ceil(num_samples * sample_rate / self.sample_rate)``."""
        return samples_at(self.num_samples, self.sample_rate, sample_rate)

    def __repr__(self) -> str:
        return (
            f"Recording(index={self.index}, id={self.id!r}, num_samples={self.num_samples}, "
            f"sample_rate={self.sample_rate}, num_channels={self.num_channels}, "
            f"num_frames={self.num_frames}, num_bytes={self.num_bytes})"
        )


class _Plan(NamedTuple):
    """One window: its output, the part of it inside the recording, frames and bytes (a
    tuple: made once per window read)."""

    recording: int
    out: np.ndarray
    target: np.ndarray
    preroll_frame: int
    first_frame: int
    last_frame: int
    skip: int
    byte_start: int
    byte_stop: int
    bounds: np.ndarray
    crcs: np.ndarray

    @property
    def num_frames(self) -> int:
        return self.last_frame - self.preroll_frame + 1 if self.byte_stop > self.byte_start else 0


class _ReadInfo(NamedTuple):
    """What reading needs of a recording's table row, as Python values."""

    num_samples: int
    num_channels: int
    encoder_delay: int
    num_frames: int
    codec: FrameCodec
    config: StreamConfig
    fresh_decoder: bool


_READ_INFO_ENTRIES = 1 << 16
"""Recordings whose :class:`_ReadInfo` is kept (then the cache starts anew)."""


_NO_FRAMES = np.zeros(1, dtype=np.int64)
_NO_CRCS = np.zeros(0, dtype=np.uint32)

RecordingRef = int | str | Recording
"""A recording, given by index, by id or as a :class:`Recording`."""


class AACStore:
    """A Zarr v3 store of AAC-LC recordings, opened for reading (``"r"``) or appending (``"a"``).

    Create one with :meth:`AACStore.open`. Reads are exact: ``read(rec, s, n)`` equals the
    samples ``[s, s + n)`` of a full decode of the recording's stored stream, bit for bit.
    A store is safe to use from one thread; in ``DataLoader`` workers, each process opens
    its own (the dataset does this lazily).
    """

    def __init__(
        self, group: zarr.Group, *, where: str, mode: str, index_cache_bytes: int, check_table: bool = True
    ) -> None:
        self._group = group
        self._where = where
        self.target: str | Store = where
        """What to pass to :meth:`open` to open this store again (in another process)."""
        self._mode = mode
        self._check = check_table
        self._local = isinstance(group.store, zarr.storage.LocalStore)
        attrs = group.attrs.asdict()
        self.counts = _layout.parse_root_attributes(attrs, where)
        self.format_version = _layout.format_version(attrs)
        """The store's format version (1: written by aacdata 0.1; the first commit moves it to 2)."""
        self._column_crc32 = _layout.stored_column_crc32(attrs)
        problems: list[str] = []
        crc_problem = _layout.column_crc32_problem(attrs, where)
        if crc_problem is not None:
            if check_table:
                raise StoreFormatError(f"{crc_problem} (`aacdata verify {where}` reports what it can)")
            problems.append(crc_problem)
        if mode == "a" and self._local:
            _refuse_links(_remote.local_path(group.store), where)
        try:
            arrays = _layout.open_arrays(group, where, self.counts, self.format_version)
        except _layout.IncompleteStoreError:
            if self.counts != _layout.Counts():
                raise
            if mode != "a":
                raise StoreFormatError(
                    f"{where!r} is an empty store whose creation was interrupted; run the import again"
                ) from None
            _layout.complete_layout(group, where)  # a creation cut short or under way: under the lock
            arrays = _layout.open_arrays(group, where, self.counts, self.format_version)
        self._adts, self._index, self._frame_crc, self._columns = (
            arrays.adts,
            arrays.index,
            arrays.frame_crc,
            arrays.columns,
        )
        n = self.counts.num_recordings
        self._table = {}
        self._read_infos: dict[int, _ReadInfo] = {}
        for name in _layout.numeric_columns(self.format_version):
            try:
                values = self._read_rows(self._columns[name], f"{_layout.RECORDINGS}/{name}", 0, n)
            except CorruptDataError as e:
                # Without the columns that place recordings, nothing can be checked further.
                if check_table or name in _PLACEMENT_COLUMNS:
                    raise
                problems.append(str(e))
                values = np.zeros(n, dtype=np.int64)
            self._table[name] = np.asarray(values, dtype=np.int64).reshape(-1)
        if self.format_version == 1:
            self._table.update(_layout.implied_columns(self._table))
        self._ids: list[str] = [
            str(x) for x in self._read_rows(self._columns["id"], f"{_layout.RECORDINGS}/id", 0, n).reshape(-1)
        ]
        self._id_to_index: dict[str, int] | None = None
        self._ids_tuple: tuple[str, ...] | None = None
        self._json_cache: dict[str, list[str]] = {}
        self._check_table()
        problems += self._column_problems(("id", *_layout.NUMERIC_COLUMNS))
        self._frame_limits = frame_limits(self._table)  # for the row checks and the index cache
        self._row_problems = self._check_rows()
        self._table_problems = problems
        if check_table and (problems or self._row_problems):
            first = problems[0] if problems else next(iter(self._row_problems.values()))
            raise StoreFormatError(f"{first} (`aacdata verify {where}` reports what it can)")
        self._bytes = ByteReader(self._adts, where)
        self._decoders = DecoderPool()
        self.index_cache_bytes = int(index_cache_bytes)
        t = self._table
        self._direct_index = DirectChunks(self._index)
        self._direct_crc = DirectChunks(self._frame_crc)
        # Index rows and CRCs by chunk, decoded once, shared by neighbouring recordings.
        self._frame_index = FrameIndex(
            self._read_index_rows,
            chunk_rows=int(self._index.chunks[0]),
            num_frames=self.counts.num_frames,
            frame_start=t["frame_start"],
            frame_count=t["num_frames"],
            byte_start=t["byte_start"],
            num_bytes=t["num_bytes"],
            frame_samples=t["frame_samples"],
            max_frame_bytes=self._frame_limits,
            describe=lambda i: f"{self._where}: recording {self._ids[i]!r}",
            budget_bytes=self.index_cache_bytes,
        )

    # ------------------------------------------------------------------ opening

    @classmethod
    def open(
        cls,
        path_or_url: StoreTarget,
        mode: Literal["r", "a"] = "r",
        *,
        storage_options: Mapping[str, Any] | None = None,
        index_cache_bytes: int = DEFAULT_INDEX_CACHE_BYTES,
        check_table: bool = True,
    ) -> AACStore:
        """Open a store; mode ``"a"`` creates an empty one where none exists.

        Parameters
        ----------
        path_or_url
            A local directory, an object-store URL (``s3://bucket/corpus.zarr``; needs
            ``aacdata[s3]``) or a zarr ``Store``.
        mode
            ``"r"`` read-only, ``"a"`` append (what :func:`aacdata.import_audio` uses).
        storage_options
            Object-store settings: s3fs's options for S3 (``endpoint_url``, ``key``,
            ``secret``, ``client_kwargs``, ``config_kwargs``), plus ``retries`` (default 3).
            Timeouts default to 10 s to connect and 30 s to read; set them with
            ``config_kwargs={"connect_timeout": ..., "read_timeout": ...}``. Without
            them, the standard AWS environment variables are used.
        index_cache_bytes
            Budget for cached index rows in this process.
        check_table
            Refuse a store whose recordings table disagrees with its checksums
            (``False``: open it anyway, for :meth:`verify` to report what it can).

        Raises
        ------
        StoreNotFoundError
            ``mode="r"`` and nothing is at ``path_or_url``.
        StoreFormatError
            It holds something that is not an aacdata store of a known version, or its
            metadata is damaged: every node's dtype, shape and chunks, the committed
            counts, the column checksums and the recordings table's values are checked
            here, once (``check_table=False`` leaves the table's to :meth:`verify`).
        CorruptDataError
            A chunk of the recordings table cannot be read or decoded.
        StoreWriteError
            ``mode="a"`` and the store holds a symbolic link among its nodes and chunks.
        RemoteStoreError
            The object store cannot be reached, or fails after the retries.
        """
        if mode not in ("r", "a"):
            raise ValueError(f"mode must be 'r' (read) or 'a' (append); got {mode!r}")
        group, where = _layout.open_root(path_or_url, mode, storage_options=storage_options)
        store = cls(group, where=where, mode=mode, index_cache_bytes=index_cache_bytes, check_table=check_table)
        store.target = path_or_url if isinstance(path_or_url, Store) else where
        return store

    def reopen(self) -> AACStore:
        """A new :class:`AACStore` on the same location and mode, reading the committed
        state as it is now (an open store keeps the state it saw when it was opened)."""
        group = zarr.open_group(self._group.store, mode="r" if self._mode == "r" else "r+")
        store = AACStore(group, where=self._where, mode=self._mode, index_cache_bytes=self.index_cache_bytes)
        store.target = self.target
        return store

    @property
    def zarr_store(self) -> Any:
        """The zarr ``Store`` underneath (for copying, or for tools that speak Zarr)."""
        return self._group.store

    def _read_rows(self, array: zarr.Array[Any], node: str, start: int, stop: int) -> np.ndarray:
        """Rows ``[start, stop)`` of a node (see :func:`_layout.read_rows`)."""
        return _layout.read_rows(array, node, start, stop, where=self._where, local=self._local)

    def _read_index_rows(self, node: str, start: int, stop: int) -> np.ndarray:
        """Rows of ``/index`` or ``/frame_crc`` for the index cache: straight from the chunk
        file where it can (local stores), else through zarr."""
        direct = self._direct_index if node == _layout.INDEX else self._direct_crc
        rows = direct.read(start, stop)
        if rows is not None:
            return rows
        array = self._index if node == _layout.INDEX else self._frame_crc
        return self._read_rows(array, node, start, stop)

    def _column_problems(self, names: Iterable[str]) -> list[str]:
        """Recordings columns that disagree with the CRC-32s of the last commit."""
        problems = []
        for name in names:
            expected = self._column_crc32.get(name)
            if expected is None:
                continue
            if name in _layout.NUMERIC_COLUMNS:
                values: Any = self._table[name]
            elif name == "id":
                values = self._ids
            else:
                values = self.text_column(name)
            if _layout.column_crc32(name, values) != expected:
                problems.append(
                    f"{self._where}: recordings column {name!r} does not match its checksum (a lost or "
                    "damaged chunk); the store is damaged"
                )
        return problems

    def _check_table(self) -> None:
        t, c = self._table, self.counts
        n = c.num_recordings
        if any(a.size != n for a in t.values()) or len(self._ids) != n:
            raise StoreFormatError(f"{self._where}: recordings table has fewer than {n} committed rows")
        if n == 0:
            if c.num_frames or c.num_bytes:
                raise StoreFormatError(
                    f"{self._where}: the store counts 0 recordings but {c.num_frames} frames and "
                    f"{c.num_bytes} bytes; its metadata is damaged"
                )
            return
        for name, values in t.items():
            if values.min() < 0:  # a uint64 value of 2**63 or more, read as int64
                row = int(np.argmin(values))
                raise StoreFormatError(
                    f"{self._where}/{_layout.RECORDINGS}/{name} row {row} holds "
                    f"{int(values[row]) % (1 << 64)}; expected a value below 2**63 (the recordings "
                    "table is damaged)"
                )
        frame_end = t["frame_start"] + t["num_frames"]
        byte_end = t["byte_start"] + t["num_bytes"]
        if (
            t["frame_start"][0] != 0
            or t["byte_start"][0] != 0
            or np.any(t["frame_start"][1:] != frame_end[:-1])
            or np.any(t["byte_start"][1:] != byte_end[:-1])
            or frame_end[-1] != c.num_frames
            or byte_end[-1] != c.num_bytes
        ):
            raise StoreFormatError(
                f"{self._where}: recordings table does not tile the committed {c.num_frames} frames "
                f"and {c.num_bytes} bytes; run `aacdata verify {self._where}`"
            )

    def _check_rows(self) -> dict[int, str]:
        """Recordings whose row holds values no import writes: ``{row: reason}``."""
        t = self._table
        if not len(self):
            return {}
        rate, channels, frames = t["sample_rate"], t["num_channels"], t["num_frames"]
        aac = t["codec"] == CODEC_AAC_LC
        max_frame = np.maximum(self._frame_limits, 1)
        rules: list[tuple[str, np.ndarray, str]] = [
            ("sample_rate", (rate >= 1) & (rate <= MAX_SAMPLE_RATE), f"1 to {MAX_SAMPLE_RATE} Hz"),
            ("num_channels", (channels >= 1) & (channels <= MAX_CHANNELS), f"1 to {MAX_CHANNELS}"),
            ("num_frames", frames >= 1, "at least 1"),
            ("codec", np.isin(t["codec"], list(_layout.CODECS)), f"one of {sorted(_layout.CODECS)}"),
            (
                "frame_samples",
                np.where(aac, t["frame_samples"] == 1024, (t["frame_samples"] >= 16) & (t["frame_samples"] <= 65535)),
                "1024 for AAC, 16 to 65535 for FLAC",
            ),
            (
                "bits_per_sample",
                np.where(aac, t["bits_per_sample"] == 0, np.isin(t["bits_per_sample"], (16, 24))),
                "0 for AAC, 16 or 24 for FLAC",
            ),
            (
                "num_bytes",
                (t["num_bytes"] >= 7 * frames) & ((t["num_bytes"] + max_frame - 1) // max_frame <= frames),
                "7 bytes a frame or more, and no frame larger than its codec allows",
            ),
            (
                "num_samples",
                t["num_samples"] <= frames * t["frame_samples"] - t["encoder_delay"],
                "at most num_frames x frame_samples - encoder_delay",
            ),
            ("encoder_delay", aac | (t["encoder_delay"] == 0), "0 for FLAC"),
            ("flags", (t["flags"] & ~_layout.KNOWN_FLAGS) == 0, f"no bits beyond {_layout.KNOWN_FLAGS:#x}"),
            (
                "stream_sample_rate",
                np.where(
                    aac,
                    np.isin(t["stream_sample_rate"], SAMPLE_RATES) & (t["stream_sample_rate"] <= rate),
                    t["stream_sample_rate"] == rate,
                ),
                "an AAC rate no higher than the recording's sample_rate (FLAC: its sample_rate)",
            ),
            ("bandwidth_hz", 2 * t["bandwidth_hz"] <= rate, "at most half the recording's sample_rate"),
        ]
        problems: dict[int, str] = {}
        for name, ok, expected in rules:
            for i in np.flatnonzero(~ok).tolist():
                problems.setdefault(
                    i,
                    f"{self._where}/{_layout.RECORDINGS}/{name} row {i} (recording {self._ids[i]!r}) holds "
                    f"{int(t[name][i])}; expected {expected} (the recordings table is damaged)",
                )
        unique = set(self._ids)
        if len(unique) != len(self._ids) or "" in unique:  # an import commits each id once
            first: dict[str, int] = {}
            for i, rid in enumerate(self._ids):
                if rid in first or not rid:
                    problems.setdefault(
                        i,
                        f"{self._where}/{_layout.RECORDINGS}/id row {i} holds "
                        + (f"the id {rid!r} of row {first[rid]}" if rid else "an empty id")
                        + "; expected a unique, non-empty id (the recordings table is damaged)",
                    )
                first.setdefault(rid, i)
        return problems

    # ------------------------------------------------------------------ recordings

    def __len__(self) -> int:
        return self.counts.num_recordings

    def __iter__(self) -> Iterator[Recording]:
        return (self.recording(i) for i in range(len(self)))

    def __repr__(self) -> str:
        return (
            f"AACStore({self._where!r}, mode={self._mode!r}, num_recordings={len(self)}, "
            f"num_frames={self.counts.num_frames}, num_bytes={self.counts.num_bytes})"
        )

    @property
    def path(self) -> str:
        return self._where

    @property
    def mode(self) -> str:
        return self._mode

    @property
    def recordings(self) -> tuple[Recording, ...]:
        """Every recording, in store order."""
        return tuple(self)

    @property
    def ids(self) -> tuple[str, ...]:
        """Every recording id, in store order (the same tuple on every access)."""
        if self._ids_tuple is None:
            self._ids_tuple = tuple(self._ids)
        return self._ids_tuple

    def column(self, name: str) -> np.ndarray:
        """A numeric recordings column (e.g. ``"num_samples"``) as a read-only int64 array,
        one row per recording."""
        try:
            values = self._table[name]
        except KeyError:
            raise KeyError(f"no numeric column {name!r}; columns: {', '.join(self._table)}") from None
        view = values.view()
        view.flags.writeable = False  # the store's own table stays as read
        return view

    def index_of(self, rec: RecordingRef) -> int:
        """The store index of a recording given by index, id or :class:`Recording`."""
        if isinstance(rec, Recording):
            rec = rec.index if rec.index < len(self) and self._ids[rec.index] == rec.id else rec.id
        if isinstance(rec, str):
            if self._id_to_index is None:
                self._id_to_index = {x: i for i, x in enumerate(self._ids)}
            try:
                return self._id_to_index[rec]
            except KeyError:
                raise RecordingNotFoundError(
                    f"no recording with id {rec!r} in {self._where}{self._suggest(rec)}"
                ) from None
        try:
            i = operator.index(rec)
        except TypeError:
            raise TypeError(f"a recording is an index, an id or a Recording; got {type(rec).__name__}") from None
        n = len(self)
        if not -n <= i < n:
            raise RecordingNotFoundError(f"recording index {i} is out of range for a store of {n} recordings")
        return i % n

    def _suggest(self, name: str) -> str:
        """``"; did you mean ...?"`` with the ids nearest to ``name`` (case-insensitive
        first, then by spelling), or ``""``."""
        folded = name.casefold()
        near = [rid for rid in self._ids if rid.casefold() == folded or rid.rsplit("/", 1)[-1] == name]
        if not near and len(self._ids) <= 100_000:
            near = difflib.get_close_matches(name, self._ids, n=3, cutoff=0.6)
        return f"; did you mean {', '.join(map(repr, near[:3]))}?" if near else ""

    def resolve_id(self, name: str) -> tuple[str, str]:
        """The id a user most likely meant by ``name``, and how it was found: the id itself,
        the one id equal to it but for case, or the one id whose file name (last path part)
        it is. Anything else, or more than one candidate, is
        :class:`~aacdata.RecordingNotFoundError` naming the candidates."""
        if name in self._ids:
            return name, "its id"
        folded = name.casefold()
        candidates = (
            ("the one id that differs only in case", [rid for rid in self._ids if rid.casefold() == folded]),
            ("the one id with that file name", [rid for rid in self._ids if rid.rsplit("/", 1)[-1] == name]),
            (
                "the one id with that file name but for case",
                [rid for rid in self._ids if rid.rsplit("/", 1)[-1].casefold() == folded],
            ),
        )
        for how, found in candidates:
            if len(found) == 1:
                return found[0], how
            if len(found) > 1:
                listed = ", ".join(map(repr, found[:5])) + (" ..." if len(found) > 5 else "")
                raise RecordingNotFoundError(
                    f"{name!r} could be any of {len(found)} recordings of {self._where}: {listed}; give the whole id"
                )
        raise RecordingNotFoundError(f"no recording with id {name!r} in {self._where}{self._suggest(name)}")

    def recording(self, rec: RecordingRef) -> Recording:
        """The :class:`Recording` at an index or with an id."""
        i = self.index_of(rec)
        t = self._table
        return Recording(
            index=i,
            id=self._ids[i],
            num_samples=int(t["num_samples"][i]),
            sample_rate=int(t["sample_rate"][i]),
            num_channels=int(t["num_channels"][i]),
            encoder_delay=int(t["encoder_delay"][i]),
            num_frames=int(t["num_frames"][i]),
            frame_start=int(t["frame_start"][i]),
            byte_start=int(t["byte_start"][i]),
            num_bytes=int(t["num_bytes"][i]),
            bitrate=int(t["bitrate"][i]),
            crc32=int(t["crc32"][i]),
            bandwidth_hz=int(t["bandwidth_hz"][i]),
            stream_sample_rate=int(t["stream_sample_rate"][i]),
            codec=_layout.CODECS[int(t["codec"][i])],
            frame_samples=int(t["frame_samples"][i]),
            bits_per_sample=int(t["bits_per_sample"][i]),
            pns=bool(int(t["flags"][i]) & _layout.FLAG_FRESH_DECODER),
            source=MappingProxyType(self._json("source", i)),
            metadata=MappingProxyType(self._json("metadata", i)),
        )

    def text_column(self, column: str) -> list[str]:
        """A JSON text column (``"source"`` or ``"metadata"``), one string per recording,
        loaded on first use."""
        values = self._json_cache.get(column)
        if values is None:
            if column not in _JSON_COLUMNS:
                raise ValueError(f"no text column {column!r}; text columns: {', '.join(sorted(_JSON_COLUMNS))}")
            node = f"{_layout.RECORDINGS}/{column}"
            values = [str(x) for x in self._read_rows(self._columns[column], node, 0, len(self)).reshape(-1)]
            expected = self._column_crc32.get(column)
            if self._check and expected is not None and _layout.column_crc32(column, values) != expected:
                raise CorruptDataError(
                    f"{self._where}: recordings column {column!r} does not match its checksum (a lost or "
                    f"damaged chunk); the store is damaged (run `aacdata verify {self._where}`)"
                )
            if self._check and column in _JSON_COLUMNS:
                for i, text in enumerate(values):  # once per process: callers may json.loads them
                    self._parse_json(column, i, text)
            self._json_cache[column] = values
        return values

    def _json(self, column: str, i: int) -> dict[str, Any]:
        return self._parse_json(column, i, self.text_column(column)[i])

    def _parse_json(self, column: str, i: int, text: str) -> dict[str, Any]:
        if not text:
            return {}
        try:
            obj = json.loads(text)
        except (json.JSONDecodeError, RecursionError) as e:
            raise CorruptDataError(
                f"{self._where}: recording {self._ids[i]!r} has damaged {column} JSON ({type(e).__name__}); "
                f"the recordings table is damaged (run `aacdata verify {self._where}`)"
            ) from None
        if not isinstance(obj, dict):
            raise CorruptDataError(
                f"{self._where}: recording {self._ids[i]!r} has {column} JSON of type {type(obj).__name__}; "
                "expected an object (the recordings table is damaged)"
            )
        return obj

    # ------------------------------------------------------------------ reading

    def read(
        self, rec: RecordingRef, start: int, num_samples: int, *, sample_rate: int | None = None, pad: bool = False
    ) -> np.ndarray:
        """Samples ``[start, start + num_samples)`` of a recording.

        Parameters
        ----------
        rec
            Recording index, id or :class:`Recording`.
        start, num_samples
            Half-open window in samples of the source timeline (at ``sample_rate`` when
            given).
        sample_rate
            Read the recording resampled to this rate: the result equals
            ``aacdata.resample(full decode, rec.sample_rate, sample_rate)[:, start:start +
            num_samples]`` (to within 1e-6), and only the frames the filter reaches are
            decoded. ``None``: the recording's own rate.
        pad
            Zero-fill the parts of the window outside the recording (``[0,
            rec.num_samples)``, or ``[0, rec.num_samples_at(sample_rate))``) instead of
            raising :class:`WindowError`.

        Returns
        -------
        numpy.ndarray
            float32, shape ``(num_channels, num_samples)``, values as decoded (nominally
            in [-1, 1]); at the recording's own rate, bit-identical to the same slice of a
            full decode.

        Examples
        --------
        >>> store = AACStore.open("corpus.zarr")                    # doctest: +SKIP
        >>> store.read("birds/0042.flac", 16_000, 32_000).shape     # doctest: +SKIP
        (1, 32000)
        """
        if sample_rate is not None:
            return self.read_many([(rec, start, num_samples)], sample_rate=sample_rate, pad=pad)[0]
        plan = self._plan(rec, start, num_samples, pad)
        if plan.num_frames:
            try:
                data = self._bytes.read(plan.byte_start, plan.byte_stop)
            except OSError as e:
                if isinstance(e, AACDataError) or not self._local:
                    raise
                raise self._unreadable_bytes(e, plan.byte_start, plan.byte_stop) from e
            self._decode(plan, data)
        return plan.out

    def read_many(
        self,
        requests: Iterable[tuple[RecordingRef, int, int]],
        *,
        sample_rate: int | None = None,
        pad: bool = False,
    ) -> list[np.ndarray]:
        """:meth:`read` for each ``(rec, start, num_samples)``, in order.

        The byte ranges of all windows are fetched first, concurrently where the store is
        remote (one request per window in flight together), then decoded in order.
        """
        if sample_rate is not None:
            return self._read_resampled(list(requests), sample_rate, pad)
        plans = [self._plan(rec, start, n, pad) for rec, start, n in requests]
        todo = [p for p in plans if p.num_frames]
        try:
            blobs = self._bytes.read_many([(p.byte_start, p.byte_stop) for p in todo])
        except OSError as e:
            if isinstance(e, AACDataError) or not self._local:
                raise
            raise self._unreadable_bytes(e, todo[0].byte_start, todo[-1].byte_stop) from e
        for plan, data in zip(todo, blobs, strict=True):
            self._decode(plan, data)
        return [p.out for p in plans]

    def _read_resampled(
        self, requests: list[tuple[RecordingRef, int, int]], sample_rate: int, pad: bool
    ) -> list[np.ndarray]:
        """Windows at ``sample_rate``: each output span needs an input span (the filter's
        reach) read at the recording's rate, zero outside it, then resampled."""
        rate = parse_rate(sample_rate, "sample_rate")
        spans = []
        for rec, start, n in requests:
            i = self.index_of(rec)
            own = int(self._table["sample_rate"][i])
            length = samples_at(int(self._table["num_samples"][i]), own, rate)
            spans.append(RateSpan.plan(start, n, length, own, rate, pad=pad, what=f"recording {self._ids[i]!r}"))
            spans[-1].recording = i
        natives = self.read_many([(s.recording, s.a, s.b - s.a) for s in spans if s.b > s.a], pad=True)
        out = []
        it = iter(natives)
        for span in spans:
            channels = int(self._table["num_channels"][span.recording])
            out.append(span.finish(next(it) if span.b > span.a else None, channels))
        return out

    def _unreadable_bytes(self, e: OSError, start: int, stop: int) -> CorruptDataError:
        """A local chunk file of ``/adts`` that cannot be read (a directory, no permission...)."""
        keys = _layout.chunk_keys(self._adts, start, stop)
        return CorruptDataError(
            f"{self._where}/{_layout.ADTS}: chunk {keys} cannot be read ({type(e).__name__}: {e}); "
            f"the store is damaged (run `aacdata verify {self._where}`)"
        )

    def _read_info(self, i: int) -> _ReadInfo:
        info = self._read_infos.get(i)
        if info is None:
            if len(self._read_infos) >= _READ_INFO_ENTRIES:
                self._read_infos.clear()
            t = self._table
            info = self._read_infos[i] = _ReadInfo(
                int(t["num_samples"][i]),
                int(t["num_channels"][i]),
                int(t["encoder_delay"][i]),
                int(t["num_frames"][i]),
                codec_of(int(t["codec"][i])),
                self.stream_config(i),
                bool(int(t["flags"][i]) & _layout.FLAG_FRESH_DECODER),
            )
        return info

    def _plan(self, rec: RecordingRef, start: int, num_samples: int, pad: bool) -> _Plan:
        """Validate a window, allocate its output and find the frames and bytes it needs."""
        i = self.index_of(rec)
        if self._row_problems and i in self._row_problems:  # only with check_table=False
            raise CorruptDataError(self._row_problems[i])  # before its values size anything
        info = self._read_info(i)
        start, num_samples, lo, hi = window_inside(
            start, num_samples, info.num_samples, pad=pad, what=lambda: f"recording {self._ids[i]!r}"
        )
        stop = start + num_samples
        out = window_array(info.num_channels, num_samples, zeroed=not (lo == start and hi == stop))
        if hi <= lo:
            return _Plan(i, out, out, 0, 0, 0, 0, 0, 0, _NO_FRAMES, _NO_CRCS)
        d0, d1 = lo + info.encoder_delay, hi + info.encoder_delay
        step = info.config.frame_samples
        k0, k1 = d0 // step, (d1 - 1) // step
        # Pre-roll (AAC: one frame, as the MDCT overlaps neighbours; FLAC: none).
        kp = max(k0 - info.codec.preroll_frames, 0)
        if k1 >= info.num_frames:
            raise CorruptDataError(
                f"{self._where}: recording {self._ids[i]!r} needs frame {k1} but has {info.num_frames} frames"
            )
        bounds, crcs = self._frame_index.window(i, kp, k1)
        if bounds[-1] <= bounds[0]:  # never for checked rows; the output is not zeroed
            raise CorruptDataError(f"{self._where}: recording {self._ids[i]!r} frames {kp}..{k1} span no bytes")
        return _Plan(
            i, out, out[:, lo - start : hi - start], kp, k0, k1, d0 - k0 * step,
            int(bounds[0]), int(bounds[-1]), bounds, crcs,
        )  # fmt: skip

    def _decode(self, plan: _Plan, data: bytes) -> None:
        i, kp, k0, k1 = plan.recording, plan.preroll_frame, plan.first_frame, plan.last_frame
        info = self._read_info(i)
        self._check_frames(i, data, plan.bounds, plan.crcs, kp)
        codec = info.codec
        ctx = self._decoders.for_window(codec, info.config, first_frame=k0, random_noise=info.fresh_decoder)
        codec.decode_into(
            ctx,
            data,
            config=info.config,
            num_frames=plan.num_frames,
            preroll=k0 - kp,
            skip=plan.skip,
            out=plan.target,
            what=lambda: f"{self._where}: recording {self._ids[i]!r} frames {kp}..{k1}",
        )

    def stream_config(self, rec: RecordingRef) -> StreamConfig:
        """What decoding a recording's frames needs of its row (codec, the frames' rate,
        channels, samples per frame, FLAC's sample size, an AAC PCE layout, length)."""
        i = self.index_of(rec)
        t = self._table
        return StreamConfig(
            codec=int(t["codec"][i]),
            sample_rate=int(t["stream_sample_rate"][i]),
            num_channels=int(t["num_channels"][i]),
            frame_samples=int(t["frame_samples"][i]),
            bits_per_sample=int(t["bits_per_sample"][i]),
            pce=bool(int(t["flags"][i]) & _layout.FLAG_PCE),
            num_samples=int(t["num_samples"][i]),
        )

    def _check_frames(self, i: int, data: bytes, bounds: np.ndarray, crcs: np.ndarray, first: int) -> None:
        """Compare the frames in ``data`` (frame ``first`` on; ``bounds`` in ``/adts``) with
        their stored CRC-32s."""
        bad = frames_failing_crc(data, bounds, crcs, stop_at_first=True, compiled=self._decoders.compiled)
        if bad:
            k, got = bad[0]
            raise CorruptDataError(
                f"{self._where}: recording {self._ids[i]!r} frame {first + k} is damaged (CRC-32 {got:08x}, "
                f"stored {int(crcs[k]):08x}); run `aacdata verify {self._where}`"
            )

    def frame_index(self, rec: RecordingRef) -> np.ndarray:
        """The stored index rows of a recording: uint64 ``(num_frames, 3)``,
        columns ``[byte_offset, frame_size, sample_pos]`` (offsets into ``/adts``)."""
        i = self.index_of(rec)
        start = int(self._table["frame_start"][i])
        count = int(self._table["num_frames"][i])
        rows = self._read_rows(self._index, _layout.INDEX, start, start + count)
        return np.asarray(rows, dtype=np.uint64).reshape(count, 3)

    def adts_bytes(self, rec: RecordingRef, *, check: bool = True) -> bytes:
        """The recording as a stand-alone ADTS stream any AAC decoder plays: its stored
        bytes, with the layout's program config element put in frame 0 where the layout
        needs one (6, 7, 8 and 9-16 channels; the store keeps it out of the frames).

        Raises :class:`CorruptDataError` when they fail the recording's CRC-32 (``check=False``:
        return them anyway, e.g. to inspect the damage), and :class:`StoreFormatError` for a
        recording stored as FLAC (:meth:`stream_bytes` gives any codec's stream).
        """
        i = self.index_of(rec)
        if int(self._table["codec"][i]) != CODEC_AAC_LC:
            raise StoreFormatError(
                f"recording {self._ids[i]!r} is stored as {_layout.CODECS[int(self._table['codec'][i])]}, not AAC; "
                "use stream_bytes() for its stand-alone stream (CLI: export it to .flac or .wav)"
            )
        return self.stream_bytes(i, check=check)

    def stream_bytes(self, rec: RecordingRef, *, check: bool = True) -> bytes:
        """The recording as a stand-alone stream of its codec: ADTS for AAC-LC (see
        :meth:`adts_bytes`), a ``.flac`` file for FLAC (a STREAMINFO block made from the
        table, then the stored frames). The file suffix is ``codec_suffix(rec)``.

        Raises :class:`CorruptDataError` when the bytes fail the recording's CRC-32
        (``check=False``: return them anyway)."""
        i = self.index_of(rec)
        data = self._stored_bytes(i, check=check)
        return codec_of(int(self._table["codec"][i])).stream_bytes(data, self.stream_config(i))

    def codec_suffix(self, rec: RecordingRef) -> str:
        """The file suffix of :meth:`stream_bytes`: ``".aac"`` or ``".flac"``."""
        return codec_of(int(self._table["codec"][self.index_of(rec)])).suffix

    def _stored_bytes(self, i: int, *, check: bool) -> bytes:
        """The bytes of recording i as stored (CRC-32 checked unless ``check=False``)."""
        start = int(self._table["byte_start"][i])
        stop = start + int(self._table["num_bytes"][i])
        try:
            data = self._bytes.read(start, stop)
        except OSError as e:
            if isinstance(e, AACDataError) or not self._local:
                raise
            raise self._unreadable_bytes(e, start, stop) from e
        if check:
            crc, stored = zlib.crc32(data), int(self._table["crc32"][i])
            if crc != stored:
                raise CorruptDataError(
                    f"{self._where}: recording {self._ids[i]!r} fails its checksum (its bytes have crc32 "
                    f"{crc:08x}, the table says {stored:08x}); run `aacdata verify {self._where}`"
                )
        return data

    # ------------------------------------------------------------------ annotations

    @property
    def annotation_sets(self) -> tuple[str, ...]:
        """Names of the event annotation sets stored here, sorted."""
        return tuple(_annotation_store.list_sets(self._group))

    def annotations(self, name: str = "default") -> Annotations:
        """The stored annotation set ``name``, resolved against this store (recording
        rows, samples of each recording's source timeline)."""
        return _annotation_store.read_set(self._group, name, num_recordings=len(self), where=self._where)

    def write_annotations(self, ann: Annotations, name: str = "default", *, replace: bool = False) -> None:
        """Store an annotation set (resolved against this store first if it is a parsed
        table). Needs mode ``"a"``; takes the write lock. Writing or replacing a set never
        leaves a half-written one visible."""
        if self._mode != "a":
            raise ValueError(f"open the store with mode='a' to write annotations to it; {self._where!r} is read-only")
        resolved = ann if ann.resolved else ann.resolve(self)
        with _lock.acquire(self.zarr_store, self._where) as held:
            _annotation_store.write_set(
                self._group, name, resolved, replace=replace, lock=held, num_recordings=len(self), where=self._where
            )

    def annotation_info(self, name: str) -> dict[str, Any]:
        """A set's event count, classes and sources, without reading its events."""
        return _annotation_store.set_info(self._group, name, where=self._where)

    # ------------------------------------------------------------------ changing

    def remove(self, ids: str | Iterable[str]) -> ChangeReport:
        """Remove recordings (ids resolved as :meth:`resolve_id` resolves them) and their
        annotation events, and reclaim their bytes. Needs mode ``"a"`` and a local store.
        The store is rewritten beside itself and swapped in atomically (a process killed at
        any moment leaves it readable); this object then shows the changed store, while
        other open stores must be opened again. Unknown ids raise
        :class:`~aacdata.RecordingNotFoundError` and change nothing."""
        from ._remove import remove_recordings

        report = remove_recordings(self, ids)
        self._reload()
        return report

    def compact(self) -> ChangeReport:
        """Rewrite the store without what interrupted imports left past its committed end
        (as :meth:`remove` rewrites it, removing nothing)."""
        from ._remove import compact_store

        report = compact_store(self)
        self._reload()
        return report

    def _reload(self) -> None:
        """Show the store as it is now, after this process rewrote it."""
        self.clear_caches()
        fresh = AACStore.open(self.target, self._mode, index_cache_bytes=self.index_cache_bytes)  # type: ignore[arg-type]
        self.__dict__.update(fresh.__dict__)

    # ------------------------------------------------------------------ caches and stats

    def cache_info(self) -> dict[str, int]:
        """Counters of this process: index cache hits/misses/bytes, decoders, bytes read."""
        return {
            **self._frame_index.info(),
            "decoders_created": self._decoders.decoders_created,
            "bytes_read": self._bytes.bytes_read,
        }

    def clear_caches(self) -> None:
        """Drop cached index rows and decoders, and close chunk files."""
        self._frame_index.clear()
        self._decoders.clear()
        self._bytes.close()

    def close(self) -> None:
        """Drop caches, close chunk files and, for a store opened from an object-store URL,
        the client's connections (a later read opens new ones)."""
        self.clear_caches()
        if isinstance(self._group.store, _remote.RemoteStore):
            self._group.store.close_connections()

    def __enter__(self) -> AACStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __getstate__(self) -> Any:
        raise TypeError(
            "an AACStore holds open files and decoders and is not pickled; pass its path "
            "(AACSegmentDataset does this for you)"
        )

    # ------------------------------------------------------------------ checking

    def verify(self, *, decode: bool = True, progress: Progress | None = None) -> VerifyReport:
        """Check every committed recording: checksum of its bytes, index rows against the
        ADTS headers, its table values and JSON, and (``decode=True``) that every frame
        decodes. A chunk that cannot be read (damaged index or table chunks) is reported
        for the recordings it holds, and checking goes on with the next recording.

        ``progress(done, total)``, if given, is called as recordings are checked.
        """
        return verify_store(self, decode=decode, progress=progress)

    # ------------------------------------------------------------------ what checks read

    @property
    def table_problems(self) -> tuple[str, ...]:
        """What the checks at open found wrong with the recordings table (only a store
        opened with ``check_table=False`` can have any)."""
        return tuple(self._table_problems)

    def row_problem(self, rec: RecordingRef) -> str | None:
        """Why a recording's table row cannot be used (found at open), or ``None``."""
        return self._row_problems.get(self.index_of(rec))

    def check_columns(self, names: Iterable[str]) -> list[str]:
        """Recordings columns that disagree with the CRC-32s of the last commit."""
        return self._column_problems(names)

    def stored_bytes(self, rec: RecordingRef, *, check: bool = True) -> bytes:
        """A recording's bytes exactly as stored (for a layout signalled by a PCE, without
        the PCE that :meth:`adts_bytes` puts in frame 0); checked against the recording's
        CRC-32 unless ``check=False``."""
        return self._stored_bytes(self.index_of(rec), check=check)

    def frame_crcs(self, rec: RecordingRef) -> np.ndarray:
        """The stored CRC-32 of each frame of a recording, uint32 ``(num_frames,)``."""
        i = self.index_of(rec)
        start = int(self._table["frame_start"][i])
        rows = self._read_rows(self._frame_crc, _layout.FRAME_CRC, start, start + int(self._table["num_frames"][i]))
        return np.asarray(rows, dtype=np.uint32)

    def codec(self, rec: RecordingRef) -> FrameCodec:
        """The frame codec of a recording's stored stream."""
        return codec_of(int(self._table["codec"][self.index_of(rec)]))

    # ------------------------------------------------------------------ summary

    def summary(self) -> dict[str, Any]:
        """Totals for ``aacdata info``: recordings, hours, bytes, kbit/s, index overhead."""
        t = self._table
        seconds = float(np.sum(t["num_samples"] / np.maximum(t["sample_rate"], 1))) if len(self) else 0.0
        disk = _disk_usage(self._where)
        payload = self.counts.num_bytes
        return {
            "path": self._where,
            "format_version": self.format_version,
            "num_recordings": len(self),
            "num_frames": self.counts.num_frames,
            "hours": seconds / 3600,
            "payload_bytes": payload,
            "kbit_per_s": (payload * 8 / seconds / 1000) if seconds else 0.0,
            "disk_bytes": disk.get("total"),
            "index_disk_bytes": disk.get(_layout.INDEX),
            "index_overhead": (disk[_layout.INDEX] / payload) if payload and _layout.INDEX in disk else None,
            "disk_over_payload": (disk["total"] / payload) if payload and "total" in disk else None,
            "sample_rates": sorted({int(x) for x in t["sample_rate"]}),
            "channel_counts": sorted({int(x) for x in t["num_channels"]}),
            "bandwidths_hz": sorted({int(x) for x in t["bandwidth_hz"]}),
            "time_expanded": int(np.count_nonzero(t["stream_sample_rate"] != t["sample_rate"])),
            "pns": int(np.count_nonzero(t["flags"] & _layout.FLAG_FRESH_DECODER)),
        }


def frame_limits(table: Mapping[str, np.ndarray]) -> np.ndarray:
    """The largest frame each row's codec allows (int64; 0 for a row of no known codec):
    sizes beyond are damage."""
    limits = np.zeros_like(table["codec"])
    for number, codec in CODECS.items():
        rows = table["codec"] == number
        limits[rows] = codec.max_frame_bytes(table["frame_samples"][rows], table["num_channels"][rows])
    return limits


def _refuse_links(root: str, where: str) -> None:
    """Refuse to append to a store holding a symbolic link among its nodes and chunks: zarr
    would write through it, outside the store (the lock file is the writer's own affair)."""
    pending = [root]
    while pending:
        folder = pending.pop()
        try:
            entries = list(os.scandir(folder))
        except OSError:
            continue  # not a directory, or unreadable: opening the arrays reports it
        for entry in entries:
            if folder == root and entry.name == _lock.LOCK_FILE:
                continue
            if entry.is_symlink():
                try:
                    target = os.readlink(entry.path)
                except OSError:
                    target = "?"
                raise StoreWriteError(
                    f"{where}: {os.path.relpath(entry.path, root)} is a symbolic link (to {target!r}); aacdata "
                    "does not append through links, which would write outside the store. Replace the link "
                    "by a copy of what it points to, or import into a new store"
                )
            if entry.is_dir(follow_symlinks=False):
                pending.append(entry.path)


def _disk_usage(root: str) -> dict[str, int]:
    if not os.path.isdir(root):
        return {}
    sizes: dict[str, int] = {}
    total = 0
    for dirpath, _dirs, files in os.walk(root):
        for f in files:
            try:
                size = os.lstat(os.path.join(dirpath, f)).st_size
            except OSError:  # removed meanwhile
                continue
            total += size
            top = Path(os.path.relpath(dirpath, root)).parts
            if top:
                sizes[top[0]] = sizes.get(top[0], 0) + size
    sizes["total"] = total
    return sizes
