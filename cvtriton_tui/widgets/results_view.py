"""Test results: where they came from (which server, which precision), predictions in a table, the
annotated image (in the terminal, and the saved PNG's path), the answers of every path side by side
(tensors to the model, image bytes to the ensemble, image bytes through the Custom Vision route, and the
Custom Vision service's own answer when the endpoint test asked it) with whether they agree, each path's
load test (throughput, p50/p95/p99, errors by status) and the latencies in request order and as a
histogram. Fed by a ``TestResult`` (local test) or an ``EndpointTestResult`` (endpoint test) from the core.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import DataTable, Label, Static

from cvtriton_core.steps.image_ensemble import AGREEMENT_TOLERANCE
from cvtriton_tui.widgets.image_preview import ImagePreview, Pixels
from cvtriton_tui.widgets.latency_chart import LatencyChart

MAX_ROWS = 50
MAX_DISAGREEMENTS = 3
#: Column titles of the side-by-side table, by ``PathAnswer.path``.
PATH_COLUMNS = {"tensor": "tensor → model", "image": "bytes → ensemble", "customvision": "bytes → CV route"}
SERVICE_COLUMN = "Custom Vision service"


def shown_predictions(result: Any) -> tuple:
    """The result's predictions as ``Prediction`` objects: a ``TestResult`` holds them; an
    ``EndpointTestResult`` holds its tensor path's in ``answers[0]`` (its ``predictions`` are JSON dicts)."""
    from cvtriton_triton.model_info import Box, Prediction

    answers = getattr(result, "answers", ())
    if answers:
        return tuple(answers[0].predictions)
    found = []
    for p in result.predictions:
        if isinstance(p, dict):
            box = p.get("box")
            found.append(Prediction(p["label"], float(p["probability"]),
                                    Box(box["left"], box["top"], box["width"], box["height"]) if box else None))
        else:
            found.append(p)
    return tuple(found)


def error_counts(errors: dict[str, int]) -> str:
    """``HTTP 429 × 3, timeout × 1`` (statuses as the load test keys them: "429", "timeout", "connection")."""
    parts = [f"{'HTTP ' + k if str(k).isdigit() else k} × {n}" for k, n in sorted(errors.items())]
    return ", ".join(parts) if parts else "no errors"


def load_lines(reports: tuple) -> list[str]:
    """One line per path's load test: what it called, ok/planned at concurrency, throughput, percentiles,
    errors by status, and why it stopped when it stopped early."""
    lines = []
    for r in reports:
        if not r.ok:
            lines.append(f"{r.target}: no successful request of {r.planned} · errors {error_counts(dict(r.errors))}")
            continue
        line = (f"{r.target}: {r.ok}/{r.planned} ok at concurrency {r.concurrency} · {r.throughput_rps:.1f} req/s · "
                f"p50 {r.p50_ms:.1f} · p95 {r.p95_ms:.1f} · p99 {r.p99_ms:.1f} ms · {r.request_bytes:,} bytes/request"
                f" · errors: {error_counts(dict(r.errors))}")
        if r.stopped != "completed":
            line += f" · stopped early ({r.stopped}) after {r.sent}"
        lines.append(line)
    return lines


def agreement_line(result: Any) -> str:
    answers = getattr(result, "answers", ())
    if len(answers) < 2:
        return ""
    differ = tuple(getattr(result, "disagreements", ()))
    if not differ:
        return (f"✓ the {len(answers)} paths agree: same labels, probabilities and boxes within "
                f"{AGREEMENT_TOLERANCE:g}")
    more = f" (+{len(differ) - MAX_DISAGREEMENTS} more)" if len(differ) > MAX_DISAGREEMENTS else ""
    return f"✗ the answers differ: {'; '.join(differ[:MAX_DISAGREEMENTS])}{more}"


