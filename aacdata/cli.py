"""The ``aacdata`` command: import, annotate, info, verify, export, bench, demo.

Exit status: 0 success, 1 when something failed (a file not imported, a damaged
recording or store, an output that cannot be written), 2 for usage errors (bad
arguments, no store at the path, an unknown recording).

Recording ids and messages are printed with control characters escaped (an id is shown
as a Python string literal when it holds any), so that one line of output is one item.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import re
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import __version__
from .errors import (
    AACDataError,
    CorruptDataError,
    DecodeError,
    ImportFailedError,
    ImportInterruptedError,
    RemoteStoreError,
    StoreFormatError,
    StoreLockedError,
    StoreWriteError,
)

if TYPE_CHECKING:
    from .annotations import Annotations

log = logging.getLogger("aacdata")

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2

_READING_COMMANDS = frozenset({"info", "verify", "export", "ls", "show"})
"""Commands whose one store is only read: a store they cannot read is damaged (exit 1)."""


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # --help, --version (0) or a usage error (2)
        return int(e.code or 0)
    # The command prints failures itself, after the progress bar; -v shows the log as well.
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.ERROR, format="%(message)s")
    if args.command is None:
        parser.print_help()
        return EXIT_USAGE
    try:
        return int(args.run(args))
    except ImportInterruptedError as e:
        print(f"aacdata {args.command}: {e}", file=sys.stderr)
        return 128 + e.signum
    except (CorruptDataError, DecodeError, StoreWriteError, StoreLockedError, RemoteStoreError, ImportFailedError) as e:
        # Data, store and outage failures, not usage errors: the command was right.
        print(f"aacdata {args.command}: error: {_escaped(str(e))}", file=sys.stderr)
        return EXIT_FAILED
    except StoreFormatError as e:
        print(f"aacdata {args.command}: error: {_escaped(str(e))}", file=sys.stderr)
        return EXIT_FAILED if args.command in _READING_COMMANDS else EXIT_USAGE
    except (AACDataError, ValueError) as e:
        print(f"aacdata {args.command}: error: {_escaped(in_flags(str(e)))}", file=sys.stderr)
        return EXIT_USAGE
    except BrokenPipeError:  # the reader of our output went away (`aacdata ls STORE | head`)
        sys.stderr.close()
        return EXIT_OK
    except OSError as e:  # e.g. an output file that cannot be written
        print(f"aacdata {args.command}: error: {_escaped(str(e))}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        print(f"aacdata {args.command}: interrupted", file=sys.stderr)
        return 130


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="aacdata", description="Audio corpora as Zarr stores of AAC-LC frames.", allow_abbrev=False
    )
    p.add_argument("--version", action="version", version=f"aacdata {__version__}")
    p.add_argument("-v", "--verbose", action="store_true", help="log details")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    imp = sub.add_parser("import", help="convert audio files and append them to a store")
    imp.add_argument("sources", nargs="+", help="audio files, directories, or .txt lists of paths")
    imp.add_argument("-o", "--output", required=True, metavar="STORE", help="store path (created if missing)")
    imp.add_argument(
        "--bitrate",
        type=_positive_int,
        default=None,
        help="total AAC bit rate of a recording in bit/s (default: per channel by bandwidth, 128000 for 44.1 and "
        "48 kHz, 256000 for 96 kHz)",
    )
    imp.add_argument(
        "--sample-rate", type=_positive_int, default=None, help="resample to this rate (Hz; default: keep the source's)"
    )
    imp.add_argument(
        "--bandwidth",
        type=_positive_int,
        default=None,
        metavar="HZ",
        help="highest frequency to keep (default: the Nyquist frequency, the whole spectrum)",
    )
    imp.add_argument(
        "--time-expansion",
        type=_positive_float,
        default=None,
        metavar="N",
        help="store sources above 96 kHz as AAC at the highest AAC rate at most rate/N, their samples played "
        "N times slower (default: at 96 kHz)",
    )
    imp.add_argument("--channels", type=_positive_int, default=None, help="remix to this many channels")
    imp.add_argument("--reencode", action="store_true", help="re-encode AAC-LC sources instead of passing through")
    imp.add_argument(
        "--pns",
        choices=("keep", "reencode"),
        default="keep",
        help="AAC sources using perceptual noise substitution: pass through (windows exact outside the noise bands) "
        "or re-encode (bit-identical windows)",
    )
    imp.add_argument(
        "--codec",
        choices=("aac", "flac", "auto"),
        default="aac",
        help="aac: AAC-LC, full band (default); flac: lossless, exact samples at the source's rate; "
        "auto: FLAC above 96 kHz, AAC below",
    )
    imp.add_argument("--workers", type=int, default=None, help="conversion processes (default: all cores)")
    imp.add_argument(
        "--dask",
        default=None,
        metavar="ADDRESS",
        help="convert on a Dask cluster (scheduler address, e.g. tcp://host:8786; needs aacdata[dask]); "
        "this process writes the store",
    )
    imp.add_argument("--on-error", choices=("skip", "raise"), default="skip", help="skip failed files or stop")
    imp.add_argument("--metadata", default=None, metavar="FILE", help="per-id metadata, .csv (id column) or .jsonl")
    imp.add_argument("--shard", default=None, metavar="K/N", help="import only part K of N (0-based) of the sources")
    imp.add_argument("--no-progress", action="store_true", help="no progress bar")
    imp.add_argument(
        "--break-lock",
        action="store_true",
        help="take over an object store's write lease although it has not expired (only if its import is gone)",
    )
    imp.add_argument(
        "--replace",
        action="store_true",
        help="replace recordings whose source changed since they were imported (default: such files fail)",
    )
    imp.set_defaults(run=_cmd_import)

    ann = sub.add_parser("annotate", help="store event tables (Raven selection tables, CSV) as an annotation set")
    ann.add_argument("store", help="store whose recordings the tables describe")
    ann.add_argument("tables", nargs="+", help="tables: .csv files are CSV, any other file a Raven selection table")
    ann.add_argument("--format", choices=("raven", "csv"), default=None, help="read every table in this format")
    ann.add_argument("--name", default="default", help="the set's name (default: default)")
    ann.add_argument("--replace", action="store_true", help="replace a set of that name")
    ann.add_argument("--label-column", default=None, metavar="COL", help="Raven column holding the label")
    ann.add_argument("--clip", action="store_true", help="cut events that end past their recording's end")
    ann.add_argument(
        "--skip-missing", action="store_true", help="drop events of recordings the store lacks instead of failing"
    )
    ann.add_argument(
        "--recording",
        default=None,
        metavar="ID",
        help="the recording a Raven table without Begin File/Begin Path describes (one table)",
    )
    ann.add_argument(
        "--recording-map",
        default=None,
        metavar="FILE",
        help="CSV naming the recordings of many tables: header table,recording (a table, by path or file name, "
        "describes that recording whole) or name,recording (a Begin File or Begin Path value means that recording)",
    )
    ann.add_argument(
        "--labels",
        choices=("as-is", "lower"),
        default="as-is",
        help="lower: labels in lower case with single spaces ('Wren ' and 'wren' become one class)",
    )
    ann.add_argument(
        "--label-map", default=None, metavar="FILE", help="CSV with columns from,to: rename (or merge) labels"
    )
    ann.set_defaults(run=_cmd_annotate)

    info = sub.add_parser("info", help="summarise a store")
    info.add_argument("store")
    info.add_argument("--json", action="store_true", help="print JSON")
    info.set_defaults(run=_cmd_info)

    ver = sub.add_parser("verify", help="check checksums, index and decodability of every recording")
    ver.add_argument("store")
    ver.add_argument("--no-decode", action="store_true", help="skip the decode check (faster)")
    ver.add_argument("--no-progress", action="store_true", help="no progress bar")
    ver.set_defaults(run=_cmd_verify)

    exp = sub.add_parser("export", help="write one recording as .aac (stored bytes), .wav or .flac")
    exp.add_argument("store")
    exp.add_argument("id", help="recording id (or index)")
    exp.add_argument("out", help="output file: .aac, .wav (32-bit float, exact) or .flac (16-bit)")
    exp.add_argument("--start", type=_seconds, default=None, metavar="S", help="write a window from S seconds")
    exp.add_argument(
        "--duration", type=_positive_float, default=None, metavar="D", help="of D seconds (default: to the end)"
    )
    exp.set_defaults(run=_cmd_export)

    show = sub.add_parser("show", help="draw a window: waveform, spectrogram and event boxes (needs matplotlib)")
    show.add_argument("store")
    show.add_argument("id", help="recording id (or index)")
    show.add_argument("-o", "--output", required=True, metavar="FILE", help="picture to write (.png, .svg, .pdf)")
    show.add_argument("--start", type=_seconds, default=0.0, metavar="S", help="from S seconds (default 0)")
    show.add_argument("--duration", type=_positive_float, default=None, metavar="D", help="D seconds (default: all)")
    show.add_argument("--set", default="default", metavar="NAME", help="annotation set whose events are drawn")
    show.set_defaults(run=_cmd_show)

    ls = sub.add_parser("ls", help="list recordings: id, duration, rate, channels, bandwidth, events per set")
    ls.add_argument("store")
    ls.add_argument("pattern", nargs="?", default=None, help="only ids matching this glob pattern (e.g. 'site_E/*')")
    ls.add_argument("--json", action="store_true", help="print one JSON object per recording")
    ls.set_defaults(run=_cmd_ls)

    rep = sub.add_parser("repair", help="copy every intact recording into a new store, list the damaged ones")
    rep.add_argument("store", help="damaged store")
    rep.add_argument("-o", "--output", required=True, metavar="NEW_STORE", help="new store (must not hold recordings)")
    rep.add_argument("--no-progress", action="store_true", help="no progress bar")
    rep.set_defaults(run=_cmd_repair)

    mrg = sub.add_parser("merge", help="combine stores imported in parts (--shard K/N) into one, bytes as stored")
    mrg.add_argument("parts", nargs="+", metavar="PART", help="stores to merge, in this order")
    mrg.add_argument("-o", "--output", required=True, metavar="STORE", help="merged store (created if missing)")
    mrg.add_argument("--no-progress", action="store_true", help="no progress bar")
    mrg.set_defaults(run=_cmd_merge)

    cp = sub.add_parser("copy", help="copy a store, e.g. to object storage (s3://bucket/corpus.zarr)")
    cp.add_argument("source", help="store to copy (path or URL)")
    cp.add_argument("destination", help="new store location (path or URL)")
    cp.add_argument("--no-progress", action="store_true", help="no progress bar")
    cp.set_defaults(run=_cmd_copy)

    rm = sub.add_parser("remove", help="remove recordings (and their annotation events) from a store")
    rm.add_argument("store", help="local store")
    rm.add_argument("ids", nargs="+", metavar="ID", help="recording ids (or their file names) to remove")
    rm.add_argument("--no-progress", action="store_true", help="no progress bar")
    rm.set_defaults(run=_cmd_remove)

    cpt = sub.add_parser("compact", help="rewrite a store without what interrupted imports left behind")
    cpt.add_argument("store", help="local store")
    cpt.add_argument("--no-progress", action="store_true", help="no progress bar")
    cpt.set_defaults(run=_cmd_compact)

    bench = sub.add_parser("bench", help="DataLoader throughput of random windows per worker count")
    bench.add_argument("store")
    bench.add_argument("--workers", default="0,1,2", help="comma-separated worker counts (default 0,1,2)")
    bench.add_argument("--window-seconds", type=_positive_float, default=1.0)
    bench.add_argument("--batch-size", type=_positive_int, default=32)
    bench.add_argument("--batches", type=_positive_int, default=30, help="batches timed per worker count")
    bench.set_defaults(run=_cmd_bench)

    demo = sub.add_parser("demo", help="synthesize a small corpus, import it, read it through a DataLoader")
    demo.add_argument("--dir", default=None, help="working directory (default: a temporary one)")
    demo.add_argument(
        "--seconds", type=_positive_float, default=180.0, help="audio to synthesize (default 180; 12 to 36000)"
    )
    demo.set_defaults(run=_cmd_demo)
    for command in sub.choices.values():
        command.allow_abbrev = False  # --bitrat is a typo, not --bitrate
    return p


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


FLAGS = {
    "bitrate": "--bitrate",
    "sample_rate": "--sample-rate",
    "num_channels": "--channels",
    "bandwidth": "--bandwidth",
    "time_expansion": "--time-expansion",
    "workers": "--workers",
    "on_error": "--on-error",
    "shard": "--shard",
    "label_column": "--label-column",
    "clip": "--clip",
    "missing": "--skip-missing",
    "replace": "--replace",
    "recording": "--recording",
    "pns": "--pns",
    "codec": "--codec",
}
"""The CLI flag of each library parameter that error messages name."""


def in_flags(message: str) -> str:
    """A library message in the CLI's words: parameters named as the flags that set them
    (``pass label_column=`` -> ``pass --label-column``, ``bitrate must be`` -> ``--bitrate
    must be``, ``sample_rate= (CLI: --sample-rate)`` -> ``--sample-rate``, ``map_recordings()
    (CLI: --recording-map FILE)`` -> ``--recording-map FILE``)."""

    def named(m: re.Match[str]) -> str:
        flag = FLAGS.get(m.group("name"))
        return m.group("before") + flag if flag else m.group(0)

    message = re.sub(r"\b\w+(?:=|\(\)) \(CLI: (--[\w-]+[^()]*)\)", r"\1", message)
    message = re.sub(r"(?P<before>\bpass )(?P<name>\w+)=\S*?(?=[\s),;]|$)", named, message)
    message = re.sub(r"(?P<before>\()(?P<name>\w+)=(?=\))", named, message)
    return re.sub(r"^(?P<before>)(?P<name>\w+)(?= (?:must |\d))", named, message)


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds >= 0, got {text!r}") from None
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"expected a number of seconds >= 0, got {text!r}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


def _escaped(text: str) -> str:
    """``text`` with control and other unprintable characters escaped (``\\n``, ``\\x1b``),
    so that a message cannot start new lines or move the terminal's cursor."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)


