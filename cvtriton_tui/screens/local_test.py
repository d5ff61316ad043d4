"""Local test: start the real Triton server on this machine with the packaged repository, stream its log,
send the chosen image N times through tritonclient, then show predictions, the annotated image (saved as a
PNG whose path is printed) and latency p50/p95 with a chart. The server is stopped when the run ends or is
cancelled (the core closes it)."""

from __future__ import annotations

import asyncio
from functools import partial
from pathlib import Path
from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.widgets import Button, Input, Label, Select

from cvtriton_core.errors import UserError
from cvtriton_core.redact import redact
from cvtriton_core.steps.registry import RunOptions
from cvtriton_tui.messages import AnnotationReady
from cvtriton_tui.screens.base import StepPane
from cvtriton_tui.screens.pickers import IMAGE_SUFFIXES, PathPicker
from cvtriton_tui.widgets.event_log import EventLog
from cvtriton_tui.widgets.progress_panel import ProgressPanel
from cvtriton_tui.widgets.results_view import ResultsView

TITLES = {"serve-local": "Start local Triton", "test": "Test with the image"}
MAX_REQUESTS = 1000


def requests_problem(raw: str) -> str | None:
    if not raw.strip().isdigit() or not 1 <= int(raw) <= MAX_REQUESTS:
        return f"timed requests must be a whole number from 1 to {MAX_REQUESTS}"
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
    intro = ("Starts Triton here with the packaged model, sends the image through the HTTP API (binary "
             "tensors) and times every request. The server stops when the test is done.")

    def compose(self) -> ComposeResult:
        state = self.state
        yield self.heading()
        with Horizontal(classes="path-row"):
            yield Label("Test image", classes="row-label")
            yield Input(state.image_path, placeholder="path to a JPEG or PNG", id="image-path")
            yield Button("Browse…", id="browse-image")
        with Horizontal(classes="path-row"):
            yield Label("Sample images", classes="row-label")
            yield Select[str]([], prompt="(generated with the sample model)", id="sample-images", allow_blank=True)
        with Horizontal(classes="path-row"):
            yield Label("Timed requests", classes="row-label")
            yield Input(state.requests, id="requests", type="integer", max_length=4)
        yield Label("", id="test-error", classes="field-error")
        with Horizontal(classes="buttons"):
            yield Button("Start Triton and test (F5)", id="test-run", variant="primary")
            yield Button("Cancel", id="test-cancel", disabled=True)
        yield ProgressPanel(id="test-progress")
        yield ResultsView(id="results")
        yield EventLog(id="triton-log", sources=("triton",), title="Triton log")

    def setup(self) -> None:
        self.query_one(ProgressPanel).plan(list(TITLES.items()))
        self.query_one("#test-error", Label).display = False
        self.entered()

    def entered(self) -> None:
        images = self.wizard.sample_images
        select = self.query_one("#sample-images", Select)
        select.set_options([(p.name, str(p)) for p in images])
        select.disabled = not images
        if images and not self.state.image_path:
            self.query_one("#image-path", Input).value = str(images[0])

    def on_select_changed(self, event: Select.Changed) -> None:
        if event.select.id == "sample-images" and isinstance(event.value, str):
            self.query_one("#image-path", Input).value = event.value

    def on_input_changed(self, event: Input.Changed) -> None:
        if event.input.id == "image-path":
            self.state.image_path = event.value.strip()
        elif event.input.id == "requests":
            self.state.requests = event.value.strip()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "test-run":
            self.run_step()
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
        return image_problem(self.state.image_path) or requests_problem(self.state.requests)

    def run_step(self) -> None:
        problem = self._problem()
        label = self.query_one("#test-error", Label)
        label.update(Text(problem or "", style="red"))
        label.display = bool(problem)
        if problem:
            return
        self.query_one("#triton-log", EventLog).clear()
        self.query_one(ProgressPanel).plan(list(TITLES.items()))
        options = RunOptions(image=Path(self.state.image_path).expanduser(), requests=int(self.state.requests))
        if self.start_run(["serve-local", "test"], options, title="Local test"):
            self.query_one("#test-run", Button).disabled = True
            self.query_one("#test-cancel", Button).disabled = False

    def handle_event(self, event: Any) -> None:
        self.query_one(ProgressPanel).apply(event)
        self.query_one("#triton-log", EventLog).add_event(event)
        if event.kind == "finished" and event.step == "test":
            self.show_result(event.result)

    def show_result(self, result: Any) -> None:
        self.state.results["test"] = result
        self.query_one(ResultsView).show_result(result)
        out = self.state.workdir / "results" / f"{Path(result.image).stem}-predictions.png"
        self.run_worker(partial(self._annotate, result, out), group="annotate", exclusive=True, exit_on_error=False)

    async def _annotate(self, result: Any, out: Path) -> None:
        try:
            png, pixels = await asyncio.to_thread(_draw, Path(result.image), result.predictions, out)
        except UserError as exc:
            self.query_one(ResultsView).annotation_failed(redact(exc.one_line()))
            return
        self.post_message(AnnotationReady(png, pixels))

    def on_annotation_ready(self, message: AnnotationReady) -> None:
        self.query_one(ResultsView).show_annotation(message.png, message.pixels)
        self.wizard.record_note(f"annotated image saved to {message.png}")

    def run_finished(self, ok: bool, cancelled: bool) -> None:
        self.query_one("#test-run", Button).disabled = False
        self.query_one("#test-cancel", Button).disabled = True


def _draw(image: Path, predictions: Any, out: Path) -> tuple[Path, list]:
    from cvtriton_triton.annotate import draw_predictions, preview_pixels

    png = draw_predictions(image, predictions, out)
    return png, preview_pixels(png, 40, 28)
