"""Azure target — Train & export: upload (new project), train, publish and export the chosen iteration as
ONNX in the chosen flavor, with per-step progress, elapsed time and ETA where the service lets us know it,
and the download's progress. Runs the core's Custom Vision steps."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.widgets import Button, Label, Select, Static

from cvtriton_core.adapters.customvision_types import (DEFAULT_EXPORT_FLAVOR, ONNX_FLAVOR_NOTES, ONNX_FLAVORS,
                                                       canonical_flavor)
from cvtriton_core.errors import UserError
from cvtriton_core.events import Event
from cvtriton_core.settings import save_env
from cvtriton_core.steps.registry import RunOptions
from cvtriton_tui.screens import freshness
from cvtriton_tui.screens.base import StepPane
from cvtriton_tui.screens.state import core_steps_available, customvision_available
from cvtriton_tui.widgets.event_log import EventLog
from cvtriton_tui.widgets.progress_panel import ProgressPanel

TITLES = {"project": "Create or find project", "upload": "Upload images", "train": "Train",
          "publish": "Publish iteration", "export": "Export and download ONNX"}
FLAVORS = [(f"{f} — {ONNX_FLAVOR_NOTES[f]}", f) for f in sorted(ONNX_FLAVORS, key=lambda f: f != DEFAULT_EXPORT_FLAVOR)]
UNAVAILABLE = "Custom Vision adapter not available in this build yet: training and export need it."
PUBLISH_NEEDS = ("VISION_PUBLISH_ITERATION_NAME", "VISION_PREDICTION_RESOURCE_ID")
FLAVOR = "VISION_EXPORT_FLAVOR"     # the flavour picker edits this setting (saved with Ctrl+S)
# What goes on at Custom Vision after a cancel, for the step that was interrupted (``{iteration}`` is the
# training the run state records; the next run waits for it instead of starting another).
AFTER_CANCEL = {
    "train": "Custom Vision keeps training iteration {iteration}; Run (F5) re-attaches to it instead of starting "
             "another",
    "upload": "the images sent so far stay in the project; Run (F5) sends only the rest",
    "export": "an export Custom Vision already started finishes there; Run (F5) downloads it without asking "
              "for another",
}


def can_publish(state: Any) -> bool:
    return all(state.value(name) for name in PUBLISH_NEEDS)


def plan_steps(state: Any) -> list[str]:
    """Which core steps the choice on the Project step needs (``project`` always: it resolves the ID)."""
    if state.new_project:
        steps = ["project", "upload", "train", "publish", "export"]
    elif state.iteration is not None and state.iteration.status == "Completed":
        steps = ["project", "export"]
    else:
        steps = ["project", "train", "publish", "export"]
    return [s for s in steps if s != "publish" or can_publish(state)]


class TrainPane(StepPane):
    step_id = "train"
    intro = ("Trains (when needed), publishes, and exports the iteration as an ONNX model, then downloads the "
             "export. Finished steps are not repeated when you run again.")
    needs_to_run = ("VISION_TRAINING_ENDPOINT", "VISION_TRAINING_KEY", FLAVOR, "VISION_PROJECT_TASK",
                    *PUBLISH_NEEDS)

    def compose(self) -> ComposeResult:
        yield self.heading()
        yield Static(Text(UNAVAILABLE, style="yellow"), id="train-note", classes="unavailable")
        yield Static("", id="train-plan")
        with Horizontal(classes="form-row"):
            yield Label("Export flavor", classes="row-label")
            yield Select(FLAVORS, value=self._flavor(), allow_blank=False, id="export-flavor")
        with Horizontal(classes="buttons"):
            yield Button("Run (F5)", id="train-run", variant="primary", classes="run-button")
            yield Button("Cancel (F8)", id="train-cancel", classes="cancel-button")
        yield ProgressPanel(id="train-progress")
        yield EventLog(id="train-log", title="Custom Vision log")

    def _flavor(self) -> str:
        """The VISION_EXPORT_FLAVOR setting as the picker can show it (any letter case; an invalid value shows
        the default — the Settings step names the problem and Run refuses it)."""
        return canonical_flavor(self.state.value(FLAVOR)) or DEFAULT_EXPORT_FLAVOR

    def setup(self) -> None:
        self.entered()

    def entered(self) -> None:
        self.available = customvision_available() and core_steps_available(*TITLES)
        self.query_one("#train-note").display = not self.available
        select = self.query_one("#export-flavor", Select)
        if select.value != self._flavor():
            select.value = self._flavor()      # the setting may have been edited on the Settings step
        steps = plan_steps(self.state)
        s = self.state
        if s.new_project:
            what = f"New project {s.new_name or '(unnamed)'} from {s.new_folder or '(no folder)'}"
        elif s.project is not None:
            what = f"Project {s.project.name}, " + (f"iteration {s.iteration.name}" if s.iteration else "new iteration")
        else:
            what = "No project chosen yet (Project step)"
        plan = Text(f"{what}\nWill run: " + " → ".join(TITLES[n] for n in steps))
        if "publish" not in steps and (s.new_project or s.iteration is None):
            plan.append("\nPublishing is skipped: set " + " and ".join(PUBLISH_NEEDS) + " to publish.", style="dim")
        self.query_one("#train-plan", Static).update(plan)
        panel = self.query_one(ProgressPanel)
        if not self.running and list(panel.rows) != steps:     # keep a finished run's rows on Back/Next
            panel.plan([(n, TITLES[n]) for n in steps])

    def on_select_changed(self, event: Select.Changed) -> None:
        if event.select.id == "export-flavor" and isinstance(event.value, str) and event.value != self._flavor():
            self.wizard.setting_changed(FLAVOR, event.value)

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "train-run":
            self.request_run()
        elif event.button.id == "train-cancel":
            self.wizard.action_cancel_run()

    def settings_overrides(self) -> dict[str, str]:
        s = self.state
        values: dict[str, str] = {}
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
        new = self.state.new_project
        options = RunOptions(images=Path(self.state.new_folder).expanduser() if new else None,
                             domain=(self.state.new_domain or None) if new else None)
        self.start_run(steps, options, title="Train & export")

    def handle_event(self, event: Event) -> None:
        self.query_one(ProgressPanel).apply(event)
        self.query_one(EventLog).add_event(event)

    def after_cancel(self, interrupted: list[str], values: dict[str, Any]) -> str:
        for step in interrupted:
            if step == "train" and not values.get("training_iteration"):
                return "no training had been started; nothing goes on at Custom Vision"
            if step in AFTER_CANCEL:
                return AFTER_CANCEL[step].format(iteration=values.get("training_iteration"))
        return "nothing goes on at Custom Vision"

    def quit_consequence(self) -> str:
        return "work already handed to Custom Vision (a training, an export) goes on there and Run re-attaches to it"

    def run_finished(self, ok: bool, cancelled: bool) -> None:
        if not ok:
            self.wizard.reload_settings()   # the steps write IDs back into the file as they go
            return
        # The IDs chosen here went to the run as overrides, so the steps saw nothing to write back: save
        # them as the steps do, so the next run and the headless command use them.
        saved = self.state.settings
        chosen = {k: v for k, v in self.settings_overrides().items()
                  if k in ("VISION_PROJECT_ID", "VISION_ITERATION_ID") and v and saved.raw(k) != v}
        self._persist(chosen)

    @work(group="save", exit_on_error=False, description="Saving the project and iteration IDs")
    async def _persist(self, chosen: dict[str, str]) -> None:
        try:
            if chosen:
                await asyncio.to_thread(save_env, self.state.env_file, chosen)
        except OSError as exc:
            raise UserError(f"cannot write {self.state.env_file} ({exc.strerror or type(exc).__name__})",
                            "check the folder is writable") from None
        finally:
            self.wizard.reload_settings()
        self.app.notify("Model exported. Next: Package & build (Ctrl+N).")

    def next_problem(self) -> str | None:
        status = freshness.shown_status(self.state, "train")
        if status == freshness.OUTDATED:
            return (f"the exported model is outdated ({freshness.why_outdated(self.state, 'train')}) — press "
                    "Run (F5) again")
        if status != "done":
            return "the model is not exported yet — press Run (F5) first"
        return None