def _shown(rid: str) -> str:
    """A recording id for output: as it is when plainly printable, else as a Python string
    literal (quoted, control characters and backslashes escaped), so that it is unambiguous."""
    if rid.isprintable() and "\\" not in rid and not rid.startswith(("'", '"')):
        return rid
    return repr(rid)


def _table(rows: list[tuple[str, str]]) -> str:
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"  {k.ljust(width)}  {v}" for k, v in rows)


class _Progress:
    """A tqdm bar driven by ``tick(done, total)`` callbacks; nothing when disabled."""

    def __init__(self, desc: str, unit: str, *, enabled: bool) -> None:
        self._bar: Any = None
        if enabled:
            from tqdm.auto import tqdm

            self._bar = tqdm(unit=unit, desc=desc, dynamic_ncols=True)

    def __enter__(self) -> Callable[[int, int], None]:
        return self.tick

    def tick(self, done: int, total: int) -> None:
        if self._bar is not None:
            self._bar.total = total
            self._bar.update(done - self._bar.n)

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.close()


def _listed(items: Sequence[str], limit: int = 5) -> str:
    """The first ``limit`` items, comma-separated, and how many more there are."""
    shown = ", ".join(items[:limit]) or "-"
    return shown + (f" and {len(items) - limit} more" if len(items) > limit else "")


