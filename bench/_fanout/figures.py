"""The fan-out section's figures (``bench/_plots.py``): CPU per delivery and p99 against the
offered rate, one line per server, and KiB per idle connection per server; PNGs beside the
run's markdown, named after it (``results-fanout-cpu.png`` beside ``RESULTS.md``)."""

from __future__ import annotations

import math

import _plots
from _common import Context, Spread

from .plan import SUBSCRIBERS
from .results import Measured, Step


def us(step: Step) -> float:
    return step.us_per_delivery


def idle_spread(m: Measured, name: str, count: int) -> Spread:
    return m.idle[name].kib(count)


def figures(m: Measured, ctx: Context) -> list[str]:
    if not _plots.available():
        return ["(Figures skipped: matplotlib is not installed; `make install` adds it.)"]
    folder = ctx.output.parent
    folder.mkdir(parents=True, exist_ok=True)
    stem = ctx.output.stem.lower()
    names = {k: f"{stem}-fanout-{k}.png" for k in ("cpu", "p99", "memory")}
    labels = m.rates.labels()
    offered = {
        label: [(rate * SUBSCRIBERS, m.rates.spread(label, rate, us)) for rate in m.rates.rates()]
        for label in labels
    }
    _plots.lines(
        folder / names["cpu"],
        f"Server CPU per delivery, {SUBSCRIBERS:,} subscribers",
        "offered deliveries/s",
        "us of CPU per delivery",
        offered,
    )
    lat = {
        label: [
            (rate * SUBSCRIBERS, Spread.of([s.p99 * 1e3 for s in m.rates.get(label, rate)]))
            for rate in m.rates.rates()
        ]
        for label in labels
    }
    _plots.lines(
        folder / names["p99"],
        f"p99 latency, {SUBSCRIBERS:,} subscribers (lost events count as infinitely late)",
        "offered deliveries/s",
        "p99 ms",
        {k: [(x, s) for x, s in v if all(map(math.isfinite, s.values))] for k, v in lat.items()},
        logy=True,
    )
    _plots.bars(
        folder / names["memory"],
        f"RSS per idle connection at {m.idle_counts[-1]:,} connections",
        "KiB per connection",
        {name: idle_spread(m, name, m.idle_counts[-1]) for name in m.names},
    )
    return [
        f"![CPU per delivery against the offered rate]({names['cpu']})",
        f"![p99 latency against the offered rate]({names['p99']})",
        f"![KiB per idle connection]({names['memory']})",
    ]
