"""The packed store: layout and format versions, index and chunks, byte ranges, locks,
the writer, verify, repair, merge, copy and annotation sets. :class:`AACStore` is its face."""

from ._store import DEFAULT_INDEX_CACHE_BYTES, AACStore, Recording

__all__ = ["DEFAULT_INDEX_CACHE_BYTES", "AACStore", "Recording"]