def _size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"


# ---------------------------------------------------------------------- commands


def _cmd_import(args: argparse.Namespace) -> int:
    from .importer import import_audio

    if args.dask is not None and args.workers is not None:
        raise ValueError("--workers sets local conversion processes; with --dask the cluster's workers convert")
    with contextlib.ExitStack() as stack:
        client = stack.enter_context(_dask_client(args.dask)) if args.dask is not None else None
        report = import_audio(
            args.sources,
            args.output,
            bitrate=args.bitrate,
            sample_rate=args.sample_rate,
            num_channels=args.channels,
            reencode=args.reencode,
            bandwidth=args.bandwidth,
            time_expansion=args.time_expansion,
            pns=args.pns,
            codec=args.codec,
            workers=args.workers,
            executor=client,
            on_error=args.on_error,
            progress=not args.no_progress,
            metadata=args.metadata,
            shard=args.shard,
            break_lock=args.break_lock,
            replace=args.replace,
        )
    return _import_summary(report)


@contextlib.contextmanager
def _dask_client(address: str) -> Iterator[Any]:
    try:
        import distributed
    except ImportError:
        raise ValueError("--dask needs Dask's distributed package: pip install 'aacdata[dask]'") from None
    try:
        connect: Any = distributed.Client  # not fully typed
        client = connect(address, timeout=30)
    except (OSError, TimeoutError) as e:
        raise ValueError(f"cannot reach the Dask scheduler at {address!r} ({e})") from None
    try:
        yield client
    finally:
        client.close()


