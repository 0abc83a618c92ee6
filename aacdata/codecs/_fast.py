"""The compiled window decoder (``_fastaac``), where it was built and the FFmpeg that PyAV
loaded can be found; ``None`` otherwise, and the pure-Python loop decodes instead.

The extension links against nothing: it is handed the addresses of the few libavcodec and
libavutil functions it calls, from the libraries PyAV has already loaded into the process
(PyAV's wheels bundle them). Its output is checked against PyAV's own decode on the first
window of every process (:func:`aacdata.codecs._aac.AacCodec.decode_into`); a difference
turns it off for the process. ``AACDATA_PURE_PYTHON=1`` turns it off altogether.
"""

from __future__ import annotations

import ctypes
import logging
import os
import re
from pathlib import Path
from types import ModuleType
from typing import cast

import av

log = logging.getLogger("aacdata")

_AVCODEC = (
    "avcodec_find_decoder_by_name",
    "avcodec_alloc_context3",
    "avcodec_open2",
    "avcodec_free_context",
    "avcodec_send_packet",
    "avcodec_receive_frame",
    "avcodec_flush_buffers",
    "av_packet_alloc",
    "av_packet_free",
    "av_new_packet",
    "av_packet_unref",
)
_AVUTIL = ("av_frame_alloc", "av_frame_free", "av_frame_unref", "av_opt_set_int")
_VERSION = 4  # the extension's VERSION this module drives (a build of older source is not used)
_MIN_AVCODEC_MAJOR = 58  # FFmpeg 4.0: the send/receive API and the field order the extension reads


def _loaded_libraries() -> dict[str, str]:
    """Paths of PyAV's libavcodec and libavutil, by name: those bundled beside the av
    package, else the pair of one folder among the libraries this process has loaded (a
    process may hold two FFmpegs, e.g. PyAV's and another package's; a decoder must not mix
    them)."""
    root = Path(av.__file__).resolve().parent
    for folder in (root.parent / "av.libs", root / ".dylibs"):
        found = {}
        for name in ("avcodec", "avutil"):
            hits = sorted(folder.glob(f"lib{name}[-.]*")) if folder.is_dir() else []
            if len(hits) == 1:
                found[name] = str(hits[0])
        if len(found) == 2:
            return found
    folders: dict[str, dict[str, set[str]]] = {}
    try:
        with open("/proc/self/maps", encoding="utf-8", errors="replace") as f:
            for line in f:
                m = re.search(r"(/\S*)/lib(avcodec|avutil)[-.][^/\s]*$", line.strip())
                if m:
                    folders.setdefault(m.group(1), {}).setdefault(m.group(2), set()).add(m.group(0))
    except OSError:
        return {}
    # one file of each in the folder: two majors side by side (libavcodec.so.58 and .so.61) are no pair
    pairs = [{n: next(iter(p)) for n, p in found.items()} for found in folders.values()
             if len(found) == 2 and all(len(p) == 1 for p in found.values())]  # fmt: skip
    return pairs[0] if len(pairs) == 1 else {}


def _version_int(v: tuple[int, int, int]) -> int:
    return v[0] << 16 | v[1] << 8 | v[2]


def _load() -> ModuleType | None:
    if os.environ.get("AACDATA_PURE_PYTHON", "") not in ("", "0"):
        return None
    try:
        from . import _fastaac  # type: ignore[attr-defined]
    except ImportError:
        return None
    if getattr(_fastaac, "VERSION", None) != _VERSION:
        log.warning("the compiled AAC decoder is out of date (rebuild it: pip install -e .); decoding with PyAV")
        return None
    libs = _loaded_libraries()
    if set(libs) != {"avcodec", "avutil"}:
        log.debug("compiled AAC decoder off: PyAV's FFmpeg libraries were not found")
        return None
    try:
        avcodec, avutil = ctypes.CDLL(libs["avcodec"]), ctypes.CDLL(libs["avutil"])
        avcodec.avcodec_version.restype = avutil.avutil_version.restype = ctypes.c_uint
        if avcodec.avcodec_version() >> 16 < _MIN_AVCODEC_MAJOR:
            return None
        # the very libraries PyAV runs on (a found pair from another FFmpeg would mix struct layouts)
        versions = getattr(av, "library_versions", {})
        if "libavcodec" not in versions or "libavutil" not in versions:
            return None
        if (avcodec.avcodec_version(), avutil.avutil_version()) != (
            _version_int(versions["libavcodec"]),
            _version_int(versions["libavutil"]),
        ):
            log.debug("compiled AAC decoder off: the FFmpeg found is not the one PyAV uses")
            return None
        addresses = [ctypes.cast(getattr(avcodec, n), ctypes.c_void_p).value for n in _AVCODEC]
        addresses += [ctypes.cast(getattr(avutil, n), ctypes.c_void_p).value for n in _AVUTIL]
        _fastaac.init(*addresses)
    except (OSError, AttributeError, ValueError, TypeError) as e:
        log.debug("compiled AAC decoder off: %s", e)
        return None
    return cast(ModuleType, _fastaac)


fastaac: ModuleType | None = _load()
"""The extension, ready; ``None`` where the pure-Python loop decodes."""
