"""Package & build: import the model (checked with onnxruntime), write the Triton model repository and show
the generated ``config.pbtxt`` syntax-highlighted; for the Azure target also build the Triton image and
push it, streaming the build and push logs (once the Docker adapter provides those steps).

The config shown is always the one of the latest run: it is cleared when a run starts and stays empty when
the run fails, so a failed import never leaves the previous model's config on screen."""

from __future__ import annotations

import asyncio
from pathlib import Path

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.containers import Horizontal, VerticalScroll
from textual.message import Message
from textual.widgets import Button, Static

from cvtriton_core.errors import UserError
from cvtriton_core.events import Event, StepFinished
from cvtriton_core.layout import sample_dir
from cvtriton_core.steps.registry import RunOptions
from cvtriton_tui.screens import freshness
from cvtriton_tui.screens.base import StepPane
from cvtriton_tui.widgets.event_log import EventLog
from cvtriton_tui.widgets.progress_panel import ProgressPanel

TITLES = {"import": "Import model", "repository": "Write Triton repository", "build": "Build Triton image",
          "push": "Push image"}
NOT_WRITTEN = "Not written yet — press Package (F5)."


class PackagePane(StepPane):
    step_id = "package"
    intro = ("Imports the model, verifies it with onnxruntime and writes the Triton model repository with an "
             "explicit config.pbtxt. For Azure, the Triton image is then built and pushed to the registry.")
    needs_to_run = ("MODEL_NAME", "MODEL_VERSION")

    class SampleReady(Message):
        """The generated sample export (zip) and its sample images exist on disk."""

        def __init__(self, export: Path, images: list[Path]) -> None:
            super().__init__()
            self.export = export
            self.images = images

    def compose(self) -> ComposeResult:
        yield self.heading()
        yield Static("", id="package-source")
        yield Static("", id="docker-note", classes="unavailable")
        with Horizontal(classes="buttons"):
            yield Button("Package (F5)", id="package-run", variant="primary", classes="run-button")
            yield Button("Cancel (F8)", id="package-cancel", classes="cancel-button")
        yield ProgressPanel(id="package-progress")
        with Horizontal(id="package-bottom"):
            with VerticalScroll(id="config-box") as box:
                box.border_title = "config.pbtxt"
                yield Static(Text(NOT_WRITTEN, style="dim"), id="config-text")
            yield EventLog(id="package-log", title="Import, build and push log", exclude=("config.pbtxt",))

    def setup(self) -> None:
        self.query_one(ProgressPanel).plan([(n, TITLES[n]) for n in self.step_names()])
        self.entered()

    def step_names(self) -> list[str]:
        # The image steps (package, build, push) exist in the core but are not wired into this pane yet.
        return ["import", "repository"]

    def entered(self) -> None:
        state = self.state
        if state.target == "local":
            source = ("the sample colour classifier" if state.model_choice == "sample"
                      else state.model_path or "(no model chosen — go back to Model)")
        else:
            source = "the export downloaded by Train & export"
        self.query_one("#package-source", Static).update(Text(f"Model: {source}"))
        note = self.query_one("#docker-note", Static)
        note.display = state.target == "azure"
        note.update(Text("Building and pushing the Triton image is not wired into this pane yet: run it headless "
                         "with cvtriton-tui run --steps package,build,push. Import and repository run here.",
                         style="yellow"))
        panel = self.query_one(ProgressPanel)
        if not self.running and list(panel.rows) != self.step_names():   # keep a finished run's rows
            panel.plan([(n, TITLES[n]) for n in self.step_names()])

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "package-run":
            self.request_run()
        elif event.button.id == "package-cancel":
            self.wizard.action_cancel_run()

    def run_step(self) -> None:
        if self.wizard.busy():
            self.wizard.notify_busy()
            return
        self.query_one(EventLog).clear()
        self.query_one(ProgressPanel).plan([(n, TITLES[n]) for n in self.step_names()])
        self.show_config(None, "Being written by this run…")
        if self.state.target == "local" and self.state.model_choice == "sample":
            self.running = True
            self._sample_then_run()
        else:
            model = Path(self.state.model_path).expanduser() if self.state.target == "local" else None
            self._run(model)

    @work(group="prepare", exclusive=True, exit_on_error=False, description="Preparing the sample model")
    async def _sample_then_run(self) -> None:
        log = self.query_one(EventLog)
        log.note("Generating the sample colour classifier export…")
        dest = sample_dir(self.state.workdir)
        try:
            export, images = await asyncio.to_thread(_build_sample, dest)
        except OSError as exc:
            raise UserError(f"cannot write the sample into {dest} ({exc.strerror or type(exc).__name__})",
                            "pass a writable --workdir") from None
        finally:
            self.running = False
        self.state.sample_dir = dest
        self.post_message(self.SampleReady(export, images))
        self._run(export)

    def _run(self, model: Path | None) -> None:
        self.start_run(self.step_names(), RunOptions(model=model), title="Package")

    def on_package_pane_sample_ready(self, message: SampleReady) -> None:
        self.query_one(EventLog).note(f"Sample export: {message.export} ({len(message.images)} test images)")
        self.wizard.sample_images = message.images

    def handle_event(self, event: Event) -> None:
        self.query_one(ProgressPanel).apply(event)
        self.query_one(EventLog).add_event(event)
        if isinstance(event, StepFinished) and event.step == "repository":
            self.show_config(event.result.config_text)

    def show_config(self, text: str | None, instead: str = NOT_WRITTEN) -> None:
        """Show ``text`` highlighted, or ``instead`` when there is none (a run started, or failed)."""
        shown = self.query_one("#config-text", Static)
        if text is None:
            shown.update(Text(instead, style="dim"))
            return
        from rich.syntax import Syntax

        from cvtriton_tui.widgets.pbtxt import PbtxtLexer

        shown.update(Syntax(text, PbtxtLexer(), theme="monokai", line_numbers=True, background_color="default"))

    def run_finished(self, ok: bool, cancelled: bool) -> None:
        if ok:
            self.app.notify("Model packaged. Next: Local test (Ctrl+N).")
        elif self.state.status.get("package") != "done":
            self.show_config(None, "No config.pbtxt: the last Package run " + (
                "was cancelled" if cancelled else "failed") + " — press Package (F5) again.")

    def quit_consequence(self) -> str:
        return "the model repository is written again on the next Package run"

    def next_problem(self) -> str | None:
        status = freshness.shown_status(self.state, "package")
        if status == freshness.OUTDATED:
            return (f"the packaged model is outdated ({freshness.why_outdated(self.state, 'package')}) — press "
                    "Package (F5) again")
        if status != "done":
            return "the model is not packaged yet — press Package (F5) first"
        return None


def _build_sample(dest: Path) -> tuple[Path, list[Path]]:
    from cvtriton_triton.sample_models import build_sample_export, sample_images

    export = build_sample_export(dest)
    return Path(export), sample_images(dest)
