"""Per-step progress for a run: status icon, bar, the latest progress message, elapsed time and ETA.

Replaceable progress messages (``Progress.can_replace``) overwrite the step's line here instead of filling
the log, which is how a long upload or training stays on one line. Elapsed time ticks once a second while a
step runs; the ETA comes from the core (``Progress.eta_s``) and is shown only when the core knows it.
"""

from __future__ import annotations

import time
from typing import Any

from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import Label, ProgressBar

from cvtriton_core.events import Event, Progress, StepFailed, StepFinished, StepStarted

ICONS = {"pending": "○", "running": "●", "done": "✔", "skipped": "✔", "failed": "✖", "cancelled": "■"}


def format_duration(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    if seconds < 60:
        return f"{seconds}s"
    minutes, secs = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


class StepRow(Vertical):
    """One core step of the run: status, title, bar and timing on one line, the latest message below."""

    def __init__(self, name: str, title: str) -> None:
        super().__init__(classes="step-row pending")
        self.step_name = name
        self.step_title = title
        self.status = "pending"
        self.started_at: float | None = None
        self.eta_s: float | None = None
        self._early: list[Any] | None = []     # events that came before the row's children were mounted

    def compose(self) -> ComposeResult:
        with Horizontal(classes="step-line"):
            yield Label(ICONS["pending"], classes="step-icon")
            yield Label(self.step_title, classes="step-title")
            yield ProgressBar(total=100, show_eta=False, classes="step-bar")
            yield Label("", classes="step-timing")
        yield Label("", classes="step-message", markup=False)   # core text: "[...]" is not markup

    def on_mount(self) -> None:
        early, self._early = self._early or [], None
        for item in early:
            if isinstance(item, tuple):
                self.stop(*item)
            else:
                self.apply(item)

    def set_status(self, status: str) -> None:
        self.remove_class(self.status)
        self.status = status
        self.add_class(status)
        self.query_one(".step-icon", Label).update(ICONS.get(status, "?"))

    def tick(self) -> None:
        if self.status != "running" or self.started_at is None:
            return
        text = f"{format_duration(time.time() - self.started_at)}"
        if self.eta_s is not None:
            text += f" · ETA {format_duration(self.eta_s)}"
        self.query_one(".step-timing", Label).update(text)

    def apply(self, event: Event) -> None:
        if self._early is not None:
            self._early.append(event)
            return
        bar = self.query_one(ProgressBar)
        message = self.query_one(".step-message", Label)
        match event:
            case StepStarted():
                self.set_status("running")
                self.started_at = event.at
                self.eta_s = None
                bar.update(total=None, progress=0)
                message.update("")
            case Progress():
                if event.fraction is not None:
                    bar.update(total=100, progress=event.fraction * 100)
                self.eta_s = event.eta_s
                if event.message:
                    message.update(event.message)
                self.tick()
            case StepFinished():
                self.set_status("skipped" if event.skipped else "done")
                bar.update(total=100, progress=100)
                message.update(("already done — " if event.skipped else "") + event.summary)
                self.query_one(".step-timing", Label).update(format_duration(event.elapsed_s))
            case StepFailed():
                self.stop("cancelled" if event.cancelled else "failed", event.message)

    def stop(self, status: str, text: str) -> None:
        """End a running row: the bar stops (no more animation), the clock stops, ``text`` says why."""
        if self._early is not None:      # not mounted yet: stop once it is
            self._early.append((status, text))
            return
        bar = self.query_one(ProgressBar)
        self.set_status(status)
        bar.update(total=100, progress=bar.progress or 0)
        if self.started_at is not None:
            self.query_one(".step-timing", Label).update(format_duration(time.time() - self.started_at))
        self.query_one(".step-message", Label).update(text)


class ProgressPanel(Vertical):
    """Rows for the steps a run will do, filled in as its events arrive."""

    DEFAULT_CSS = """
    ProgressPanel { height: auto; border: round $panel; padding: 0 1; }
    ProgressPanel .step-row { height: auto; }
    ProgressPanel .step-line { height: 1; }
    ProgressPanel .step-icon { width: 2; }
    ProgressPanel .step-title { width: auto; min-width: 12; max-width: 28; margin-right: 1;
                                text-wrap: nowrap; text-overflow: ellipsis; }
    ProgressPanel .step-bar { width: 1fr; max-width: 40; }
    ProgressPanel .step-timing { width: 16; color: $text-muted; }
    ProgressPanel .step-message { width: 1fr; height: auto; max-height: 3; padding-left: 2; color: $text-muted; }
    ProgressPanel .pending .step-message { display: none; }
    ProgressPanel .running .step-icon { color: $accent; }
    ProgressPanel .done .step-icon, ProgressPanel .skipped .step-icon { color: $success; }
    ProgressPanel .failed .step-icon, ProgressPanel .failed .step-message { color: $error; }
    ProgressPanel .cancelled .step-icon { color: $warning; }
    """

    def __init__(self, *, title: str = "Progress", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.border_title = title
        self.rows: dict[str, StepRow] = {}     # the current plan's rows (old ones may still be unmounting)

    def on_mount(self) -> None:
        self.set_interval(1.0, self._tick)

    def _tick(self) -> None:
        for row in self.rows.values():
            if row.is_mounted:
                row.tick()

    def plan(self, steps: list[tuple[str, str]]) -> None:
        """Show the steps a run is about to do, all pending."""
        self.remove_children()
        self.rows = {name: StepRow(name, title) for name, title in steps}
        self.mount_all(list(self.rows.values()))

    def row(self, name: str) -> StepRow | None:
        return self.rows.get(name)

    def apply(self, event: Event) -> None:
        row = self.row(event.step)
        if row is None:
            title = event.title if isinstance(event, StepStarted) and event.title else event.step
            row = self.rows[event.step] = StepRow(event.step, title)
            self.mount(row)
        row.apply(event)

    def cancel_running(self, text: str) -> list[str]:
        """The run was cancelled: every running row stops and says ``text``; returns their step names."""
        stopped = [name for name, row in self.rows.items() if row.status == "running"]
        for name in stopped:
            self.rows[name].stop("cancelled", text)
        return stopped

    def statuses(self) -> dict[str, str]:
        return {name: row.status for name, row in self.rows.items()}
