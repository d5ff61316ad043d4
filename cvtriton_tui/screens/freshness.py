"""What the step list may claim about each step: its status per target, and whether a finished result is
still the result of what is chosen now.

A step's result is *outdated* when what it ran with is no longer what the wizard would run it with: the
model, the project or iteration, a setting it reads, or the result of an earlier step it consumed (an
earlier step that ran again — or failed — since). Each run records a fingerprint of its inputs when it
starts; a later step's fingerprint includes the fingerprint of every earlier step it reads, so re-running
Package makes Local test outdated even when Package succeeds with the same model. A step is shown with ✔
only while it and every step it depends on are current.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cvtriton_tui.screens.state import WizardState

# Which earlier wizard steps' results a step consumes (steps not part of the target are ignored).
UPSTREAM: dict[str, tuple[str, ...]] = {
    "train": (),
    "package": ("train",),          # the Azure target packages the export; the Local target the chosen model
    "local-test": ("package",),
    "deploy": ("package",),
    "results": ("deploy",),
    "cleanup": (),
}
# Settings each run reads (their effective value, default applied, is part of the fingerprint).
SETTINGS_READ: dict[str, tuple[str, ...]] = {
    "train": ("VISION_TRAINING_ENDPOINT", "VISION_EXPORT_FLAVOR", "VISION_PUBLISH_ITERATION_NAME",
              "VISION_PREDICTION_RESOURCE_ID", "VISION_PROJECT_TASK", "VISION_PROJECT_DOMAIN"),
    "package": ("MODEL_NAME", "MODEL_VERSION", "TRITON_ENSEMBLE"),
    "deploy": ("AZURE_SUBSCRIPTION_ID", "AZUREML_RESOURCE_GROUP", "AZUREML_WORKSPACE", "ENDPOINT_NAME",
               "DEPLOYMENT_MODE"),
    "results": ("ENDPOINT_NAME",),
}
# Read by Package & build only when it builds the image (the registry password is a secret: never hashed here).
IMAGE_SETTINGS_READ: tuple[str, ...] = ("TRITON_BASE_IMAGE", "IMAGE_REGISTRY", "IMAGE_REGISTRY_USERNAME")
OUTDATED = "outdated"
RESTORED = "restored"     # the run token of a result found in the saved run state at start-up


@dataclass
class StepRecords:
    """Per target: each step's last status and the fingerprint its last run started with."""

    status: dict[str, dict[str, str]] = field(default_factory=lambda: {"azure": {}, "local": {}})
    ran_with: dict[str, dict[str, str]] = field(default_factory=lambda: {"azure": {}, "local": {}})
    # target -> step -> the run records of the earlier steps it consumed, as they were when it started
    consumed: dict[str, dict[str, dict[str, str]]] = field(default_factory=lambda: {"azure": {}, "local": {}})

    def statuses(self, target: str) -> dict[str, str]:
        return self.status.setdefault(target, {})

    def runs(self, target: str) -> dict[str, str]:
        return self.ran_with.setdefault(target, {})


def _steps(target: str) -> tuple[str, ...]:
    from cvtriton_tui.screens.state import AZURE_STEPS, LOCAL_STEPS

    return AZURE_STEPS if target == "azure" else LOCAL_STEPS


def _own_inputs(state: "WizardState", step: str, target: str) -> list[str]:
    settings = state.effective_settings()
    parts = [f"{name}={settings.get(name) or ''}" for name in SETTINGS_READ.get(step, ())]
    if step == "train":
        if state.new_project:
            parts += ["new", state.new_folder, state.new_name, state.new_task, state.new_domain]
        else:
            project = state.project.id if state.project is not None else settings.raw("VISION_PROJECT_ID")
            if state.iteration is not None:
                iteration = state.iteration.id
            else:   # a chosen project without an iteration trains a new one
                iteration = "" if state.project is not None else settings.raw("VISION_ITERATION_ID")
            parts += ["project", project, iteration]
    if step == "package" and target == "local":
        parts += ["sample"] if state.model_choice == "sample" else ["path", state.model_path]
    if step == "package" and target == "azure":     # no-code writes the repository without the image ensemble
        parts.append(f"DEPLOYMENT_MODE={settings.get('DEPLOYMENT_MODE') or ''}")
    if step == "package":
        from cvtriton_tui.screens.state import image_steps

        built = image_steps(state, target)
        parts += ["image", *built]
        if built:
            parts += [f"{name}={settings.get(name) or ''}" for name in IMAGE_SETTINGS_READ]
    elif step == "local-test":
        parts += ["server", state.test_server]
    elif step == "deploy":
        parts += [state.deployment_name, state.instance_type, state.instance_count, state.auth_mode, state.traffic]
    return parts


