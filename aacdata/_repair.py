"""Rebuild a damaged store: copy every intact recording into a new store, drop the rest."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import _layout, _remote
from ._transcode import EncodedRecording
from ._writer import PendingRecording, StoreWriter
from .errors import AACDataError, StoreFormatError
from .store import AACStore


@dataclass(frozen=True, slots=True)
class RepairReport:
    """Ids copied to the new store, and ``(id, reason)`` of those left out."""

    kept: tuple[str, ...]
    dropped: tuple[tuple[str, str], ...]


def rebuild_store(
    source: _remote.StoreTarget,
    destination: _remote.StoreTarget,
    *,
    storage_options: Mapping[str, Any] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> RepairReport:
    """Write a new store holding every recording of ``source`` that verifies, bytes as
    they are (nothing is re-encoded); the damaged ones are listed, to import again from
    their sources (the same import command resumes into the new store)."""
    with AACStore.open(source, check_table=False, storage_options=storage_options) as src:
        dst = AACStore.open(destination, "a", storage_options=storage_options)
        if len(dst):
            dst.close()
            raise StoreFormatError(f"{dst.path!r} already holds recordings; rebuild into a new store")
        writer = StoreWriter(dst)
        kept: list[str] = []
        dropped: list[tuple[str, str]] = []
        try:
            for i in range(len(src)):
                rid = src.ids[i]
                try:
                    pending = _intact(src, i)
                except AACDataError as e:
                    dropped.append((rid, str(e)))
                else:
                    if pending is None:
                        dropped.append((rid, "; ".join(src._verify_one(i, decode=True))))
                    else:
                        writer.add(pending)
                        kept.append(rid)
                        if writer.pending_bytes >= 64 << 20:
                            writer.commit()
                if progress is not None:
                    progress(i + 1, len(src))
            writer.commit()
        finally:
            writer.close()
            dst.close()
    return RepairReport(tuple(kept), tuple(dropped))


def _intact(src: AACStore, i: int) -> PendingRecording | None:
    if src._verify_one(i, decode=True):
        return None
    rec = src.recording(i)
    sizes = src.frame_index(i)[:, 1].astype(np.int64)
    encoded = EncodedRecording(
        adts=src.adts_bytes(i),
        frame_sizes=sizes,
        num_samples=rec.num_samples,
        sample_rate=rec.sample_rate,
        num_channels=rec.num_channels,
        encoder_delay=rec.encoder_delay,
        passthrough=bool(rec.source.get("passthrough", False)),
        source_format=str(rec.source.get("format", "")),
        source_codec=str(rec.source.get("codec", "")),
        random_noise=bool(int(src.column("flags")[i]) & _layout.FLAG_FRESH_DECODER),
    )
    return PendingRecording(rec.id, encoded, dict(rec.source), dict(rec.metadata))
