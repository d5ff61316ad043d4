"""A live log of pipeline events: server and build output as it arrives, step starts and ends.

Each event becomes one line through the core's single formatter (``cvtriton_core.event_text.describe_event``),
the same text the headless printer and the saved session log use; this widget only maps its tone to a style.
Lines are ``rich.text.Text`` (never markup), so a log line holding ``[brackets]`` shows as is. Replaceable
progress lines are not written here (the progress panel shows them).

Lines wrap at the log's real width and are wrapped again when it changes (RichLog alone wraps at least at
its ``min_width`` of 78 columns, so a narrower pane scrolled sideways, and it never re-wraps).
"""

from __future__ import annotations

from collections import deque
from typing import Any

from rich.text import Text
from textual.events import Resize
from textual.widgets import RichLog

from cvtriton_core.event_text import EventText, describe_event
from cvtriton_core.events import Event, LogLine

TONE_STYLES = {"heading": "bold", "ok": "green", "warning": "yellow", "error": "bold red", "cancelled": "yellow",
               "info": ""}
MAX_LINES = 5000
# What Triton prints at start on a machine without a usable GPU (pinned memory, the CUDA memory pool and
# the CUDA driver helper all need one); the models still load and run on the CPU.
CPU_ONLY_MARKERS = ("CudaDriverHelper has not been initialized", "pinned_memory_manager.cc",
                    "cuda_memory_manager.cc", "CUDA driver version is insufficient", "no CUDA-capable device")
CPU_ONLY_NOTE = ("(no usable GPU on this machine: Triton's CUDA start-up warnings are hidden — it serves the "
                 "model on the CPU)")
# The same warnings from Triton in a container: the local one (run-local) or an Azure ML deployment's.
CPU_ONLY_NOTES = {
    "triton": CPU_ONLY_NOTE,
    "container": ("(no GPU given to the container: Triton's CUDA start-up warnings are hidden — it serves the "
                  "model on the CPU)"),
    "inference-server": ("(no usable GPU on the deployment's instance: Triton's CUDA start-up warnings are hidden "
                         "— it serves the model on the CPU; a GPU instance type with a CUDA image serves on the GPU)"),
}


def styled(line: EventText) -> Text:
    text = Text()
    if line.prefix:
        text.append(line.prefix, style="dim")
    text.append(line.text, style=TONE_STYLES.get(line.tone, ""))
    return text


def is_cpu_only_warning(event: Event) -> bool:
    return (isinstance(event, LogLine) and event.source in CPU_ONLY_NOTES
            and any(m in event.line for m in CPU_ONLY_MARKERS))


class EventLog(RichLog):
    """RichLog fed with core events; ``sources`` keeps only some log sources (e.g. "triton"), ``exclude``
    drops some."""

    DEFAULT_CSS = """
    EventLog { height: 1fr; min-height: 5; border: round $panel; }
    """

    def __init__(self, *, sources: tuple[str, ...] | None = None, exclude: tuple[str, ...] = (), title: str = "Log",
                 **kwargs: Any) -> None:
        super().__init__(max_lines=MAX_LINES, wrap=True, markup=False, highlight=False, min_width=1, **kwargs)
        self.sources = sources
        self.exclude = exclude
        self.border_title = title
        self.texts: deque[Text] = deque(maxlen=MAX_LINES)    # what was written, to wrap again on resize
        self._wrapped_at = 0
        self._cpu_noted: set[str] = set()      # the sources whose CUDA warnings were explained once

    def add_event(self, event: Event) -> None:
        if isinstance(event, LogLine) and (
                (self.sources is not None and event.source not in self.sources) or event.source in self.exclude):
            return
        if is_cpu_only_warning(event):
            source = event.source  # type: ignore[attr-defined]  # a LogLine
            if source not in self._cpu_noted:
                self._cpu_noted.add(source)
                self.note(CPU_ONLY_NOTES[source])
            return
        line = describe_event(event, with_replaceable_progress=False)
        if line is not None:
            self._add(styled(line))

    def note(self, text: str, style: str = "dim") -> None:
        """A line from the wizard itself (e.g. what a step will do), styled apart from service output."""
        self._add(Text(text, style=style))

    def _add(self, text: Text) -> None:
        self.texts.append(text)
        self.write(text)

    def clear(self) -> "EventLog":
        self.texts.clear()
        self._cpu_noted = set()
        super().clear()
        return self

    def on_resize(self, event: Resize) -> None:
        width = event.size.width
        if self._size_known and self._wrapped_at and width != self._wrapped_at:
            super().clear()
            for text in self.texts:
                self.write(text)
        if width:
            self._wrapped_at = width