def _import_summary(report: Any) -> int:
    for failure in report.failed:
        print(f"failed: {_escaped(failure.source)}: {_escaped(in_flags(failure.reason))}", file=sys.stderr)
    for rid, note in report.notes:
        print(f"note: {_shown(rid)}: {note}", file=sys.stderr)
    for rid, warning in report.warnings:
        print(f"warning: {_shown(rid)}: {warning}", file=sys.stderr)
    seconds = report.audio_seconds
    print(
        _table(
            [
                ("store", report.store),
                ("imported", f"{len(report.imported)} ({report.passthrough} passed through without re-encoding)"),
                ("skipped", f"{len(report.skipped)} (already in the store)"),
                *([("replaced", str(len(report.replaced)))] if report.replaced else []),
                ("failed", str(len(report.failed))),
                ("audio", f"{seconds / 3600:.3f} h"),
                (
                    "written",
                    f"{_size(report.bytes_written)} ({report.bytes_written * 8 / seconds / 1000:.0f} kbit/s)"
                    if seconds
                    else _size(report.bytes_written),
                ),
                ("time", f"{report.elapsed_seconds:.1f} s ({report.realtime_factor:.0f}x realtime)"),
            ]
        )
    )
    return EXIT_OK if report.ok else EXIT_FAILED


def _cmd_annotate(args: argparse.Namespace) -> int:
    """Exit 1 when the tables cannot be stored (a bad row, a name matching no recording, a
    set that exists without ``--replace``, a store another process writes to)."""
    from .annotations import Annotations
    from .errors import AnnotationError, StoreLockedError
    from .store._store import AACStore

    tables = [Path(t) for t in args.tables]
    absent = [str(t) for t in tables if not t.is_file()]
    if absent:
        raise ValueError(f"no table at {', '.join(map(repr, absent))}")
    if args.format is not None:
        csv_tables = args.format == "csv"
    else:
        kinds = {t.suffix.lower() == ".csv" for t in tables}
        if len(kinds) > 1:
            raise ValueError("the tables mix .csv and Raven files; annotate one format at a time, or pass --format")
        csv_tables = kinds == {True}
    if args.recording is not None and args.recording_map is not None:
        raise ValueError("--recording and --recording-map both name recordings; give one (a map can name one table)")
    if args.recording is not None and (csv_tables or len(tables) != 1):
        raise ValueError("--recording names the recording of one Raven table; give one table with it")
    by, entries = _recording_map(Path(args.recording_map)) if args.recording_map is not None else ("", {})
    # table,recording: which given table each key names, known before parsing so that a
    # table without Begin File whose name says nothing parses too.
    mapped = _mapped_tables(args.recording_map, entries, args.tables) if by == "table" else {}
    table_ids = {i: rec for i, (rec, _) in mapped.items()}
    if csv_tables and args.label_column is not None:
        raise ValueError("--label-column is for Raven tables; a CSV table's label column is 'label'")
    AACStore.open(args.store).close()  # a missing store is an error, not a new empty store
    try:
        parsed = (
            Annotations.from_csv(tables)
            if csv_tables
            else Annotations.from_raven(
                tables,
                label_column=args.label_column,
                recording=[table_ids.get(i) for i in range(len(tables))] if table_ids else args.recording,
            )
        )
        if by == "table":
            _check_whole_tables(args.recording_map, mapped, parsed, args.tables)
            parsed = parsed.map_recordings({str(tables[i]): rec for i, rec in table_ids.items()}, by="table")
        elif by == "name":
            _check_names(args.recording_map, entries, parsed)
            parsed = parsed.map_recordings({name: rec for name, (rec, _) in entries.items()}, by="name")
        if args.label_map is not None:
            parsed = parsed.relabel(_label_map(Path(args.label_map)))
        if args.labels == "lower":
            parsed = parsed.relabel(lambda c: " ".join(c.lower().split()))
        for group in parsed.similar_labels():
            shown = ", ".join(repr(c) for c in group)
            print(
                f"warning: labels {_escaped(shown)} differ only in case or spacing and make {len(group)} classes; "
                "pass --labels lower (or --label-map FILE) to make them one",
                file=sys.stderr,
            )
        with AACStore.open(args.store, "a") as store:
            resolved = parsed.resolve(store, clip=args.clip, missing="skip" if args.skip_missing else "raise")
            store.write_annotations(resolved, args.name, replace=args.replace)
            num_recordings = len(store)
    except (AnnotationError, StoreLockedError) as e:
        print(f"aacdata annotate: error: {_escaped(in_flags(str(e)))}", file=sys.stderr)
        return EXIT_FAILED
    described = len(set(resolved.recording.tolist()))
    dropped = len(parsed) - len(resolved)
    rows = [
        ("store", _escaped(args.store)),
        ("set", args.name),
        ("events", f"{len(resolved)}" + (f" ({dropped} dropped)" if dropped else "")),
        ("recordings", f"{described} of {num_recordings}"),
        ("classes", f"{len(resolved.classes)}: {_escaped(', '.join(resolved.classes))}" if resolved.classes else "0"),
        ("tables", str(len(tables))),
    ]
    print(_table(rows))
    return EXIT_OK