class ResultsView(Vertical):
    DEFAULT_CSS = """
    ResultsView { height: auto; }
    ResultsView #results-top { height: auto; }
    ResultsView #predictions { width: 1fr; height: auto; max-height: 14; border: round $panel; }
    ResultsView #preview-box { width: auto; height: auto; border: round $panel; padding: 0 1; }
    ResultsView #annotated-path { color: $text-muted; }
    ResultsView #answers { height: auto; max-height: 14; border: round $panel; }
    ResultsView #load-report { height: auto; border: round $panel; padding: 0 1; }
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.result: Any = None
        self.source = ""
        self.precision = ""

    def compose(self) -> ComposeResult:
        yield Label("No test run yet.", id="results-summary")
        yield Label("", id="results-source")
        yield Label("", id="customvision-url")
        with Horizontal(id="results-top"):
            table: DataTable = DataTable(id="predictions", cursor_type="row", zebra_stripes=True)
            table.border_title = "Predictions"
            table.add_columns("#", "label", "probability", "box l, t, w, h")
            yield table
            with Vertical(id="preview-box") as box:
                box.border_title = "Image"
                yield ImagePreview(id="preview")
        yield Label("", id="annotated-path")
        answers: DataTable = DataTable(id="answers", cursor_type="row", zebra_stripes=True)
        answers.border_title = "Answers side by side (probability per label)"
        yield answers
        yield Label("", id="agreement")
        report = Static("", id="load-report")
        report.border_title = "Load test"
        yield report
        yield LatencyChart(id="latency")

    def on_mount(self) -> None:
        for name in ("#customvision-url", "#answers", "#agreement", "#load-report"):
            self.query_one(name).display = False

    def show_result(self, result: Any, *, source: str, precision: str = "") -> None:
        """Fill the view from a ``cvtriton_core.steps.local_target.TestResult`` or a
        ``cvtriton_core.steps.endpoint_test.EndpointTestResult``; ``source`` says which server answered (e.g.
        "the local Triton on this machine"), ``precision`` what it served (FP32/FP16; it can follow with
        ``show_precision`` once read)."""
        self.result = result
        self.source = source
        self.show_precision(precision)
        predictions = shown_predictions(result)
        table = self.query_one("#predictions", DataTable)
        table.clear()
        for i, p in enumerate(predictions[:MAX_ROWS], start=1):
            box = (f"{p.box.left:.2f}, {p.box.top:.2f}, {p.box.width:.2f}, {p.box.height:.2f}"
                   if p.box is not None else "—")
            table.add_row(str(i), p.label, Text(f"{p.probability:.4f}", justify="right"), box)
        best = (f"{predictions[0].label} ({predictions[0].probability:.2f})" if predictions
                else "nothing above the threshold")
        image = Path(result.image).name if getattr(result, "image", None) else "generated image"
        self.query_one("#results-summary", Label).update(
            f"{result.model} · {result.task} · {image}: {best} · {len(predictions)} prediction(s)")
        url = getattr(result, "customvision_url", None)
        url_label = self.query_one("#customvision-url", Label)
        url_label.update(Text.assemble(("Apps that called Custom Vision: POST the image to ", "bold"), url or "",
                                       " with 'Authorization: Bearer <endpoint key or token>' instead of "
                                       "'Prediction-Key'") if url else "")
        url_label.display = bool(url)
        self._show_answers(result)
        reports = tuple(getattr(result, "load", ()) or ())
        report = self.query_one("#load-report", Static)
        report.update("\n".join(load_lines(reports)))
        report.display = bool(reports)
        series = [(PATH_COLUMNS.get(a.path, a.path), r.latencies_ms)
                  for a, r in zip(getattr(result, "answers", ()), reports)] if reports else None
        self.query_one("#latency", LatencyChart).show(result.latencies_ms or (result.latency_ms,), result.latency_ms,
                                                      series=series)
        self.query_one("#annotated-path", Label).update("drawing predictions…")
        self.query_one("#preview", ImagePreview).clear("drawing…")

    def _show_answers(self, result: Any) -> None:
        answers = tuple(getattr(result, "answers", ()))
        service = getattr(result, "customvision", None)      # the endpoint test's Custom Vision service answer
        table = self.query_one("#answers", DataTable)
        table.clear(columns=True)
        shown = len(answers) > 1 or (answers and service is not None)
        table.display = bool(shown)
        agreement = self.query_one("#agreement", Label)
        agreement.update(agreement_line(result))
        agreement.display = bool(shown and agreement_line(result))
        if not shown:
            return
        columns = [PATH_COLUMNS.get(a.path, a.path) for a in answers] + ([SERVICE_COLUMN] if service else [])
        lists = [[(p.label, p.probability, p.box is not None) for p in a.predictions] for a in answers]
        if service:
            lists.append([(p["label"], p["probability"], "box" in p) for p in service])
        if any(boxed for one in lists for _, _, boxed in one):
            # detection: one label can have several boxes, so rows are ranks and cells name their label
            table.border_title = "Answers side by side (label and probability, by rank)"
            table.add_columns("#", *columns)
            for rank in range(min(MAX_ROWS, max(len(one) for one in lists))):
                cells = [Text(f"{one[rank][0]} {one[rank][1]:.4f}" if rank < len(one) else "—", justify="right")
                         for one in lists]
                table.add_row(str(rank + 1), *cells)
            return
        table.border_title = "Answers side by side (probability per label)"
        table.add_columns("label", *columns)
        tables = [{label: probability for label, probability, _ in one} for one in lists]
        labels = [label for label, _, _ in lists[0]]
        labels += sorted({label for t in tables for label in t} - set(labels))
        for label in labels[:MAX_ROWS]:
            table.add_row(label, *[Text(f"{t[label]:.4f}" if label in t else "—", justify="right") for t in tables])

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
