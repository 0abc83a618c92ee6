"""Merge stores built in parts (``aacdata import --shard K/N``) into one store.

Every recording is copied as stored: its ADTS bytes, frame sizes and table values go
through the single writer (:class:`StoreWriter`) exactly as an import appends a converted
file, so nothing is re-encoded and the destination's index, checksums and counts are
written by the same commit protocol. Parts are read in byte order, a few tens of MB at a
time; each recording's bytes are checked against its stored CRC-32 before they are copied.

Merging is resumable: a recording whose id the destination already holds with the same
source checksum is skipped, so a merge that was stopped is finished by running it again.

Annotation sets follow their recordings. Every set of every part is read (and checked:
commit, CRC-32s, rows, event ranges) before anything is written, so a damaged set stops
the merge as a damaged recording does. Once the recordings are committed, the events of
each set name are moved to their recordings' rows in the destination (found by id) and
combined with the destination's set of that name, if any, by
:func:`aacdata.store._annotation_store.combine`: classes become the union (each event keeps its
class by name, so a class index may change), sources the union, and an event found in
several of them is kept once (as many times as one of them holds it), so a merge run again
adds nothing. Each set is then replaced in one commit.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import zarr

from ..annotations import Annotations
from ..errors import CorruptDataError, StoreFormatError
from . import _annotation_store, _lock, _remote
from ._runs import copied_recording, json_object, runs
from ._store import AACStore
from ._writer import StoreWriter

_COMMIT_BYTES = 64 << 20
_COMMIT_RECORDINGS = 4096


@dataclass(frozen=True, slots=True)
class MergeReport:
    """What :func:`merge_stores` did: ids copied, ids skipped (already in the destination
    with the same source checksum), ``(part, set)`` for annotation sets left behind (none:
    every set is carried; kept for callers that list them), and ``(set, events)`` for each
    annotation set of the destination that the merge wrote or found complete."""

    store: str
    merged: tuple[str, ...]
    skipped: tuple[str, ...]
    annotation_sets: tuple[tuple[str, str], ...]
    bytes_written: int
    annotations: tuple[tuple[str, int], ...] = ()

    def __repr__(self) -> str:
        return (
            f"MergeReport(store={self.store!r}, merged={len(self.merged)}, skipped={len(self.skipped)}, "
            f"annotation_sets={len(self.annotation_sets)}, bytes_written={self.bytes_written}, "
            f"annotations={len(self.annotations)})"
        )


def merge_stores(
    parts: Sequence[_remote.StoreTarget],
    destination: _remote.StoreTarget,
    *,
    storage_options: Mapping[str, Any] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> MergeReport:
    """Append every recording of ``parts`` to ``destination`` (created if missing), bytes
    as stored, parts in the order given and each part's recordings in its own order.

    Raises
    ------
    StoreFormatError
        An id is in two parts (the message names it and both parts), or already in
        ``destination`` with another source checksum, or ``destination`` is one of the parts.
    CorruptDataError
        A part's recording fails its checksum, or its index does not tile its bytes, or
        one of its annotation sets (or the destination's set of the same name) cannot be
        read or breaks the store's rules (run ``aacdata verify`` on the part, and
        ``aacdata repair`` where it is damaged). Nothing is written before the sets are
        checked.
    StoreLockedError
        Another process writes to ``destination``.
    """
    if not parts:
        raise ValueError("merge needs at least one part")
    target = _remote.describe(destination)
    for part in parts:
        if _same_place(part, destination):
            raise StoreFormatError(f"the destination {target!r} is also given as a part; merge into a new store")
    opened: list[AACStore] = []
    try:
        for part in parts:
            opened.append(AACStore.open(part, storage_options=storage_options))
        owner: dict[str, int] = {}
        for k, st in enumerate(opened):
            for rid in st.ids:
                other = owner.setdefault(rid, k)
                if other != k:
                    raise StoreFormatError(
                        f"recording id {rid!r} is in both {opened[other].path!r} and {st.path!r}; ids must be unique "
                        "across the parts (import each part with the same sources and --shard K/N)"
                    )
        total = sum(len(st) for st in opened)
        sets = [_part_sets(st) for st in opened]  # checked before anything is written
        with AACStore.open(destination, "a", storage_options=storage_options) as dst:
            with _lock.acquire(dst.zarr_store, dst.path) as lock:
                _check_destination_sets(dst, {name for found in sets for name in found})
                writer = StoreWriter(dst, lock=lock)
                try:
                    merged, skipped, written = _merge_into(writer, opened, total, progress)
                finally:
                    writer.close()
                carried = _merge_sets(dst, lock, opened, sets)
            return MergeReport(dst.path, tuple(merged), tuple(skipped), (), written, tuple(carried))
    finally:
        for st in opened:
            st.close()


def _part_sets(part: AACStore) -> dict[str, Annotations]:
    """Every annotation set of a part, read and checked (damage raises CorruptDataError)."""
    names, problems = _annotation_store.survey(part.zarr_store, where=part.path)
    if problems:
        raise CorruptDataError(
            f"{part.path!r}: {problems[0][1]}; run `aacdata verify {part.path}` (and `aacdata repair` if it is "
            "damaged) before merging"
        )
    out = {}
    for name in names:
        out[name] = _checked_set(part, name)
    return out


def _check_destination_sets(dst: AACStore, names: set[str]) -> None:
    """The destination's sets that the merge will combine must be readable and sound."""
    have, problems = _annotation_store.survey(dst.zarr_store, where=dst.path)
    for name, problem in problems:
        if name in names:
            raise CorruptDataError(
                f"the destination's annotation set {name!r} cannot be read ({problem}); run `aacdata verify "
                f"{dst.path}` (and `aacdata repair` if it is damaged) before merging into it"
            )
    for name in names & set(have):
        _checked_set(dst, name)


