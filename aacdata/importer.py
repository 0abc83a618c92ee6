"""import_audio(): find sources, convert them in parallel, append them with one writer.

Conversion (decode, resample, encode, wrap in ADTS) runs in worker processes; the parent
process is the only writer and commits in batches. Worker processes are started with
``fork`` where the platform has it (Linux), so scripts need no ``__main__`` guard there;
elsewhere ``spawn`` is used and a script that calls :func:`import_audio` with workers must
guard its entry point with ``if __name__ == "__main__":``.
"""

from __future__ import annotations

import collections
import concurrent.futures as cf
import contextlib
import csv
import ctypes
import hashlib
import json
import logging
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections.abc import Generator, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Literal

from .audio._channels import MAX_CHANNELS
from .audio._transcode import (
    AAC_MAX_RATE,
    MAX_SOURCE_RATE,
    MIN_BANDWIDTH,
    MIN_BITRATE,
    EncodedRecording,
    file_checksum,
    max_bitrate,
    transcode,
)
from .codecs._adts import SAMPLE_RATES
from .codecs._flac import MAX_RATE as FLAC_MAX_RATE
from .errors import ImportFailedError, ImportInterruptedError, SourceError
from .store import _remote, _remove
from .store._store import AACStore
from .store._writer import PendingRecording, StoreWriter

log = logging.getLogger("aacdata")

AUDIO_EXTENSIONS = frozenset(
    {
        *(".wav", ".wave", ".w64", ".flac", ".mp3", ".mp2", ".ogg", ".oga", ".opus", ".spx"),
        *(".m4a", ".m4b", ".mp4", ".mov", ".aac", ".adts", ".webm", ".mkv", ".mka", ".avi"),
        *(".aif", ".aiff", ".aifc", ".au", ".snd", ".caf", ".wma", ".ac3", ".amr"),
    }
)
"""Extensions picked up when a directory is given as a source."""
LIST_EXTENSIONS = frozenset({".txt", ".lst", ".list"})
"""A source file with one of these extensions is a list of paths, one per line."""

_COMMIT_BYTES = 64 << 20
_COMMIT_SECONDS = 2.0
_COMMIT_RECORDINGS = 4096
_COMMIT_SHARE = 0.05
"""Largest share of the import's time spent committing: a commit costs about the same
whatever it holds (every array is resized, its last chunk rewritten), so with many small
files the commits are spaced further apart than :data:`_COMMIT_SECONDS`."""


@dataclass(frozen=True, slots=True)
class Source:
    """A source file and the id its recording gets (its path below the source root)."""

    path: str
    id: str


@dataclass(frozen=True, slots=True)
class ImportFailure:
    """A source that was not imported, and why."""

    source: str
    reason: str

    def __str__(self) -> str:
        return f"{self.source}: {self.reason}"


@dataclass(frozen=True, slots=True)
class ImportReport:
    """What :func:`import_audio` did.

    ``imported`` and ``skipped`` hold recording ids (skipped: already committed with the
    same source checksum); ``failed`` one :class:`ImportFailure` per source not imported.
    With the local pool they follow the sources' order; with an ``executor``, the order in
    which conversions completed (the order the recordings were appended in).
    """

    store: str
    imported: tuple[str, ...]
    skipped: tuple[str, ...]
    failed: tuple[ImportFailure, ...]
    audio_seconds: float
    bytes_written: int
    elapsed_seconds: float
    passthrough: int = 0
    notes: tuple[tuple[str, str], ...] = ()
    """``(id, note)`` for what a conversion changed besides the coding: resampling,
    remixing, time expansion, level lowered by the encoder to avoid clipping."""
    warnings: tuple[tuple[str, str], ...] = ()
    """``(id, warning)`` for what a conversion lost of its source's spectrum: a band that
    carries signal and lost more than 3 dB, or source energy above the stored bandwidth
    (the figures are in the recording's ``source["bands"]``)."""
    replaced: tuple[str, ...] = ()
    """Ids whose committed recording was replaced by a changed source (``replace=True``);
    also listed in ``imported``. Their annotation events are dropped (``notes`` says how many)."""

    @property
    def ok(self) -> bool:
        return not self.failed

    @property
    def realtime_factor(self) -> float:
        """Seconds of audio imported per second of wall time."""
        return self.audio_seconds / self.elapsed_seconds if self.elapsed_seconds > 0 else 0.0

    def __repr__(self) -> str:
        return (
            f"ImportReport(store={self.store!r}, imported={len(self.imported)}, skipped={len(self.skipped)}, "
            f"failed={len(self.failed)}, audio_hours={self.audio_seconds / 3600:.3f}, "
            f"bytes_written={self.bytes_written}, realtime_factor={self.realtime_factor:.1f})"
        )


