"""Latency over N requests: p50 / p95 / min / max in one line and a bar per request below.

Percentiles use the nearest-rank method on the measured latencies, so p95 of 20 requests is a request that
really happened, not an interpolation. Bars start at zero (not at the minimum, as a sparkline would), so a
steady server looks steady and one slow request stands out; requests slower than p95 are highlighted.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

from rich.console import Console, ConsoleOptions, RenderResult
from rich.segment import Segment
from rich.style import Style
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widget import Widget
from textual.widgets import Label

EIGHTHS = " ▁▂▃▄▅▆▇█"
ROWS = 4


def percentile(values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile (``pct`` 0-100) of a non-empty sequence."""
    ordered = sorted(values)
    if not ordered:
        raise ValueError("no values")
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def latency_summary(values: Sequence[float]) -> str:
    if not values:
        return "no requests timed yet"
    return (f"p50 {percentile(values, 50):.1f} ms · p95 {percentile(values, 95):.1f} ms · "
            f"min {min(values):.1f} · max {max(values):.1f} · n={len(values)}")


def bucket(values: Sequence[float], width: int) -> list[float]:
    """At most ``width`` bars: consecutive requests share a bar (its height is their slowest)."""
    if len(values) <= width:
        return list(values)
    size = math.ceil(len(values) / width)
    return [max(values[i:i + size]) for i in range(0, len(values), size)]


class Bars:
    """A rich renderable: one column per request (or bucket), ``ROWS`` text rows of eighth blocks."""

    def __init__(self, values: Sequence[float], threshold: float, width: int) -> None:
        self.values = bucket(values, max(1, width))
        self.threshold = threshold

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        top = max(self.values, default=0.0) or 1.0
        normal, slow = Style(color="cyan"), Style(color="yellow", bold=True)
        heights = [round(v / top * ROWS * 8) for v in self.values]
        for row in range(ROWS, 0, -1):
            floor = (row - 1) * 8
            for value, height in zip(self.values, heights, strict=True):
                cell = EIGHTHS[min(8, max(0, height - floor))]
                yield Segment(cell, slow if value > self.threshold else normal)
            yield Segment.line()


class LatencyBars(Widget):
    DEFAULT_CSS = """
    LatencyBars { height: 4; width: 1fr; }
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.values: tuple[float, ...] = ()

    def show(self, values: Sequence[float]) -> None:
        self.values = tuple(values)
        self.refresh()

    def render(self) -> Any:
        if not self.values:
            return ""
        return Bars(self.values, percentile(self.values, 95), self.size.width)


class LatencyChart(Vertical):
    DEFAULT_CSS = """
    LatencyChart { height: auto; border: round $panel; padding: 0 1; }
    LatencyChart #latency-bars { margin-top: 1; }
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.border_title = "Latency"
        self.values: tuple[float, ...] = ()

    def compose(self) -> ComposeResult:
        yield Label(latency_summary(()), id="latency-summary")
        yield LatencyBars(id="latency-bars")

    def show(self, values: Sequence[float]) -> None:
        self.values = tuple(values)
        self.query_one("#latency-summary", Label).update(latency_summary(self.values))
        self.query_one(LatencyBars).show(self.values)
        self.border_subtitle = "one bar per request, from 0 ms; yellow: slower than p95" if values else ""
