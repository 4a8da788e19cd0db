"""The benchmarks' figures (matplotlib, PNG): lines of a figure against a rate, one per server,
and bars of one figure per server; each point or bar the median of the repetitions, with their
range as an error bar.

Not a benchmark itself (``run.py`` skips modules whose name starts with ``_``). matplotlib is a
development extra: without it the figures are skipped and the report says so.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from pathlib import Path

from _common import Spread

Series = dict[str, Sequence[tuple[float, Spread]]]
"""Per line (a server): (x, the y values of every repetition)."""


def available() -> bool:
    return importlib.util.find_spec("matplotlib") is not None


def _pyplot():  # type: ignore[no-untyped-def]
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    return plt


def lines(
    path: Path, title: str, xlabel: str, ylabel: str, series: Series, *, logy: bool = False
) -> None:
    """One line per server: the median at each x, the range as an error bar."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7.5, 4.5), dpi=110)
    for label, points in series.items():
        pts = [(x, s) for x, s in points if s.values]
        if not pts:
            continue
        xs = [x for x, _ in pts]
        ys = [s.median for _, s in pts]
        below = [s.median - s.values[0] for _, s in pts]
        above = [s.values[-1] - s.median for _, s in pts]
        ax.errorbar(
            xs, ys, yerr=[below, above], marker="o", capsize=3, label=label.replace("`", "")
        )
    ax.set_xscale("log")
    if logy:
        ax.set_yscale("log")
    else:
        ax.set_ylim(bottom=0)
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def bars(path: Path, title: str, ylabel: str, values: dict[str, Spread]) -> None:
    """One bar per server: the median, the range as an error bar, the median written on top."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7.5, 4.0), dpi=110)
    labels = [k for k, v in values.items() if v.values]
    medians = [values[k].median for k in labels]
    below = [values[k].median - values[k].values[0] for k in labels]
    above = [values[k].values[-1] - values[k].median for k in labels]
    drawn = ax.bar(labels, medians, yerr=[below, above], capsize=4, color="#4c78a8")
    ax.bar_label(drawn, labels=[f"{m:.1f}" for m in medians], padding=3)
    ax.set_ylim(0, max(values[k].values[-1] for k in labels) * 1.15 if labels else 1)
    ax.set_title(title)
    ax.set_ylabel(ylabel)
    ax.grid(True, axis="y", alpha=0.3)
    plt.setp(ax.get_xticklabels(), rotation=15, ha="right")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
