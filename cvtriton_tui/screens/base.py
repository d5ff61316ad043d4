"""What every step pane shares: access to the wizard state, starting a pipeline run through the app, and
receiving only the events of its own latest run.

A pane holds no pipeline logic: it picks core step names and ``RunOptions`` from what the user entered,
asks the app to run them (``WizardApp.start_run``), and renders the events that come back.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from rich.text import Text
from textual.css.query import NoMatches
from textual.containers import VerticalScroll
from textual.widgets import Static
from textual.worker import Worker

from cvtriton_tui.messages import PipelineEvent, RunEnded
from cvtriton_tui.screens.state import STEP_TITLES, WizardState

if TYPE_CHECKING:
    from cvtriton_tui.app import WizardApp


class StepPane(VerticalScroll):
    """Base of the wizard's step panes (one per module in this package)."""

    step_id: ClassVar[str] = ""
    intro: ClassVar[str] = ""

    def __init__(self) -> None:
        super().__init__(id=self.step_id, classes="pane")
        self.run_id: int | None = None
        self.display = False   # the ContentSwitcher shows the current one (panes may mount after it ran)

    @property
    def wizard(self) -> "WizardApp":
        return self.app  # type: ignore[return-value]

    @property
    def state(self) -> WizardState:
        return self.wizard.state

    def heading(self) -> Static:
        text = Text(STEP_TITLES[self.step_id], style="bold")
        if self.intro:
            text.append("\n" + self.intro, style="")
        return Static(text, classes="pane-intro")

    def on_mount(self) -> None:
        # Panes other than the first are mounted lazily, right after the first paint. If the app is already
        # shutting down by then, their children may be gone before Mount arrives: nothing to set up.
        try:
            self.setup()
        except NoMatches:
            if self.is_attached and self.app.is_running and not self.app._exit:
                raise

    def setup(self) -> None:
        """Fill the pane once its widgets are mounted (replaces on_mount in subclasses)."""

    # hooks the main screen calls ------------------------------------------------------------------------
    def entered(self) -> None:
        """The pane became the current step (refresh what depends on other steps' choices)."""

    def next_problem(self) -> str | None:
        """Why the user cannot go on yet (one line), or None."""
        return None

    def settings_overrides(self) -> dict[str, str]:
        """Settings this pane's choices override for its runs (e.g. the endpoint name typed on Deploy)."""
        return {}

    def run_step(self) -> None:
        self.app.notify("This step has nothing to run — use Next (Ctrl+N).", severity="information")

    # runs ---------------------------------------------------------------------------------------------
    def start_run(self, names: list[str], options: Any, *, title: str) -> bool:
        run_id = self.wizard.start_run(self, names, options, title=title)
        if run_id is None:
            return False
        self.run_id = run_id
        return True

    @property
    def running(self) -> bool:
        return self.run_id is not None and self.wizard.running_run_id == self.run_id

    def on_pipeline_event(self, message: PipelineEvent) -> None:
        if message.run_id == self.run_id:
            self.handle_event(message.event)

    def on_run_ended(self, message: RunEnded) -> None:
        if message.run_id == self.run_id:
            self.run_finished(message.ok, message.cancelled)

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        self.screen.refresh_bindings()    # a pane's own worker (e.g. preparing the sample) counts as busy
        self.wizard.report_worker_error(event)

    def handle_event(self, event: Any) -> None:
        """Render one core event of this pane's run."""

    def run_finished(self, ok: bool, cancelled: bool) -> None:
        """This pane's run is over."""
