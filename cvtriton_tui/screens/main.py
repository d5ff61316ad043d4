"""The wizard screen: the steps of the chosen target on the left (with their status), the current step's
pane on the right, Back/Next below. Every pane stays mounted while you move around, so nothing entered is
lost and a run keeps streaming into its pane while you look at another step."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.lazy import Lazy
from textual.screen import Screen
from textual.widgets import Button, ContentSwitcher, Footer, Header, Static

from cvtriton_tui.messages import GotoStep, StepStatusChanged, TargetChanged
from cvtriton_tui.screens.base import StepPane
from cvtriton_tui.screens.cleanup import CleanupPane
from cvtriton_tui.screens.deploy import DeployPane
from cvtriton_tui.screens.local_test import LocalTestPane
from cvtriton_tui.screens.model import ModelPane
from cvtriton_tui.screens.package import PackagePane
from cvtriton_tui.screens.project import ProjectPane
from cvtriton_tui.screens.results import ResultsPane
from cvtriton_tui.screens.settings import SettingsPane
from cvtriton_tui.screens.state import STEP_TITLES
from cvtriton_tui.screens.train import TrainPane
from cvtriton_tui.widgets.step_list import StepList

PANES = (SettingsPane, ModelPane, ProjectPane, TrainPane, PackagePane, LocalTestPane, DeployPane, ResultsPane,
         CleanupPane)


class MainScreen(Screen):
    BINDINGS = [
        Binding("ctrl+n", "next", "Next", priority=True),
        Binding("ctrl+b", "back", "Back", priority=True),
        Binding("f5", "run_step", "Run step"),
        Binding("f8", "cancel_run", "Cancel run"),
        Binding("ctrl+s", "save_settings", "Save settings", show=False),
    ]

    def compose(self) -> ComposeResult:
        state = self.app.state  # type: ignore[attr-defined]
        yield Header()
        with Horizontal(id="body"):
            yield StepList(id="steps")
            with ContentSwitcher(id="panes", initial=state.current):
                for pane in PANES:
                    # Only the current pane is mounted before the first paint; the rest follow right after
                    # (start-up time), hidden until shown.
                    yield pane() if pane.step_id == state.current else Lazy(pane())
        with Horizontal(id="nav"):
            yield Button("◀ Back", id="back", compact=True)
            yield Static("", id="nav-status")
            yield Button("Next ▶", id="next", variant="primary", compact=True)
        yield Footer()

    def on_mount(self) -> None:
        self.refresh_steps()
        self.show(self.state.current)

    @property
    def state(self):  # noqa: ANN201 - WizardState
        return self.app.state  # type: ignore[attr-defined]

    def pane(self, step: str) -> StepPane:
        return self.query_one(f"#{step}", StepPane)

    def current_pane(self) -> StepPane:
        return self.pane(self.state.current)

    def refresh_steps(self) -> None:
        self.query_one(StepList).show_steps(self.state.steps, STEP_TITLES, self.state.status, self.state.current)
        self.app.sub_title = ("Azure target" if self.state.target == "azure" else "Local target") + \
            f" · {self.state.env_file}"

    def show(self, step: str) -> None:
        steps = self.state.steps
        if step not in steps:
            step = steps[0]
        if not list(self.query(f"#{step}").results(StepPane)):   # still mounting (lazy, right after start)
            self.call_after_refresh(self.show, step)
            return
        self.state.current = step
        self.query_one(ContentSwitcher).current = step
        self.query_one(StepList).highlighted = steps.index(step)
        index = steps.index(step)
        self.query_one("#back", Button).disabled = index == 0
        self.query_one("#next", Button).disabled = index == len(steps) - 1
        self.query_one("#nav-status", Static).update(
            Text(f"Step {index + 1} of {len(steps)}: {STEP_TITLES[step]}", justify="center"))
        self.pane(step).entered()
        self.app.refresh_bindings()       # "Show secrets" is offered on the Settings step only

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """Footer: Cancel is greyed out unless work runs, Run step while it does."""
        busy = self.app.busy()  # type: ignore[attr-defined]
        if action == "cancel_run":
            return True if busy else None
        if action == "run_step":
            return None if busy else True
        return True

    def action_run_step(self) -> None:
        self.app.action_run_step()  # type: ignore[attr-defined]

    def action_cancel_run(self) -> None:
        self.app.action_cancel_run()  # type: ignore[attr-defined]

    def on_worker_state_changed(self) -> None:
        self.refresh_bindings()

    def action_save_settings(self) -> None:
        self.pane("settings").action_save()  # type: ignore[attr-defined]

    # navigation ---------------------------------------------------------------------------------------
    def action_next(self) -> None:
        steps = self.state.steps
        index = steps.index(self.state.current)
        if index >= len(steps) - 1:
            return
        problem = self.current_pane().next_problem()
        if problem:
            self.app.notify(problem, title="Not yet", severity="warning")
            return
        self.show(steps[index + 1])

    def action_back(self) -> None:
        steps = self.state.steps
        index = steps.index(self.state.current)
        if index > 0:
            self.show(steps[index - 1])

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "next":
            event.stop()
            self.action_next()
        elif event.button.id == "back":
            event.stop()
            self.action_back()

    def on_goto_step(self, message: GotoStep) -> None:
        message.stop()
        if message.step not in self.state.steps:
            self.app.notify(f"{STEP_TITLES.get(message.step, message.step)} is not part of the "
                            f"{self.state.target.title()} target.", severity="warning")
            return
        self.show(message.step)

    def on_target_changed(self, message: TargetChanged) -> None:
        message.stop()
        self.refresh_steps()
        self.show(self.state.current)

    def on_step_status_changed(self, message: StepStatusChanged) -> None:
        message.stop()
        if message.step in self.state.steps:
            number = self.state.steps.index(message.step) + 1
            self.query_one(StepList).set_status(message.step, number, STEP_TITLES[message.step], message.status)
