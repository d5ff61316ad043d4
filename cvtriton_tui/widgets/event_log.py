"""A live log of pipeline events: server and build output as it arrives, step starts and ends.

Lines are written as ``rich.text.Text`` (never markup), so a log line holding ``[brackets]`` shows as is.
Progress lines that may be replaced are not written here (the progress panel shows them) — only the ones a
step marks as worth keeping, so the log stays readable during a long upload.
"""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.widgets import RichLog

LEVEL_STYLES = {"warning": "yellow", "error": "bold red"}


def describe(event: Any) -> Text | None:
    """One line of text for a core event, or None when the event belongs elsewhere (replaceable progress)."""
    kind = getattr(event, "kind", "")
    if kind == "log":
        text = Text()
        text.append(f"[{event.source or event.step}] ", style="dim")
        text.append(event.line, style=LEVEL_STYLES.get(event.level, ""))
        return text
    if kind == "started":
        return Text(f"==> {event.title}", style="bold")
    if kind == "progress":
        return None if event.can_replace else Text(f"    {event.message}")
    if kind == "finished":
        note = " (already done)" if event.skipped else ""
        return Text(f"✔ {event.step}: {event.summary}{note}", style="green")
    if kind == "failed":
        return Text(f"✖ {event.step}: {event.message}", style="yellow" if event.cancelled else "bold red")
    return None


class EventLog(RichLog):
    """RichLog fed with core events; ``sources`` keeps only some log sources (e.g. "triton"), ``exclude`` drops some."""

    DEFAULT_CSS = """
    EventLog { height: 1fr; min-height: 5; border: round $panel; }
    """

    def __init__(self, *, sources: tuple[str, ...] | None = None, exclude: tuple[str, ...] = (), title: str = "Log",
                 **kwargs: Any) -> None:
        super().__init__(max_lines=5000, wrap=True, markup=False, highlight=False, **kwargs)
        self.sources = sources
        self.exclude = exclude
        self.border_title = title

    def add_event(self, event: Any) -> None:
        if getattr(event, "kind", "") == "log" and (
                (self.sources is not None and event.source not in self.sources) or event.source in self.exclude):
            return
        line = describe(event)
        if line is not None:
            self.write(line)

    def note(self, text: str, style: str = "dim") -> None:
        """A line from the wizard itself (e.g. what a step will do), styled apart from service output."""
        self.write(Text(text, style=style))
