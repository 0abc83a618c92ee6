"""The benchmarks' shared harness: timing in the order a training loop reads, summaries,
markdown tables, targets, the noise probe, and a JSON dump of every result for plot.py.

Not a public module; the scripts import it as ``_harness`` (they run from this folder).
Importing it puts this checkout first on ``sys.path``, so the scripts run with or without
``pip install -e .``.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import resource
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # this checkout's aacdata, installed or not

Method = Callable[[Any], object]
"""A method reads one window: ``call(window)``; what a window is, each script decides."""


def measure(
    methods: Mapping[str, Method],
    windows: Sequence[Any],
    *,
    warmup: Sequence[Any] = (),
    order: str = "interleaved",
    self_timed: bool = False,
    seed: int = 0,
) -> dict[str, np.ndarray]:
    """Seconds per call of every method on every window, float64 ``(len(windows),)`` each.

    ``interleaved`` (the default): window ``i`` through every method, starting with method
    ``i mod m``, then window ``i + 1``: as in a training loop, where other work runs
    between two reads, no method finds the CPU caches as its own previous call left them.
    ``shuffled``: the same, but every window visits the methods in a random order (seeded
    by ``seed``), so that no method always follows the same other one. ``blocks``: every
    window through one method, then through the next (warm blocks; this flatters methods
    whose working set fits the caches). Every method sees the windows in list order (one
    may rely on it, e.g. an iterator over a DataLoader) and ``warmup`` first, in the same
    order. ``self_timed``: a call returns its own seconds (for calls that leave set-up
    out, e.g. a DataLoader's start-up).
    """
    names = list(methods)
    out = {name: np.empty(len(windows), dtype=np.float64) for name in names}
    clock = time.perf_counter

    def one(name: str, w: Any) -> float:
        if self_timed:
            return float(methods[name](w))  # type: ignore[arg-type]
        t0 = clock()
        methods[name](w)
        return clock() - t0

    if order == "blocks":
        for name in names:
            for w in warmup:
                one(name, w)
            for i, w in enumerate(windows):
                out[name][i] = one(name, w)
        return out
    if order not in ("interleaved", "shuffled"):
        raise ValueError(f"unknown order {order!r}; expected 'interleaved', 'shuffled' or 'blocks'")
    rng = np.random.default_rng(seed)
    for timed, ws in ((False, warmup), (True, windows)):
        for i, w in enumerate(ws):
            k = i % len(names)
            visit = [names[j] for j in rng.permutation(len(names))] if order == "shuffled" else names[k:] + names[:k]
            for name in visit:
                t = one(name, w)
                if timed:
                    out[name][i] = t
    return out


@dataclass(frozen=True, slots=True)
class Summary:
    """Median and 90th percentile of a set of values, in the unit they were given."""

    median: float
    p90: float
    count: int

    @classmethod
    def of(cls, values: np.ndarray | Sequence[float]) -> Summary:
        v = np.asarray(values, dtype=np.float64)
        return cls(float(np.median(v)), float(np.percentile(v, 90)), int(v.size))


class Contention:
    """CPU that other processes (and other VMs: steal time) took while this one measured.

    ``cores()``: the average number of cores used since ``start()`` by processes other
    than this one, its reaped children and ``ours`` (e.g. a local S3 server), from
    ``/proc/stat`` (0 where unavailable).
    """

    def __init__(self, ours: Sequence[int] = ()) -> None:
        self._ours = tuple(ours)
        self.start()

    def start(self) -> None:
        self._t, self._busy, self._own = time.monotonic(), _system_busy(), self._ours_cpu()

    def _ours_cpu(self) -> float:
        return own_cpu() + sum(process_cpu(pid) for pid in self._ours)

    def cores(self) -> float:
        dt, busy = time.monotonic() - self._t, _system_busy()
        if dt <= 0 or busy is None or self._busy is None:
            return 0.0
        return max(0.0, (busy - self._busy) - (self._ours_cpu() - self._own)) / dt

    def note(self, when: str = "meanwhile") -> str:
        c = self.cores()
        return f"other processes used {c:.2f} cores {when}" + ("  (busy machine: timings skewed)" if c > 0.25 else "")


def _system_busy() -> float | None:
    """Seconds of CPU the whole system spent busy (user, nice, system, irq, softirq, steal)."""
    try:
        with open("/proc/stat") as f:
            user, nice, system, _idle, _iowait, irq, softirq, steal = map(int, f.readline().split()[1:9])
    except (OSError, ValueError):
        return None
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def own_cpu() -> float:
    """Seconds of CPU used by this process (all threads) and its reaped children."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def process_cpu(pid: int) -> float:
    """Seconds of CPU used by a running process (user + system, threads included; 0 if gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def memory_kib(pid: int | str = "self") -> dict[str, int]:
    """``VmRSS`` (resident now) and ``VmHWM`` (peak resident) of a process, in KiB (Linux)."""
    out = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key in ("VmRSS", "VmHWM"):
                    out[key] = int(value.split()[0])
    except OSError:
        pass
    return out


def fmt(v: Any) -> str:
    if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)):
        return str(v)
    if isinstance(v, (int, np.integer)):
        return f"{v:,}"
    return f"{v:,.0f}" if abs(v) >= 100 else f"{v:.1f}" if abs(v) >= 10 else f"{v:.2f}"


def markdown(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A markdown table; columns of numbers right-aligned."""
    cells = [list(columns), *[[fmt(v) for v in r] for r in rows]]
    widths = [max(3, *(len(r[j]) for r in cells)) for j in range(len(columns))]
    right = [j > 0 and all(isinstance(r[j], (int, float, np.number)) for r in rows) for j in range(len(columns))]

    def line(r: Sequence[str]) -> str:
        return (
            "| " + " | ".join(c.rjust(w) if a else c.ljust(w) for c, w, a in zip(r, widths, right, strict=True)) + " |"
        )

    rule = "| " + " | ".join("-" * (w - 1) + ":" if a else "-" * w for w, a in zip(widths, right, strict=True)) + " |"
    return "\n".join([line(cells[0]), rule, *(line(r) for r in cells[1:])])


def parser(doc: str | None, quick: str = "< 30 s") -> argparse.ArgumentParser:
    """The options every script has: --quick, --workdir, --seed, --blocks, --out."""
    p = argparse.ArgumentParser(description=(doc or "").split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--quick", action="store_true", help=f"small inputs, few repetitions (smoke test, {quick})")
    p.add_argument("--workdir", type=Path, default=Path("/tmp/aacdata-bench"), help="cache of inputs (%(default)s)")
    p.add_argument("--seed", type=int, default=0, help="seed of the synthetic audio and the windows")
    p.add_argument("--blocks", action="store_true", help="also time every comparison in block order")
    p.add_argument("--out", type=Path, help="write the results as JSON to OUT/<script>.json (for plot.py)")
    return p


class Report:
    """What a script prints and, with ``--out``, saves: tables, series, targets."""

    def __init__(self, title: str, args: argparse.Namespace, versions: str = "") -> None:
        self.script = Path(sys.argv[0]).stem
        self.args = args
        self.started = datetime.now(UTC)
        self.command = " ".join([f".venv/bin/python benchmarks/{self.script}.py", *sys.argv[1:]])
        self.tables: list[dict[str, Any]] = []
        self.series: list[dict[str, Any]] = []
        self.targets: list[dict[str, Any]] = []
        self.ours: list[int] = []  # other processes whose CPU is part of the measurement (a local S3 server)
        self._t0 = time.perf_counter()
        print(f"# {title}\n#\n# `{self.command}`, started {self.started:%Y-%m-%d %H:%M} UTC, {os.cpu_count()} cores")
        if versions:
            print(f"# {versions}")
        probe = Contention()
        time.sleep(1.0)
        print(f"# {probe.note('in the second before the start')}; load average {os.getloadavg()[0]:.2f} (1 min)")

    @property
    def orders(self) -> list[str]:
        return ["interleaved", "blocks"] if self.args.blocks else ["interleaved"]

    def table(self, title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]], note: str = "") -> None:
        print(f"\n**{title}**\n\n{markdown(columns, rows)}")
        if note:
            print(f"\n{note}")
        self.tables.append({"title": title, "columns": list(columns), "rows": [list(r) for r in rows], "note": note})

    def timings(
        self, title: str, stats: Mapping[str, Summary], baseline: str | None, unit: str = "µs/window", note: str = ""
    ) -> None:
        """A table of methods: median, p90, count, and the ratio of medians to ``baseline``'s."""
        cols = ["method", f"median {unit}", "p90", "n"] + ([f"/ {baseline}"] if baseline else [])
        base = stats[baseline].median if baseline else 1.0
        rows = [[k, s.median, s.p90, s.count] + ([s.median / base] if baseline else []) for k, s in stats.items()]
        self.table(title, cols, rows, note)

    def compare(
        self,
        title: str,
        make: Callable[[], Mapping[str, Method]],
        windows: Sequence[Any],
        *,
        warmup: Sequence[Any] = (),
        baseline: str | None = None,
        unit: str = "µs/window",
        scale: float = 1e6,
        order: str = "interleaved",
    ) -> dict[str, Summary]:
        """Time fresh methods from ``make()`` on ``windows`` in ``order`` (``interleaved``
        or ``shuffled``, seeded by ``--seed``; and, with ``--blocks``, again in block
        order); print each table; the stats of the first order."""
        first: dict[str, Summary] = {}
        for how in [order, *self.orders[1:]]:
            methods = make()
            gc.collect()
            probe = Contention(self.ours)
            times = measure(methods, windows, warmup=warmup, order=how, seed=self.args.seed)
            stats = {k: Summary.of(v * scale) for k, v in times.items()}
            self.timings(f"{title} ({how} order)", stats, baseline, unit, probe.note())
            first = first or stats
        return first

    def add_series(self, name: str, x_label: str, x: Sequence[float], y_label: str, ys: Mapping[str, Any]) -> None:
        """A figure's data: ``ys`` maps a method to its values (medians) at ``x``."""
        self.series.append({"name": name, "x_label": x_label, "x": list(x), "y_label": y_label, "y": dict(ys)})

    def target(self, label: str, value: float, op: str, goal: float) -> bool:
        ok = value <= goal if op == "<=" else value >= goal
        self.targets.append({"label": label, "value": value, "op": op, "target": goal, "met": ok})
        return ok

    def info(self, label: str, value: float, note: str = "") -> None:
        self.targets.append({"label": label, "value": value, "note": note})

    def finish(self) -> None:
        rows = [
            [t["label"], t["value"], f"{t['op']} {fmt(t['target'])}" if "op" in t else "", _mark(t)]
            for t in self.targets
        ]
        note = "(--quick: a smoke test on small inputs; the targets are for the full run)" if self.args.quick else ""
        self.table("Targets", ["claim", "value", "target", "met"], rows, note)
        elapsed = time.perf_counter() - self._t0
        print(f"\n# total {elapsed:.0f} s")
        if self.args.out:
            self.args.out.mkdir(parents=True, exist_ok=True)
            path = self.args.out / f"{self.script}.json"
            keys = ("script", "command", "quick", "tables", "series", "targets")
            data = {k: getattr(self, k, None) for k in keys} | {"quick": self.args.quick, "seconds": round(elapsed, 1)}
            data |= {"started_utc": self.started.isoformat(timespec="seconds"), "machine": _machine()}
            path.write_text(json.dumps(data, indent=1, default=_jsonable) + "\n")
            print(f"# results: {path}")


def _machine() -> str:
    return f"{platform.machine()}, {os.cpu_count()} cores"


def _mark(t: Mapping[str, Any]) -> str:
    return ("✓" if t["met"] else "✗") if "met" in t else t.get("note", "")


def _jsonable(v: Any) -> Any:
    if isinstance(v, (np.integer, np.floating)):
        return v.item()
    if isinstance(v, Summary):
        return asdict(v)
    raise TypeError(f"not JSON: {type(v).__name__}")
