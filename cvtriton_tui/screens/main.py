"""The wizard screen: the steps of the chosen target on the left (with their status), the current step's
pane on the right, Back/Next below. Every pane stays mounted while you move around, so nothing entered is
lost and a run keeps streaming into its pane while you look at another step.

Only the current pane is built before the first paint; the others are imported and mounted right after
(start-up time). Reaching a step — Next, a click in the step list, the command palette, Resume — follows
one rule: every step before it must be complete (``next_problem``), and the settings it uses on entry must
be valid. Running a step (F5) also needs the settings its run reads; an invalid value blocks only the
steps that read it.
"""

from __future__ import annotations

import asyncio
import importlib

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.events import Resize
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Button, ContentSwitcher, Footer, Header, Static
from textual.worker import Worker

from cvtriton_tui.messages import GotoStep, StepsChanged
from cvtriton_tui.screens import freshness
from cvtriton_tui.screens.base import StepPane
from cvtriton_tui.screens.state import STEP_TITLES
from cvtriton_tui.widgets.step_list import StepList

# step -> (module, class); imported when the pane is first built
PANES: dict[str, tuple[str, str]] = {
    "settings": ("cvtriton_tui.screens.settings", "SettingsPane"),
    "model": ("cvtriton_tui.screens.model", "ModelPane"),
    "project": ("cvtriton_tui.screens.project", "ProjectPane"),
    "train": ("cvtriton_tui.screens.train", "TrainPane"),
    "package": ("cvtriton_tui.screens.package", "PackagePane"),
    "local-test": ("cvtriton_tui.screens.local_test", "LocalTestPane"),
    "deploy": ("cvtriton_tui.screens.deploy", "DeployPane"),
    "results": ("cvtriton_tui.screens.results", "ResultsPane"),
    "cleanup": ("cvtriton_tui.screens.cleanup", "CleanupPane"),
}
NARROW_BELOW = 100      # columns: the step list shows short titles below this width
STILL_STARTING = "the wizard is still starting — try again in a moment"


def build_pane(step: str) -> StepPane:
    module, name = PANES[step]
    return getattr(importlib.import_module(module), name)()


