"""Figures from the benchmarks' JSON results (``--out DIR``): one PNG per series, e.g.
windows/s against DataLoader workers and against window length (bench_workers.py).

    .venv/bin/python benchmarks/bench_workers.py --out benchmarks/results
    .venv/bin/python benchmarks/plot.py benchmarks/results    # writes benchmarks/figures/*.png
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # after choosing the backend
from matplotlib.ticker import FuncFormatter, NullLocator

HERE = Path(__file__).resolve().parent
STYLE = {"aacdata": ("C0", "o"), "soundfile (FLAC)": ("C1", "s"), "naive PyAV loop": ("C2", "^")}


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:60]


def plot_series(result: dict, series: dict, out: Path) -> Path:
    fig, ax = plt.subplots(figsize=(5.2, 3.4), dpi=110)
    for i, (method, ys) in enumerate(series["y"].items()):
        color, marker = STYLE.get(method, (f"C{i + 3}", "D"))
        ax.plot(series["x"], ys, marker=marker, color=color, label=method)
    if series["x_label"].startswith("window"):
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        label = FuncFormatter(lambda v, _: f"{v:g}" if f"{v:g}"[0] in "125" else "")
        ax.yaxis.set_major_formatter(label)
        ax.yaxis.set_minor_formatter(label)
    else:
        ax.set_ylim(bottom=0)
    ax.set_xticks(series["x"], [f"{x:g}" for x in series["x"]])
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xlabel("window length, s" if series["x_label"].startswith("window") else "DataLoader workers")
    ax.set_ylabel(series["y_label"])
    ax.set_title(series["name"], fontsize=9)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    fig.text(0.01, 0.01, f"{result['script']}, {result['started_utc']} UTC, {result['machine']}", fontsize=6, alpha=0.6)
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    path = out / f"{result['script']}-{slug(series['x_label'])}.png"
    fig.savefig(path)
    plt.close(fig)
    return path


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("results", type=Path, nargs="?", default=HERE / "results", help="folder of JSON results")
    p.add_argument("--figures", type=Path, default=HERE / "figures", help="where the PNGs go (%(default)s)")
    args = p.parse_args()
    args.figures.mkdir(parents=True, exist_ok=True)
    for path in sorted(args.results.glob("*.json")):
        result = json.loads(path.read_text())
        for series in result.get("series", []):
            out = plot_series(result, series, args.figures)
            print(f"{out} ({out.stat().st_size / 1024:.0f} KB)")


if __name__ == "__main__":
    main()
