"""aacdata: audio corpora as Zarr v3 stores of AAC-LC frames, read as exact PCM windows.

>>> import aacdata                                                          # doctest: +SKIP
>>> aacdata.import_audio("corpus/", "corpus.zarr")                          # doctest: +SKIP
>>> store = aacdata.AACStore.open("corpus.zarr")                            # doctest: +SKIP
>>> store.read(0, start=0, num_samples=44_100).shape                        # doctest: +SKIP
(2, 44100)
"""

from __future__ import annotations

import logging

from .annotations import Annotations
from .audio._resample import resample
from .data._labels import collate
from .data._show import show_window
from .data.dataset import AACSegmentDataset
from .data.plans import EventWindows, ExplicitWindows, RandomWindows, SlidingWindows, Window, WindowPlan
from .errors import (
    AACDataError,
    AnnotationError,
    CorruptDataError,
    DecodeError,
    ImportFailedError,
    ImportInterruptedError,
    RecordingNotFoundError,
    RemoteStoreError,
    SourceError,
    StoreFormatError,
    StoreLockedError,
    StoreNotFoundError,
    StoreWriteError,
    WindowError,
)
from .importer import ImportFailure, ImportReport, import_audio
from .store._store import AACStore, Recording
from .store._verify import VerifyReport

__version__ = "0.1.0"

__all__ = [
    "AACDataError",
    "AACSegmentDataset",
    "AACStore",
    "AnnotationError",
    "Annotations",
    "CorruptDataError",
    "DecodeError",
    "EventWindows",
    "ExplicitWindows",
    "ImportFailedError",
    "ImportFailure",
    "ImportInterruptedError",
    "ImportReport",
    "RandomWindows",
    "Recording",
    "RecordingNotFoundError",
    "RemoteStoreError",
    "SlidingWindows",
    "SourceError",
    "StoreFormatError",
    "StoreLockedError",
    "StoreNotFoundError",
    "StoreWriteError",
    "VerifyReport",
    "Window",
    "WindowError",
    "WindowPlan",
    "__version__",
    "collate",
    "import_audio",
    "resample",
    "show_window",
]

logging.getLogger("aacdata").addHandler(logging.NullHandler())