class MainScreen(Screen):
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (NARROW_BELOW, "-wide")]   # app.tcss narrows a few widths
    BINDINGS = [
        Binding("ctrl+n", "next", "Next", priority=True, show=False),     # the nav bar's buttons show these
        Binding("ctrl+b", "back", "Back", priority=True, show=False),
        Binding("f5", "run_step", "Run"),
        Binding("f8", "cancel_run", "Cancel"),
        Binding("ctrl+s", "save_settings", "Save"),
    ]

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal(id="body"):
            yield StepList(id="steps")
            with ContentSwitcher(id="panes", initial=self.state.current):
                yield build_pane(self.state.current)
        with Horizontal(id="nav"):
            yield Button("◀ Back ^B", id="back", compact=True)
            yield Static("", id="nav-status")
            yield Button("Next ^N ▶", id="next", variant="primary", compact=True)
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self._panes_in = asyncio.Event()
        self.refresh_steps()
        self.show(self.state.current)
        # a worker, not a callback: it waits for frames, which this screen paints only while it is free
        self.call_after_refresh(lambda: self.run_worker(self._mount_other_panes(), group="build",
                                                        exit_on_error=False, description="Building the wizard"))

    async def _mount_other_panes(self) -> None:
        """After the first paint: the Settings step's body, painted, then the other panes one per frame (the
        wizard answers keys in between)."""
        self._panes_started = True
        try:
            if self.has_pane("settings") and self._still_open():
                await self.pane("settings").complete()  # type: ignore[attr-defined]
            for step in PANES:
                await self._next_frame()
                if not self._still_open():
                    return
                if step != self.state.current and not self.has_pane(step):
                    await self.query_one(ContentSwitcher).mount(build_pane(step))
        finally:
            self._panes_in.set()

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        self.app.worker_state_changed(event)  # type: ignore[attr-defined]  # workers report to their node

    def _still_open(self) -> bool:
        return self.is_attached and not self.app._exit

    async def _next_frame(self) -> None:
        """Return once the screen has been refreshed (a refresh is asked for, so one comes)."""
        painted = asyncio.get_running_loop().create_future()
        self.call_after_refresh(lambda: painted.done() or painted.set_result(None))
        self.refresh()
        await painted

    async def panes_mounted(self) -> None:
        """Wait until the panes mounted after the first paint are in (the app waits before shutting down);
        returns at once when that mount has not started."""
        if getattr(self, "_panes_started", False):
            await self._panes_in.wait()

    def on_resize(self, event: Resize) -> None:
        self.query_one(StepList).narrow(event.size.width < NARROW_BELOW)

    @property
    def state(self):  # noqa: ANN201 - WizardState
        return self.app.state  # type: ignore[attr-defined]

    def pane(self, step: str) -> StepPane:
        return self.query_one(f"#{step}", StepPane)

    def has_pane(self, step: str) -> bool:
        """Is the step's pane mounted and set up (the panes after the first are built after the first paint)?"""
        return any(pane.ready for pane in self.query(f"#{step}").results(StepPane))

    def current_pane(self) -> StepPane:
        return self.pane(self.state.current)

    def refresh_steps(self) -> None:
        """Re-render the step list (statuses, outdated marks) and the current pane's outdated note."""
        state = self.state
        shown = {step: freshness.shown_status(state, step) for step in state.steps}
        self.query_one(StepList).show_steps(state.steps, STEP_TITLES, shown, state.current)
        self.app.sub_title = ("Azure target" if state.target == "azure" else "Local target") + f" · {state.env_file}"
        if self.has_pane(state.current):
            self.current_pane().show_freshness()

    def on_steps_changed(self, message: StepsChanged) -> None:
        message.stop()
        self.refresh_steps()

    def show(self, step: str) -> None:
        steps = self.state.steps
        if step not in steps:
            step = steps[0]
        if not self.has_pane(step):    # still mounting (right after start)
            self.call_after_refresh(self.show, step)
            return
        self.state.current = step
        self.query_one(ContentSwitcher).current = step
        index = steps.index(step)
        self.query_one("#back", Button).disabled = index == 0
        self.query_one("#next", Button).disabled = index == len(steps) - 1
        self.query_one("#nav-status", Static).update(
            Text(f"Step {index + 1} of {len(steps)}: {STEP_TITLES[step]}", justify="center"))
        self.pane(step).entered()
        self.refresh_steps()
        self.app.refresh_bindings()       # "Show secrets" is offered on the Settings step only

    # the one rule for reaching and running a step ---------------------------------------------------------
    def blocker(self, step: str) -> tuple[str, str] | None:
        """(where, why) when ``step`` cannot be shown yet: the first earlier step that is not complete, or a
        setting the step uses on entry; None when it can."""
        steps = self.state.steps
        if not self.has_pane(step):
            return step, STILL_STARTING
        earlier_steps = () if self.pane(step).independent else steps[:steps.index(step)]
        for earlier in earlier_steps:
            if not self.has_pane(earlier):
                return earlier, STILL_STARTING
            problem = self.pane(earlier).next_problem()
            if problem:
                return earlier, problem
        return self._settings_blocker(self.pane(step).needs_to_enter)

    def _settings_blocker(self, names: tuple[str, ...]) -> tuple[str, str] | None:
        if not names or not self.has_pane("settings"):
            return None
        problem = self.pane("settings").problem_for(names)  # type: ignore[attr-defined]
        return ("settings", problem) if problem else None

    def refuse_run(self, step: str) -> bool:
        """Say why ``step`` cannot run now (and go where it can be fixed); False when it can run."""
        found = self.blocker(step) or (self._settings_blocker(self.pane(step).needs_to_run)
                                       if self.has_pane(step) else (step, STILL_STARTING))
        if found is None:
            return False
        self._refuse(*found, doing=f"{STEP_TITLES[step]} cannot run yet")
        return True

    def _refuse(self, where: str, problem: str, *, doing: str) -> None:
        title = doing if where == self.state.current else f"{doing}: {STEP_TITLES[where]} first"
        self.app.notify(problem, title=title, severity="warning")
        if where != self.state.current and problem != STILL_STARTING:
            self.show(where)
        self.query_one(StepList).reset_cursor()
        if where == "settings" and self.has_pane("settings"):
            self.pane("settings").focus_problem()  # type: ignore[attr-defined]

    def go(self, step: str) -> bool:
        """Show ``step`` if the rule allows it; else say why and show the step to fix. True when shown."""
        found = self.blocker(step)
        if found is not None:
            self._refuse(*found, doing=f"Not yet at {STEP_TITLES[step]}")
            return False
        self.show(step)
        return True

    # footer ---------------------------------------------------------------------------------------------
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

    def action_save_settings(self) -> None:
        self.pane("settings").action_save()  # type: ignore[attr-defined]

    # navigation ---------------------------------------------------------------------------------------
    def action_next(self) -> None:
        steps = self.state.steps
        index = steps.index(self.state.current)
        if index < len(steps) - 1:
            self.go(steps[index + 1])

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
        if message.step != self.state.current:
            self.go(message.step)

    def on_settings_pane_target_changed(self, message: Message) -> None:
        """The user switched target on the Settings step: other steps, each target with its own marks."""
        message.stop()
        self.refresh_steps()
        self.show(self.state.current)
