"""Rebuild a damaged store: copy every recording whose values are proven into a new store,
drop and list the rest. Repair never writes a value that no checksum vouches for.

What vouches for what
---------------------
The root attribute (the commit point) holds one CRC-32 per recordings column over all
committed rows; ``/frame_crc`` holds a CRC-32 per frame and the ``crc32`` column one per
recording's bytes. A whole-column CRC that fails says *that* the column is damaged, not
*which* row, so a column that fails is untrusted in every row. A value of an untrusted
column is used only where it can be re-derived from data that is vouched for, and the
re-derived value is then checked against the evidence that remains:

===================================  ========================================================
column                               when its CRC fails
===================================  ========================================================
``frame_start``, ``num_frames``,     re-derived from ``/index`` (a recording starts where
``byte_start``, ``num_bytes``        ``sample_pos`` is 0). Proven for the whole table when
                                     the re-derived columns match the stored column CRCs;
                                     otherwise per recording, by its bytes matching its
                                     ``crc32`` (needs the ``crc32`` column intact).
``crc32``                            re-computed from the bytes when every frame matches its
                                     ``/frame_crc`` entry and the four columns above are
                                     proven for the whole table.
``stream_sample_rate``               read from the ADTS headers.
``sample_rate``                      the headers' rate, or for a time-expanded recording
                                     the true rate its (proven) ``source`` info records;
                                     a rate that agrees with neither drops the row.
``bandwidth_hz``                     the figure the (proven) ``source`` info records, else
                                     0 (unknown).
``codec``                            from the frames (they parse as ADTS: AAC-LC).
``num_channels``                     from decoding every frame (all must agree), except
                                     where 16 channels decode: 9 to 16 recorded channels
                                     are coded as 16, so the recording is dropped.
``flags``                            PNS bit: 0 for an encoded recording (the encoder runs
                                     with PNS off), re-computed by the importer's own test
                                     for a passthrough one (does it decode twice the same?).
                                     The other bits the writer derives from the bytes; a
                                     proven value it would not write again drops the row.
``bitrate``                          never copied: the new store derives it, as the import
                                     did, from ``num_bytes``, ``num_samples``, ``sample_rate``.
``num_samples``, ``encoder_delay``   not derivable (the frames only bound them): every
                                     recording is dropped.
``id``                               re-derived from the source paths when the ``source``
                                     column is intact and one import root makes every id
                                     (ids are paths relative to it): proven when the
                                     re-derived column matches the stored column CRC.
                                     Otherwise every recording is dropped: the id is what
                                     ties a recording to its source, and a wrong one would
                                     make a later import skip or duplicate a file.
``source``, ``metadata``             every recording is dropped. Keeping the audio with an
                                     empty or guessed source or metadata would seal a guess
                                     under a fresh checksum, and a later import could no
                                     longer recognise its file; a dropped recording comes
                                     back whole, metadata included, from the same import.
===================================  ========================================================

Every recording that remains is then checked as :meth:`AACStore.verify` would with its
proven values (bytes against ``crc32``, index rows and frame CRCs against the ADTS headers,
sample rate, room for ``encoder_delay + num_samples``, every frame decoding); any
disagreement drops it. The table is read straight from the Zarr arrays, so a store whose
table no longer tiles its frames, or whose table chunks do not decompress, can still be
repaired. A store written before the root attribute held column checksums has nothing
that vouches for its table: every recording is dropped. A dropped recording comes back by
running the same import into the new store: the import skips what is there and imports
the rest.

Annotation sets
---------------
Each set's commit holds a CRC-32 of every array. A set whose metadata, commit or arrays
fail (:func:`aacdata.store._annotation_store.read_set`) is dropped and listed. Every other set is
written to the new store under its name, classes and sources unchanged, each event moved
to the new row of its recording (found by id: kept recordings may change rows). Events of
dropped recordings are left out and listed, and so are events that break the store's rules
against their recording (:func:`aacdata.store._annotation_store.event_problems`); a set is kept
even where none of its events remain. Reading the sets from their own groups, repair also
rebuilds sets that a damaged ``/annotations/zarr.json`` hides.
"""

from __future__ import annotations

import contextlib
import json
import os
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import PurePath, PurePosixPath
from typing import Any