def _label_map(path: Path) -> dict[str, str]:
    """``from -> to`` label renames from a CSV file with a header ``from,to``."""
    import csv

    try:
        with path.open(newline="", encoding="utf-8-sig") as f:
            rows = list(csv.reader(f))
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise ValueError(f"--label-map {str(path)!r} cannot be read ({e})") from None
    if not rows or [c.strip().lower() for c in rows[0][:2]] != ["from", "to"]:
        raise ValueError(f"--label-map {str(path)!r}: expected a CSV table whose header is from,to")
    mapping: dict[str, str] = {}
    for line, row in enumerate(rows[1:], start=2):
        if not any(c.strip() for c in row):
            continue
        if len(row) < 2 or not row[0].strip() or not row[1].strip():
            raise ValueError(f"--label-map {str(path)!r}, line {line}: expected two labels, from and to; got {row}")
        mapping[row[0].strip()] = row[1].strip()
    return mapping


def _recording_map(path: Path) -> tuple[str, dict[str, tuple[str, int]]]:
    """A ``--recording-map`` file: its kind (``table`` or ``name``, from the header) and each
    key's recording and line."""
    import csv

    where = f"--recording-map {str(path)!r}"
    try:
        with path.open(newline="", encoding="utf-8-sig") as f:
            rows = list(csv.reader(f))
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise ValueError(f"{where} cannot be read ({e})") from None
    header = [c.strip().lower() for c in rows[0]] if rows else []
    if header not in (["table", "recording"], ["name", "recording"]):
        got = repr(",".join(rows[0])) if rows else "an empty file"
        raise ValueError(
            f"{where}, line 1: expected a CSV table whose header is table,recording or name,recording; got {got}"
        )
    by = header[0]
    entries: dict[str, tuple[str, int]] = {}
    for line, row in enumerate(rows[1:], start=2):
        if not any(c.strip() for c in row):
            continue
        if len(row) != 2 or not row[0].strip() or not row[1].strip():
            raise ValueError(f"{where}, line {line}: expected two fields, a {by} and a recording id; got {row}")
        key, rec = row[0].strip(), row[1].strip()
        held = entries.setdefault(key, (rec, line))
        if held[0] != rec:
            raise ValueError(
                f"{where}, line {line}: the {by} {key!r} is mapped to {rec!r} here and to {held[0]!r} on line "
                f"{held[1]}; give one recording per {by}"
            )
    return by, entries


def _mapped_tables(path: str, entries: dict[str, tuple[str, int]], tables: list[str]) -> dict[int, tuple[str, int]]:
    """The recording (and line of the map) of each given table, by position, that a
    ``table,recording`` map names: a key is a table's path as given (the same file), or a
    file name only one of the tables has."""
    where = f"--recording-map {path!r}"
    given = [os.path.abspath(t) for t in tables]
    mapped: dict[int, tuple[str, int]] = {}
    for key, (rec, line) in entries.items():
        found = [i for i, t in enumerate(given) if t == os.path.abspath(key)]
        if not found and Path(key).name == key:
            found = [i for i, t in enumerate(tables) if Path(t).name == key]
            if len({given[i] for i in found}) > 1:
                shown = ", ".join(repr(tables[i]) for i in found[:5])
                raise ValueError(
                    f"{where}, line {line}: the file name {key!r} is that of {len(found)} of the given tables "
                    f"({shown}); give the table's path instead"
                )
        if not found:
            raise ValueError(f"{where}, line {line}: {key!r} is none of the tables given on the command line")
        for i in found:
            held = mapped.setdefault(i, (rec, line))
            if held[0] != rec:
                raise ValueError(
                    f"{where}, line {line}: the table {tables[i]!r} is mapped to {rec!r} here and to {held[0]!r} on "
                    f"line {held[1]}; give one recording per table"
                )
    return mapped


