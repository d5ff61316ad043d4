"""Azure target — Test results: the core's ``endpoint-test`` step sends the test image chosen on the Local test
step to the Azure ML endpoint (bearer key or token on every call) — to one deployment through the
``azureml-model-deployment`` header (it reaches a deployment that has no traffic yet), or through the endpoint's
traffic split — then times N requests at the chosen concurrency. The same results view as the local test shows
the predictions, the annotated image (saved as PNG) and the latency, labelled with the endpoint and deployment
that answered; Custom Vision's own answer to the same image sits beside it when its prediction API is set up."""

from __future__ import annotations

import asyncio
from functools import partial
from pathlib import Path
from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.message import Message
from textual.widgets import Button, Input, Label, RadioSet, Static

from cvtriton_core.errors import UserError
from cvtriton_core.events import Event, StepFailed, StepFinished
from cvtriton_core.redact import redact
from cvtriton_core.steps.azureml_options import AzureOptions
from cvtriton_core.steps.registry import RunOptions
from cvtriton_tui.screens import azure_reads
from cvtriton_tui.screens.base import StepPane
from cvtriton_tui.widgets.event_log import EventLog
from cvtriton_tui.widgets.marked_radio import MarkedRadioButton
from cvtriton_tui.widgets.progress_panel import ProgressPanel
from cvtriton_tui.widgets.results_view import ResultsView, shown_predictions

MAX_REQUESTS = 1000
MAX_CONCURRENCY = 64          # the endpoint-test step refuses more (the endpoint's 429 limit comes first)
LOCAL_SOURCE = "the local Triton on this machine (Local test step), not the endpoint"
NO_IMAGE = "no test image — choose one on the Local test step (Ctrl+B), then come back"


def endpoint_source(result: Any) -> str:
    """Who answered, for an ``EndpointTestResult``: the endpoint and the deployment, or its traffic split."""
    if result.deployment:
        return (f"Azure ML endpoint {result.endpoint}, deployment {result.deployment} "
                "(azureml-model-deployment header)")
    return f"Azure ML endpoint {result.endpoint} through its traffic split (the endpoint chose the deployment)"


def number_problem(raw: str, what: str, top: int) -> str | None:
    if not raw.strip().isdigit() or not 1 <= int(raw) <= top:
        return f"{what} must be a whole number from 1 to {top}"
    return None


