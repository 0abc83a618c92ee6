"""A store's recordings read back in runs and checked, to append elsewhere as they are
(merge copies parts into one store; remove, replace and compact rewrite a store).

Consecutive recordings are read together (bytes and index rows, at most
:data:`READ_BYTES` at once, or one recording); each is then checked against its CRC-32
and its index rows against its bytes before the writer takes it, so damage is never
copied into a new store.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import zarr

from ..codecs._registry import CODEC_NAMES
from ..errors import CorruptDataError
from . import _chunks, _layout
from ._store import AACStore, Recording
from ._writer import PendingRecording, stored_recording

READ_BYTES = 32 << 20
"""Bytes of a store read at once (recordings are copied from this window)."""


@dataclass(frozen=True, slots=True)
class Run:
    """Consecutive recordings of a store, with their bytes and index rows (int64 ``(N, 3)``)."""

    rows: list[int]
    byte_start: int
    data: bytes
    frame_start: int
    index: np.ndarray


def runs(store: AACStore, rows: Sequence[int]) -> Iterator[Run]:
    """Consecutive runs of ``rows`` (in table order) of at most :data:`READ_BYTES` (or
    one recording), their bytes and index rows read at once from the arrays."""
    # A local store's chunk files are read only where they are regular files (a FIFO would block).
    group = zarr.open_group(_chunks.checked(store.zarr_store), mode="r")
    arrays = _layout.open_arrays(group, store.path, store.counts, store.format_version)
    recs = store.recordings
    local = isinstance(store.zarr_store, zarr.storage.LocalStore)
    run: list[int] = []
    for i in rows:
        if run and (i != run[-1] + 1 or recs[i].byte_start + recs[i].num_bytes - recs[run[0]].byte_start > READ_BYTES):
            yield _read(arrays, recs, run, store.path, local)
            run = []
        run.append(i)
    if run:
        yield _read(arrays, recs, run, store.path, local)


def _read(arrays: _layout.Arrays, recs: Sequence[Recording], run: list[int], where: str, local: bool) -> Run:
    """The bytes and index rows of a run; chunks that do not decode are damage
    (:class:`CorruptDataError` naming the store, node and chunk)."""
    first, last = recs[run[0]], recs[run[-1]]
    b0, b1 = first.byte_start, last.byte_start + last.num_bytes
    f0, f1 = first.frame_start, last.frame_start + last.num_frames
    data = bytes(np.asarray(_layout.read_rows(arrays.adts, _layout.ADTS, b0, b1, where=where, local=local), np.uint8))
    index = np.asarray(_layout.read_rows(arrays.index, _layout.INDEX, f0, f1, where=where, local=local), np.int64)
    return Run(run, first.byte_start, data, first.frame_start, index.reshape(-1, 3))


def copied_recording(
    rec: Recording, run: Run, *, source: str, metadata: str, where: str, lead: str, end: str
) -> PendingRecording:
    """Recording ``rec`` of ``run`` as the writer takes it: its bytes checked against its
    CRC-32 and its index rows against its bytes, every table value carried over (codec
    included). A failed check is a :class:`CorruptDataError` naming the store ``where``
    and saying ``"{lead} `aacdata verify ...` {end}"``."""
    a = rec.byte_start - run.byte_start
    payload = run.data[a : a + rec.num_bytes]
    if zlib.crc32(payload) != rec.crc32:
        raise CorruptDataError(
            f"{where!r}: recording {rec.id!r} fails its checksum; {lead} `aacdata verify {where}` "
            f"(and `aacdata repair` if it is damaged) {end}"
        )
    f = rec.frame_start - run.frame_start
    index = run.index[f : f + rec.num_frames]
    sizes = index[:, 1]
    offsets = index[:, 0] - rec.byte_start
    if (
        index.shape[0] != rec.num_frames
        or int(sizes.sum()) != rec.num_bytes
        or offsets[0] != 0
        or np.any(offsets[1:] != np.cumsum(sizes[:-1]))
    ):
        raise CorruptDataError(
            f"{where!r}: the index rows of recording {rec.id!r} do not tile its bytes; {lead} `aacdata verify {where}` "
            f"{end}"
        )
    return stored_recording(
        rec.id,
        payload,
        sizes.astype(np.uint64),
        num_samples=rec.num_samples,
        sample_rate=rec.sample_rate,
        num_channels=rec.num_channels,
        encoder_delay=rec.encoder_delay,
        random_noise=rec.pns,
        source=json_object(source),
        metadata=json_object(metadata),
        stream_sample_rate=rec.stream_sample_rate,
        bandwidth_hz=rec.bandwidth_hz,
        codec=CODEC_NAMES[rec.codec],
        frame_samples=rec.frame_samples,
        bits_per_sample=rec.bits_per_sample,
    )


def json_object(text: str) -> dict[str, Any]:
    """A JSON object column's value (``""`` and anything but an object: ``{}``)."""
    obj = json.loads(text) if text else {}
    return obj if isinstance(obj, dict) else {}