import av
import numpy as np
import zarr
from zarr.core.sync import sync
from zarr.errors import GroupNotFoundError

from ..audio._channels import CODED_LAYOUTS, MAX_CHANNELS, coded_channels
from ..audio._transcode import decodes_repeatably
from ..codecs import _flac, _registry
from ..codecs._adts import SAMPLES_PER_FRAME, AdtsFrames, parse_adts
from ..codecs._codec import CODEC_FLAC, StreamConfig
from ..codecs._decoder import new_decoder
from ..errors import CorruptDataError, DecodeError, StoreFormatError, StoreNotFoundError
from . import _annotation_store, _chunks, _layout, _lock, _remote
from ._store import AACStore
from ._writer import PendingRecording, StoreWriter, stored_recording

STRUCTURE = ("frame_start", "num_frames", "byte_start", "num_bytes")
"""The columns that place a recording in ``/adts`` and ``/index``."""

_COMMIT_BYTES = 64 << 20
_UNREADABLE = (RuntimeError, ValueError)
"""What zarr raises for a chunk that does not decompress or decode (CorruptDataError is a
ValueError); outages and other OS errors propagate."""


@dataclass(frozen=True, slots=True)
class RepairReport:
    """Outcome of :func:`rebuild_store`.

    ``kept`` holds the ids copied to the new store, ``dropped`` ``(id, reason)`` for each
    recording left out (to import again from its source), ``findings`` what was wrong with
    the table as a whole and what was re-derived. A dropped recording whose id could not be
    verified is listed under the id the damaged table shows, its row number in the reason.
    ``annotation_sets`` holds ``(name, events)`` for each annotation set written to the new
    store, ``annotations_dropped`` ``(name, reason)`` for each set dropped and each group of
    events left out of a kept set.
    """

    kept: tuple[str, ...]
    dropped: tuple[tuple[str, str], ...]
    findings: tuple[str, ...] = ()
    annotation_sets: tuple[tuple[str, int], ...] = ()
    annotations_dropped: tuple[tuple[str, str], ...] = ()

    @property
    def ok(self) -> bool:
        """Nothing was dropped: no recording, no annotation set, no event."""
        return not self.dropped and not self.annotations_dropped

    def __repr__(self) -> str:
        sets = ""
        if self.annotation_sets or self.annotations_dropped:
            sets = f", annotation_sets={len(self.annotation_sets)}, annotations_dropped={len(self.annotations_dropped)}"
        return f"RepairReport(kept={len(self.kept)}, dropped={len(self.dropped)}, findings={len(self.findings)}{sets})"