def import_audio(
    sources: str | os.PathLike[str] | Iterable[str | os.PathLike[str]],
    store: str | os.PathLike[str] | AACStore,
    *,
    bitrate: int | None = None,
    sample_rate: int | None = None,
    num_channels: int | None = None,
    reencode: bool = False,
    bandwidth: int | None = None,
    time_expansion: float | None = None,
    pns: Literal["keep", "reencode"] = "keep",
    codec: Literal["aac", "flac", "auto"] = "aac",
    workers: int | None = None,
    executor: Any = None,
    on_error: Literal["skip", "raise"] = "skip",
    progress: bool = True,
    metadata: str | os.PathLike[str] | Mapping[str, Mapping[str, Any]] | None = None,
    shard: tuple[int, int] | str | None = None,
    storage_options: Mapping[str, Any] | None = None,
    break_lock: bool = False,
    replace: bool = False,
) -> ImportReport:
    """Convert audio files to AAC-LC and append them to a store (created if missing).

    Parameters
    ----------
    sources
        Audio files, directories (searched recursively for audio extensions, symbolic
        links followed) and ``.txt``/``.lst`` files listing paths (one per line, relative
        to the list file; ``#`` starts a comment). A recording's id is its path relative
        to the source root, ``/``-separated (for a file given directly: its name).
    store
        Path or object-store URL of the store (``s3://bucket/corpus.zarr``), or an
        :class:`AACStore` opened with ``mode="a"``.
    bitrate
        Total AAC bit rate of each re-encoded recording, bit/s (``None``: per channel,
        by the bandwidth the stream keeps: 64 kbit/s up to 8 kHz, 96 up to 16 kHz, 128 up
        to 24 kHz (44.1 and 48 kHz full band), 192 up to 32 kHz, 256 up to 48 kHz; the
        rates at which every octave band of test signals kept its energy within 1 dB).
    sample_rate
        Resample to this rate (``None``: keep the source's rate where AAC can carry it or
        where it is above 96 kHz, else the nearest AAC rate above it; the report says so).
    bandwidth
        Highest frequency to keep, Hz (``None``: the Nyquist frequency, the whole
        spectrum). Each recording records its bandwidth (``Recording.bandwidth_hz``) and
        the import proves it, band by band (``source["bands"]``, ``ImportReport.warnings``).
        AAC sources are re-encoded when it is given.
    time_expansion
        For sources above 96 kHz (bats, insects, ultrasound), stored as AAC with their
        samples played slower: the same samples, nothing resampled, labelled with the
        highest AAC rate at most ``rate / time_expansion`` (``None``: 96 kHz). Reads,
        lengths, seconds and annotation Hz stay in the true timeline
        (``Recording.sample_rate``); ``Recording.time_expansion`` says how much slower the
        stored stream (``adts_bytes``, ``export .aac``) plays.
    num_channels
        Remix to this many channels (``None``: keep every channel, one to one, up to 16).
        The rule is the dataset's: mono is the mean of all channels, mono is repeated to
        more, and fewer keeps the first channels.
    reencode
        Re-encode AAC-LC sources too instead of passing their frames through.
    pns
        AAC-LC sources whose frames use perceptual noise substitution (FFmpeg's encoder
        turns it on by default, so most ``ffmpeg -c:a aac`` files have it): ``"keep"``
        passes them through, and their windows are deterministic and equal a full decode
        outside the noise-filled bands (the noise inside them depends on the decoder's
        state, so each window is decoded as a new decoder decodes it); ``"reencode"`` re-encodes
        them with PNS off, for bit-identical windows at one generation of coding loss.
    codec
        ``"aac"`` (the default: AAC-LC, about a seventh of the size of FLAC, full band;
        sources above 96 kHz time-expanded), ``"flac"`` (lossless FLAC frames at the
        source's rate, up to 655,350 Hz and 8 channels; windows equal the source's PCM,
        scaled as soundfile scales integers) or ``"auto"`` (FLAC for sources above 96 kHz,
        AAC for the rest). One store may hold both; reads do not care.
    workers
        Conversion processes (``None``: all cores). A file that crashes the decoder then
        fails alone. ``0`` converts in this process (no such protection).
    executor
        Where to convert instead of a local process pool: any
        :class:`concurrent.futures.Executor` (a ``ThreadPoolExecutor``, a
        ``ProcessPoolExecutor``, ...) or a Dask ``distributed.Client``. Tasks get batches
        of source paths (about an audio-hour each, estimated from file sizes; a huge file
        alone) and return encoded frames; this process stays the only writer. A task that
        fails on the engine (a worker died, a lost connection) is retried, twice as a
        batch and then file by file; a result delivered twice is committed once. With an
        executor, recordings are appended (and listed in the report) in the order their
        conversions complete, not in source order. Not with ``workers``.
    on_error
        ``"skip"``: record the failure and go on; ``"raise"``: commit what is done and
        raise the first failure.
    progress
        Show a progress bar on stderr.
    metadata
        Per-id user metadata: a mapping ``id -> dict``, or a ``.csv`` (column ``id``)
        or ``.jsonl`` (key ``id``) file.
    shard
        ``(k, n)`` or ``"k/n"``: import only part ``k`` of ``n`` (0-based) of the sources,
        chosen by a stable hash of the recording id, so that ``n`` machines can convert
        one corpus into ``n`` stores in parallel (read them together with
        ``AACSegmentDataset([store_0, ..., store_n-1])``).
    storage_options
        Object-store settings for a URL ``store`` (see :meth:`AACStore.open`).
    break_lock
        Take over the write lock of an object store even though its lease has not expired
        (only when you know the import holding it is gone). Local locks need no breaking:
        the operating system releases them when their process dies.
    replace
        A source whose id is committed with other content (its file checksum changed)
        replaces that recording instead of failing; unchanged ones are still skipped. The
        replaced recordings' annotation events are dropped (they describe the old
        content); their user metadata is kept unless ``metadata`` gives theirs. Replacing
        rewrites the store once, at the end, and swaps it in atomically (as ``aacdata
        remove`` does; local stores only).

    Returns
    -------
    ImportReport

    Running the same import again skips what is committed (same id, same source
    checksum) and finishes the rest; an id already committed with other content fails.

    One import writes to a store at a time (others get :class:`StoreLockedError`).
    SIGINT (Ctrl-C) and SIGTERM stop an import cleanly: what is converted is committed,
    the lock released, and :class:`ImportInterruptedError` raised. Conversion processes
    never outlive the importing process.
    """
    if on_error not in ("skip", "raise"):
        raise ValueError(f"on_error must be 'skip' or 'raise'; got {on_error!r}")
    if pns not in ("keep", "reencode"):
        raise ValueError(f"pns must be 'keep' or 'reencode'; got {pns!r}")
    if codec not in ("aac", "flac", "auto"):
        raise ValueError(f"codec must be 'aac', 'flac' or 'auto'; got {codec!r}")
    if codec == "flac":
        for name, value in (("bitrate", bitrate), ("bandwidth", bandwidth), ("time_expansion", time_expansion)):
            if value is not None:
                raise ValueError(f"{name} applies to AAC; codec='flac' stores every sample losslessly (drop {name})")
    _check_number("bitrate", bitrate, low=MIN_BITRATE, high=max_bitrate(AAC_MAX_RATE), integer=True)
    _check_sample_rate(sample_rate, flac=codec == "flac")
    _check_number("num_channels", num_channels, low=1, high=MAX_CHANNELS, integer=True)
    _check_number("bandwidth", bandwidth, low=MIN_BANDWIDTH, high=MAX_SOURCE_RATE // 2, integer=True)
    _check_number("time_expansion", time_expansion, low=1.0, high=MAX_SOURCE_RATE / 8000)
    if executor is not None and workers is not None:
        raise ValueError("pass workers (a local process pool) or executor, not both")
    if replace:
        _remove.check_local(store, "import --replace")
    engine = _engine(executor) if executor is not None else None
    started = time.perf_counter()
    passed_over: list[tuple[str, str]] = []
    listed, failures = discover_sources(sources, passed_over)
    if not listed:
        # Nothing to import anywhere: no store is created (a mistyped path must not leave one).
        if not failures:
            shown = ", ".join(map(repr, [os.fspath(sources)] if isinstance(sources, (str, os.PathLike)) else
                                  [os.fspath(x) for x in sources][:3])) or "(none given)"  # fmt: skip
            failures = [ImportFailure(shown, "no audio files found (by extension: .wav, .flac, .mp3, .m4a, ...)")]
        if on_error == "raise":
            raise ImportFailedError(str(failures[0]))
        where = store.path if isinstance(store, AACStore) else _remote.describe(store)
        return ImportReport(where, (), (), tuple(failures), 0.0, 0, time.perf_counter() - started,
                            notes=tuple(passed_over))  # fmt: skip
    if shard is not None:
        k, n = parse_shard(shard)
        listed = [s for s in listed if shard_of(s.id, n) == k]
        failures = [f for f in failures if shard_of(f.source, n) == k]
    if failures and on_error == "raise":
        raise ImportFailedError(str(failures[0]))
    user_meta = load_metadata(metadata) if metadata is not None else {}
    own_store = not isinstance(store, AACStore)
    # Signals are taken over before the store is touched: a SIGTERM while it is opened
    # or locked ends the import as cleanly as one during conversion.
    signals = _StopSignals()
    signals.install()
    st: AACStore | None = None
    try:
        st = AACStore.open(store, "a", storage_options=storage_options) if own_store else store  # type: ignore[assignment, arg-type]
        assert isinstance(st, AACStore)
        # The lock first, then everything read for writing (counts, committed ids).
        writer = StoreWriter(st, break_lock=break_lock)
    except BaseException as e:
        signals.restore()
        if own_store and st is not None:
            st.close()
        if isinstance(e, _Stop):
            raise ImportInterruptedError(
                f"import interrupted by {signal.Signals(e.signum).name} before anything was converted; run the "
                "same import again",
                signum=e.signum,
            ) from None
        raise
    bar: Any = None
    outcomes: Any = None
    imported: list[str] = []
    skipped: list[str] = []
    notes: list[tuple[str, str]] = list(passed_over)
    warned: list[tuple[str, str]] = []
    replacements: list[PendingRecording] = []
    try:
        options = {
            "bitrate": bitrate,
            "sample_rate": sample_rate,
            "num_channels": num_channels,
            "reencode": reencode,
            "bandwidth": bandwidth,
            "time_expansion": time_expansion,
            "pns": pns,
            "codec": codec,
            "replace": replace,
        }
        unknown = [s for s in listed if writer.committed_ids.get(s.id) == ""]
        if unknown:
            # The id is committed but its source checksum is lost (a damaged source column):
            # the content cannot be compared, so the recording is kept as it is.
            log.warning(
                "%d sources have ids already in the store whose source checksum cannot be read (e.g. %r); "
                "they are skipped without comparing their content",
                len(unknown),
                unknown[0].id,
            )
            skipped.extend(s.id for s in unknown)
            listed = [s for s in listed if writer.committed_ids.get(s.id) != ""]
        stats = {"seconds": 0.0, "bytes": 0, "passthrough": 0}
        bar = _progress_bar(len(listed), progress)
        last_commit = time.monotonic()
        commit_every = _COMMIT_SECONDS
        outcomes = (
            _convert_all(listed, writer.committed_ids, options, workers)
            if engine is None
            else _convert_on(engine, listed, writer.committed_ids, options)
        )
        handled: set[str] = set()  # an engine may deliver a result twice: each id is taken once
        for src, outcome in outcomes:
            if src.id in handled:
                log.debug("%s: a second result for this recording was dropped", src.id)
                continue
            handled.add(src.id)
            if isinstance(outcome, _Skipped):
                skipped.append(src.id)
            elif isinstance(outcome, _Converted) and src.id in writer.committed_ids:
                # Only with replace: a changed source of a committed id, swapped in at the end.
                replacements.append(
                    PendingRecording(src.id, outcome.encoded, outcome.source, dict(user_meta.get(src.id, {})))
                )
            elif isinstance(outcome, _Converted):
                try:
                    writer.add(
                        PendingRecording(src.id, outcome.encoded, outcome.source, dict(user_meta.get(src.id, {})))
                    )
                except ValueError as e:
                    _fail(failures, src, str(e), on_error, writer)
                else:
                    imported.append(src.id)
                    notes.extend((src.id, note) for note in outcome.encoded.notes)
                    for warning in outcome.encoded.warnings:
                        log.warning("%s: %s", src.id, warning)
                        warned.append((src.id, warning))
                    stats["seconds"] += outcome.encoded.num_samples / outcome.encoded.sample_rate
                    stats["bytes"] += len(outcome.encoded.adts)
                    stats["passthrough"] += outcome.encoded.passthrough
            else:
                _fail(failures, src, outcome.reason, on_error, writer)
            if (
                writer.pending_bytes >= _COMMIT_BYTES
                or len(writer) >= _COMMIT_RECORDINGS
                or (len(writer) and time.monotonic() - last_commit >= commit_every)
            ):
                began = time.monotonic()
                signals.commit(writer)
                last_commit = time.monotonic()
                commit_every = max(_COMMIT_SECONDS, (last_commit - began) / _COMMIT_SHARE)
            if bar is not None:
                elapsed = time.perf_counter() - started
                bar.set_postfix_str(
                    f"{stats['seconds'] / 3600:.2f} h, {stats['seconds'] / max(elapsed, 1e-9):.0f}x realtime, "
                    f"{len(failures)} failed",
                    refresh=False,
                )
                bar.update(1)
        signals.commit(writer)
        if replacements:
            change = _remove.rewrite(
                st, remove=[p.id for p in replacements], add=replacements, lock=writer.lock, carry_metadata=True
            )
            imported.extend(change.added)
            notes.extend((name, f"{n} events of replaced recordings dropped") for name, n in change.events_dropped)
    except _Stop as stop:
        signals.hold()  # a second Ctrl-C must not cut the final commit short
        if outcomes is not None:
            outcomes.close()  # stops the conversion processes
        writer.commit()  # what is converted completely is kept
        counts = writer.counts
        raise ImportInterruptedError(
            f"import into {st.path!r} interrupted by {signal.Signals(stop.signum).name}: {len(imported)} recordings "
            f"were added ({counts.num_recordings} in the store now) and are committed; run the same import again "
            "to convert the rest",
            signum=stop.signum,
        ) from None
    finally:
        if outcomes is not None:
            outcomes.close()
        signals.restore()
        if bar is not None:
            bar.close()
        writer.close()
        if own_store:
            st.close()
    return ImportReport(
        store=st.path,
        imported=tuple(imported),
        skipped=tuple(skipped),
        failed=tuple(failures),
        audio_seconds=stats["seconds"],
        bytes_written=int(stats["bytes"]),
        elapsed_seconds=time.perf_counter() - started,
        passthrough=int(stats["passthrough"]),
        notes=tuple(notes),
        warnings=tuple(warned),
        replaced=tuple(p.id for p in replacements),
    )


class _Stop(BaseException):
    """Raised in the importing thread by SIGINT/SIGTERM (a BaseException, so that no
    ``except Exception`` on the way swallows it)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


class _StopSignals:
    """SIGINT and SIGTERM turned into :class:`_Stop` while an import runs in the main
    thread, held back while a commit is being written (a commit is never half done by
    a signal; a store stays consistent anyway, but the writer's state must match it)."""

    _SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self._previous: dict[int, Any] = {}
        self._deferred = False
        self._received: int | None = None

    def install(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return  # signals reach only the main thread: nothing to install
        for sig in self._SIGNALS:
            self._previous[sig] = signal.signal(sig, self._handle)

    def restore(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

    def _handle(self, signum: int, frame: Any) -> None:
        if self._received is None:
            self._received = signum
        if not self._deferred:
            raise _Stop(signum)

    def hold(self) -> None:
        """From now on, signals are only noted."""
        self._deferred = True

    def commit(self, writer: StoreWriter) -> None:
        self._deferred = True
        try:
            writer.commit()
        finally:
            self._deferred = False
        if self._received is not None:
            raise _Stop(self._received)


def _check_sample_rate(rate: Any, *, flac: bool = False) -> None:
    """``None``, an AAC rate, or a rate above 96 kHz (stored time-expanded) up to 1 MHz;
    for FLAC any rate up to 655,350 Hz."""
    if rate is None:
        return
    if flac:
        _check_number("sample_rate", rate, low=1, high=FLAC_MAX_RATE, integer=True)
        return
    _check_number("sample_rate", rate, low=1, high=MAX_SOURCE_RATE, integer=True)
    if rate <= AAC_MAX_RATE and rate not in SAMPLE_RATES:
        raise ValueError(
            f"sample_rate {rate} Hz is not a rate AAC stores; give one of "
            f"{', '.join(str(r) for r in sorted(SAMPLE_RATES))}, or a rate above {AAC_MAX_RATE} Hz (time-expanded)"
        )


def _check_number(name: str, value: Any, *, low: float, high: float, integer: bool = False) -> None:
    """``None``, or a finite number in ``[low, high]`` (a whole one where ``integer``)."""
    if value is None:
        return
    kind = "a whole number" if integer else "a number"
    span = f"from {low:,g} to {high:,g}" if not integer else f"from {int(low)} to {int(high)}"
    whole = isinstance(value, int) or (isinstance(value, float) and value.is_integer())
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (integer and not whole):
        raise TypeError(f"{name} must be {kind} {span}; got {value!r}")
    if not low <= value <= high:  # NaN fails too
        raise ValueError(f"{name} must be {kind} {span}; got {value!r}")


def _fail(failures: list[ImportFailure], src: Source, reason: str, on_error: str, writer: StoreWriter) -> None:
    failures.append(ImportFailure(src.path, reason))
    log.warning("%s: %s", src.path, reason)
    if on_error == "raise":
        writer.commit()  # what converted before the failure stays
        raise ImportFailedError(f"{src.path}: {reason}")


def _progress_bar(total: int, enabled: bool) -> Any:
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, unit="file", desc="import", dynamic_ncols=True)


# ---------------------------------------------------------------------- conversion


@dataclass(frozen=True, slots=True)
class _Converted:
    encoded: EncodedRecording
    source: dict[str, Any]


@dataclass(frozen=True, slots=True)
class _Skipped:
    pass


@dataclass(frozen=True, slots=True)
class _Failed:
    reason: str


def _convert_one(path: str, existing_checksum: str | None, options: dict[str, Any]) -> _Converted | _Skipped | _Failed:
    """Runs in a worker: checksum, compare with the store, transcode (a changed source of a
    committed id only where ``options["replace"]``)."""
    options = dict(options)
    replace = options.pop("replace", False)
    try:
        checksum = file_checksum(path)
    except FileNotFoundError:
        return _Failed("file not found")
    except PermissionError:
        return _Failed("permission denied")
    except IsADirectoryError:
        return _Failed("is a directory")
    except OSError as e:
        return _Failed(f"unreadable ({e.strerror or e})")
    if existing_checksum is not None:
        if existing_checksum == checksum:
            return _Skipped()
        if not replace:
            return _Failed(
                "id already in the store with different content (pass --replace / replace=True to replace it, "
                "remove it with `aacdata remove`, or give the file another name)"
            )
    try:
        encoded = transcode(path, **options)
    except SourceError as e:
        return _Failed(str(e))
    info: dict[str, Any] = {
        "path": path,
        "checksum": checksum,
        "format": encoded.source_format,
        "codec": encoded.source_codec,
        "passthrough": encoded.passthrough,
        "sample_rate": encoded.source_sample_rate or encoded.sample_rate,
        "num_channels": encoded.source_num_channels or encoded.num_channels,
    }
    if encoded.peak > 1.0:
        info["peak"] = round(encoded.peak, 4)
    info["bandwidth_hz"] = encoded.bandwidth_hz
    if encoded.random_noise:
        info["pns"] = True
    if encoded.bandwidth_measured:
        info["bandwidth_measured"] = True
    if encoded.bits_per_sample:
        info["stored"] = {"codec": "flac", "bits_per_sample": encoded.bits_per_sample}
    if encoded.frames_rate != encoded.sample_rate:
        info["time_expansion"] = {"sample_rate": encoded.sample_rate, "stream_sample_rate": encoded.frames_rate}
    if encoded.bands is not None:
        info["bands"] = encoded.bands.as_json()
    if encoded.warnings:
        info["warnings"] = list(encoded.warnings)
    if encoded.notes:
        info["notes"] = list(encoded.notes)
    return _Converted(encoded, info)


def _convert_batch(
    items: Sequence[tuple[str, str, str | None]], options: dict[str, Any]
) -> list[tuple[str, _Converted | _Skipped | _Failed]]:
    """Runs on a worker (a process of the local pool, an executor's worker, a Dask worker):
    ``(path, id, committed checksum)`` items -> ``(id, outcome)`` in the same order. A bad
    source gives its own ``_Failed``; anything raised is an engine error for the caller."""
    return [(rid, _convert_one(path, existing, options)) for path, rid, existing in items]


_BATCH_BYTES = 128 << 20
"""Source bytes per conversion task: about an audio-hour of 16 kHz 16-bit mono PCM or of
256 kbit/s compressed audio, a few minutes of 44.1 kHz stereo PCM. A larger file goes alone."""
_BATCH_FILES = 256
"""At most this many files per task: short clips come back in steady steps."""
_UNKNOWN_SIZE = 1 << 20
"""Size assumed for a source that cannot be stat'ed here (a URL, a path only workers see)."""
_ATTEMPTS = 3
"""Times a task is run before its sources are tried one by one, and a single source failed."""
_WAIT_SECONDS = 0.5
"""Longest block while waiting for results, so that signals and engine refreshes are seen."""


def _batches(sources: Iterable[Source], *, total: int, parallelism: int) -> Iterator[list[Source]]:
    """Sources grouped into conversion tasks, in order, lazily (one ``stat`` per source).

    A task holds at most :data:`_BATCH_BYTES` of source files and :data:`_BATCH_FILES`
    files, and no more than an eighth of a worker's share of ``total``, so that every
    worker gets several tasks and the last ones finish together.
    """
    max_files = max(1, min(_BATCH_FILES, -(-total // (8 * max(1, parallelism)))))
    batch: list[Source] = []
    size = 0
    for src in sources:
        try:
            n = os.stat(src.path).st_size
        except (OSError, ValueError):
            n = _UNKNOWN_SIZE
        if batch and (size + n > _BATCH_BYTES or len(batch) >= max_files):
            yield batch
            batch, size = [], 0
        batch.append(src)
        size += n
    if batch:
        yield batch


def _items(batch: Sequence[Source], committed: Mapping[str, str]) -> list[tuple[str, str, str | None]]:
    return [(src.path, src.id, committed.get(src.id)) for src in batch]


def _convert_all(
    sources: Sequence[Source],
    committed: Mapping[str, str],
    options: dict[str, Any],
    workers: int | None,
) -> Generator[tuple[Source, _Converted | _Skipped | _Failed], None, None]:
    """Outcomes in source order from a local process pool (or this process); at most two
    tasks in flight per worker. A worker that dies (a crash inside FFmpeg, or killed)
    breaks the pool: the sources of the tasks in flight are then converted one by one,
    each in its own process, so that the file that kills its process fails alone."""
    n_workers = (os.cpu_count() or 1) if workers is None else int(workers)
    if n_workers < 0:
        raise ValueError(f"workers must be >= 0; got {workers}")
    if not sources:
        return
    if n_workers == 0:  # in this process: no protection against a crash inside FFmpeg
        for src in sources:
            yield src, _convert_one(src.path, committed.get(src.id), options)
        return
    n_workers = min(n_workers, len(sources))
    methods = multiprocessing.get_all_start_methods()
    ctx = multiprocessing.get_context("fork" if "fork" in methods else "spawn")
    todo = _batches(sources, total=len(sources), parallelism=n_workers)
    queue: collections.deque[tuple[list[Source], cf.Future[Any]]] = collections.deque()
    more = True
    while more or queue:
        with _pool(n_workers, ctx) as pool:
            broken = False
            while (more or queue) and not broken:
                while more and len(queue) < 2 * n_workers:
                    batch = next(todo, None)
                    if batch is None:
                        more = False
                        break
                    queue.append((batch, pool.submit(_convert_batch, _items(batch, committed), options)))
                if not queue:
                    break
                batch, fut = queue[0]
                try:
                    results = fut.result()
                except cf.process.BrokenProcessPool:
                    broken = True
                    break
                queue.popleft()
                yield from zip(batch, (outcome for _, outcome in results), strict=True)
        if broken:
            in_flight = [src for batch, _ in queue for src in batch]
            queue.clear()
            for src in in_flight:
                yield src, _convert_isolated(src, committed.get(src.id), options, ctx)


# ---------------------------------------------------------------------- executors


class _Engine:
    """The few operations the importer needs of an executor; handles are its futures."""

    def parallelism(self) -> int:
        raise NotImplementedError

    def submit(self, items: list[tuple[str, str, str | None]], options: dict[str, Any]) -> Any:
        raise NotImplementedError

    def wait(self, handles: list[Any], timeout: float) -> list[Any]:
        """The handles that are done (result or error), after at most ``timeout`` s."""
        raise NotImplementedError

    def result(self, handle: Any) -> list[tuple[str, _Converted | _Skipped | _Failed]]:
        raise NotImplementedError

    def cancel(self, handles: list[Any]) -> None:
        raise NotImplementedError


class _FuturesEngine(_Engine):
    """Any :class:`concurrent.futures.Executor` (not shut down here: it is the caller's)."""

    def __init__(self, executor: cf.Executor) -> None:
        self._executor = executor
        # Thread and process pools say how many workers they have; other executors: the cores.
        workers = getattr(executor, "_max_workers", None)
        self._parallelism = workers if isinstance(workers, int) and workers > 0 else (os.cpu_count() or 1)

    def parallelism(self) -> int:
        return self._parallelism

    def submit(self, items: list[tuple[str, str, str | None]], options: dict[str, Any]) -> Any:
        return self._executor.submit(_convert_batch, items, options)

    def wait(self, handles: list[Any], timeout: float) -> list[Any]:
        done, _ = cf.wait(handles, timeout=timeout, return_when=cf.FIRST_COMPLETED)
        return list(done)

    def result(self, handle: Any) -> list[tuple[str, _Converted | _Skipped | _Failed]]:
        result: list[tuple[str, _Converted | _Skipped | _Failed]] = handle.result()
        return result

    def cancel(self, handles: list[Any]) -> None:
        for handle in handles:
            handle.cancel()


class _DaskEngine(_Engine):
    """A Dask ``distributed.Client``: tasks go to its cluster's workers, which import
    ``aacdata`` themselves and open the source paths or URLs they are sent."""

    _REFRESH_SECONDS = 10.0

    def __init__(self, client: Any) -> None:
        import distributed

        self._client = client
        self._wait: Any = distributed.wait
        self._threads = 0
        self._checked = -float("inf")

    def parallelism(self) -> int:
        # An adaptive cluster grows and shrinks: the worker threads are counted again now and then.
        if time.monotonic() - self._checked > self._REFRESH_SECONDS:
            self._threads = sum(self._client.nthreads().values())
            self._checked = time.monotonic()
        return max(1, self._threads)

    def submit(self, items: list[tuple[str, str, str | None]], options: dict[str, Any]) -> Any:
        # pure=False: a retried task is a new task, not the failed one found again by its key.
        return self._client.submit(_convert_batch, items, options, pure=False)

    def wait(self, handles: list[Any], timeout: float) -> list[Any]:
        with contextlib.suppress(TimeoutError):
            self._wait(handles, timeout=timeout, return_when="FIRST_COMPLETED")
        return [h for h in handles if h.done()]

    def result(self, handle: Any) -> list[tuple[str, _Converted | _Skipped | _Failed]]:
        result: list[tuple[str, _Converted | _Skipped | _Failed]] = handle.result()
        return result

    def cancel(self, handles: list[Any]) -> None:
        if handles and self._client.status == "running":
            self._client.cancel(handles)


def _engine(executor: Any) -> _Engine:
    if isinstance(executor, cf.Executor):
        return _FuturesEngine(executor)
    if type(executor).__module__.split(".")[0] == "distributed" and hasattr(executor, "nthreads"):
        return _DaskEngine(executor)
    raise TypeError(
        f"executor must be a concurrent.futures.Executor or a Dask distributed.Client; got {type(executor).__name__}"
    )


@dataclass(frozen=True, slots=True)
class _Task:
    sources: tuple[Source, ...]
    attempts: int = 0
    error: str = ""


def _convert_on(
    engine: _Engine,
    sources: Sequence[Source],
    committed: Mapping[str, str],
    options: dict[str, Any],
) -> Generator[tuple[Source, _Converted | _Skipped | _Failed], None, None]:
    """Outcomes in completion order from an executor, at most two tasks in flight per
    worker thread (memory stays flat however many sources there are).

    A task that raises failed on the engine (its sources' own errors come back as
    outcomes): it runs again up to :data:`_ATTEMPTS` times, then each of its sources
    alone, so that a file that kills its worker fails by itself. Tasks still running when
    the caller stops (an interrupt, an error) are cancelled.
    """
    batches = _batches(sources, total=len(sources), parallelism=engine.parallelism())
    known = {src.id: src for src in sources}
    retry: collections.deque[_Task] = collections.deque()
    running: dict[Any, _Task] = {}
    more = True
    try:
        while True:
            while len(running) < 2 * engine.parallelism():
                if retry:
                    task = retry.popleft()
                elif more and (batch := next(batches, None)) is not None:
                    task = _Task(tuple(batch))
                else:
                    more = False
                    break
                running[engine.submit(_items(task.sources, committed), options)] = task
            if not running:
                return
            for handle in engine.wait(list(running), _WAIT_SECONDS):
                task = running.pop(handle)
                try:
                    results = engine.result(handle)
                except Exception as e:  # noqa: BLE001 - any error of the engine: retried, then reported per file
                    error = f"{type(e).__name__}: {e}" if str(e) else type(e).__name__
                    log.warning("a conversion task of %d files failed on the executor (%s)", len(task.sources), error)
                    if task.attempts + 1 < _ATTEMPTS:
                        retry.append(_Task(task.sources, task.attempts + 1, error))
                    elif len(task.sources) > 1:
                        retry.extend(_Task((src,)) for src in task.sources)
                    else:
                        reason = f"the executor failed to convert this file {_ATTEMPTS} times (last: {error})"
                        yield task.sources[0], _Failed(reason)
                    continue
                for rid, outcome in results:
                    src = known.get(rid)
                    if src is None:
                        log.warning("the executor returned a result for %r, which this import did not send", rid)
                    else:
                        yield src, outcome
    finally:
        engine.cancel(list(running))


def _convert_isolated(
    src: Source, existing: str | None, options: dict[str, Any], ctx: Any
) -> _Converted | _Skipped | _Failed:
    with _pool(1, ctx) as pool:
        try:
            result: _Converted | _Skipped | _Failed = pool.submit(_convert_one, src.path, existing, options).result()
        except cf.process.BrokenProcessPool:
            return _Failed("the conversion process crashed on this file")
    return result


@contextlib.contextmanager
def _pool(n_workers: int, ctx: Any) -> Iterator[cf.ProcessPoolExecutor]:
    """A process pool whose processes die with this one, and are stopped at once (not
    waited for) when the import ends early."""
    pool = cf.ProcessPoolExecutor(
        max_workers=n_workers, mp_context=ctx, initializer=_conversion_process_init, initargs=(os.getpid(),)
    )
    try:
        yield pool
    except BaseException:
        # Conversions still running would otherwise be waited for by shutdown(); the
        # executor offers no public way to stop a running task, so its processes are ended.
        for process in list(getattr(pool, "_processes", {}).values()):
            process.terminate()
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    pool.shutdown(wait=True)


def _conversion_process_init(parent: int) -> None:
    """Runs first in each conversion process: leave interrupts to the importing process,
    and exit as soon as it is gone (else a killed import would leave its conversion
    processes blocked on their pipes forever)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
        except (OSError, AttributeError):
            pass  # the watcher below still notices
    if os.getppid() != parent:  # the parent died before this line
        os._exit(1)
    threading.Thread(target=_exit_with_parent, args=(parent,), name="aacdata-parent-watch", daemon=True).start()


_PR_SET_PDEATHSIG = 1


def _exit_with_parent(parent: int) -> None:
    while True:
        time.sleep(0.5)
        if os.getppid() != parent:
            os._exit(1)


# ---------------------------------------------------------------------- sources


def parse_shard(shard: tuple[int, int] | str) -> tuple[int, int]:
    """``"k/n"`` or ``(k, n)`` -> ``(k, n)`` with ``0 <= k < n``."""
    try:
        if isinstance(shard, str):
            k_text, n_text = shard.split("/")
            k, n = int(k_text), int(n_text)
        else:
            k, n = (int(x) for x in shard)
    except (ValueError, TypeError):
        raise ValueError(f"shard must be 'K/N' or (K, N) with 0 <= K < N; got {shard!r}") from None
    if not 0 <= k < n:
        raise ValueError(f"shard must be 'K/N' or (K, N) with 0 <= K < N; got {shard!r}")
    return k, n


def shard_of(key: str, num_shards: int) -> int:
    """The shard of a recording id: stable across runs, machines and Python versions."""
    digest = hashlib.blake2b(key.encode("utf-8", "surrogateescape"), digest_size=8).digest()
    return int.from_bytes(digest, "big") % num_shards


def discover_sources(
    sources: str | os.PathLike[str] | Iterable[str | os.PathLike[str]],
    notes: list[tuple[str, str]] | None = None,
) -> tuple[list[Source], list[ImportFailure]]:
    """Expand files, directories and list files into ``Source`` entries with unique ids;
    ``(path, note)`` for what was passed over on purpose goes to ``notes``."""
    if isinstance(sources, (str, os.PathLike)):
        sources = [sources]
    found: list[Source] = []
    failures: list[ImportFailure] = []
    passed_over: list[tuple[str, str]] = [] if notes is None else notes
    for s in sources:
        _expand(os.fspath(s), found, failures, passed_over, depth=0, root=None)
    by_id: dict[str, Source] = {}
    unique: list[Source] = []
    for src in found:
        try:
            src.id.encode("utf-8")
        except UnicodeEncodeError:
            failures.append(ImportFailure(src.path, "the file name is not valid UTF-8; rename the file"))
            continue
        other = by_id.get(src.id)
        if other is None:
            by_id[src.id] = src
            unique.append(src)
        elif os.path.realpath(other.path) != os.path.realpath(src.path):
            failures.append(ImportFailure(src.path, f"id {src.id!r} is also the id of {other.path}; rename one"))
    return unique, failures


def _expand(
    path: str,
    found: list[Source],
    failures: list[ImportFailure],
    notes: list[tuple[str, str]],
    depth: int,
    root: str | None,
) -> None:
    """Add the files at ``path``; ids are relative to ``root`` (a list file's directory)
    when ``path`` lies below it, else to ``path`` itself (a directory) or its parent."""
    if os.path.isdir(path):
        base = Path(root) if root is not None and _is_below(path, root) else Path(path)
        seen: set[str] = set()
        for dirpath, dirnames, filenames in os.walk(path, followlinks=True):
            real = os.path.realpath(dirpath)
            if real in seen:  # a symbolic link loop
                dirnames[:] = []
                continue
            seen.add(real)
            dirnames.sort()
            for name in sorted(filenames):
                if Path(name).suffix.lower() in AUDIO_EXTENSIONS and not name.startswith("."):
                    full = os.path.join(dirpath, name)
                    found.append(Source(full, _relative_id(full, base)))
    elif Path(path).suffix.lower() in LIST_EXTENSIONS and os.path.isfile(path):
        if depth > 4:
            failures.append(ImportFailure(path, "list files nest too deeply"))
            return
        list_dir = os.path.dirname(path)
        try:
            lines = Path(path).read_text(encoding="utf-8-sig").splitlines()
        except (OSError, UnicodeDecodeError) as e:
            failures.append(ImportFailure(path, f"cannot read the list of sources ({e})"))
            return
        if _is_table(lines):
            notes.append((path, "a Raven selection table or other tab-separated table, not a list of sources: "
                                "not imported (store its events with `aacdata annotate`)"))  # fmt: skip
            return
        for line in lines:
            entry = line.split("#", 1)[0].strip()
            if entry:
                _expand(os.path.join(list_dir, entry), found, failures, notes, depth + 1, root=list_dir)
    elif os.path.exists(path) or os.path.islink(path):
        rid = _relative_id(path, Path(root)) if root is not None and _is_below(path, root) else Path(path).name
        found.append(Source(path, rid))
    else:
        failures.append(ImportFailure(path, "file not found"))


def _is_table(lines: list[str]) -> bool:
    """Whether a ``.txt`` file is a table (a Raven selection table: a tab-separated header
    starting with ``Selection``) rather than a list of paths, one per line."""
    first = next((line for line in lines if line.strip()), "")
    return "\t" in first and first.split("\t", 1)[0].strip() in ("Selection", "selection")


def _is_below(path: str, root: str) -> bool:
    rel = os.path.relpath(os.path.abspath(path), os.path.abspath(root))
    return rel != os.curdir and not rel.startswith(os.pardir)


def _relative_id(path: str, base: Path) -> str:
    rel = os.path.relpath(os.path.abspath(path), os.path.abspath(base))
    return PurePosixPath(*Path(rel).parts).as_posix()


def load_metadata(metadata: str | os.PathLike[str] | Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per-id metadata from a mapping, a ``.csv`` file (column ``id``) or a ``.jsonl`` file."""
    if isinstance(metadata, Mapping):
        out: dict[str, dict[str, Any]] = {}
        for k, v in metadata.items():
            if not isinstance(v, Mapping):
                raise ValueError(f"metadata for id {k!r} must be a mapping; got {type(v).__name__}")
            out[str(k)] = dict(v)
        _check_json(out, "metadata")
        return out
    path = os.fspath(metadata)
    suffix = Path(path).suffix.lower()
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as e:
        raise SourceError(f"metadata file {path!r} cannot be read ({e.strerror or e})") from None
    out = {}
    if suffix == ".csv":
        reader = csv.DictReader(text.splitlines())
        if not reader.fieldnames or "id" not in reader.fieldnames:
            raise SourceError(f"metadata file {path!r} needs a header row with an 'id' column")
        for row in reader:
            rid = row.pop("id")
            out[rid] = {k: v for k, v in row.items() if k is not None}
    elif suffix in (".jsonl", ".ndjson"):
        for n, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise SourceError(f"metadata file {path!r} line {n} is not JSON ({e.msg})") from None
            if not isinstance(obj, dict) or "id" not in obj:
                raise SourceError(f"metadata file {path!r} line {n} must be a JSON object with an 'id' key")
            out[str(obj.pop("id"))] = obj
    else:
        raise SourceError(f"metadata file {path!r} must end in .csv or .jsonl")
    _check_json(out, path)
    return out


def _check_json(meta: Mapping[str, Any], where: str) -> None:
    try:
        json.dumps(meta)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{where} is not JSON-serialisable ({e})") from None