def _check_whole_tables(path: str, mapped: dict[int, tuple[str, int]], parsed: Annotations, tables: list[str]) -> None:
    """A table mapped whole describes one recording: refuse one whose rows name several
    files (``Begin File`` with ``File Offset (s)``), at its line of the map."""
    import numpy as np

    for i, (_, line) in mapped.items():
        held = np.unique(parsed.recording[parsed.source == i]).tolist()  # a table's events come from source i
        if len(held) > 1:
            raise ValueError(
                f"--recording-map {path!r}, line {line}: the table {tables[i]!r} names {len(held)} recordings "
                f"({', '.join(map(repr, held[:5]))}), so no one recording describes it whole; map its names "
                "instead (a --recording-map with the header name,recording)"
            )


def _check_names(path: str, entries: dict[str, tuple[str, int]], parsed: Annotations) -> None:
    """Each name of a ``name,recording`` map is a name the tables write (not one taken from a
    table's own file name)."""
    from .annotations import MATCH_STEM

    written = set(parsed.recording[parsed.match != MATCH_STEM].tolist())
    for name, (_, line) in entries.items():
        if name not in written:
            examples = ", ".join(repr(x) for x in sorted(written)[:3]) or "none"
            raise ValueError(
                f"--recording-map {path!r}, line {line}: no table names the recording {name!r} (a Begin File's "
                f"file name or a Begin Path, as written; the tables name e.g. {examples})"
            )


def _cmd_info(args: argparse.Namespace) -> int:
    from .store._store import AACStore

    with AACStore.open(args.store) as store:
        s = store.summary()
        sets = [{"name": name, **store.annotation_info(name)} for name in store.annotation_sets]
    if args.json:
        print(json.dumps({**s, "annotations": sets}, indent=2))
        return EXIT_OK
    rows = [
        ("store", _escaped(s["path"])),
        ("recordings", str(s["num_recordings"])),
        ("audio", f"{s['hours']:.3f} h"),
        ("payload", f"{_size(s['payload_bytes'])} ({s['kbit_per_s']:.0f} kbit/s)"),
        ("frames", str(s["num_frames"])),
        ("sample rates", ", ".join(f"{r} Hz" for r in s["sample_rates"]) or "-"),
        ("channels", ", ".join(str(c) for c in s["channel_counts"]) or "-"),
        ("bandwidths", ", ".join(f"{b} Hz" if b else "unknown" for b in s["bandwidths_hz"]) or "-"),
        ("format", f"version {s['format_version']}"),
    ]
    if s["pns"]:
        rows.append(("pns", f"{s['pns']} recordings use noise substitution (exact outside its bands; import --pns)"))
    if s["time_expanded"]:
        rows.append(("time-expanded", f"{s['time_expanded']} recordings (stored slower; reads in the true timeline)"))
    if s["disk_bytes"] is not None:
        rows.append(
            (
                "on disk",
                f"{_size(s['disk_bytes'])}"
                + (f" ({s['disk_over_payload']:.3f}x payload)" if s["disk_over_payload"] else ""),
            )
        )
    if s["index_overhead"] is not None:
        rows.append(("index", f"{_size(s['index_disk_bytes'])} ({100 * s['index_overhead']:.2f}% of payload)"))
    for a in sets:
        classes, sources = _listed(a["classes"]), _listed(a["sources"])
        line = f"{a['num_events']} events, {len(a['classes'])} classes ({classes}); from {sources}"
        rows.append((f"annotations {a['name']}", _escaped(line)))
    if not sets:
        rows.append(("annotations", "-"))
    print(_table(rows))
    return EXIT_OK


def _cmd_verify(args: argparse.Namespace) -> int:
    from .store._store import AACStore

    try:
        store = AACStore.open(args.store, check_table=False)
    except (StoreFormatError, CorruptDataError) as e:
        print(f"damaged: {_escaped(str(e))}")
        return EXIT_FAILED
    with store, _Progress("verify", "rec", enabled=not args.no_progress) as tick:
        report = store.verify(decode=not args.no_decode, progress=tick)
    for problem in report.store_problems:
        print(f"damaged: {_escaped(problem)}")
    for rid, reason in report.problems:
        print(f"bad: {_shown(rid)}: {_escaped(reason)}")
    for name, reason in report.annotation_problems:
        print(f"bad: annotation set {_shown(name)}: {_escaped(reason)}" if name else f"damaged: {_escaped(reason)}")
    print(f"{report.num_recordings - len(report.bad_ids)} of {report.num_recordings} recordings ok")
    if report.annotation_sets or report.annotation_problems:
        sets = len(report.annotation_sets)
        print(f"{sets - len(set(report.bad_sets) - {''})} of {sets} annotation sets ok")
    return EXIT_OK if report.ok else EXIT_FAILED