def rebuild_store(
    source: _remote.StoreTarget,
    destination: _remote.StoreTarget,
    *,
    storage_options: Mapping[str, Any] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> RepairReport:
    """Write a new store holding every recording of ``source`` whose values are proven,
    bytes as they are (nothing is re-encoded); the others are dropped and listed, to
    import again from their sources (the same import command resumes into the new store).
    Annotation sets whose checksums hold follow, their events moved to the new rows; the
    sets and events left out are listed (see the module's notes).

    Raises
    ------
    StoreNotFoundError
        Nothing is at ``source``.
    StoreFormatError
        ``source`` is not an aacdata store (or its root attribute is damaged), or
        ``destination`` already holds recordings or annotation sets.
    """
    src = _Source.open(source, storage_options)
    table = _prove_table(src)
    dst = AACStore.open(destination, "a", storage_options=storage_options)
    kept: list[str] = []
    dropped: list[tuple[str, str]] = []
    findings = list(table.findings)
    n = src.counts.num_recordings
    with contextlib.ExitStack() as held:
        held.callback(dst.close)
        if len(dst) or dst.annotation_sets:
            raise StoreFormatError(
                f"{dst.path!r} already holds recordings or annotation sets; rebuild into a new store"
            )
        # One lock for the recordings and the sets that follow them.
        lock = held.enter_context(_lock.acquire(dst.zarr_store, dst.path))
        writer = StoreWriter(dst, lock=lock)
        held.callback(writer.close)
        for i in range(n):
            rid = table.ids[i]
            reasons = [*table.blocked, *table.row_problems.get(i, ())]
            pending = None
            if not reasons:
                try:
                    pending, reasons = _prove_recording(src, table, i)
                except (*_UNREADABLE, av.FFmpegError) as e:
                    reasons = [f"cannot be read ({type(e).__name__}: {e})"]
            if pending is None:
                reason = "; ".join(reasons)
                dropped.append((rid, reason if table.ids_proven else f"row {i}, id unverified: {reason}"))
            else:
                writer.add(pending)
                kept.append(rid)
                if writer.pending_bytes >= _COMMIT_BYTES:
                    writer.commit()
            if progress is not None:
                progress(i + 1, n)
        writer.commit()
        sets, sets_dropped = _carry_sets(src, table.ids, dst, lock, findings)
    return RepairReport(tuple(kept), tuple(dropped), tuple(findings), tuple(sets), tuple(sets_dropped))


def check_source(source: _remote.StoreTarget, *, storage_options: Mapping[str, Any] | None = None) -> None:
    """Raise what :func:`rebuild_store` raises for a source it cannot read at all (nothing
    there, not an aacdata store, a damaged root attribute or array metadata); return
    quietly for any store it can repair, however damaged its table and data."""
    _Source.open(source, storage_options)


def _carry_sets(
    src: _Source, ids: Sequence[str], dst: AACStore, lock: _lock.WriteLock, findings: list[str]
) -> tuple[list[tuple[str, int]], list[tuple[str, str]]]:
    """Write every readable annotation set of ``src`` to ``dst`` (whose recordings are
    committed), events moved to their recordings' new rows; what is left out, listed."""
    names, problems = _annotation_store.survey(src.zstore, where=src.where)
    dropped: list[tuple[str, str]] = []
    for name, problem in problems:
        if name:
            dropped.append((name, f"the set is dropped: {problem}"))
        else:
            findings.append(f"annotations: {problem}; the sets were read from their own groups")
    if not names:
        return [], dropped
    now = dst.reopen()
    try:
        row_of = {rid: row for row, rid in enumerate(now.ids)}
        # A row of the source whose id the new store holds (only kept recordings): its new row.
        rows = np.asarray([row_of.get(rid, -1) for rid in ids], dtype=np.int64)
        # Per source row: the kept recording's value; for a dropped one, one no event breaks.
        unbounded = np.iinfo(np.int64).max
        at_new = np.where(rows >= 0, rows, len(now))
        samples = np.append(now.column("num_samples"), unbounded)[at_new]
        channels = np.append(now.column("num_channels"), unbounded)[at_new]
        group = zarr.open_group(dst.zarr_store, mode="r+")
        written: list[tuple[str, int]] = []
        for name in names:
            try:
                ann = _annotation_store.read_set(src.zstore, name, num_recordings=len(ids), where=src.where)
            except CorruptDataError as e:
                dropped.append((name, f"the set is dropped: {e}"))
                continue
            # The rules are checked on the source's events (so that messages count as its
            # set does), against the kept recordings' values; the others' events go anyway.
            kept_rows = rows[ann.recording] >= 0 if len(ann) else np.zeros(0, dtype=bool)
            bad, lines = _annotation_store.event_problems(
                ann,
                ids=ids,
                num_samples=samples,
                num_channels=channels,
                node=f"{src.where}/{_annotation_store.GROUP}/{name}",
            )
            if (~kept_rows).any():
                gone = sorted({ids[r] for r in ann.recording[~kept_rows].tolist()})
                shown = ", ".join(map(repr, gone[:5])) + (", ..." if len(gone) > 5 else "")
                dropped.append(
                    (
                        name,
                        f"{int((~kept_rows).sum())} event(s) of {len(gone)} dropped recording(s) left out ({shown}); "
                        "once they are imported again, annotate them again from the set's sources",
                    )
                )
            dropped.extend((name, f"left out: {line}") for line in lines)
            moved = _annotation_store.remap(_annotation_store.take(ann, np.flatnonzero(~bad)), rows)
            _annotation_store.write_set(group, name, moved, lock=lock, num_recordings=len(now), where=now.path)
            written.append((name, len(moved)))
    finally:
        now.close()
    return written, dropped


# ---------------------------------------------------------------------- the source store


class _Source:
    """The arrays of the store to repair, read straight through Zarr (no table checks)."""

    def __init__(self, group: zarr.Group, where: str) -> None:
        self.zstore = group.store
        self.where = where
        attrs = group.attrs.asdict()
        self.counts = _layout.parse_root_attributes(attrs, where)
        self.version = _layout.format_version(attrs)
        self.column_crc32 = _layout.stored_column_crc32(attrs)
        self.arrays = _layout.open_arrays(group, where, self.counts, self.version)

    @classmethod
    def open(cls, target: _remote.StoreTarget, storage_options: Mapping[str, Any] | None) -> _Source:
        where = _remote.describe(target)
        if _remote.is_local(target) and not os.path.exists(_remote.local_path(target)):
            raise StoreNotFoundError(f"no store at {where!r}")
        # Local files are read only where they are regular files: a FIFO or /dev/zero in
        # place of a chunk is damage to repair around, not a read that never ends.
        zstore = _chunks.checked(_remote.open_store(target, read_only=True, storage_options=storage_options))
        if not _remote.is_local(target) and not sync(zstore.exists("zarr.json")):
            raise StoreNotFoundError(f"no store at {where!r}")
        try:
            group = zarr.open_group(zstore, mode="r")
        except (GroupNotFoundError, OSError, ValueError, KeyError, TypeError, RecursionError) as e:  # damaged zarr.json
            raise StoreFormatError(f"{where!r}: the Zarr group cannot be opened ({type(e).__name__}: {e})") from None
        return cls(group, where)

    def column(self, name: str) -> np.ndarray | list[str]:
        """A recordings column over the committed rows: int64 for numbers, str for text."""
        n = self.counts.num_recordings
        values = np.asarray(self.arrays.columns[name][:n]).reshape(-1)
        if name in _layout.NUMERIC_COLUMNS:
            return values.astype(np.int64)
        return [str(x) for x in values]

    def adts(self, start: int, stop: int) -> bytes:
        return bytes(np.asarray(self.arrays.adts[start:stop], dtype=np.uint8))

    def index_rows(self, start: int, stop: int) -> np.ndarray:
        return np.asarray(self.arrays.index[start:stop], dtype=np.int64).reshape(-1, 3)

    def frame_crcs(self, start: int, stop: int) -> np.ndarray:
        return np.asarray(self.arrays.frame_crc[start:stop], dtype=np.uint32)

    def structure_from_index(self) -> dict[str, np.ndarray] | None:
        """``frame_start``, ``num_frames``, ``byte_start``, ``num_bytes`` re-derived from
        ``/index`` (a recording's first frame has ``sample_pos`` 0), or None where the
        index does not show the committed number of recordings tiling frames and bytes."""
        c = self.counts
        starts, offsets = [], []
        chunk = int(self.arrays.index.chunks[0])
        step = chunk * max(1, (1 << 14) // chunk)  # whole chunks of this store, ~16384 rows
        for a in range(0, c.num_frames, step):
            try:
                rows = self.index_rows(a, min(a + step, c.num_frames))
            except _UNREADABLE:
                return None
            first = np.flatnonzero(rows[:, 2] == 0)
            starts.append(first + a)
            offsets.append(rows[first, 0])
        frame_start = np.concatenate(starts) if starts else np.zeros(0, np.int64)
        byte_start = np.concatenate(offsets) if offsets else np.zeros(0, np.int64)
        if frame_start.size != c.num_recordings:
            return None
        num_frames = np.diff(np.append(frame_start, c.num_frames))
        num_bytes = np.diff(np.append(byte_start, c.num_bytes))
        if c.num_recordings and (byte_start[0] != 0 or np.any(num_bytes <= 0)):
            return None
        return {"frame_start": frame_start, "num_frames": num_frames, "byte_start": byte_start, "num_bytes": num_bytes}


# ---------------------------------------------------------------------- the table


@dataclass(frozen=True, slots=True)
class _Table:
    """The recordings table as far as it is proven.

    ``values`` holds the columns to use (stored or re-derived); ``proven`` the columns
    proven for every row; ``derive`` those to re-derive per recording from its bytes;
    ``blocked`` reasons that drop every recording, ``row_problems`` those that drop one.
    """

    ids: list[str]
    ids_proven: bool
    values: dict[str, Any]
    proven: frozenset[str]
    derive: frozenset[str]
    blocked: tuple[str, ...]
    row_problems: dict[int, tuple[str, ...]]
    findings: tuple[str, ...]


def _prove_table(src: _Source) -> _Table:
    n = src.counts.num_recordings
    values: dict[str, Any] = {}
    proven: set[str] = set()
    findings: list[str] = []
    for name in (*_layout.numeric_columns(src.version), *_layout.TEXT_COLUMNS):
        try:
            values[name] = src.column(name)
        except _UNREADABLE as e:
            values[name] = None
            findings.append(f"column {name!r} cannot be read ({type(e).__name__}: {e})")
            continue
        expected = src.column_crc32.get(name)
        if expected is None:
            findings.append(f"column {name!r} has no checksum in the root attribute")
        elif _layout.column_crc32(name, values[name]) == expected:
            proven.add(name)
        else:
            findings.append(f"column {name!r} does not match its checksum (a lost or damaged chunk)")

    def matches(name: str, column: Any) -> bool:
        return src.column_crc32.get(name) == _layout.column_crc32(name, column)

    blocked: list[str] = []
    # Places: stored, re-derived and proven whole, or re-derived and proven per recording
    # by its crc32 (checked in _prove_recording whenever that column is proven).
    if not proven.issuperset(STRUCTURE):
        derived = src.structure_from_index()
        if derived is not None and all(matches(c, derived[c]) for c in STRUCTURE):
            values.update(derived)
            proven.update(STRUCTURE)
            findings.append(f"{', '.join(STRUCTURE)} re-derived from /index; they match their checksums")
        elif derived is not None and "crc32" in proven:
            values.update(derived)
            findings.append(
                f"{', '.join(STRUCTURE)} re-derived from /index; each recording is kept only if its bytes "
                "match its crc32"
            )
        else:
            blocked.append("its place in the store (frame_start, num_frames, byte_start, num_bytes) cannot be verified")
    derive = {c for c in ("crc32", "sample_rate", "num_channels", "flags", *_layout.V2_COLUMNS) if c not in proven}
    if "crc32" in derive and not proven.issuperset(STRUCTURE):
        blocked.append("its bytes cannot be verified (the crc32 and place columns are both damaged)")
    for name in ("num_samples", "encoder_delay"):
        if name not in proven:
            blocked.append(f"{name} cannot be verified (its column is damaged and it cannot be re-derived)")
    for name in ("source", "metadata"):
        if name not in proven:
            blocked.append(f"its {name} cannot be verified (the {name} column is damaged)")

    ids = values["id"] if values["id"] is not None else [f"<row {i}>" for i in range(n)]
    ids_proven = "id" in proven
    if not ids_proven and "source" in proven:
        found = _ids_from_paths(values["source"], src.column_crc32.get("id"))
        if found is not None:
            ids, ids_proven = found, True
            findings.append("ids re-derived from the source paths; they match their checksum")
    if not ids_proven:
        blocked.append("its id cannot be verified (the id column is damaged)")
    # An import commits each id once and never an empty one: where the table says otherwise,
    # no row can be told to be the real one.
    rows_of: dict[str, list[int]] = {}
    for i, rid in enumerate(ids):
        rows_of.setdefault(rid, []).append(i)
    row_problems: dict[int, tuple[str, ...]] = {}
    for rid, rows in rows_of.items():
        for i in rows:
            if not rid:
                row_problems[i] = ("its id is empty",)
            elif len(rows) > 1:
                others = ", ".join(str(j) for j in rows if j != i)
                row_problems[i] = (f"its id is also the id of row {others}",)
    return _Table(
        ids=list(ids),
        ids_proven=ids_proven,
        values=values,
        proven=frozenset(proven),
        derive=frozenset(derive),
        blocked=tuple(blocked),
        row_problems=row_problems,
        findings=tuple(findings),
    )


def _ids_from_paths(sources: Sequence[str], expected: int | None) -> list[str] | None:
    """Ids as the import made them (source paths relative to one root), if some root gives
    a column matching the stored CRC-32."""
    if expected is None or not sources:
        return None
    try:
        parts = [PurePath(str(json.loads(s)["path"])).parts for s in sources]
    except (ValueError, KeyError, TypeError):
        return None
    common = 0
    while all(len(p) > common + 1 and p[common] == parts[0][common] for p in parts):
        common += 1
    for depth in range(common, -1, -1):
        ids = [PurePosixPath(*p[depth:]).as_posix() for p in parts]
        if _layout.column_crc32("id", ids) == expected:
            return ids
    return None


# ---------------------------------------------------------------------- one recording


def _prove_recording(src: _Source, table: _Table, i: int) -> tuple[PendingRecording | None, list[str]]:
    """The recording of row ``i`` ready to append, or None and why it is not proven."""
    v = table.values

    def value(name: str) -> int:
        return int(v[name][i])

    used = [*STRUCTURE, "num_samples", "encoder_delay", *(c for c in ("crc32", "flags") if c not in table.derive)]
    wrapped = [f"{c} holds {value(c) % (1 << 64)}; expected a value below 2**63" for c in used if value(c) < 0]
    if wrapped:  # read as int64: a uint64 no import writes
        return None, wrapped
    frame_start, nf, byte_start, nb = (value(c) for c in STRUCTURE)
    if nf < 1:
        return None, [f"num_frames is {nf}; every recording holds at least one frame"]
    data = src.adts(byte_start, byte_start + nb)
    reasons = []
    if "crc32" not in table.derive and zlib.crc32(data) != value("crc32"):
        reasons.append(
            f"checksum mismatch: stored bytes have crc32 {zlib.crc32(data):08x}, table says {value('crc32'):08x}"
        )
    flac_rows = value("codec") == CODEC_FLAC if "codec" not in table.derive else _flac_header(data) is not None
    if flac_rows:
        return _salvage_flac(src, table, i, data, reasons)
    try:
        frames = parse_adts(data)
    except CorruptDataError as e:
        return None, [*reasons, f"ADTS stream damaged: {e}"]
    if len(frames) != nf:
        reasons.append(f"headers show {len(frames)} frames, table says {nf}")
    else:
        reasons += _frame_problems(src, frames.offsets, frames.sizes, data, frame_start, byte_start)
    try:
        source = _json_object(v["source"][i], "source")
        metadata = _json_object(v["metadata"][i], "metadata")
    except CorruptDataError as e:
        return None, [*reasons, str(e)]
    stream_rate = frames.sample_rate if "stream_sample_rate" in table.derive else value("stream_sample_rate")
    if frames.sample_rate != stream_rate:
        reasons.append(f"headers say {frames.sample_rate} Hz, table says {stream_rate} Hz")
    expanded = source.get("time_expansion")
    true_rate = expanded.get("sample_rate") if isinstance(expanded, dict) else None
    if "sample_rate" not in table.derive:
        sample_rate = value("sample_rate")
    elif "stream_sample_rate" in table.derive and src.version == 1:
        sample_rate = stream_rate  # version 1 stored every recording at its own rate
    else:
        sample_rate = true_rate if isinstance(true_rate, int) and true_rate > 0 else stream_rate
    if sample_rate not in (stream_rate, true_rate):
        reasons.append(f"sample_rate {sample_rate} Hz is neither the frames' rate nor a time-expanded source's")
    needed = value("encoder_delay") + value("num_samples")
    if len(frames) * SAMPLES_PER_FRAME < needed:
        reasons.append(f"{len(frames)} frames cannot hold delay + num_samples = {needed} samples")
    if reasons:
        return None, reasons
    channels, problem = _num_channels(data, frames, None if "num_channels" in table.derive else value("num_channels"))
    if problem:
        return None, [problem]
    passthrough = bool(source.get("passthrough", False))
    noise, problem = _random_noise(
        data, frames, channels, passthrough, None if "flags" in table.derive else value("flags")
    )
    if problem:
        return None, [problem]
    pending = stored_recording(
        table.ids[i],
        data,
        frames.sizes,
        num_samples=value("num_samples"),
        sample_rate=sample_rate,
        num_channels=channels,
        encoder_delay=value("encoder_delay"),
        random_noise=noise,
        source=source,
        metadata=metadata,
        stream_sample_rate=stream_rate,
        bandwidth_hz=_bandwidth(value("bandwidth_hz") if "bandwidth_hz" not in table.derive else None, source),
    )
    return pending, []


def _flac_header(data: bytes) -> _flac.FrameHeader | None:
    """The header of the first FLAC frame of ``data`` (frame number 0), if it holds one."""
    head = _flac.parse_header(data, 0)
    return head if head is not None and head.number == 0 else None


def _salvage_flac(
    src: _Source, table: _Table, i: int, data: bytes, reasons: list[str]
) -> tuple[PendingRecording | None, list[str]]:
    """A FLAC recording, proven like an AAC one: its frames found by their headers (which
    name rate, channels and sample size), the index rows and frame CRCs against them, and
    every frame decoded to exactly ``num_samples`` samples."""
    v = table.values

    def value(name: str) -> int:
        return int(v[name][i])

    frame_start, nf, byte_start, _ = (value(c) for c in STRUCTURE)
    head = _flac_header(data)
    if head is None:
        return None, [*reasons, "FLAC stream damaged: no header for frame 0"]
    step = value("frame_samples") if "frame_samples" not in table.derive else head.block_size
    config = StreamConfig(
        CODEC_FLAC, head.sample_rate, head.num_channels, step, head.bits_per_sample, num_samples=value("num_samples")
    )
    try:
        offsets, sizes = _flac.find_frames(data, config)
    except CorruptDataError as e:
        return None, [*reasons, f"FLAC stream damaged: {e}"]
    if offsets.size != nf:
        reasons.append(f"headers show {offsets.size} frames, table says {nf}")
    else:
        reasons += _frame_problems(src, offsets, sizes, data, frame_start, byte_start, step=step, framing="FLAC")
    for name, got in (("sample_rate", head.sample_rate), ("num_channels", head.num_channels)):
        if name not in table.derive and value(name) != got:
            reasons.append(f"frame headers say {name} {got}; the table says {value(name)}")
    if value("encoder_delay") != 0:
        reasons.append(f"encoder_delay is {value('encoder_delay')}; FLAC recordings have none")
    try:
        source = _json_object(v["source"][i], "source")
        metadata = _json_object(v["metadata"][i], "metadata")
    except CorruptDataError as e:
        return None, [*reasons, str(e)]
    if reasons:
        return None, reasons
    flac = _registry.CODECS[CODEC_FLAC]
    decoded = 0
    bounds = np.append(offsets, offsets[-1] + sizes[-1])
    try:
        for _, pcm in flac.decode_stream(flac.new_decoder(config), data, bounds, config=config, what="frames"):
            decoded += pcm.shape[1]
    except DecodeError as e:
        return None, [str(e)]
    if decoded != value("num_samples"):
        return None, [f"frames decode to {decoded} samples; num_samples is {value('num_samples')}"]
    pending = stored_recording(
        table.ids[i],
        data,
        sizes,
        num_samples=decoded,
        sample_rate=head.sample_rate,
        num_channels=head.num_channels,
        encoder_delay=0,
        random_noise=False,
        source=source,
        metadata=metadata,
        stream_sample_rate=head.sample_rate,
        bandwidth_hz=head.sample_rate // 2,
        codec=CODEC_FLAC,
        frame_samples=step,
        bits_per_sample=head.bits_per_sample,
    )
    return pending, []


def _bandwidth(stored: int | None, source: dict[str, Any]) -> int:
    """A recording's bandwidth: the proven column's value, else what its source info
    records, else 0 (unknown)."""
    if stored is not None:
        return stored
    recorded = source.get("bandwidth_hz")
    return recorded if isinstance(recorded, int) and recorded > 0 else 0


def _frame_problems(
    src: _Source,
    offsets: np.ndarray,
    sizes: np.ndarray,
    data: bytes,
    frame_start: int,
    byte_start: int,
    *,
    step: int = SAMPLES_PER_FRAME,
    framing: str = "ADTS",
) -> list[str]:
    """Index rows and frame CRCs of a recording against its frame headers and bytes."""
    nf = int(offsets.size)
    rows = src.index_rows(frame_start, frame_start + nf)
    expected_pos = np.arange(nf, dtype=np.int64) * step
    bad = np.flatnonzero((rows[:, 0] != offsets + byte_start) | (rows[:, 1] != sizes) | (rows[:, 2] != expected_pos))
    if bad.size:
        return [f"index row {int(bad[0])} disagrees with the {framing} headers"]
    stored = src.frame_crcs(frame_start, frame_start + nf)
    view = memoryview(data)
    failing = [
        k
        for k, (a, size) in enumerate(zip(offsets.tolist(), sizes.tolist(), strict=True))
        if zlib.crc32(view[a : a + size]) != int(stored[k])
    ]
    if failing:
        shown = ", ".join(map(str, failing[:5])) + (", ..." if len(failing) > 5 else "")
        return [f"{len(failing)} frame(s) fail their CRC-32: {shown}"]
    return []


def _num_channels(data: bytes, frames: AdtsFrames, stored: int | None) -> tuple[int, str]:
    """The recording's channel count, proven by decoding every frame: ``stored`` where the
    column is proven (then checked), else re-derived; or 0 and why not.

    A stream whose headers say ``channel_config = 0`` carries its layout in a program
    config element that the store keeps out of the frames: it decodes only with the right
    layout given up front, so each coded layout is tried (a wrong one does not decode).
    Decoding gives the coded channels; 9 to 15 recorded channels are coded as 16, so from
    16 decoded ones the count cannot be re-derived.
    """
    if stored is not None:
        try:
            candidates = [coded_channels(stored)]
        except ValueError as e:
            return 0, f"num_channels: {e}"
    else:
        candidates = sorted(CODED_LAYOUTS)
    problem = ""
    for coded in candidates if frames.channel_config == 0 else [0]:
        try:
            ctx = new_decoder((frames.sample_rate, coded, True) if coded else None)
        except CorruptDataError as e:
            return 0, str(e)
        decoded, problem = _decode_all(ctx, data, frames)
        if not problem and (not coded or decoded == coded):
            break
    else:
        return 0, problem or "no channel layout decodes its frames"
    if stored is not None:
        if coded_channels(stored) != decoded:
            coded = coded_channels(stored)
            return 0, f"frames decode to {decoded} channels; num_channels {stored} is coded as {coded}"
        return stored, ""
    if decoded == MAX_CHANNELS:
        return 0, f"num_channels cannot be verified (its column is damaged; {MAX_CHANNELS} coded channels hold 9 to 16)"
    return decoded, ""


def _decode_all(ctx: Any, data: bytes, frames: AdtsFrames) -> tuple[int, str]:
    """Decode every frame: the channel count they all share, or 0 and the first problem
    (a frame that fails, one of another size or channel count, a frame too few)."""
    channels = count = 0
    for k, (a, size) in enumerate(zip(frames.offsets.tolist(), frames.sizes.tolist(), strict=True)):
        try:
            decoded = ctx.decode(av.Packet(data[a : a + size]))
        except av.FFmpegError as e:
            return 0, f"frame {k} does not decode ({e})"
        for frame in decoded:
            got = frame.layout.nb_channels
            if frame.samples != SAMPLES_PER_FRAME or (channels and got != channels):
                return 0, f"frame {k} decodes to {frame.samples} samples of {got} channels"
            channels = got
            count += 1
    if count != len(frames):
        return 0, f"{len(frames)} frames decode to {count}"
    return channels, ""


def _random_noise(
    data: bytes, frames: AdtsFrames, channels: int, passthrough: bool, stored: int | None
) -> tuple[bool, str]:
    """Whether the stream needs a fresh decoder per window (PNS), from ``stored`` flags
    where the column is proven, else re-derived: never for an encoded recording (the
    encoder runs with PNS off), by the importer's own test for a passthrough one. The
    other bits are the writer's to derive from the bytes: stored ones that it would not
    write again drop the recording."""
    pce = _layout.FLAG_PCE if frames.channel_config == 0 else 0
    if stored is not None:
        if stored & ~_layout.FLAG_FRESH_DECODER != pce:
            fresh = _layout.FLAG_FRESH_DECODER
            return False, f"flags holds {stored:#x}; its stream gives {pce:#x} beside bit {fresh:#x}"
        return bool(stored & _layout.FLAG_FRESH_DECODER), ""
    if not passthrough:
        return False, ""
    if pce:  # the importer's test decodes ADTS-configured streams only
        return False, "flags cannot be verified (its column is damaged)"
    return not decodes_repeatably(data, frames.sizes, channels), ""


def _json_object(text: str, column: str) -> dict[str, Any]:
    if not text:
        return {}
    try:
        obj = json.loads(text)
    except json.JSONDecodeError:
        raise CorruptDataError(f"its {column} JSON does not parse") from None
    if not isinstance(obj, dict):
        raise CorruptDataError(f"its {column} JSON is not an object")
    return obj
