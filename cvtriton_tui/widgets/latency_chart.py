"""Latency over N requests: median / p95 / min / max in one line and bars in request order below.

The median is the run's own figure (``TestResult.latency_ms``, the one the progress row and the headless
JSON report), so the screen never shows two medians for one run. p95 uses the nearest-rank method, so it
is a request that really happened, not an interpolation. Bars start at zero (not at the minimum, as a
sparkline would), so a steady server looks steady and one slow request stands out; requests slower than
p95 are highlighted. With more requests than columns, consecutive requests share a bar (its height is
their slowest) and the subtitle says how many.
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


def latency_summary(values: Sequence[float], median: float) -> str:
    if not values:
        return "no requests timed yet"
    return (f"median {median:.1f} ms · p95 {percentile(values, 95):.1f} ms · "
            f"min {min(values):.1f} · max {max(values):.1f} · n={len(values)}")


def bucket_size(count: int, width: int) -> int:
    """How many consecutive requests share one bar when ``count`` requests get ``width`` columns."""
    return max(1, math.ceil(count / max(1, width)))


def bucket(values: Sequence[float], width: int) -> list[float]:
    """At most ``width`` bars: consecutive requests share a bar (its height is their slowest)."""
    size = bucket_size(len(values), width)
    if size == 1:
        return list(values)
    return [max(values[i:i + size]) for i in range(0, len(values), size)]


def bars_subtitle(count: int, width: int) -> str:
    if not count:
        return ""
    size = bucket_size(count, width)
    what = "one bar per request" if size == 1 else f"one bar per {size} requests (their slowest)"
    return f"{what}, in order, from 0 ms; yellow: slower than p95"


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
        self.median = 0.0

    def compose(self) -> ComposeResult:
        yield Label(latency_summary((), 0.0), id="latency-summary")
        yield LatencyBars(id="latency-bars")

    def show(self, values: Sequence[float], median: float) -> None:
        """``values`` in request order; ``median`` is the run's median (``TestResult.latency_ms``)."""
        self.values = tuple(values)
        self.median = median
        self.query_one("#latency-summary", Label).update(latency_summary(self.values, median))
        self.query_one(LatencyBars).show(self.values)
        self._subtitle()
        self.call_after_refresh(self._subtitle)     # once laid out, with the width the bars really get

    def on_resize(self) -> None:
        self._subtitle()

    def _subtitle(self) -> None:
        width = self.query_one(LatencyBars).size.width     # what Bars buckets to
        self.border_subtitle = bars_subtitle(len(self.values), width) if width else ""
