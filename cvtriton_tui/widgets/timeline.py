"""A timeline of what a deploy (or traffic shift, or delete) went through: each step's start and end, and every
provisioning state Azure ML reported (endpoint Creating → Succeeded, deployment Creating → Failed…), one line
each with the time since the run started; a repeated line is not added twice. The step's latest progress line
("deployment blue: Creating (42 s)") is shown below them and replaced as it changes, so waiting never floods
the list."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.widgets import Static

from cvtriton_core.event_text import describe_event
from cvtriton_core.events import Event, Progress, StateChanged, StepFailed, StepFinished, StepStarted
from cvtriton_tui.widgets.progress_panel import format_duration

STATE_STYLES = {"Failed": "bold red", "Succeeded": "green", "Deleted": "green", "Canceled": "yellow"}


class Timeline(Static):
    DEFAULT_CSS = """
    Timeline { height: auto; min-height: 4; border: round $panel; padding: 0 1; }
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__("", **kwargs)
        self.border_title = "Provisioning"
        self.entries: list[tuple[str, str, str]] = []   # (icon, text, style)
        self.now = ""                                   # the running step's latest progress line
        self.started: float | None = None

    def on_mount(self) -> None:
        self._render_entries()

    def reset(self) -> None:
        self.entries = []
        self.now = ""
        self.started = None
        self._render_entries()

    @property
    def text(self) -> str:
        """What the timeline shows, as plain text (one line per entry, then the progress line)."""
        lines = [f"{icon} {line}" for icon, line, _ in self.entries]
        return "\n".join(lines + ([f"  {self.now}"] if self.now else []))

    def _add(self, icon: str, text: str, style: str = "", at: float | None = None) -> None:
        if self.entries and self.entries[-1][1].split(" (+")[0] == text:
            return
        if self.started is not None and at is not None:
            text = f"{text} (+{format_duration(at - self.started)})"
        self.entries.append((icon, text, style))
        self._render_entries()

    def apply(self, event: Event) -> None:
        match event:
            case StepStarted():
                self.started = self.started or event.at
                self.now = ""
                self._add("●", event.title, "bold", event.at)
            case StateChanged(state=state):
                line = describe_event(event)
                self._add("◆", line.text if line is not None else state, STATE_STYLES.get(state, ""), event.at)
            case Progress(message=message) if message:
                self.now = message
                self._render_entries()
            case StepFinished():
                self.now = ""
                self._add("✔", event.summary or f"{event.step} done", "green", event.at)
            case StepFailed(cancelled=True):
                self.now = ""
                self._add("■", event.message, "yellow", event.at)
            case StepFailed():      # the cause only: the pane shows the whole message (cause — fix) beside it
                self.now = ""
                self._add("✖", event.message.split(" — ", 1)[0], "red", event.at)

    def cancelled(self, text: str) -> None:
        self.now = ""
        self._add("■", text, "yellow")

    def _render_entries(self) -> None:
        if not self.entries:
            self.update(Text("Nothing deployed in this session.", style="dim"))
            return
        text = Text()
        for i, (icon, line, style) in enumerate(self.entries):
            if i:
                text.append("\n")
            text.append(f"{icon} ", style=style or "dim")
            text.append(line, style=style)
        if self.now:
            text.append(f"\n  {self.now}", style="dim italic")
        self.update(text)