def _cmd_export(args: argparse.Namespace) -> int:
    from .store._store import AACStore

    out = Path(args.out)
    suffix = out.suffix.lower()
    if suffix not in (".aac", ".wav", ".flac"):
        raise ValueError(f"output {args.out!r} must end in .aac, .wav or .flac")
    window = args.start is not None or args.duration is not None
    if window and suffix == ".aac":
        raise ValueError("--start/--duration write a window of PCM: give an output ending in .wav or .flac")
    with AACStore.open(args.store) as store:
        rec = _recording(store, args.id)
        if suffix == ".aac":
            out.write_bytes(store.adts_bytes(rec))
        elif suffix == ".flac" and not window and rec.codec == "flac":
            out.write_bytes(store.stream_bytes(rec))  # the stored frames, as they are
        else:
            _export_pcm(store, rec, out, args.start or 0.0, args.duration)
    expanded = ""
    if suffix == ".aac" and rec.time_expansion != 1.0:
        expanded = (
            f"; time-expanded {rec.time_expansion:.4g}x: it plays at {rec.stream_sample_rate} Hz, "
            f"{rec.time_expansion:.4g} times slower than recorded"
        )
    span = f"{rec.duration_seconds:.2f} s"
    if window:
        start = args.start or 0.0
        end = rec.duration_seconds if args.duration is None else min(start + args.duration, rec.duration_seconds)
        span = f"[{start:g}, {end:g}) s of {rec.duration_seconds:.2f} s"
    print(
        f"wrote {_escaped(str(out))} ({_shown(rec.id)}, {span}, {rec.num_channels} ch, {rec.sample_rate} Hz{expanded})"
    )
    return EXIT_OK


def _export_pcm(store: Any, rec: Any, out: Path, start_seconds: float, duration_seconds: float | None) -> None:
    import numpy as np

    from .audio._audiofile import write_audio

    start = round(start_seconds * rec.sample_rate)
    if start >= rec.num_samples:
        raise ValueError(
            f"--start {start_seconds:g} s is at or past the end of {rec.id!r} ({rec.duration_seconds:.3f} s)"
        )
    stop = rec.num_samples if duration_seconds is None else start + round(duration_seconds * rec.sample_rate)
    audio = store.read(rec, start, min(stop, rec.num_samples) - start)
    write_audio(out, np.asarray(audio), sample_rate=rec.sample_rate, float_wav=out.suffix.lower() == ".wav")


def _recording(store: Any, given: str) -> Any:
    """The recording a user named on the command line: its id, its index, or (with a note)
    the one id that matches it but for case, or whose file name it is."""
    if given in store.ids:
        return store.recording(given)
    if given.isdigit():
        return store.recording(int(given))
    rid, how = store.resolve_id(given)
    print(f"note: {_shown(given)} is taken as {_shown(rid)} ({how})", file=sys.stderr)
    return store.recording(rid)


def _cmd_show(args: argparse.Namespace) -> int:
    from .data._show import show_window
    from .store._store import AACStore

    with AACStore.open(args.store) as store:
        rec = _recording(store, args.id)
        if args.set not in store.annotation_sets and args.set != "default":
            raise ValueError(
                f"{args.store} has no annotation set {args.set!r} (sets: {', '.join(store.annotation_sets) or 'none'})"
            )
        show_window(
            store, rec, start_seconds=args.start, duration_seconds=args.duration, annotation_set=args.set,
            out=args.output,
        )  # fmt: skip
    print(f"wrote {_escaped(args.output)} ({_shown(rec.id)} from {args.start:g} s)")
    return EXIT_OK


def _cmd_ls(args: argparse.Namespace) -> int:
    import fnmatch

    import numpy as np

    from .store._store import AACStore

    with AACStore.open(args.store) as store:
        ids = store.ids
        chosen = [i for i, rid in enumerate(ids) if args.pattern is None or fnmatch.fnmatchcase(rid, args.pattern)]
        sets = {name: np.bincount(store.annotations(name).recording, minlength=len(store)) for name in
                store.annotation_sets}  # fmt: skip
        rows: list[dict[str, Any]] = []
        for i in chosen:
            rec = store.recording(i)
            row: dict[str, Any] = {
                "id": rec.id, "seconds": round(rec.duration_seconds, 3), "sample_rate": rec.sample_rate,
                "channels": rec.num_channels, "bandwidth_hz": rec.bandwidth_hz, "codec": rec.codec,
                "time_expansion": round(rec.time_expansion, 4), "kbit_per_s": round(rec.bitrate / 1000),
                "pns": rec.pns,
                "events": {name: int(counts[i]) for name, counts in sets.items()},
            }  # fmt: skip
            rows.append(row)
    if args.json:
        for row in rows:
            print(json.dumps(row))
        return EXIT_OK
    pns = any(row["pns"] for row in rows)
    head = [
        "id",
        "seconds",
        "rate",
        "ch",
        "bandwidth",
        "kbit/s",
        *(["pns"] if pns else []),
        *(f"events {n}" for n in sets),
    ]
    lines = [head]
    for row in rows:
        expanded = f" (x{row['time_expansion']:g})" if row["time_expansion"] != 1 else ""
        lines.append(
            [_shown(row["id"]), f"{row['seconds']:.3f}", f"{row['sample_rate']}{expanded}", str(row["channels"]),
             f"{row['bandwidth_hz']} Hz" if row["bandwidth_hz"] else "unknown", str(row["kbit_per_s"]),
             *(["yes" if row["pns"] else ""] if pns else []), *(str(row["events"][n]) for n in sets)]
        )  # fmt: skip
    widths = [max(len(line[k]) for line in lines) for k in range(len(head))]
    for line in lines:
        cells = (c.ljust(w) if k == 0 else c.rjust(w) for k, (c, w) in enumerate(zip(line, widths, strict=True)))
        print("  ".join(cells))
    print(f"{len(rows)} of {len(ids)} recordings")
    return EXIT_OK


