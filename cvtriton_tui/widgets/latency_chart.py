"""Latency over N requests: median / p95 / min / max in one line, bars in request order below, and a
histogram: how many requests took how long, per path when the test timed more than one.

The median is the run's own figure (``TestResult.latency_ms``, the one the progress row and the headless
JSON report), so the screen never shows two medians for one run. p95 uses the nearest-rank method, so it
is a request that really happened, not an interpolation. Bars start at zero (not at the minimum, as a
sparkline would), so a steady server looks steady and one slow request stands out; requests slower than
p95 are highlighted. With more requests than columns, consecutive requests share a bar (its height is
their slowest) and the subtitle says how many.

The histogram counts the successful timed requests in equal-width latency buckets from the fastest to the
slowest request of all paths shown; each path gets a column with the same buckets, so two paths compare
row by row. A row says its bucket's bounds and each path's count; a bar is as long as its count relative to
the biggest count in the table (a count of zero draws nothing, a count above zero at least a sliver).
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
HORIZONTAL_EIGHTHS = " ▏▎▍▌▋▊▉█"
ROWS = 4
MAX_BUCKETS = 10


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


def histogram(series: Sequence[Sequence[float]], buckets: int = MAX_BUCKETS,
              ) -> tuple[list[tuple[float, float]], list[list[int]]]:
    """The load test's own buckets (``cvtriton_triton.load_test.latency_histogram``), at most ``MAX_BUCKETS``."""
    from cvtriton_triton.load_test import latency_histogram

    return latency_histogram(series, buckets)


def _bar(count: int, top: int, width: int) -> str:
    if count <= 0 or width <= 0:
        return ""
    eighths = max(1, round(count / max(1, top) * width * 8))
    return "█" * (eighths // 8) + HORIZONTAL_EIGHTHS[eighths % 8].strip()


def histogram_subtitle(series: Sequence[tuple[str, Sequence[float]]]) -> str:
    total = sum(len(v) for _, v in series)
    if not total:
        return ""
    edges, _ = histogram([v for _, v in series])
    width = edges[0][1] - edges[0][0]
    size = f"{len(edges)} buckets of {width:.2f} ms" if len(edges) > 1 else "one bucket (all alike)"
    return f"successful timed requests per latency bucket ({size})"


class HistogramTable:
    """A rich renderable: one row per bucket (``low–high ms``), one column per series (bar + count)."""

    def __init__(self, series: Sequence[tuple[str, Sequence[float]]], width: int) -> None:
        self.names = [name for name, _ in series]
        self.edges, self.counts = histogram([values for _, values in series])
        self.width = width

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        if not self.edges:
            return
        digits_ms = max(len(f"{high:.2f}") for _, high in self.edges)
        label = lambda lo, hi: f"{lo:.2f}–{hi:.2f} ms".rjust(2 * digits_ms + 4)  # noqa: E731
        head = len(label(0.0, 0.0))
        top = max(max(row) for row in self.counts) or 1
        digits = len(str(top))
        column = max(8, (self.width - head - 1) // max(1, len(self.names)) - 1)
        bar_room = max(1, column - digits - 1)
        dim, styles = Style(dim=True), [Style(color="cyan"), Style(color="magenta"), Style(color="green")]
        if len(self.names) > 1:
            yield Segment(" " * head + " ")
            for i, name in enumerate(self.names):
                yield Segment(name[:column].ljust(column) + " ", styles[i % len(styles)])
            yield Segment.line()
        for b, (low, high) in enumerate(self.edges):
            yield Segment(label(low, high) + " ", dim)
            for i, row in enumerate(self.counts):
                bar = _bar(row[b], top, bar_room)
                yield Segment(bar, styles[i % len(styles)])
                yield Segment(f" {row[b]}".ljust(column - len(bar)) + " ")
            yield Segment.line()


class LatencyHistogram(Widget):
    DEFAULT_CSS = """
    LatencyHistogram { height: auto; width: 1fr; }
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.series: tuple[tuple[str, tuple[float, ...]], ...] = ()

    def show(self, series: Sequence[tuple[str, Sequence[float]]]) -> None:
        self.series = tuple((name, tuple(values)) for name, values in series if values)
        self.refresh(layout=True)

    def get_content_height(self, container: Any, viewport: Any, width: int) -> int:
        edges, _ = histogram([v for _, v in self.series])
        return len(edges) + (1 if len(self.series) > 1 else 0)

    def render(self) -> Any:
        if not self.series:
            return ""
        return HistogramTable(self.series, self.size.width)


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
    LatencyChart #histogram-title { margin-top: 1; color: $text-muted; }
    LatencyChart #bars-title { margin-top: 1; color: $text-muted; }
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.border_title = "Latency"
        self.values: tuple[float, ...] = ()
        self.median = 0.0

    def compose(self) -> ComposeResult:
        yield Label(latency_summary((), 0.0), id="latency-summary")
        yield Label("", id="histogram-title")
        yield LatencyHistogram(id="latency-histogram")
        yield Label("", id="bars-title")
        yield LatencyBars(id="latency-bars")

    def on_mount(self) -> None:
        for part in ("#histogram-title", "#latency-histogram", "#bars-title"):
            self.query_one(part).display = False

    def show(self, values: Sequence[float], median: float, *,
             series: Sequence[tuple[str, Sequence[float]]] | None = None) -> None:
        """``values`` in request order; ``median`` is the run's median (``TestResult.latency_ms``); ``series``:
        (path, latencies) of each path timed, for the histogram (default: ``values`` alone), the first one
        being ``values``' path."""
        self.values = tuple(values)
        self.median = median
        first = f"{series[0][0]}: " if series and len(series) > 1 else ""
        self.query_one("#latency-summary", Label).update(first + latency_summary(self.values, median))
        bars = self.query_one("#bars-title", Label)
        bars.update(f"{series[0][0]}, each timed request in order:" if first else "")
        bars.display = bool(first)
        self.query_one(LatencyBars).show(self.values)
        shown = [(name, tuple(v)) for name, v in (series if series is not None else [("requests", values)]) if v]
        title = histogram_subtitle(shown)
        label = self.query_one("#histogram-title", Label)
        label.update(f"Histogram: {title}" if title else "")
        label.display = bool(title)
        self.query_one(LatencyHistogram).show(shown)
        self.query_one(LatencyHistogram).display = bool(shown)
        self._subtitle()
        self.call_after_refresh(self._subtitle)     # once laid out, with the width the bars really get

    def on_resize(self) -> None:
        self._subtitle()

    def _subtitle(self) -> None:
        width = self.query_one(LatencyBars).size.width     # what Bars buckets to
        self.border_subtitle = bars_subtitle(len(self.values), width) if width else ""
