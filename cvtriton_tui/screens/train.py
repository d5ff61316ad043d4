"""Azure target — Train & export: upload (new project), train, publish and export the chosen iteration as
ONNX in the chosen flavor, with per-step progress, elapsed time and ETA where the service lets us know it,
and the download's progress. Runs the core's Custom Vision steps."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.widgets import Button, Label, Select, Static

from cvtriton_core.steps.registry import RunOptions
from cvtriton_tui.screens.base import StepPane
from cvtriton_tui.screens.state import core_steps_available, customvision_available
from cvtriton_tui.widgets.event_log import EventLog
from cvtriton_tui.widgets.progress_panel import ProgressPanel

TITLES = {"project": "Create or find project", "upload": "Upload images", "train": "Train",
          "publish": "Publish iteration", "export": "Export and download ONNX"}
FLAVORS = [("ONNX — float32 (ONNX10/12)", "ONNX12"), ("ONNX10", "ONNX10"), ("ONNX16 — as the seed used", "ONNX16"),
           ("ONNXFloat16 — half precision", "ONNXFloat16")]
UNAVAILABLE = "Custom Vision adapter not available in this build yet: training and export need it."


def plan_steps(state: Any) -> list[str]:
    """Which core steps the choice on the Project step needs."""
    if state.new_project:
        return ["project", "upload", "train", "publish", "export"]
    if state.iteration is not None and state.iteration.status == "Completed":
        return ["export"]
    return ["project", "train", "publish", "export"]


class TrainPane(StepPane):
    step_id = "train"
    intro = ("Trains (when needed), publishes, and exports the iteration as an ONNX model, then downloads the "
             "export. Finished steps are not repeated when you run again.")

    def compose(self) -> ComposeResult:
        yield self.heading()
        yield Static(Text(UNAVAILABLE, style="yellow"), id="train-note", classes="unavailable")
        yield Static("", id="train-plan")
        with Horizontal(classes="form-row"):
            yield Label("Export flavor", classes="row-label")
            yield Select(FLAVORS, value=self._flavor(), allow_blank=False, id="export-flavor")
        with Horizontal(classes="buttons"):
            yield Button("Run (F5)", id="train-run", variant="primary")
            yield Button("Cancel", id="train-cancel", disabled=True)
        yield ProgressPanel(id="train-progress")
        yield EventLog(id="train-log", title="Custom Vision log")

    def _flavor(self) -> str:
        flavor = self.state.export_flavor
        return flavor if flavor in {v for _, v in FLAVORS} else "ONNX12"

    def on_mount(self) -> None:
        self.entered()

    def entered(self) -> None:
        available = customvision_available() and core_steps_available(*TITLES)
        self.query_one("#train-note").display = not available
        self.query_one("#train-run", Button).disabled = not available or self.running
        steps = plan_steps(self.state)
        s = self.state
        if s.new_project:
            what = f"New project {s.new_name or '(unnamed)'} from {s.new_folder or '(no folder)'}"
        elif s.project is not None:
            what = f"Project {s.project.name}, " + (f"iteration {s.iteration.name}" if s.iteration else "new iteration")
        else:
            what = "No project chosen yet (Project step)"
        self.query_one("#train-plan", Static).update(Text(f"{what}\nWill run: " + " → ".join(TITLES[n] for n in steps)))
        if not self.running:
            self.query_one(ProgressPanel).plan([(n, TITLES[n]) for n in steps])

    def on_select_changed(self, event: Select.Changed) -> None:
        if event.select.id == "export-flavor" and isinstance(event.value, str):
            self.state.export_flavor = event.value

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "train-run":
            self.run_step()
        elif event.button.id == "train-cancel":
            self.wizard.action_cancel_run()

    def settings_overrides(self) -> dict[str, str]:
        s = self.state
        values = {"VISION_EXPORT_FLAVOR": s.export_flavor}
        if s.new_project:
            values.update(VISION_PROJECT_NAME=s.new_name, VISION_PROJECT_ID="", VISION_ITERATION_ID="")
            if s.new_task:
                values["VISION_PROJECT_TASK"] = s.new_task
        elif s.project is not None:
            values.update(VISION_PROJECT_NAME=s.project.name, VISION_PROJECT_ID=s.project.id,
                          VISION_ITERATION_ID=s.iteration.id if s.iteration is not None else "")
        return values

    def run_step(self) -> None:
        if not (customvision_available() and core_steps_available(*TITLES)):
            self.app.notify(UNAVAILABLE, severity="warning")
            return
        steps = plan_steps(self.state)
        self.query_one(EventLog).clear()
        self.query_one(ProgressPanel).plan([(n, TITLES[n]) for n in steps])
        from pathlib import Path

        images = Path(self.state.new_folder).expanduser() if self.state.new_project else None
        if self.start_run(steps, RunOptions(images=images), title="Train & export"):
            self.query_one("#train-run", Button).disabled = True
            self.query_one("#train-cancel", Button).disabled = False

    def handle_event(self, event: Any) -> None:
        self.query_one(ProgressPanel).apply(event)
        self.query_one(EventLog).add_event(event)

    def run_finished(self, ok: bool, cancelled: bool) -> None:
        self.query_one("#train-run", Button).disabled = False
        self.query_one("#train-cancel", Button).disabled = True
        if ok:
            self.app.notify("Model exported. Next: Package & build (Ctrl+N).")

    def next_problem(self) -> str | None:
        if self.state.status.get("train") != "done":
            return "the model is not exported yet — press Run (F5) first"
        return None
