"""AACSegmentDataset: sample windows of one or more stores for a PyTorch ``DataLoader``.

The dataset holds no data and no handles: each process that reads (the main process or a
``DataLoader`` worker) opens its own stores, decoders and index caches on first use, and
again after a ``fork``. Which window an index maps to is a pure function of
``(seed, epoch, index)``, so batches are the same whatever the number of workers, the
process start method or the machine.

Legend for tensor shapes: ``B`` batch, ``C`` channels, ``T`` samples.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

import numpy as np
import torch
import zarr
from zarr.abc.store import Store

from ..annotations import Annotations
from ..audio._channels import remix
from ..audio._resample import RateSpan, parse_rate
from ..errors import AACDataError, AnnotationError, CorruptDataError, DecodeError, RecordingNotFoundError
from ..store._store import DEFAULT_INDEX_CACHE_BYTES, AACStore
from ._epoch import SharedSeedEpoch, parse_u64
from ._labels import CorpusView, WindowLabels, combine, parse_overlap, to_rate
from .plans import Corpus, EventWindows, ExplicitWindows, RandomWindows, SlidingWindows, Window, WindowPlan

StoreLike = str | os.PathLike[str] | AACStore | Store
_MAX_REPLACEMENTS = 100


class AACSegmentDataset(torch.utils.data.Dataset[Any]):
    """Fixed-length sample windows from AAC stores, for a ``torch.utils.data.DataLoader``.

    Parameters
    ----------
    store_or_path
        A store path or URL, an :class:`AACStore`, a zarr ``Store`` (it must pickle, for
        workers), or a list of them (read as one corpus, the recordings of each store
        following those of the previous one).
    plan
        Which windows to read: :class:`~aacdata.RandomWindows`,
        :class:`~aacdata.SlidingWindows`, :class:`~aacdata.ExplicitWindows` or
        :class:`~aacdata.EventWindows`. The keyword arguments below are shortcuts for the
        first three (``hop_seconds=`` sliding, ``windows=`` explicit, else random); give
        either a plan or them.
    window_seconds, window_samples
        Window length; give one. Seconds are converted at the corpus sample rate.
    num_windows
        Random windows per epoch (default: total duration / window length).
    hop_seconds
        Use sliding windows over every recording, ``hop_seconds`` apart, instead of
        random ones (evaluation). ``last="pad"`` keeps a zero-padded last window,
        ``"drop"`` drops it.
    windows
        An explicit list of ``(recording_id, start, num_samples)`` (e.g. labelled events).
    weighting
        Random windows uniform over audio time (``"duration"``) or over recordings
        (``"recording"``).
    short
        Recordings shorter than the window are zero-padded (``"pad"``) or left out
        (``"skip"``).
    recordings
        Keep only these recording ids, or the recordings for which this predicate is
        true; it is called with a dict holding the recording's user metadata and its
        ``id``, ``sample_rate``, ``num_channels``, ``num_samples`` and
        ``duration_seconds`` (these win over metadata keys of the same names).
    sample_rate
        Read every recording resampled to this rate (windows, ``window_seconds`` and
        lengths are at this rate; a window equals the same slice of the whole recording
        resampled by :func:`aacdata.resample`, remixed first when ``num_channels`` is
        set). ``None``: the recordings' own rate, which must then be a single one.
    num_channels
        Output channels: ``1`` downmixes to mono (mean), a mono recording is repeated
        to fill ``num_channels``, a recording with more keeps its first ones.
        ``None`` keeps each recording's own count (batches then need equal counts).
    seed
        Random windows are a pure function of ``(seed, epoch, index)``; an integer in
        ``[0, 2**64)``. It and the epoch (:meth:`set_epoch`) reach the DataLoader's
        workers, persistent ones included.
    return_info
        Return a dict (``audio``, ``recording``, ``id``, ``start``, ``sample_rate``;
        ``labels`` when the metadata has a ``label``/``labels`` key; ``target`` with
        ``labels=``; ``events`` with annotations, see :func:`aacdata.collate`) instead of
        the tensor.
    transform
        Callable applied to each ``(C, T)`` tensor (e.g. a feature transform).
    index_cache_bytes
        Per-worker budget for cached index rows, per store.
    on_error
        ``"raise"``: a damaged window raises :class:`~aacdata.CorruptDataError` (or
        :class:`~aacdata.DecodeError`); ``"skip"``: it is replaced by the next good
        window of the plan and counted in :meth:`stats` as ``windows_replaced``.
    storage_options
        Object-store settings for URL stores (see :meth:`AACStore.open`); each worker
        opens its own connection.
    annotations
        Events to label windows with: an :class:`~aacdata.Annotations` table (parsed, in
        ids and seconds; or resolved, for a single store) or the name of a set stored in
        every store. Default: the events of an :class:`~aacdata.EventWindows` plan, else
        none.
    labels
        ``"clip"``: items are ``(audio, target)``, target float32 ``(K,)`` multi-hot, 1
        for each class with an event that labels the window (rule below).
        ``"frames"``: target float32 ``(K, F)``, ``F = floor(window / label_hop_seconds)``
        (at least 1); frame ``j``, centred at ``a + (j + 1/2) * hop``, is 1 for class
        ``k`` where an event of ``k`` covers its centre. ``None``: no target.
    classes
        The ``K`` classes in target order (default: the events' labels, sorted).
    other_classes
        Events with a label ``classes`` does not list: ``"error"`` (the default) refuses
        them with an :class:`~aacdata.AnnotationError` naming the labels; ``"ignore"``
        trains on the listed classes, the other events labelling nothing.
    min_overlap_seconds, min_overlap_fraction
        When an event ``[s, e)`` labels a window ``[a, b)`` with ``labels="clip"``: with
        overlap ``o = max(0, min(b, e) - max(a, s))``, when ``o > 0`` and the thresholds
        that were given allow it. Neither given (both ``None``): any overlap; only
        seconds: ``o`` at least ``min_overlap_seconds``; only the fraction: ``o >=
        min_overlap_fraction * (e - s)``; both: either suffices. A threshold left at
        ``None`` never applies. Seconds: a finite number ``>= 0``; fraction: a finite
        number in ``(0, 1]``. An instant event (``s == e``) labels the windows that
        contain it.
    label_hop_seconds
        Hop of the label frames of ``labels="frames"``.
    weights, temperature, groups
        Mix corpora in random windows: one weight per store (``store_or_path`` a list),
        or, with ``groups=`` naming a metadata key, a mapping from that key's values to
        weights. A window's group is drawn with probability proportional to
        ``weight ** temperature``, then a window within it.

    Items are float32 tensors ``(C, T)`` with values in [-1, 1], so the default
    ``collate_fn`` gives ``(B, C, T)``.
    """

    def __init__(
        self,
        store_or_path: StoreLike | Sequence[StoreLike],
        *,
        window_seconds: float | None = None,
        window_samples: int | None = None,
        num_windows: int | None = None,
        hop_seconds: float | None = None,
        last: Literal["pad", "drop"] = "pad",
        windows: Sequence[tuple[str, int, int]] | None = None,
        weighting: Literal["duration", "recording"] = "duration",
        short: Literal["pad", "skip"] = "pad",
        recordings: Sequence[str] | Callable[[Mapping[str, Any]], bool] | None = None,
        sample_rate: int | None = None,
        num_channels: int | None = None,
        seed: int = 0,
        return_info: bool = False,
        transform: Callable[[torch.Tensor], Any] | None = None,
        index_cache_bytes: int = DEFAULT_INDEX_CACHE_BYTES,
        on_error: Literal["raise", "skip"] = "raise",
        storage_options: Mapping[str, Any] | None = None,
        plan: WindowPlan | None = None,
        annotations: Annotations | str | None = None,
        labels: Literal["clip", "frames"] | None = None,
        classes: Sequence[str] | None = None,
        other_classes: Literal["error", "ignore"] = "error",
        min_overlap_seconds: float | None = None,
        min_overlap_fraction: float | None = None,
        label_hop_seconds: float = 0.02,
        weights: Sequence[float] | Mapping[str, float] | None = None,
        temperature: float = 1.0,
        groups: str | None = None,
    ) -> None:
        sources: list[StoreLike] = (
            list(store_or_path) if isinstance(store_or_path, (list, tuple)) else [store_or_path]  # type: ignore[list-item]
        )
        if not sources:
            raise ValueError("store_or_path is an empty list; give at least one store")
        for s in sources:
            if isinstance(s, zarr.storage.FsspecStore) or (
                isinstance(s, AACStore) and isinstance(s.target, zarr.storage.FsspecStore)
            ):
                raise ValueError(
                    "pass the store's URL (and storage_options=) rather than an FsspecStore object: each "
                    "DataLoader worker must open its own connection"
                )
        # Where each worker opens the stores: a path or URL, or a (picklable) zarr Store.
        self._paths: list[str | Store] = [
            s.target if isinstance(s, AACStore) else s if isinstance(s, Store) else os.fspath(s) for s in sources
        ]
        self.storage_options = dict(storage_options) if storage_options is not None else None
        _choice("weighting", weighting, ("duration", "recording"))
        _choice("short", short, ("pad", "skip"))
        _choice("last", last, ("pad", "drop"))
        _choice("on_error", on_error, ("raise", "skip"))
        _choice("other_classes", other_classes, ("error", "ignore"))
        parse_overlap(min_overlap_seconds, min_overlap_fraction)  # refused before the stores are read
        self.on_error = on_error
        if num_channels is not None and num_channels < 1:
            raise ValueError(f"num_channels must be >= 1; got {num_channels}")
        # What decides the windows besides the plan, shared with this dataset's DataLoader
        # workers, persistent ones included (see _epoch).
        self._seed_epoch = SharedSeedEpoch(parse_u64("seed", seed), 0)
        self.return_info = bool(return_info)
        self.transform = transform
        self.num_channels = num_channels
        self.index_cache_bytes = int(index_cache_bytes)

        table = self._load_tables(sources)
        self._store_of = table["store"]
        self._local = table["local"]
        self._native_lengths = table["num_samples"]
        self._rates = table["sample_rate"]
        self._channels = table["num_channels"]
        keep = np.ones(self._native_lengths.size, dtype=bool)
        if recordings is not None:
            keep &= self._filter(recordings, table)
        if not keep.any():
            raise ValueError("no recordings left after the recordings= filter")
        if sample_rate is None:
            rates = sorted({int(r) for r in self._rates[keep]})
            if len(rates) > 1:
                raise ValueError(
                    f"recordings have sample rates {', '.join(f'{r} Hz' for r in rates)}; pass sample_rate= to "
                    "read them all resampled to one rate (or keep one rate with recordings=)"
                )
            self.sample_rate = rates[0]
        else:
            self.sample_rate = parse_rate(sample_rate, "sample_rate")
        if num_channels is None:
            counts = sorted({int(c) for c in self._channels[keep]})
            if len(counts) > 1:
                raise ValueError(
                    f"recordings have {', '.join(map(str, counts))} channels; pass num_channels= to read them all "
                    "with one count (1: their mean), or keep one count with recordings= (a batch stacks items "
                    "of one shape)"
                )
        # Lengths at the dataset's rate: a recording at another rate is read resampled.
        self._lengths = -(-self._native_lengths * self.sample_rate // self._rates)
        self._ids_cache: list[str] = table["ids"]
        self._labels: list[Any] = table["labels"]
        shortcuts = {"window_seconds": window_seconds, "window_samples": window_samples, "windows": windows}
        shortcuts |= {"hop_seconds": hop_seconds, "num_windows": num_windows}
        if plan is None:
            plan = _plan_from_shortcuts(
                window_seconds, window_samples, num_windows, hop_seconds, last, windows, weighting, short
            )
        elif any(v is not None for v in shortcuts.values()):
            given = ", ".join(f"{k}=" for k, v in shortcuts.items() if v is not None)
            raise ValueError(f"plan= says which windows to read; do not also give {given}")
        self._annotations_given = annotations
        group_of, probabilities, self._group_names = _groups(
            weights, temperature, groups, self._store_of, table["metadata"], [str(p) for p in self._paths], keep
        )
        self._group_of = group_of
        corpus = Corpus(
            self._lengths,
            self.sample_rate,
            np.flatnonzero(keep),
            self._ids_cache,
            self._events_of,
            group_of,
            probabilities,
        )
        self.plan = plan.bind(corpus, seed=self.seed)  # workers follow a new seed in window()
        if labels not in (None, "clip", "frames"):
            raise ValueError(f"labels must be None, 'clip' or 'frames'; got {labels!r}")
        self.labels = labels
        source = annotations
        if source is None and isinstance(plan, EventWindows):
            source = plan.annotations
        if labels is not None and source is None:
            raise ValueError(f"labels={labels!r} needs events: pass annotations= (a table or a stored set's name)")
        self._window_labels: WindowLabels | None = None
        if source is not None:
            self._window_labels = WindowLabels(
                self._events_of(source),
                classes=classes,
                sample_rate=self.sample_rate,
                min_overlap_seconds=min_overlap_seconds,
                min_overlap_fraction=min_overlap_fraction,
                label_hop_seconds=label_hop_seconds,
                other_classes=other_classes,
            )
        elif classes is not None:
            raise ValueError("classes= orders the labels of events: pass annotations= too")
        self.window_samples: int | None = self.plan.window_samples
        _say_short_recordings(self.plan, self._lengths[keep], self.sample_rate)
        self._eligible = corpus.eligible
        self._length = len(self.plan)
        self._state: _WorkerState | None = None
        self._fingerprint_cache: str | None = None

    # ------------------------------------------------------------------ construction helpers

    def _load_tables(self, sources: Sequence[StoreLike]) -> dict[str, Any]:
        cols: dict[str, list[Any]] = {k: [] for k in ("store", "local", "num_samples", "sample_rate", "num_channels")}
        ids: list[str] = []
        metas: list[str] = []
        for si, src in enumerate(sources):
            store = src if isinstance(src, AACStore) else AACStore.open(src, storage_options=self.storage_options)
            try:
                n = len(store)
                cols["store"].append(np.full(n, si, dtype=np.int32))
                cols["local"].append(np.arange(n, dtype=np.int64))
                for name in ("num_samples", "sample_rate", "num_channels"):
                    cols[name].append(store.column(name))
                ids.extend(store.ids)
                metas.extend(store.text_column("metadata"))
            finally:
                if store is not src:
                    store.close()
        table: dict[str, Any] = {k: np.concatenate(v) if v else np.zeros(0, np.int64) for k, v in cols.items()}
        if table["num_samples"].size == 0:
            raise ValueError(f"the stores {self._paths} hold no recordings")
        parsed = [json.loads(m) if m else {} for m in metas]
        table["ids"] = ids
        table["metadata"] = parsed
        table["labels"] = [m.get("labels", m.get("label")) if isinstance(m, dict) else None for m in parsed]
        return table

    def _events_of(self, source: Annotations | str | None) -> Annotations:
        """Events in corpus rows and samples at the dataset's rate, from a table (parsed:
        resolved against the corpus; resolved: a single store's rows), the name of a set
        stored in every store, or ``None`` (the dataset's ``annotations=``)."""
        if source is None:
            source = self._annotations_given
            if source is None:
                raise ValueError("no events: pass annotations= to the dataset or the plan")
        if isinstance(source, str):
            parts = []
            first = 0
            for si, path in enumerate(self._paths):
                with AACStore.open(path, storage_options=self.storage_options) as store:
                    if source not in store.annotation_sets:
                        raise AnnotationError(
                            f"store {store.path!r} has no annotation set {source!r} (sets: "
                            f"{', '.join(store.annotation_sets) or 'none'}); write one with `aacdata annotate`"
                        )
                    parts.append((first, store.annotations(source)))
                first += int(np.count_nonzero(self._store_of == si))
            events = combine(parts)
        elif not isinstance(source, Annotations):
            raise TypeError(f"annotations must be an Annotations table or a set name; got {type(source).__name__}")
        elif source.resolved:
            if len(self._paths) > 1:
                raise ValueError(
                    "a resolved Annotations table names rows of one store; with several stores pass the parsed "
                    "table (it is resolved against all of them) or a stored set's name"
                )
            events = source
        else:
            view = CorpusView(
                self._ids_cache,
                {"sample_rate": self._rates, "num_samples": self._native_lengths, "num_channels": self._channels},
                ", ".join(map(str, self._paths)),
            )
            events = source.resolve(view)
        return to_rate(events, self._rates, self.sample_rate)

    @staticmethod
    def _filter(recordings: Any, table: Mapping[str, Any]) -> np.ndarray:
        if callable(recordings):
            keys = ("sample_rate", "num_channels", "num_samples")
            rows = zip(table["metadata"], table["ids"], *(table[k].tolist() for k in keys), strict=True)
            return np.array(
                [
                    bool(
                        recordings(
                            {
                                **(meta if isinstance(meta, dict) else {}),
                                "id": rid,
                                "sample_rate": rate,
                                "num_channels": channels,
                                "num_samples": n,
                                "duration_seconds": n / rate,
                            }
                        )
                    )
                    for meta, rid, rate, channels, n in rows
                ],
                dtype=bool,
            )
        wanted = {str(r) for r in recordings}
        missing = wanted - set(table["ids"])
        if missing:
            raise RecordingNotFoundError(
                f"recordings= names {len(missing)} ids not in the stores, e.g. {sorted(missing)[0]!r}"
            )
        return np.array([i in wanted for i in table["ids"]], dtype=bool)

    # ------------------------------------------------------------------ plan

    def __len__(self) -> int:
        return self._length

    @property
    def seed(self) -> int:
        """The seed of the random windows, in ``[0, 2**64)`` (changed by
        :meth:`load_state_dict`)."""
        return self._seed_epoch.seed

    @property
    def epoch(self) -> int:
        """The epoch whose random windows items read, in ``[0, 2**64)`` (see
        :meth:`set_epoch`)."""
        return self._seed_epoch.epoch

    def set_epoch(self, epoch: int) -> None:
        """Draw new random windows: window ``i`` of epoch ``e`` depends on ``(seed, e, i)``.

        Call it before iterating the DataLoader for the epoch. It reaches the DataLoader's
        workers too, also with ``persistent_workers=True`` (whose copies of the dataset
        live across epochs), for every start method. ``epoch`` is an integer in
        ``[0, 2**64)``. The seed and epoch belong to this object: a deep copy (or a copy
        unpickled in this process) has its own, starting from these.
        """
        self._seed_epoch.set(epoch=epoch)

    def window(self, index: int) -> Window:
        """The window that item ``index`` reads (this epoch)."""
        seed, epoch = self._seed_epoch.get()
        if self.plan.seed != seed:  # a worker's copy of the plan, after load_state_dict
            self.plan.seed = seed
        return self.plan.window(index, epoch)

    # ------------------------------------------------------------------ reading

    def __getitem__(self, index: int) -> Any:
        return self._item_or_next(index, self.window(index))

    def __getitems__(self, indices: Sequence[int]) -> list[Any]:
        """Batched fetch: the windows of each store are read together (their bytes fetched
        concurrently from a remote store), decoders reused; items come in request order."""
        wins = [self.window(i) for i in indices]
        out: list[Any] = [None] * len(wins)
        by_store: dict[int, list[int]] = {}
        for j in sorted(range(len(wins)), key=lambda j: (wins[j].recording, wins[j].start)):
            by_store.setdefault(int(self._store_of[wins[j].recording]), []).append(j)
        state = self._worker()
        for s, js in by_store.items():
            spans = [self._span(wins[j]) for j in js]
            requests = [(int(self._local[wins[j].recording]), *span[:2]) for j, span in zip(js, spans, strict=True)]
            try:
                audio = state.store(s).read_many(requests, pad=True)
            except (CorruptDataError, DecodeError):
                for j in js:  # find the damaged ones, window by window
                    out[j] = self._item_or_next(indices[j], wins[j])
                continue
            for j, a, span in zip(js, audio, spans, strict=True):
                state.windows_served += 1
                out[j] = self._finish(wins[j], self._audio(wins[j], a, span[2]))
        return out

    def _span(self, w: Window) -> tuple[int, int, RateSpan | None]:
        """What to read for window ``w`` at the recording's own rate: ``(start,
        num_samples, resampling)``, the last ``None`` where the rates agree."""
        rate = int(self._rates[w.recording])
        if rate == self.sample_rate:
            return w.start, w.num_samples, None
        span = RateSpan.plan(
            w.start, w.num_samples, int(self._lengths[w.recording]), rate, self.sample_rate, pad=True, what=""
        )
        return span.a, span.b - span.a, span

    def _audio(self, w: Window, native: np.ndarray, span: RateSpan | None) -> np.ndarray:
        """The window's samples, remixed to ``num_channels`` and, at another rate, then
        resampled (remixing first: fewer channels to resample)."""
        mixed = self._map_channels(native, w.recording)
        return mixed if span is None else span.finish(mixed if span.b > span.a else None, mixed.shape[0])

    def _item_or_next(self, index: int, window: Window) -> Any:
        try:
            return self._item(window)
        except (CorruptDataError, DecodeError) as first:
            if self.on_error == "raise":
                raise
            # Replace the damaged window by the next one of the plan that reads.
            state = self._worker()
            for step in range(1, min(self._length, _MAX_REPLACEMENTS + 1)):
                try:
                    item = self._item(self.window((index + step) % self._length))
                except (CorruptDataError, DecodeError):
                    continue
                state.windows_replaced += 1
                return item
            raise CorruptDataError(
                f"no readable window among the {_MAX_REPLACEMENTS} after index {index}: {first}"
            ) from first

    def _item(self, w: Window) -> Any:
        state = self._worker()
        store = state.store(int(self._store_of[w.recording]))
        start, n, span = self._span(w)
        native = store.read(int(self._local[w.recording]), start, n, pad=True)
        state.windows_served += 1
        return self._finish(w, self._audio(w, native, span))

    def _finish(self, w: Window, audio: np.ndarray) -> Any:
        if self._group_of is not None:
            state = self._worker()
            g = int(self._group_of[w.recording])
            state.group_windows[g] = state.group_windows.get(g, 0) + 1
        tensor = torch.from_numpy(audio)
        if self.transform is not None:
            tensor = self.transform(tensor)
        target = self._target(w)
        if not self.return_info:
            return tensor if target is None else (tensor, target)
        info: dict[str, Any] = {
            "audio": tensor,
            "recording": w.recording,
            "id": self._ids_cache[w.recording],
            "start": w.start,
            "sample_rate": self.sample_rate,
        }
        label = self._labels[w.recording]
        if label is not None:
            info["labels"] = label
        if target is not None:
            info["target"] = target
        if self._window_labels is not None:
            info["events"] = self._window_labels.window_events(w.recording, w.start, w.start + w.num_samples)
        return info

    def _target(self, w: Window) -> torch.Tensor | None:
        wl = self._window_labels
        if wl is None or self.labels is None:
            return None
        a, b = w.start, w.start + w.num_samples
        target = wl.clip(w.recording, a, b) if self.labels == "clip" else wl.frames(w.recording, a, b)
        return torch.from_numpy(target)

    @property
    def classes(self) -> tuple[str, ...]:
        """The label classes, in target order (empty without annotations)."""
        return self._window_labels.classes if self._window_labels is not None else ()

    def _map_channels(self, audio: np.ndarray, g: int) -> np.ndarray:
        if self.num_channels is None:
            return audio
        try:
            return remix(audio, self.num_channels)
        except ValueError as e:
            raise ValueError(f"recording {self._ids_cache[g]!r}: {e}") from None

    # ------------------------------------------------------------------ per-process state

    def _worker(self) -> _WorkerState:
        state = self._state
        if state is None or state.pid != os.getpid():
            state = self._state = _WorkerState(self._paths, self.index_cache_bytes, self.storage_options)
        return state

    def stats(self) -> dict[str, int]:
        """Counters of the calling process: windows served, decoders created, index
        cache hits and misses, bytes read (call it inside a worker for that worker's)."""
        state = self._worker()
        out = {
            "pid": state.pid,
            "windows_served": state.windows_served,
            "windows_replaced": state.windows_replaced,
            "stores_open": len(state.stores),
        }
        for store in state.stores.values():
            for k, v in store.cache_info().items():
                out[k] = out.get(k, 0) + v
        for g, name in enumerate(self._group_names):
            out[f"windows_in_group:{name}"] = state.group_windows.get(g, 0)
        return out

    # ------------------------------------------------------------------ resuming

    def state_dict(self) -> dict[str, Any]:
        """What decides the windows: seed, epoch, the plan's parameters and a fingerprint
        of the corpus. With torchdata's ``StatefulDataLoader`` (which saves it beside its
        sampler's state), a resumed run reads exactly the windows the uninterrupted run
        would have."""
        return {"seed": self.seed, "epoch": self.epoch, "plan": self._plan_key(), "corpus": self._fingerprint()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict`'s seed and epoch, in this process and in the
        DataLoader's workers (persistent ones included); a different corpus or plan is
        refused (``ValueError``), never silently resumed."""
        try:
            seed, epoch, plan, corpus = state["seed"], state["epoch"], state["plan"], state["corpus"]
            seed, epoch = parse_u64("seed", seed), parse_u64("epoch", epoch)
        except (KeyError, TypeError) as e:
            raise ValueError(f"not an AACSegmentDataset state ({type(e).__name__}: {e})") from None
        if corpus != self._fingerprint():
            raise ValueError(
                "the saved state belongs to another corpus (recordings, lengths, rates or filters differ); "
                "resuming would read other windows"
            )
        if plan != self._plan_key():
            raise ValueError(
                f"the saved state belongs to another window plan ({plan}); this dataset has {self._plan_key()}"
            )
        self._seed_epoch.set(seed=seed, epoch=epoch)
        self.plan.seed = seed

    def _plan_key(self) -> str:
        return f"{type(self.plan).__name__}({self.plan.params()}, window_samples={self.window_samples})"

    def _fingerprint(self) -> str:
        if self._fingerprint_cache is None:
            digest = hashlib.sha256()
            digest.update("\0".join(self._ids_cache).encode("utf-8", "surrogateescape"))
            for arr in (self._native_lengths, self._rates, self._channels, self._eligible):
                digest.update(np.ascontiguousarray(arr, dtype=np.int64).tobytes())
            digest.update(f"{self.sample_rate}/{self.num_channels}".encode())
            if self._group_names:
                digest.update(repr(self._group_names).encode())
            self._fingerprint_cache = digest.hexdigest()
        return self._fingerprint_cache

    def clear_caches(self) -> None:
        """Drop this process's stores, decoders and cached index rows."""
        if self._state is not None:
            self._state.close()
            self._state = None

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_state"] = None  # handles never travel to workers
        return state

    def __repr__(self) -> str:
        return (
            f"AACSegmentDataset({len(self._paths)} store(s), plan={self.plan!r}, num_windows={self._length}, "
            f"window_samples={self.window_samples}, sample_rate={self.sample_rate}, "
            f"recordings={self._eligible.size})"
        )


def _say_short_recordings(plan: WindowPlan, lengths: np.ndarray, rate: int) -> None:
    """One warning where recordings are shorter than the plan's window (they are
    zero-padded or left out, as the plan says); an error where an event plan's window is
    longer than every recording (each of its windows would be mostly padding)."""
    window = plan.window_samples
    if window is None or not lengths.size:
        return
    short = int(np.count_nonzero(lengths < window))
    if not short:
        return
    seconds = f"{window} samples, {window / rate:g} s at {rate} Hz"
    if isinstance(plan, EventWindows) and short == lengths.size:
        raise ValueError(
            f"the window ({seconds}) is longer than every recording (the longest has {int(lengths.max())} "
            "samples); choose a shorter window_seconds="
        )
    fate = "left out" if getattr(plan, "short", "pad") == "skip" else "zero-padded"
    warnings.warn(
        f"{short} of {lengths.size} recordings are shorter than the window ({seconds}): their windows are {fate}",
        UserWarning,
        stacklevel=3,
    )


def _choice(name: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, allowed))}; got {value!r}")


class _WorkerState:
    """Stores opened by one process, created lazily, never pickled."""

    def __init__(
        self, paths: Sequence[str | Store], index_cache_bytes: int, storage_options: Mapping[str, Any] | None
    ) -> None:
        self.pid = os.getpid()
        self.storage_options = storage_options
        self.paths = list(paths)
        self.index_cache_bytes = index_cache_bytes
        self.stores: dict[int, AACStore] = {}
        self.windows_served = 0
        self.windows_replaced = 0
        self.group_windows: dict[int, int] = {}

    def store(self, i: int) -> AACStore:
        s = self.stores.get(i)
        if s is None:
            try:
                s = self.stores[i] = AACStore.open(
                    self.paths[i], index_cache_bytes=self.index_cache_bytes, storage_options=self.storage_options
                )
            except AACDataError as e:
                raise type(e)(f"worker {self.pid} cannot open store {self.paths[i]!r}: {e}") from None
        return s

    def close(self) -> None:
        for s in self.stores.values():
            s.close()
        self.stores.clear()


def _plan_from_shortcuts(
    window_seconds: float | None,
    window_samples: int | None,
    num_windows: int | None,
    hop_seconds: float | None,
    last: Literal["pad", "drop"],
    windows: Sequence[tuple[str, int, int]] | None,
    weighting: Literal["duration", "recording"],
    short: Literal["pad", "skip"],
) -> WindowPlan:
    """The plan that the keyword shortcuts of :class:`AACSegmentDataset` stand for."""
    if windows is not None:
        if hop_seconds is not None or num_windows is not None:
            raise ValueError("windows= is an explicit list; do not combine it with hop_seconds= or num_windows=")
        return ExplicitWindows(windows)
    if (window_seconds is None) == (window_samples is None):
        raise ValueError("give exactly one of window_seconds= or window_samples=")
    if hop_seconds is not None:
        if num_windows is not None:
            raise ValueError("hop_seconds= gives sliding windows; num_windows= is for random windows")
        return SlidingWindows(window_seconds, hop_seconds, window_samples=window_samples, last=last, short=short)
    return RandomWindows(
        window_seconds, window_samples=window_samples, num_windows=num_windows, weighting=weighting, short=short
    )


def _groups(
    weights: Sequence[float] | Mapping[str, float] | None,
    temperature: float,
    key: str | None,
    store_of: np.ndarray,
    metadata: Sequence[Any],
    store_names: list[str],
    keep: np.ndarray,
) -> tuple[np.ndarray | None, np.ndarray | None, list[str]]:
    """Group of each recording, the groups' draw probabilities (weight ** temperature,
    normalised) and their names, or ``(None, None, [])`` without weights."""
    if weights is None:
        if key is not None:
            raise ValueError("groups= names the metadata key that weights= weighs by; give weights= too")
        return None, None, []
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0; got {temperature}")
    if key is None:
        if isinstance(weights, Mapping):
            raise ValueError("weights= is a mapping of group values: give groups= (the metadata key) too")
        values = [float(w) for w in weights]
        if len(values) != len(store_names) or len(values) < 2:
            raise ValueError(
                f"weights= gives one weight per store: {len(store_names)} store(s), {len(values)} weight(s) "
                "(mixing needs at least two stores, or groups= with a metadata key)"
            )
        group_of = np.asarray(store_of, dtype=np.int64)
        names = store_names
    else:
        if not isinstance(weights, Mapping):
            raise ValueError(f"with groups={key!r}, weights= maps each value of that metadata key to its weight")
        found = [m.get(key) if isinstance(m, dict) else None for m in metadata]
        missing = [i for i, v in enumerate(found) if v is None and keep[i]]
        if missing:
            raise ValueError(f"{len(missing)} recording(s) have no metadata key {key!r} to group them by")
        names = sorted({str(v) for v, k in zip(found, keep, strict=True) if k})
        unweighted = [n for n in names if n not in {str(k) for k in weights}]
        if unweighted:
            raise ValueError(f"weights= has no weight for the {key!r} value(s) {unweighted[:5]}")
        extra = sorted({str(k) for k in weights} - set(names))
        if extra:
            raise ValueError(f"weights= names {key!r} values that no recording has: {extra[:5]}")
        if len(names) < 2:
            raise ValueError(f"weights= mixes groups, but every recording has the same {key!r}")
        position = {n: i for i, n in enumerate(names)}
        by_name = {str(k): float(v) for k, v in weights.items()}
        group_of = np.array([position.get(str(v), -1) for v in found], dtype=np.int64)
        values = [by_name[n] for n in names]
    arr = np.asarray(values, dtype=np.float64)
    if np.any(~np.isfinite(arr)) or np.any(arr < 0) or not np.any(arr > 0):
        raise ValueError(f"weights must be finite, >= 0 and not all 0; got {values}")
    powered = arr**temperature
    return group_of, powered / powered.sum(), names