def _cmd_repair(args: argparse.Namespace) -> int:
    """Exit 1 when recordings, annotation sets or events were dropped (a script must notice
    that the new store holds less than the damaged one), 0 when everything was kept."""
    from .store._repair import check_source, rebuild_store

    try:  # a store too damaged to repair at all is damage (1), unlike a taken destination (2)
        check_source(args.store)
    except (StoreFormatError, CorruptDataError) as e:
        print(f"damaged: {_escaped(str(e))}")
        print(f"kept 0 recordings: {_escaped(args.store)} cannot be read as a store; import its sources again")
        return EXIT_FAILED
    with _Progress("repair", "rec", enabled=not args.no_progress) as tick:
        report = rebuild_store(args.store, args.output, progress=tick)
    for finding in report.findings:
        print(f"table: {_escaped(finding)}")
    for rid, reason in report.dropped:
        print(f"dropped: {_shown(rid)}: {_escaped(reason)}")
    for name, reason in report.annotations_dropped:
        print(f"dropped: annotation set {_shown(name)}: {_escaped(reason)}")
    print(f"kept {len(report.kept)} recordings in {_escaped(args.output)}; dropped {len(report.dropped)}")
    if report.annotation_sets or report.annotations_dropped:
        kept_sets = ", ".join(f"{_shown(name)} ({events} events)" for name, events in report.annotation_sets)
        print(f"kept {len(report.annotation_sets)} annotation sets{': ' + kept_sets if kept_sets else ''}")
    if report.dropped:
        print(
            f"to bring the dropped recordings back, run the import that made {_escaped(args.store)} again "
            f"with -o {_escaped(args.output)}: it resumes, importing only what the new store lacks"
        )
    return EXIT_OK if report.ok else EXIT_FAILED


def _cmd_merge(args: argparse.Namespace) -> int:
    """Exit 0 when every recording of the parts is in the merged store; 2 for parts that
    cannot be merged (a duplicate id, a destination holding other content), 1 for damage."""
    from .store._merge import merge_stores

    with _Progress("merge", "rec", enabled=not args.no_progress) as tick:
        report = merge_stores(args.parts, args.output, progress=tick)
    sets = ", ".join(f"{_shown(name)} ({events} events)" for name, events in report.annotations)
    print(
        _table(
            [
                ("store", _escaped(report.store)),
                ("merged", f"{len(report.merged)} recordings from {len(args.parts)} parts"),
                ("skipped", f"{len(report.skipped)} (already in the store)"),
                ("written", _size(report.bytes_written)),
                ("annotations", sets or "-"),
            ]
        )
    )
    return EXIT_OK


def _cmd_copy(args: argparse.Namespace) -> int:
    from .store._copy import copy_store

    with _Progress("copy", "obj", enabled=not args.no_progress) as tick:
        copied = copy_store(args.source, args.destination, progress=tick)
    print(f"copied {_size(copied)} from {args.source} to {args.destination}")
    return EXIT_OK


def _cmd_remove(args: argparse.Namespace) -> int:
    from .store._remove import remove_recordings

    with _Progress("remove", "rec", enabled=not args.no_progress) as tick:
        report = remove_recordings(args.store, args.ids, progress=tick)
    return _change_summary(report)


def _cmd_compact(args: argparse.Namespace) -> int:
    from .store._remove import compact_store

    with _Progress("compact", "rec", enabled=not args.no_progress) as tick:
        report = compact_store(args.store, progress=tick)
    return _change_summary(report)


def _change_summary(report: Any) -> int:
    events = ", ".join(f"{_shown(name)} ({n} events)" for name, n in report.events_dropped)
    print(
        _table(
            [
                ("store", _escaped(report.store)),
                ("removed", _listed([_shown(rid) for rid in report.removed]) or "-"),
                ("kept", f"{report.kept} recordings"),
                ("annotations", f"dropped from {events}" if events else "-"),
                ("size", f"{_size(report.bytes_before)} -> {_size(report.bytes_after)}"),
            ]
        )
    )
    return EXIT_OK


def _cmd_bench(args: argparse.Namespace) -> int:
    from .bench import bench_dataloader, format_bench

    workers = [int(w) for w in args.workers.split(",") if w.strip()]
    if any(w < 0 for w in workers):
        raise ValueError(f"--workers takes counts >= 0; got {args.workers!r}")
    rows = bench_dataloader(
        args.store,
        workers=workers,
        window_seconds=args.window_seconds,
        batch_size=args.batch_size,
        num_batches=args.batches,
        progress=True,
    )
    print(format_bench(rows))
    return EXIT_OK


def _cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    run_demo(args.dir, seconds=args.seconds)
    return EXIT_OK


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
