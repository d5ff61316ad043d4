"""What every step pane shares: access to the wizard state, starting a pipeline run through the app,
receiving only the events of its own latest run, and the Run/Cancel buttons following the ``running``
state (buttons with the classes ``run-button`` / ``cancel-button``).

A pane holds no pipeline logic: it picks core step names and ``RunOptions`` from what the user entered,
asks the app to run them (``WizardApp.start_run``), and renders the events that come back.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from rich.text import Text
from textual.containers import Vertical, VerticalScroll
from textual.css.query import NoMatches
from textual.reactive import var
from textual.widgets import Button, Static
from textual.worker import Worker

from cvtriton_tui.messages import PipelineEvent, RunEnded
from cvtriton_tui.screens import freshness
from cvtriton_tui.screens.state import STEP_TITLES, WizardState

if TYPE_CHECKING:
    from cvtriton_core.events import Event
    from cvtriton_tui.app import WizardApp

# Queried by type name, so the Settings pane (the first paint) does not import the log and progress widgets.
PROGRESS_PANELS, EVENT_LOGS = "ProgressPanel", "EventLog"


class StepPane(VerticalScroll):
    """Base of the wizard's step panes (one per module in this package)."""

    step_id: ClassVar[str] = ""
    intro: ClassVar[str] = ""
    needs_to_enter: ClassVar[tuple[str, ...]] = ()   # settings the pane uses as soon as it is shown
    needs_to_run: ClassVar[tuple[str, ...]] = ()     # settings its run reads (blocks only this step)
    independent: ClassVar[bool] = False              # reachable without the earlier steps (uses none of them)

    running: var[bool] = var(False)       # a run (or its preparation) of this pane is under way
    available: var[bool] = var(True)      # the adapters its run needs are part of this build

    def __init__(self) -> None:
        super().__init__(id=self.step_id, classes="pane")
        self.run_id: int | None = None
        self.ready = False     # mounted and set up: safe to use
        self.display = False   # the ContentSwitcher shows the current one (panes may mount after it ran)

    @property
    def wizard(self) -> "WizardApp":
        return self.app  # type: ignore[return-value]

    @property
    def state(self) -> WizardState:
        return self.wizard.state

    def heading(self) -> Vertical:
        text = Text()
        text.append(STEP_TITLES[self.step_id], style="bold")
        if self.intro:
            text.append("\n" + self.intro, style="")
        note = Static("", classes="outdated-note")
        note.display = False
        return Vertical(Static(text), note, classes="pane-intro")

    def on_mount(self) -> None:
        # Panes other than the first are mounted right after the first paint. If the app is already
        # shutting down by then, their children may be gone before Mount arrives: nothing to set up.
        try:
            self.setup()
            self.sync_buttons()
            self.show_freshness()
            self.ready = True
        except NoMatches:
            if self.is_attached and self.app.is_running and not self.app._exit:
                raise

    def setup(self) -> None:
        """Fill the pane once its widgets are mounted (replaces on_mount in subclasses)."""

    # Run/Cancel follow the state ------------------------------------------------------------------------
    def watch_running(self) -> None:
        self.sync_buttons()

    def watch_available(self) -> None:
        self.sync_buttons()

    def sync_buttons(self) -> None:
        for button in self.query(".run-button").results(Button):
            button.disabled = self.running or not self.available
        for button in self.query(".cancel-button").results(Button):
            button.disabled = not self.running

    # hooks the main screen calls ------------------------------------------------------------------------
    def entered(self) -> None:
        """The pane became the current step (refresh what depends on other steps' choices)."""

    def next_problem(self) -> str | None:
        """Why the user cannot go past this step yet (one line), or None."""
        return None

    def show_freshness(self) -> None:
        """Say on the pane when its result is outdated (the step list shows ↻)."""
        notes = list(self.query(".outdated-note").results(Static))
        if not notes:
            return
        outdated = freshness.shown_status(self.state, self.step_id) == freshness.OUTDATED
        notes[0].display = outdated
        if outdated:
            notes[0].update(Text(f"↻ Outdated: {freshness.why_outdated(self.state, self.step_id)} — run this "
                                 "step again (F5).", style="bold yellow"))

    def settings_overrides(self) -> dict[str, str]:
        """Settings this pane's choices override for its runs (e.g. the project picked on the Project step)."""
        return {}

    def request_run(self) -> None:
        """F5, the pane's Run button, Retry and Resume: run the step if nothing before it blocks it."""
        if self.wizard.main.refuse_run(self.step_id):
            return
        self.run_step()

    def run_step(self) -> None:
        self.app.notify("This step has nothing to run — use Next (Ctrl+N).", severity="information")

    def retry_run(self) -> None:
        """Retry in the error modal of a failed run: run it again (a pane with several kinds of run repeats
        the one that failed)."""
        self.request_run()

    # runs ---------------------------------------------------------------------------------------------
    def start_run(self, names: list[str], options: Any, *, title: str, record: bool = True) -> bool:
        run_id = self.wizard.start_run(self, names, options, title=title, record=record)
        if run_id is None:
            return False
        self.run_id = run_id
        self.running = True
        return True

    def on_pipeline_event(self, message: PipelineEvent) -> None:
        if message.run_id == self.run_id:
            self.handle_event(message.event)

    def on_run_ended(self, message: RunEnded) -> None:
        if message.run_id != self.run_id:
            return
        self.running = False
        if message.cancelled:
            self.show_cancelled(message.values)
        self.run_finished(message.ok, message.cancelled)

    def show_cancelled(self, values: dict[str, Any]) -> None:
        """The run was cancelled (F8, or quitting): its progress rows stop and say so, and the log says
        what, if anything, goes on without us."""
        panels: list[Any] = list(self.query(PROGRESS_PANELS))
        running = [name for panel in panels for name, status in panel.statuses().items() if status == "running"]
        after = self.after_cancel(running, values)
        for panel in panels:
            panel.cancel_running(f"cancelled — {after}")
        log: Any = next(iter(self.query(EVENT_LOGS)), None)
        if log is not None:
            log.note(f"■ cancelled — {after}", style="yellow")
        self.wizard.record_note(f"{STEP_TITLES[self.step_id]} cancelled: {after}")

    def after_cancel(self, interrupted: list[str], values: dict[str, Any]) -> str:
        """What is true after a cancel, for the steps ``interrupted`` mid-way (one line)."""
        return "nothing was left running"

    def quit_consequence(self) -> str:
        """What quitting while this pane's run is under way means for that work (the quit dialog says it)."""
        return "it stops cleanly"

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        self.wizard.worker_state_changed(event)   # workers report to the node that started them

    def handle_event(self, event: "Event") -> None:
        """Render one core event of this pane's run."""

    def run_finished(self, ok: bool, cancelled: bool) -> None:
        """This pane's run is over."""
