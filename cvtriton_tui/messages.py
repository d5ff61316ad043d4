"""Typed messages between the wizard's workers, panes and the app.

Workers never touch another pane's widgets: they post one of these and the receiver renders it. Pipeline
events are wrapped as they come from ``cvtriton_core.pipeline.run_steps``; ``run_id`` lets a pane ignore
events from a run it no longer shows.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from textual.message import Message


class PipelineEvent(Message, bubble=False):
    """One core event (StepStarted, Progress, LogLine, StepFinished, StepFailed) for the pane that started the run."""

    def __init__(self, event: Any, run_id: int) -> None:
        super().__init__()
        self.event = event
        self.run_id = run_id


class RunEnded(Message, bubble=False):
    """The run's worker is over: ``ok`` when every step finished, ``cancelled`` when the user stopped it."""

    def __init__(self, run_id: int, ok: bool, cancelled: bool = False) -> None:
        super().__init__()
        self.run_id = run_id
        self.ok = ok
        self.cancelled = cancelled


class GotoStep(Message):
    """Ask the wizard to show a step (sidebar click, palette command, Next/Back, resume)."""

    def __init__(self, step: str) -> None:
        super().__init__()
        self.step = step


class StepStatusChanged(Message):
    """A wizard step's status changed (running, done, failed, cancelled): the sidebar re-renders."""

    def __init__(self, step: str, status: str) -> None:
        super().__init__()
        self.step = step
        self.status = status


class TargetChanged(Message):
    """The user switched between the Azure and the Local target: the list of steps changes."""

    def __init__(self, target: str) -> None:
        super().__init__()
        self.target = target


class ConnectionChecked(Message):
    """The result of a per-service connection check on the Settings step."""

    def __init__(self, service: str, ok: bool, text: str) -> None:
        super().__init__()
        self.service = service
        self.ok = ok
        self.text = text


class ProjectsLoaded(Message):
    def __init__(self, projects: list[Any], domains: list[Any]) -> None:
        super().__init__()
        self.projects = projects
        self.domains = domains


class IterationsLoaded(Message):
    def __init__(self, project_id: str, iterations: list[Any]) -> None:
        super().__init__()
        self.project_id = project_id
        self.iterations = iterations


class FolderScanned(Message):
    """``plan`` is a ``cvtriton_core.image_folder.FolderPlan``."""

    def __init__(self, plan: Any) -> None:
        super().__init__()
        self.plan = plan


class SampleReady(Message):
    """The generated sample export (zip) and its sample images exist on disk."""

    def __init__(self, export: Path, images: list[Path]) -> None:
        super().__init__()
        self.export = export
        self.images = images


class AnnotationReady(Message):
    """The test image with predictions drawn was saved as ``png``; ``pixels`` is a small RGB preview."""

    def __init__(self, png: Path, pixels: list[list[tuple[int, int, int]]]) -> None:
        super().__init__()
        self.png = png
        self.pixels = pixels


class WorkFailed(Message):
    """A worker outside the pipeline failed: shown in the error modal (``message`` is one line: cause — fix)."""

    def __init__(self, title: str, message: str, details: str = "") -> None:
        super().__init__()
        self.title = title
        self.message = message
        self.details = details
