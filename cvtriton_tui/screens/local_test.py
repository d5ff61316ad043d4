"""Local test: serve the packaged model on this machine — with the real Triton server, or by running the
Triton image Package & build made in Docker — stream its log, send the chosen image N times through
tritonclient — and as raw bytes through the image ensemble (and the Custom Vision route of a container) —
then load-test each path with the chosen requests and concurrency (progress in the step's row), and show
predictions, the answers side by side, the annotated image (saved as a PNG whose path is printed), each
path's throughput, percentiles and errors by status, and the latencies in order and as a histogram, saying
which server answered (the local Triton or the container) and at which
precision. The server or container is stopped (the container also removed) when the run ends, fails, is
cancelled or the wizard quits: the core closes it through the run's resources."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.message import Message
from textual.widgets import Button, Input, Label, RadioSet, Select, Static

from cvtriton_core.errors import UserError
from cvtriton_core.events import Event, StepFinished
from cvtriton_core.redact import redact
from cvtriton_core.steps.registry import RunOptions
from cvtriton_tui.screens.base import StepPane
from cvtriton_tui.screens.pickers import IMAGE_SUFFIXES, PathPicker
from cvtriton_tui.screens.state import no_code
from cvtriton_tui.widgets.event_log import EventLog
from cvtriton_tui.widgets.marked_radio import MarkedRadioButton
from cvtriton_tui.widgets.progress_panel import ProgressPanel
from cvtriton_tui.widgets.results_view import ResultsView

TITLES = {"serve-local": "Start local Triton", "run-local": "Start the image in Docker", "test": "Test with the image"}
SERVE_STEP = {"local": "serve-local", "container": "run-local"}     # test_server choice -> the step that serves
RUN_LABEL = {"local": "Start Triton and test (F5)", "container": "Start the container and test (F5)"}
LOG_TITLE = {"local": "Triton log", "container": "Container log"}
MAX_REQUESTS = 1000
MAX_CONCURRENCY = 64        # more client threads than this on one machine measure the client, not the server
SOURCE = "the local Triton on this machine"
NO_IMAGE = ("No Triton image built in this run — build it on Package & build (\"Also build the Triton image\" "
            "for the Local target), then come back.")
NO_IMAGE_NO_CODE = ("No-code deployment (DEPLOYMENT_MODE): no Triton image is built; the local Triton serves the "
                    "same repository Azure ML's own Triton will.")


def built_image(run_dir: Path) -> tuple[str, str] | None:
    """(image id, reference) of the image the latest Package & build built for this run state, or None."""
    from cvtriton_core.run_state import RunState

    try:
        state = RunState.load(run_dir)
    except UserError:
        return None
    image_id = state.get("image_id")
    return (str(image_id), str(state.get("image_ref") or image_id)) if image_id else None


def container_source(result: Any) -> str:
    """Where the answers came from, for a ``RunResult`` of the run-local step."""
    return f"the container {result.container_name} (image {result.image_id[7:19]}) on this machine"


def requests_problem(raw: str) -> str | None:
    if not raw.strip().isdigit() or not 1 <= int(raw) <= MAX_REQUESTS:
        return f"timed requests must be a whole number from 1 to {MAX_REQUESTS} — type one, e.g. 20"
    return None


def concurrency_problem(raw: str) -> str | None:
    if not raw.strip().isdigit() or not 1 <= int(raw) <= MAX_CONCURRENCY:
        return (f"concurrency (requests in flight at once) must be a whole number from 1 to {MAX_CONCURRENCY} "
                "— type one, e.g. 4")
    return None


def image_problem(raw: str) -> str | None:
    if not raw.strip():
        return "no test image — pick one (Browse) or choose a sample image"
    path = Path(raw.strip()).expanduser()
    if not path.is_file():
        return f"test image {path} does not exist — check the path"
    if path.suffix.lower() not in IMAGE_SUFFIXES:
        return f"{path.name} is not an image ({', '.join(IMAGE_SUFFIXES)}) — pick a JPEG or PNG"
    return None


class LocalTestPane(StepPane):
    step_id = "local-test"
    intro = ("Starts Triton here — or the Triton image built on Package & build, in Docker — with the packaged "
             "model, sends the image as tensors to the model and as raw bytes to the image ensemble (and through "
             "the container's Custom Vision route), compares the answers, then load-tests each path with the "
             "requests and concurrency below. The server stops (the container is removed) when the test is done.")
    served_by = SOURCE      # what answered the latest run's requests (the results view names it)

    class AnnotationReady(Message):
        """The test image with predictions drawn was saved as ``png``; ``pixels`` is a small RGB preview;
        ``precision`` is what the model was served as (FP32/FP16)."""

        def __init__(self, png: Path | None, pixels: list[list[tuple[int, int, int]]], precision: str,
                     problem: str = "") -> None:
            super().__init__()
            self.png = png
            self.pixels = pixels
            self.precision = precision
            self.problem = problem

    def compose(self) -> ComposeResult:
        state = self.state
        yield self.heading()
        with RadioSet(id="test-server"):
            yield MarkedRadioButton("Local Triton server (tritonserver on this machine)",
                                    value=state.test_server == "local", id="server-local")
            yield MarkedRadioButton("The built image in Docker (the exact image Package & build made)",
                                    value=state.test_server == "container", id="server-container")
        yield Static("", id="server-note")
        with Horizontal(classes="path-row"):
            yield Label("Test image", classes="row-label")
            yield Input(state.image_path, placeholder="path to a JPEG or PNG", id="image-path")
            yield Button("Browse…", id="browse-image")
        with Horizontal(classes="path-row"):
            yield Label("Sample images", classes="row-label")
            yield Select[str]([], prompt="(generated with the sample model)", id="sample-images", allow_blank=True)
        with Horizontal(classes="path-row"):
            yield Label("Timed requests", classes="row-label")
            yield Input(state.requests, id="requests", type="integer", max_length=4,
                        tooltip="per path: tensors to the model, and image bytes to the ensemble when it is there")
        with Horizontal(classes="path-row"):
            yield Label("Concurrency", classes="row-label")
            yield Input(state.concurrency, id="concurrency", type="integer", max_length=2,
                        tooltip="requests in flight at once during the load test")
        yield Label("", id="test-error", classes="field-error")
        with Horizontal(classes="buttons"):
            yield Button(RUN_LABEL[state.test_server], id="test-run", variant="primary", classes="run-button")
            yield Button("Cancel (F8)", id="test-cancel", classes="cancel-button")
        yield ProgressPanel(id="test-progress")
        yield ResultsView(id="results")
        yield EventLog(id="triton-log", sources=("triton", "container", "docker"), title=LOG_TITLE[state.test_server])

    def setup(self) -> None:
        self.query_one(ProgressPanel).plan(self._plan())
        self.query_one("#test-error", Label).display = False
        self.entered()

    def _steps(self) -> list[str]:
        return [SERVE_STEP[self.state.test_server], "test"]

    def _plan(self) -> list[tuple[str, str]]:
        return [(name, TITLES[name]) for name in self._steps()]

    def show_server_choice(self) -> None:
        """The container choice is offered only when this run state has a built image; say so otherwise."""
        image = built_image(self.state.run_dir)
        choice = self.state.test_server
        self.query_one("#server-container", MarkedRadioButton).disabled = image is None and choice != "container"
        note = self.query_one("#server-note", Static)
        if image is None:
            missing = NO_IMAGE_NO_CODE if no_code(self.state) else NO_IMAGE
            note.update(Text(missing, style="yellow" if choice == "container" else "dim"))
        elif choice == "container":
            note.update(Text(f"Runs image {image[1]} ({image[0][7:19]}) with ports on 127.0.0.1 only; the "
                             "container is removed when the test ends.", style="dim"))
        else:
            note.update(Text(f"Image {image[1]} is built: choose the second option to test the exact image.",
                             style="dim"))
        self.query_one("#test-run", Button).label = RUN_LABEL[choice]
        self.query_one("#triton-log", EventLog).border_title = LOG_TITLE[choice]
        panel = self.query_one(ProgressPanel)
        if not self.running and list(panel.rows) != self._steps():     # keep a finished run's rows
            panel.plan(self._plan())

    def on_radio_set_changed(self, event: RadioSet.Changed) -> None:
        if event.radio_set.id != "test-server":
            return
        self.state.test_server = "container" if event.pressed.id == "server-container" else "local"
        self.show_server_choice()
        self.wizard.choices_changed()

    def entered(self) -> None:
        images = self.wizard.sample_images
        select = self.query_one("#sample-images", Select)
        select.set_options([(p.name, str(p)) for p in images])
        select.disabled = not images
        if images and not self.state.image_path:
            self.query_one("#image-path", Input).value = str(images[0])
        self.show_server_choice()

    def on_select_changed(self, event: Select.Changed) -> None:
        if event.select.id == "sample-images" and isinstance(event.value, str):
            self.query_one("#image-path", Input).value = event.value

    def on_input_changed(self, event: Input.Changed) -> None:
        if event.input.id == "image-path":
            self.state.image_path = event.value.strip()
        elif event.input.id == "requests":
            self.state.requests = event.value.strip()
        elif event.input.id == "concurrency":
            self.state.concurrency = event.value.strip()
        else:
            return
        self.wizard.choices_changed()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "test-run":
            self.request_run()
        elif event.button.id == "test-cancel":
            self.wizard.action_cancel_run()
        elif event.button.id == "browse-image":
            start = Path(self.state.image_path).expanduser() if self.state.image_path else Path.cwd()
            self.app.push_screen(PathPicker("Choose a test image", start=start, suffixes=IMAGE_SUFFIXES),
                                 self._picked)

    def _picked(self, path: Path | None) -> None:
        if path is not None:
            self.query_one("#image-path", Input).value = str(path)

    def _problem(self) -> str | None:
        if self.state.test_server == "container" and built_image(self.state.run_dir) is None:
            return NO_IMAGE_NO_CODE if no_code(self.state) else NO_IMAGE
        return (image_problem(self.state.image_path) or requests_problem(self.state.requests)
                or concurrency_problem(self.state.concurrency))

    def run_step(self) -> None:
        # what the inputs hold now (their Changed messages may still be on the way after fast typing)
        self.state.image_path = self.query_one("#image-path", Input).value.strip()
        self.state.requests = self.query_one("#requests", Input).value.strip()
        self.state.concurrency = self.query_one("#concurrency", Input).value.strip()
        problem = self._problem()
        label = self.query_one("#test-error", Label)
        label.update(Text(problem or "", style="red"))
        label.display = bool(problem)
        if problem:
            return
        self.query_one("#triton-log", EventLog).clear()
        self.query_one(ProgressPanel).plan(self._plan())
        self.served_by = SOURCE
        # The image carries the repository's image ensemble and its Custom Vision route: the test answers
        # every way the server serves (tensors, image bytes, and the route in a container).
        options = RunOptions(image=Path(self.state.image_path).expanduser(), requests=int(self.state.requests),
                             concurrency=int(self.state.concurrency))
        self.start_run(self._steps(), options, title="Local test")

    def handle_event(self, event: Event) -> None:
        self.query_one(ProgressPanel).apply(event)
        self.query_one("#triton-log", EventLog).add_event(event)
        if isinstance(event, StepFinished) and event.step == "run-local":
            self.served_by = container_source(event.result)
        if isinstance(event, StepFinished) and event.step == "test":
            self.show_result(event.result)

    def show_result(self, result: Any) -> None:
        self.state.results["test"] = result
        self.query_one(ResultsView).show_result(result, source=self.served_by)
        out = self.state.workdir / "results" / f"{Path(result.image).stem}-predictions.png"
        self._annotate(result, out, self.state.run_dir)

    @work(group="annotate", exclusive=True, exit_on_error=False, description="Drawing the predictions")
    async def _annotate(self, result: Any, out: Path, run_dir: Path) -> None:
        precision = await asyncio.to_thread(served_precision, run_dir, result.model)
        try:
            png, pixels = await asyncio.to_thread(_draw, Path(result.image), result.predictions, out)
        except UserError as exc:
            self.post_message(self.AnnotationReady(None, [], precision, redact(exc.one_line())))
            return
        self.post_message(self.AnnotationReady(png, pixels, precision))

    def on_local_test_pane_annotation_ready(self, message: AnnotationReady) -> None:
        view = self.query_one(ResultsView)
        view.show_precision(message.precision)
        self.state.results["test-precision"] = message.precision
        if message.png is None:
            view.annotation_failed(message.problem)
            return
        view.show_annotation(message.png, message.pixels)
        self.wizard.record_note(f"annotated image saved to {message.png}")

    def after_cancel(self, interrupted: list[str], values: dict[str, Any]) -> str:
        if interrupted:      # starting it or testing with it: either way the run closed the server
            if SERVE_STEP["container"] in self.query_one(ProgressPanel).rows:
                return "the container was stopped and removed; nothing is left running"
            return "the local Triton server was stopped; nothing is left running"
        return "nothing was left running"

    def quit_consequence(self) -> str:
        if SERVE_STEP["container"] in self.query_one(ProgressPanel).rows:
            return "the test container is stopped and removed"
        return "the local Triton server is stopped"


def served_precision(run_dir: Path, model: str) -> str:
    """FP16 or FP32, from the model info the repository step wrote next to the served model ('' if unknown)."""
    from cvtriton_core.run_state import RunState
    from cvtriton_triton.model_repository import read_model_info

    try:
        repository = RunState.load(run_dir).get("repository")
        info = read_model_info(Path(repository) / model) if repository else None
    except UserError:
        return ""
    if info is None:
        return ""
    return "FP16 (float16 input)" if info.input_is_fp16 else f"FP32 ({info.input.dtype} input)"


def _draw(image: Path, predictions: Any, out: Path) -> tuple[Path, list]:
    from cvtriton_triton.annotate import draw_predictions, preview_pixels

    png = draw_predictions(image, predictions, out)
    return png, preview_pixels(png, 40, 28)
