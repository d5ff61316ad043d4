"""Typed, immutable events: the only thing the wizard and the headless command know about a run.

Every event names its ``step`` and carries a ``kind`` tag, so the same stream can be rendered in the TUI or
printed as JSON lines (``to_dict``). Text fields are redacted before an event is created (see
``StepContext``), so an event can be shown or saved as is.
"""

from __future__ import annotations

import dataclasses
import datetime
import enum
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar


@dataclass(frozen=True, kw_only=True)
class Event:
    kind: ClassVar[str] = "event"
    step: str
    at: float = field(default_factory=time.time)

    def to_dict(self) -> dict[str, Any]:
        data = {"step": self.step, "kind": self.kind}
        for f in dataclasses.fields(self):
            if f.name != "step":
                data[f.name] = _plain(getattr(self, f.name))
        return data


@dataclass(frozen=True, kw_only=True)
class StepStarted(Event):
    kind: ClassVar[str] = "started"
    title: str = ""


@dataclass(frozen=True, kw_only=True)
class Progress(Event):
    """``fraction`` is 0..1 when known; ``eta_s`` is derived from the step's elapsed time when possible.

    ``can_replace`` tells a log view that this line supersedes the previous progress line of the step.
    """

    kind: ClassVar[str] = "progress"
    message: str = ""
    fraction: float | None = None
    done: int | None = None
    total: int | None = None
    eta_s: float | None = None
    can_replace: bool = True


@dataclass(frozen=True, kw_only=True)
class LogLine(Event):
    kind: ClassVar[str] = "log"
    line: str
    source: str = ""          # "triton", "docker", "customvision"...
    level: str = "info"       # "info" | "warning" | "error"


@dataclass(frozen=True, kw_only=True)
class StateChanged(Event):
    """A cloud resource the step follows moved to another state, in the service's own words (an Azure ML
    endpoint or deployment: Creating → Succeeded | Failed; Updating; Deleting → Deleted)."""

    kind: ClassVar[str] = "state"
    resource: str             # "endpoint" | "deployment"
    name: str
    state: str
    previous: str | None = None
    detail: str = ""          # e.g. the service's reason for Failed


@dataclass(frozen=True, kw_only=True)
class LayerProgress(Event):
    """One image layer moving between the Docker daemon and a registry (push or pull): a pane keeps one row
    per ``layer`` and replaces it with each update. Statuses: "waiting", "transferring", "extracting" (pull),
    "done" (sent or received), "exists" (the other side had it: nothing sent)."""

    kind: ClassVar[str] = "layer"
    layer: str                # the layer's short id, as the daemon names it (12 hex characters)
    direction: str            # "push" | "pull"
    status: str
    current: int | None = None   # bytes moved so far (uncompressed, as the daemon counts)
    total: int | None = None     # the layer's bytes when known


@dataclass(frozen=True, kw_only=True)
class StepFinished(Event):
    kind: ClassVar[str] = "finished"
    summary: str = ""
    elapsed_s: float = 0.0
    result: Any = None        # a frozen dataclass or plain dict; the step's typed output
    skipped: bool = False     # True when the run state showed the step was already done


@dataclass(frozen=True, kw_only=True)
class StepFailed(Event):
    kind: ClassVar[str] = "failed"
    message: str              # one line: cause — fix
    details: str = ""         # redacted technical details (exception type, last log lines)
    exit_code: int = 1        # 2 = bad input, 1 = failure at run time
    cancelled: bool = False


def _plain(value: Any) -> Any:
    """Turn dataclasses, enums and paths into JSON-ready values."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, (datetime.datetime, datetime.date)):
        return value.isoformat()
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value