class ResultsPane(StepPane):
    step_id = "results"
    intro = ("Sends the Local test step's image to the deployed endpoint (the core's endpoint-test step), then "
             "times the requests: predictions, the boxes drawn, latency p50/p95/p99 and throughput.")
    needs_to_run = ("AZURE_SUBSCRIPTION_ID", "AZUREML_RESOURCE_GROUP", "AZUREML_WORKSPACE", "ENDPOINT_NAME")

    class AnnotationReady(Message):
        def __init__(self, png: Path | None, pixels: list, problem: str = "") -> None:
            super().__init__()
            self.png = png
            self.pixels = pixels
            self.problem = problem

    def compose(self) -> ComposeResult:
        s = self.state
        yield self.heading()
        yield Static("", id="test-target")
        with RadioSet(id="test-route"):
            yield MarkedRadioButton("This deployment only", value=not s.test_by_traffic, id="route-header")
            yield MarkedRadioButton("By the endpoint's traffic split", value=s.test_by_traffic, id="route-traffic")
        with Horizontal(classes="form-row"):
            yield Label("Timed requests", classes="row-label")
            yield Input(s.endpoint_requests, id="endpoint-requests", type="integer", max_length=4)
        with Horizontal(classes="form-row"):
            yield Label("Concurrency", classes="row-label")
            yield Input(s.endpoint_concurrency, id="endpoint-concurrency", type="integer", max_length=2)
        yield Label("", id="endpoint-test-error", classes="field-error")
        with Horizontal(classes="buttons"):
            yield Button("Test endpoint (F5)", id="endpoint-test-run", variant="primary", classes="run-button")
            yield Button("Cancel (F8)", id="endpoint-test-cancel", classes="cancel-button")
            yield Button("Show the local test's results", id="show-local")
        yield ProgressPanel(id="endpoint-progress")
        yield Static("", id="endpoint-summary")
        yield ResultsView(id="endpoint-results")
        yield EventLog(id="endpoint-log", title="Endpoint test log")

    def setup(self) -> None:
        self.query_one(ProgressPanel).plan([("endpoint-test", "Test the Azure ML endpoint")])
        self.query_one("#endpoint-test-error", Label).display = False
        self.query_one(ResultsView).display = False       # shown with a result of this session's test
        self.entered()

    def deployment(self) -> str:
        """The deployment the header names: the one Deploy made last, else the name entered there."""
        deployed = self.state.results.get("deploy")
        return getattr(deployed, "deployment", "") or self.state.deployment_name

    def entered(self) -> None:
        s = self.state
        self.query_one("#show-local", Button).disabled = "test" not in s.results
        self.query_one("#route-header", MarkedRadioButton).label = (
            f"Deployment {self.deployment()} only (by its header: reaches it even at 0% traffic)")
        image = s.image_path.strip()
        text = Text()
        text.append(f"Endpoint {s.value('ENDPOINT_NAME') or '(ENDPOINT_NAME not set)'}", style="bold")
        text.append(" · test image: ")
        if image:
            text.append(image, style="bold")
            text.append(" (chosen on the Local test step)", style="dim")
        else:
            text.append(NO_IMAGE, style="yellow")
        self.query_one("#test-target", Static).update(text)

    def on_radio_set_changed(self, event: RadioSet.Changed) -> None:
        if event.radio_set.id == "test-route":
            self.state.test_by_traffic = event.pressed.id == "route-traffic"
            self.wizard.choices_changed()

    def on_input_changed(self, event: Input.Changed) -> None:
        attr = {"endpoint-requests": "endpoint_requests", "endpoint-concurrency": "endpoint_concurrency"}.get(
            event.input.id or "")
        if attr:
            setattr(self.state, attr, event.value.strip())
            self.wizard.choices_changed()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "endpoint-test-run":
            self.request_run()
        elif event.button.id == "endpoint-test-cancel":
            self.wizard.action_cancel_run()
        elif event.button.id == "show-local" and "test" in self.state.results:
            view = self.query_one(ResultsView)
            view.display = True
            local = self.state.results["test"]
            view.show_result(local, source=LOCAL_SOURCE, precision=self.state.results.get("test-precision", ""))
            if local.image is not None:       # the Local test step saves the same drawing under this name
                self._annotate(local, self.state.workdir / "results" / f"{Path(local.image).stem}-predictions.png",
                               self.state.run_dir)
            else:
                view.annotation_failed("the local test sent a generated picture, not an image of yours")
            self.query_one("#endpoint-summary", Static).update(
                Text("Showing the local test's results (not the endpoint's).", style="yellow"))

    def _problem(self) -> str | None:
        from cvtriton_tui.screens.local_test import image_problem

        s = self.state
        if not s.image_path.strip():
            return NO_IMAGE
        return (image_problem(s.image_path)
                or number_problem(s.endpoint_requests, "timed requests", MAX_REQUESTS)
                or number_problem(s.endpoint_concurrency, "concurrency", MAX_CONCURRENCY))

    def run_step(self) -> None:
        s = self.state
        s.endpoint_requests = self.query_one("#endpoint-requests", Input).value.strip()
        s.endpoint_concurrency = self.query_one("#endpoint-concurrency", Input).value.strip()
        problem = self._problem()
        label = self.query_one("#endpoint-test-error", Label)
        label.update(Text(problem or "", style="red"))
        label.display = bool(problem)
        if problem:
            return
        by_traffic = s.test_by_traffic
        azure = AzureOptions(endpoint=s.value("ENDPOINT_NAME"), deployment=None if by_traffic else self.deployment(),
                             by_traffic=by_traffic, poll_s=azure_reads.POLL_S)
        options = RunOptions(image=Path(s.image_path.strip()).expanduser(), requests=int(s.endpoint_requests),
                             concurrency=int(s.endpoint_concurrency), azure=azure)
        self.query_one(ProgressPanel).plan([("endpoint-test", "Test the Azure ML endpoint")])
        self.query_one("#endpoint-log", EventLog).clear()
        self.query_one(ResultsView).display = False          # no earlier result passes for this test's
        where = "through its traffic split" if by_traffic else f"deployment {self.deployment()}"
        self.query_one("#endpoint-summary", Static).update(
            Text(f"Testing endpoint {s.value('ENDPOINT_NAME')}, {where}…", style="dim"))
        self.start_run(["endpoint-test"], options, title="Endpoint test")

    def handle_event(self, event: Event) -> None:
        self.query_one(ProgressPanel).apply(event)
        self.query_one("#endpoint-log", EventLog).add_event(event)
        match event:
            case StepFinished(step="endpoint-test", result=result) if result is not None:
                self.show_result(result)
            case StepFailed(cancelled=False, message=message):
                self.query_one("#endpoint-summary", Static).update(Text(f"✖ {message}", style="bold red"))

    def show_result(self, result: Any) -> None:
        self.state.results["endpoint-test"] = result
        self.query_one("#endpoint-summary", Static).update(Text("✔ " + result.summary, style="green"))
        view = self.query_one(ResultsView)
        view.display = True
        # every path's answer, the Custom Vision service's beside them, the load tests and the app's URL
        view.show_result(result, source=endpoint_source(result))
        out = self.state.workdir / "results" / f"{Path(result.image).stem}-endpoint-predictions.png"
        self._annotate(result, out, self.state.run_dir)

    def _annotate(self, result: Any, out: Path, run_dir: Path) -> None:
        self.run_worker(partial(self._draw, result, out, run_dir), group="endpoint-annotate", exclusive=True,
                        exit_on_error=False, description="Drawing the predictions")

    async def _draw(self, result: Any, out: Path, run_dir: Path) -> None:
        from cvtriton_tui.screens.local_test import served_precision

        precision = await asyncio.to_thread(served_precision, run_dir, result.model)
        self.query_one(ResultsView).show_precision(precision)
        try:
            png, pixels = await asyncio.to_thread(_draw, Path(result.image), shown_predictions(result), out)
        except UserError as exc:
            self.post_message(self.AnnotationReady(None, [], redact(exc.one_line())))
            return
        self.post_message(self.AnnotationReady(png, pixels))

    def on_results_pane_annotation_ready(self, message: AnnotationReady) -> None:
        view = self.query_one(ResultsView)
        if message.png is None:
            view.annotation_failed(message.problem)
            return
        view.show_annotation(message.png, message.pixels)
        self.wizard.record_note(f"annotated image saved to {message.png}")

    def after_cancel(self, interrupted: list[str], values: dict[str, Any]) -> str:
        return "no more requests are sent; the endpoint keeps running (Cleanup deletes it)"


def _draw(image: Path, predictions: Any, out: Path) -> tuple[Path, list]:
    from cvtriton_triton.annotate import draw_predictions, preview_pixels

    png = draw_predictions(image, predictions, out)
    return png, preview_pixels(png, 40, 28)