def _checked_set(store: AACStore, name: str) -> Annotations:
    ann = store.annotations(name)
    _, lines = _annotation_store.event_problems(
        ann,
        ids=store.ids,
        num_samples=store.column("num_samples"),
        num_channels=store.column("num_channels"),
        node=f"{store.path}/{_annotation_store.GROUP}/{name}",
    )
    if lines:
        raise CorruptDataError(
            f"{lines[0]}; run `aacdata verify {store.path}` (and `aacdata repair` if it is damaged) before merging"
        )
    return ann


def _merge_sets(
    dst: AACStore, lock: _lock.WriteLock, parts: Sequence[AACStore], sets: Sequence[dict[str, Annotations]]
) -> list[tuple[str, int]]:
    """Combine each set name's events of the parts (moved to the destination's rows) with
    the destination's set of that name; write the sets that change."""
    names = sorted({name for found in sets for name in found})
    if not names:
        return []
    out = []
    with dst.reopen() as now:
        row_of = {rid: row for row, rid in enumerate(now.ids)}
        have = set(now.annotation_sets)
        group = zarr.open_group(dst.zarr_store, mode="r+")
        for name in names:
            tables = []
            existing = _checked_set(now, name) if name in have else None
            if existing is not None:
                tables.append(existing)
            for part, found in zip(parts, sets, strict=True):
                if name in found:
                    rows = np.asarray([row_of[rid] for rid in part.ids], dtype=np.int64)
                    tables.append(_annotation_store.remap(found[name], rows))
            combined = _annotation_store.combine(tables)
            if existing is None or not _same(combined, existing):
                _annotation_store.write_set(
                    group, name, combined, replace=True, lock=lock, num_recordings=len(now), where=now.path
                )
            out.append((name, len(combined)))
    return out


def _same(a: Annotations, b: Annotations) -> bool:
    """Two resolved tables hold the same events, classes and sources."""
    if a.classes != b.classes or a.sources != b.sources or len(a) != len(b):
        return False
    return (
        all(
            np.array_equal(getattr(a, c), getattr(b, c), equal_nan=c in ("low_hz", "high_hz"))
            for c in ("recording", "start", "stop", "label", "low_hz", "high_hz", "channel")
        )
        and a.extra.tolist() == b.extra.tolist()
    )


def _merge_into(
    writer: StoreWriter, parts: Sequence[AACStore], total: int, progress: Callable[[int, int], None] | None
) -> tuple[list[str], list[str], int]:
    merged: list[str] = []
    skipped: list[str] = []
    written = 0
    done = 0
    for part in parts:
        sources = part.text_column("source")
        metadata = part.text_column("metadata")
        todo: list[int] = []
        for i, rid in enumerate(part.ids):
            checksum = _checksum(sources[i])
            committed = writer.committed_ids.get(rid)
            if committed is None:
                todo.append(i)
            elif committed == checksum and checksum:
                skipped.append(rid)
            else:
                raise StoreFormatError(
                    f"recording id {rid!r} of {part.path!r} is already in the destination with another source "
                    f"checksum ({committed or 'unknown'}, the part has {checksum or 'none'}); remove one of them"
                )
        done += len(part) - len(todo)
        for run in runs(part, todo):
            for i in run.rows:
                rec = part.recording(i)
                writer.add(
                    copied_recording(
                        rec,
                        run,
                        source=sources[i],
                        metadata=metadata[i],
                        where=part.path,
                        lead="run",
                        end="before merging",
                    )
                )
                merged.append(rec.id)
                written += rec.num_bytes
                done += 1
                if writer.pending_bytes >= _COMMIT_BYTES or len(writer) >= _COMMIT_RECORDINGS:
                    writer.commit()
            if progress is not None:
                progress(done, total)
        writer.commit()
        if progress is not None:
            progress(done, total)
    return merged, skipped, written


def _checksum(text: str) -> str:
    value = json_object(text).get("checksum")
    return value if isinstance(value, str) else ""


def _same_place(a: _remote.StoreTarget, b: _remote.StoreTarget) -> bool:
    if _remote.is_local(a) and _remote.is_local(b):
        return os.path.realpath(_remote.local_path(a)) == os.path.realpath(_remote.local_path(b))
    return _remote.describe(a) == _remote.describe(b)
