"""What the Custom Vision steps share: their typed results and the helpers that read and record run state.

Results hold plain values (strings, numbers, paths), so ``--json`` can print every event as is.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from cvtriton_core.adapters.customvision import CustomVisionService, IterationInfo
from cvtriton_core.adapters.customvision_types import ONNX_FLAVORS, canonical_flavor
from cvtriton_core.errors import UserError
from cvtriton_core.image_folder import FolderPlan, scan_image_folder
from cvtriton_core.pipeline import StepContext
from cvtriton_core.settings import save_env


@dataclass(frozen=True)
class ProjectResult:
    summary: str
    project_id: str
    name: str
    task: str
    domain_name: str
    created: bool
    skipped: bool = False


@dataclass(frozen=True)
class UploadResult:
    summary: str
    uploaded: int
    duplicates: int
    already_uploaded: int
    batches: int
    tags: dict[str, int]
    skipped: bool = False


@dataclass(frozen=True)
class TrainResult:
    summary: str
    iteration_id: str
    iteration_name: str
    trained: bool
    precision: float | None
    recall: float | None
    average_precision: float | None
    skipped: bool = False


@dataclass(frozen=True)
class PublishResult:
    summary: str
    iteration_id: str
    publish_name: str
    skipped: bool = False


@dataclass(frozen=True)
class ExportResult:
    summary: str
    export_dir: Path
    zip_path: Path
    flavor: str
    files: tuple[str, ...]
    reused_export: bool
    skipped: bool = False


def service_for(ctx: StepContext) -> CustomVisionService:
    return CustomVisionService.from_settings(ctx.settings, notify=ctx.logger("customvision"))


def save_ids(ctx: StepContext, **values: str) -> None:
    """Write IDs back into the .env file the run was started with (only when they changed)."""
    changes = {k: v for k, v in values.items() if (ctx.settings.get(k) or "") != v}
    if not changes:
        return
    ctx.run.settings = ctx.settings.with_values(**changes)
    if ctx.settings.path is not None:
        backup = save_env(ctx.settings.path, changes)
        kept = f" (previous file kept as {backup.name})" if backup else ""
        ctx.log(f"saved {', '.join(f'{k}={v}' for k, v in changes.items())} to {ctx.settings.path}{kept}")


def chosen_project_id(ctx: StepContext) -> str:
    project_id = ctx.state.get("project_id")
    if not project_id:
        raise UserError("no Custom Vision project chosen in this run", "run the project step first "
                        "(--steps project,...) or set VISION_PROJECT_ID")
    return project_id


def scan_folder(ctx: StepContext, images: Path, task: str | None) -> FolderPlan:
    """Scan once per run and folder (the project and upload steps both need it)."""
    folder = str(Path(images).resolve())
    plan = ctx.run.shared.get(("image_plan", folder, task))
    if plan is None:
        plan = scan_image_folder(Path(images), task)
        ctx.run.shared[("image_plan", folder, task)] = ctx.run.shared[("image_plan", folder, plan.task)] = plan
        for warning in plan.warnings:
            ctx.log(warning, level="warning")
    plan.raise_for_problems()
    return plan


async def chosen_iteration(ctx: StepContext, cv: CustomVisionService, project_id: str) -> IterationInfo:
    """The iteration to publish/export: VISION_ITERATION_ID, else this run's training, else the newest trained."""
    chosen = ctx.settings.get("VISION_ITERATION_ID") or ctx.state.get("iteration_id")
    if chosen:
        return await cv.get_iteration(project_id, chosen)
    done = [i for i in await cv.list_iterations(project_id, with_performance=False) if i.status == "Completed"]
    if not done:
        raise UserError("the project has no trained iteration", "run the train step first")
    ctx.log(f"using the newest trained iteration, {done[0].name} ({done[0].id})")
    return done[0]


def export_flavor(value: str | None) -> str | None:
    if not value:
        return None
    known = canonical_flavor(value)
    if known:
        return known
    raise UserError(f"VISION_EXPORT_FLAVOR={value} is not an ONNX export flavor Custom Vision documents",
                    "set VISION_EXPORT_FLAVOR to one of " + ", ".join(ONNX_FLAVORS))


class DownloadProgress:
    """Download progress at most ~10 times a second (called from the download thread)."""

    def __init__(self, ctx: StepContext) -> None:
        self.ctx, self.last = ctx, 0.0

    def __call__(self, done: int, total: int | None) -> None:
        now = time.monotonic()
        if now - self.last < 0.1 and done != total:
            return
        self.last = now
        of = f" of {total / 1024:.0f}" if total else ""
        self.ctx.progress(f"Downloading the export: {done / 1024:.0f}{of} KiB", done=done, total=total)
