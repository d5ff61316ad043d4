"""Latency over N requests: p50 / p95 / min / max in one line and a sparkline of every request.

Percentiles use the nearest-rank method on the measured latencies, so p95 of 20 requests is a request that
really happened, not an interpolation.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import Label, Sparkline


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


class LatencyChart(Vertical):
    DEFAULT_CSS = """
    LatencyChart { height: auto; border: round $panel; padding: 0 1; }
    LatencyChart Sparkline { height: 3; margin-top: 1; }
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.border_title = "Latency"
        self.values: tuple[float, ...] = ()

    def compose(self) -> ComposeResult:
        yield Label(latency_summary(()), id="latency-summary")
        yield Sparkline([], summary_function=max, id="latency-spark")

    def show(self, values: Sequence[float]) -> None:
        self.values = tuple(values)
        self.query_one("#latency-summary", Label).update(latency_summary(self.values))
        self.query_one("#latency-spark", Sparkline).data = list(self.values)
