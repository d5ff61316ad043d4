"""A timeline of provisioning states (endpoint creating → deployment creating → succeeded…), one line per
state change, built from the deploy step's progress events: a repeated state is not added twice."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.widgets import Static

from cvtriton_core.events import Event, Progress, StepFailed, StepFinished, StepStarted
from cvtriton_tui.widgets.progress_panel import format_duration


class Timeline(Static):
    DEFAULT_CSS = """
    Timeline { height: auto; min-height: 4; border: round $panel; padding: 0 1; }
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__("", **kwargs)
        self.border_title = "Provisioning"
        self.entries: list[tuple[str, str, str]] = []   # (icon, text, style)
        self.started: float | None = None

    def on_mount(self) -> None:
        self._render_entries()

    def reset(self) -> None:
        self.entries = []
        self.started = None
        self._render_entries()

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
                self._add("●", event.title, "bold", event.at)
            case Progress(message=message) if message:
                self._add("│", message, "", event.at)
            case StepFinished():
                self._add("✔", event.summary or f"{event.step} done", "green", event.at)
            case StepFailed(cancelled=True):
                self._add("■", event.message, "yellow", event.at)
            case StepFailed():
                self._add("✖", event.message, "red", event.at)

    def cancelled(self, text: str) -> None:
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
        self.update(text)
