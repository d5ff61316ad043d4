"""Messages that cross the whole wizard: the app's pipeline worker talking to the pane that started a run,
and requests to the main screen. Messages that one pane or widget posts to itself live with it (e.g.
``SettingsPane.ConnectionChecked``, ``ProjectPane.ProjectsLoaded``).

Pipeline events are wrapped as they come from ``cvtriton_core.pipeline.run_steps``; ``run_id`` lets a pane
ignore events from a run it no longer shows.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from textual.message import Message

if TYPE_CHECKING:
    from cvtriton_core.events import Event


class PipelineEvent(Message, bubble=False):
    """One core event (StepStarted, Progress, LogLine, StepFinished, StepFailed) for the pane that started the run."""

    def __init__(self, event: "Event", run_id: int) -> None:
        super().__init__()
        self.event = event
        self.run_id = run_id


class RunEnded(Message, bubble=False):
    """The run's worker is over: ``ok`` when every step finished, ``cancelled`` when the user stopped it.
    ``values`` is what the run state holds at the end (e.g. the iteration a cancelled training left running)."""

    def __init__(self, run_id: int, ok: bool, cancelled: bool = False, values: dict[str, Any] | None = None) -> None:
        super().__init__()
        self.run_id = run_id
        self.ok = ok
        self.cancelled = cancelled
        self.values = values or {}


class GotoStep(Message):
    """Ask the wizard to show a step (sidebar click, palette command); it follows the same rules as Next."""

    def __init__(self, step: str) -> None:
        super().__init__()
        self.step = step


class StepsChanged(Message):
    """A step's status, or something a step's result depends on, changed: the sidebar re-renders."""
