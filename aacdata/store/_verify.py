"""Checks of a store: every recording's bytes, index rows, CRCs, table values and JSON,
and every annotation set (metadata, commit, CRCs, rows and event ranges).

Used by :meth:`AACStore.verify` (and so by ``aacdata verify``); it reads the store only
through the store's public accessors, so other tools (repair) can run the same checks.
A recording or set that cannot be checked (a chunk that does not decode, a value out of
range) is reported with its reason, and checking goes on with the next one.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ..codecs._fast import fastaac
from ..errors import AACDataError, CorruptDataError, DecodeError
from . import _annotation_store

if TYPE_CHECKING:
    from ._store import AACStore

Progress = Callable[[int, int], None]
"""``progress(done, total)``: the one progress callback signature of long operations."""


@dataclass(frozen=True, slots=True)
class VerifyReport:
    """Outcome of :meth:`AACStore.verify`: ``problems`` holds ``(id, reason)`` pairs for
    damaged recordings, ``store_problems`` what is wrong with the store as a whole (e.g. a
    recordings column that fails its checksum), ``annotation_sets`` the names of the
    annotation sets checked and ``annotation_problems`` ``(set, reason)`` pairs for the
    damaged ones (set ``""``: the ``/annotations`` group itself)."""

    num_recordings: int
    problems: tuple[tuple[str, str], ...]
    store_problems: tuple[str, ...] = ()
    annotation_sets: tuple[str, ...] = ()
    annotation_problems: tuple[tuple[str, str], ...] = ()

    @property
    def ok(self) -> bool:
        return not self.problems and not self.store_problems and not self.annotation_problems

    @property
    def bad_ids(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(i for i, _ in self.problems))

    @property
    def bad_sets(self) -> tuple[str, ...]:
        """Names of the annotation sets with a problem (``""``: the ``/annotations`` group)."""
        return tuple(dict.fromkeys(name for name, _ in self.annotation_problems))

    def __repr__(self) -> str:
        sets = ""
        if self.annotation_sets or self.annotation_problems:
            sets = f", annotation_sets={len(self.annotation_sets)}, bad_sets={len(self.bad_sets)}"
        return (
            f"VerifyReport(num_recordings={self.num_recordings}, num_bad={len(self.bad_ids)}, "
            f"store_problems={len(self.store_problems)}{sets}, ok={self.ok})"
        )


def verify_store(store: AACStore, *, decode: bool = True, progress: Progress | None = None) -> VerifyReport:
    """Check every committed recording of ``store`` (see :meth:`AACStore.verify`)."""
    problems: list[tuple[str, str]] = []
    store_problems = [*store.table_problems]
    json_ok = True
    for column in ("source", "metadata"):
        try:
            store_problems += store.check_columns((column,))
        except CorruptDataError as e:
            store_problems.append(str(e))
            json_ok = False
    ids = store.ids
    for i in range(len(store)):
        try:
            problems.extend((ids[i], reason) for reason in verify_recording(store, i, decode=decode))
            if json_ok:
                store.recording(i)  # parses its source and metadata JSON
        except AACDataError as e:
            problems.append((ids[i], str(e)))
        if progress is not None:
            progress(i + 1, len(store))
    # Event ranges need num_samples and num_channels: only where the table is sound.
    sound = not store.table_problems
    sets, set_problems = _annotation_store.check_sets(
        store.zarr_store,
        where=store.path,
        ids=ids,
        num_samples=store.column("num_samples") if sound else None,
        num_channels=store.column("num_channels") if sound else None,
    )
    return VerifyReport(
        num_recordings=len(store),
        problems=tuple(problems),
        store_problems=tuple(store_problems),
        annotation_sets=tuple(sets),
        annotation_problems=tuple(set_problems),
    )


def verify_recording(store: AACStore, i: int, *, decode: bool = True) -> list[str]:
    """Why recording ``i`` is damaged (an empty list: it is sound): its bytes against its
    CRC-32, its index rows against its codec's frame headers, each frame against its CRC-32, the
    table's rate and length against the frames, and (``decode=True``) every frame decoded."""
    problem = store.row_problem(i)
    if problem is not None:
        return [problem]
    value = {name: int(store.column(name)[i]) for name in _COLUMNS}
    reasons = []
    data = store.stored_bytes(i, check=False)
    crc = zlib.crc32(data)
    if crc != value["crc32"]:
        reasons.append(f"checksum mismatch: stored bytes have crc32 {crc:08x}, table says {value['crc32']:08x}")
    rows = store.frame_index(i).astype(np.int64)
    codec, config = store.codec(i), store.stream_config(i)
    try:
        offsets, sizes = codec.parse_frames(data, config)
    except CorruptDataError as e:
        return [*reasons, f"{codec.framing} stream damaged: {e}"]
    nf = value["num_frames"]
    positions = np.arange(nf, dtype=np.int64) * config.frame_samples
    if offsets.size != nf:
        reasons.append(f"headers show {offsets.size} frames, table says {nf}")
    else:
        wrong = (rows[:, 0] != offsets + value["byte_start"]) | (rows[:, 1] != sizes)
        wrong |= rows[:, 2] != positions
        if wrong.any():
            reasons.append(f"index row {int(np.flatnonzero(wrong)[0])} disagrees with the {codec.framing} headers")
        elif nf:
            bounds = np.append(offsets, offsets[-1] + sizes[-1])
            bad = [k for k, _ in frames_failing_crc(data, bounds, store.frame_crcs(i))]
            if bad:
                shown = ", ".join(map(str, bad[:5])) + (", ..." if len(bad) > 5 else "")
                reasons.append(f"{len(bad)} frame(s) fail their CRC-32: {shown}")
    needed = value["encoder_delay"] + value["num_samples"]
    if nf * config.frame_samples < needed:
        reasons.append(f"{nf} frames cannot hold delay + num_samples = {needed} samples")
    if decode and not reasons and nf:
        bounds = np.append(offsets, offsets[-1] + sizes[-1])
        decoded = 0
        try:
            for _, pcm in codec.decode_stream(codec.new_decoder(config), data, bounds, config=config, what="decoding"):
                decoded += pcm.shape[1]
        except DecodeError as e:
            reasons.append(str(e))
        else:
            if decoded < needed:
                reasons.append(f"frames decode to {decoded} samples; delay + num_samples = {needed}")
    return reasons


_COLUMNS = ("crc32", "byte_start", "num_frames", "encoder_delay", "num_samples")


def frames_failing_crc(
    data: bytes, bounds: np.ndarray, expected: np.ndarray, *, stop_at_first: bool = False, compiled: bool = True
) -> list[tuple[int, int]]:
    """``(k, crc)`` of the frames whose CRC-32 is not ``expected[k]``: frame ``k`` is
    ``data[bounds[k] - bounds[0]:bounds[k + 1] - bounds[0]]`` (``bounds`` may be offsets
    in ``/adts``)."""
    if stop_at_first and compiled and fastaac is not None:  # the read path: one call instead of one per frame
        k, got = fastaac.first_bad_frame(
            data, np.ascontiguousarray(bounds, dtype=np.int64), np.ascontiguousarray(expected, dtype=np.uint32)
        )
        return [] if k < 0 else [(k, got)]
    view = memoryview(data)
    edges = bounds.tolist()
    base = edges[0]
    bad = []
    for k, want in enumerate(expected.tolist()):
        got = zlib.crc32(view[edges[k] - base : edges[k + 1] - base])
        if got != want:
            bad.append((k, got))
            if stop_at_first:
                break
    return bad
