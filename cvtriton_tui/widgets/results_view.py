"""Test results: where they came from (which server, which precision), predictions in a table, the
annotated image (in the terminal, and the saved PNG's path), and latency median/p95 over the timed requests
with a chart. Fed by a ``TestResult`` from the core."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import DataTable, Label

from cvtriton_tui.widgets.image_preview import ImagePreview, Pixels
from cvtriton_tui.widgets.latency_chart import LatencyChart

MAX_ROWS = 50


class ResultsView(Vertical):
    DEFAULT_CSS = """
    ResultsView { height: auto; }
    ResultsView #results-top { height: auto; }
    ResultsView #predictions { width: 1fr; height: auto; max-height: 14; border: round $panel; }
    ResultsView #preview-box { width: auto; height: auto; border: round $panel; padding: 0 1; }
    ResultsView #annotated-path { color: $text-muted; }
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.result: Any = None
        self.source = ""
        self.precision = ""

    def compose(self) -> ComposeResult:
        yield Label("No test run yet.", id="results-summary")
        yield Label("", id="results-source")
        with Horizontal(id="results-top"):
            table: DataTable = DataTable(id="predictions", cursor_type="row", zebra_stripes=True)
            table.border_title = "Predictions"
            table.add_columns("#", "label", "probability", "box l, t, w, h")
            yield table
            with Vertical(id="preview-box") as box:
                box.border_title = "Image"
                yield ImagePreview(id="preview")
        yield Label("", id="annotated-path")
        yield LatencyChart(id="latency")

    def show_result(self, result: Any, *, source: str, precision: str = "") -> None:
        """Fill the table and the chart from a ``cvtriton_core.steps.local_target.TestResult``; ``source``
        says which server answered (e.g. "the local Triton on this machine"), ``precision`` what it served
        (FP32/FP16; it can follow with ``show_precision`` once read)."""
        self.result = result
        self.source = source
        self.show_precision(precision)
        table = self.query_one("#predictions", DataTable)
        table.clear()
        for i, p in enumerate(result.predictions[:MAX_ROWS], start=1):
            box = (f"{p.box.left:.2f}, {p.box.top:.2f}, {p.box.width:.2f}, {p.box.height:.2f}"
                   if p.box is not None else "—")
            table.add_row(str(i), p.label, Text(f"{p.probability:.4f}", justify="right"), box)
        best = (f"{result.predictions[0].label} ({result.predictions[0].probability:.2f})"
                if result.predictions else "nothing above the threshold")
        self.query_one("#results-summary", Label).update(
            f"{result.model} · {result.task} · {Path(result.image).name}: {best} · "
            f"{len(result.predictions)} prediction(s)")
        self.query_one("#latency", LatencyChart).show(result.latencies_ms or (result.latency_ms,), result.latency_ms)
        self.query_one("#annotated-path", Label).update("drawing predictions…")
        self.query_one("#preview", ImagePreview).clear("drawing…")

    def show_precision(self, precision: str) -> None:
        self.precision = precision
        text = f"Served by {self.source}" + (f" · {precision}" if precision else "")
        self.query_one("#results-source", Label).update(text if self.source else "")

    def show_annotation(self, png: Path, pixels: Pixels) -> None:
        self.query_one("#annotated-path", Label).update(f"Annotated image saved to {png}")
        self.query_one("#preview", ImagePreview).show(pixels)

    def annotation_failed(self, message: str) -> None:
        self.query_one("#annotated-path", Label).update(f"Could not draw the predictions: {message}")
        self.query_one("#preview", ImagePreview).clear("no image")