def upstream(step: str, target: str) -> tuple[str, ...]:
    return tuple(s for s in UPSTREAM.get(step, ()) if s in _steps(target))


def fingerprint(state: "WizardState", step: str, target: str | None = None) -> str:
    """The inputs ``step`` would run with now on ``target`` (default: the current one), as a short digest."""
    target = target or state.target
    runs = state.records.runs(target)
    parts = [target, step, *_own_inputs(state, step, target)]
    parts += [f"{up}<-{runs.get(up, 'never')}" for up in upstream(step, target)]
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:16]


def record_start(state: "WizardState", target: str, step: str, token: str) -> None:
    """A run of ``step`` starts now with the current inputs (``token`` tells this run from earlier ones)."""
    runs = state.records.runs(target)
    state.records.consumed.setdefault(target, {})[step] = {up: runs.get(up, "never") for up in upstream(step, target)}
    runs[step] = f"{fingerprint(state, step, target)}@{token}"


def is_current(state: "WizardState", step: str) -> bool:
    """True when ``step`` finished and its result still follows from what is chosen now."""
    target = state.target
    if state.records.statuses(target).get(step) != "done":
        return False
    ran = state.records.runs(target).get(step, "")
    if ran.split("@", 1)[0] != fingerprint(state, step):
        return False
    # an earlier step with no record at all (never run here) says nothing about this result
    statuses = state.records.statuses(target)
    return all(is_current(state, up) for up in upstream(step, target) if statuses.get(up))


def shown_status(state: "WizardState", step: str) -> str:
    """What the step list shows: running, done, failed, cancelled, outdated, or '' (not run)."""
    status = state.records.statuses(state.target).get(step, "")
    if status == "done" and not is_current(state, step):
        return OUTDATED
    return status


def why_outdated(state: "WizardState", step: str) -> str:
    """One line saying what changed since ``step`` ran (for its pane and for Next)."""
    from cvtriton_tui.screens.state import STEP_TITLES

    target = state.target
    statuses, runs = state.records.statuses(target), state.records.runs(target)
    if runs.get(step, "").startswith("stale@"):
        return "an earlier step ran again after it (the saved run state says so)"
    used = state.records.consumed.get(target, {}).get(step, {})
    for up in upstream(step, target):
        if statuses.get(up) and not is_current(state, up):
            what = {"failed": "failed", "running": "is running again", "cancelled": "was cancelled"}.get(
                statuses[up], "is outdated too")
            return f"{STEP_TITLES[up]} {what} since this step ran"
        if up in used and used[up] != runs.get(up, "never"):
            return f"{STEP_TITLES[up]} ran again since this step ran"
    return "what it ran with changed since (model, project, iteration or a setting it reads)"


def restore(state: "WizardState", target: str, statuses: dict[str, str], stale: set[str]) -> None:
    """Statuses read from the saved run state at start-up: their inputs are taken as what is chosen now,
    except for ``stale`` steps, which ran before an earlier step they depend on ran again."""
    state.records.statuses(target).update(statuses)
    runs = state.records.runs(target)
    for step in UPSTREAM:                     # in pipeline order: an earlier step's record comes first
        if step in statuses:
            if step in stale:
                runs[step] = "stale@" + RESTORED
            else:
                record_start(state, target, step, RESTORED)
