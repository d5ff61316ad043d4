"""One line of text for a core event: the single formatter behind the wizard's log views, its saved session
log and the headless printer, so the same run reads the same everywhere.

``describe_event`` returns an :class:`EventText` (plain text plus a tone the front end maps to its own styling),
or None when the event has nothing to add for that view: a replaceable progress update is shown by a progress
row in the wizard, so its log views pass ``with_replaceable_progress=False``; the headless printer keeps them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from cvtriton_core.events import (
    Event, LayerProgress, LogLine, Progress, StateChanged, StepFailed, StepFinished, StepStarted,
)

Tone = Literal["heading", "info", "ok", "warning", "error", "cancelled"]


@dataclass(frozen=True)
class EventText:
    text: str                 # the line itself, without the source prefix
    tone: Tone = "info"
    prefix: str = ""          # "[triton] " for a log line: who said it (shown dim)

    @property
    def plain(self) -> str:
        return self.prefix + self.text


def describe_event(event: Event, *, with_replaceable_progress: bool = True) -> EventText | None:
    match event:
        case LogLine(line=line, source=source, step=step, level=level):
            tone: Tone = "warning" if level == "warning" else "error" if level == "error" else "info"
            return EventText(line, tone, prefix=f"[{source or step}] ")
        case StateChanged(resource=resource, name=name, state=state, previous=previous, detail=detail):
            tone = "error" if state == "Failed" else "ok" if state in ("Succeeded", "Deleted") else "info"
            moved = f"{previous} → {state}" if previous else state
            return EventText(f"{resource} {name}: {moved}" + (f" — {detail}" if detail else ""), tone,
                             prefix="[azureml] ")
        case StepStarted(title=title, step=step):
            return EventText(f"==> {title or step}", "heading")
        case Progress(can_replace=True) if not with_replaceable_progress:
            return None
        case Progress(message=message, fraction=fraction, eta_s=eta_s):
            percent = f"{fraction * 100:5.1f}% " if fraction is not None else ""
            eta = f" (ETA {eta_s:.0f}s)" if eta_s is not None else ""
            return EventText(f"    {percent}{message}{eta}")
        case LayerProgress(status="exists", layer=layer, direction=direction, step=step):
            text = "already in the registry, not sent" if direction == "push" else "already on this machine"
            return EventText(f"layer {layer}: {text}", prefix=f"[{step}] ")
        case LayerProgress(status="done", layer=layer, direction=direction, current=current, total=total, step=step):
            moved = current if current is not None else total
            size = f" ({size_text(moved)})" if moved is not None else ""
            return EventText(f"layer {layer}: {'sent' if direction == 'push' else 'received'}{size}",
                             prefix=f"[{step}] ")
        case LayerProgress() if not with_replaceable_progress:
            return None
        case LayerProgress(layer=layer, status=status, current=current, total=total, step=step):
            amount = f" {size_text(current)}" if current is not None else ""
            amount += f" of {size_text(total)}" if total is not None and current is not None else ""
            return EventText(f"layer {layer}: {status}{amount}", prefix=f"[{step}] ")
        case StepFinished(step=step, summary=summary, skipped=skipped):
            return EventText(f"✔ {step}: {summary}" + (" (already done)" if skipped else ""), "ok")
        case StepFailed(step=step, message=message, cancelled=True):
            return EventText(f"■ {step}: {message}", "cancelled")
        case StepFailed(step=step, message=message):
            return EventText(f"✖ {step}: {message}", "error")
    return None


def size_text(count: int) -> str:
    """A byte count as people read it: MB from one megabyte on, kB below (a model repository can be a few kB)."""
    return f"{count / 1e6:.1f} MB" if count >= 1_000_000 else f"{count / 1e3:.1f} kB"
