"""The wizard's state: one object on the app that every step pane reads and writes.

Panes store what the user entered here as they change it, so Back/Next, a jump from the command palette or a
failed run never lose entered data. Nothing here imports an SDK: the state only names choices; the core's
steps do the work.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cvtriton_core.layout import local_run_dir
from cvtriton_core.settings import BY_NAME, Settings
from cvtriton_core.steps import azureml_options
from cvtriton_tui.screens.freshness import StepRecords

LOCAL_STEPS: tuple[str, ...] = ("settings", "model", "package", "local-test")
AZURE_STEPS: tuple[str, ...] = ("settings", "project", "train", "package", "local-test", "deploy", "results", "cleanup")
STEP_TITLES: dict[str, str] = {
    "settings": "Settings",
    "model": "Model",
    "project": "Project & iteration",
    "train": "Train & export",
    "package": "Package & build",
    "local-test": "Local test",
    "deploy": "Deploy",
    "results": "Test results",
    "cleanup": "Cleanup",
}
# Which wizard step shows a core pipeline step's events (sidebar status, resume target).
CORE_STEP_PANE: dict[str, str] = {
    "project": "train", "upload": "train", "train": "train", "publish": "train", "export": "train",
    "import": "package", "repository": "package", "package": "package", "build": "package", "push": "package",
    "run-local": "local-test", "serve-local": "local-test", "test": "local-test",
    "registry-login": "deploy", "deploy": "deploy", "traffic": "deploy", "endpoint-test": "results",
    "delete": "cleanup",
}
# The Deploy step's instance type choices (label, VM size), from the one list the core keeps.
INSTANCE_TYPES: tuple[tuple[str, str], ...] = tuple(
    (f"{t.name} — {t.description}", t.name) for t in azureml_options.INSTANCE_TYPES)


@dataclass
class WizardState:
    """Everything the user chose so far. ``edits`` are settings typed in the wizard but not yet saved."""

    env_file: Path
    workdir: Path
    settings: Settings
    edits: dict[str, str] = field(default_factory=dict)
    target: str = "local"                      # "local" | "azure"
    current: str = "settings"
    reveal_secrets: bool = False
    # model (local target)
    model_choice: str = "sample"               # "sample" | "path"
    model_path: str = ""
    sample_dir: Path | None = None
    # project & iteration (azure target)
    project: Any = None                        # adapters.customvision.ProjectInfo
    iteration: Any = None                      # adapters.customvision.IterationInfo
    project_filter: str = ""
    new_project: bool = False
    new_folder: str = ""
    new_name: str = ""
    new_task: str = ""
    new_domain: str = ""
    build_image: bool = False                  # local target: Package & build also builds the Triton image
    # local test
    test_server: str = "local"                 # "local" (tritonserver here) | "container" (the built image)
    image_path: str = ""
    requests: str = "20"
    concurrency: str = "1"                     # requests in flight at once during the load test
    # deploy (the endpoint name is the ENDPOINT_NAME setting)
    deployment_name: str = "blue"
    instance_type: str = azureml_options.DEFAULT_INSTANCE_TYPE
    instance_count: str = "1"
    auth_mode: str = "key"
    traffic: str = "100"
    traffic_share: str = "10"                  # the share a traffic shift gives the new deployment
    # test results (endpoint test; the image is the Local test step's)
    endpoint_requests: str = "20"
    endpoint_concurrency: str = "1"
    test_by_traffic: bool = False              # False: the deployment through its header; True: the split decides
    # cleanup
    delete_target: str = "endpoint"            # "endpoint" (with its deployments) | "deployment"
    # progress, per target: wizard step -> running|done|failed|cancelled, and what each run started with
    records: StepRecords = field(default_factory=StepRecords)
    results: dict[str, Any] = field(default_factory=dict)  # core step -> its typed result

    @classmethod
    def load(cls, env_file: Path, workdir: Path) -> "WizardState":
        settings = Settings.load(env_file)
        target = "azure" if settings.get("VISION_TRAINING_ENDPOINT") and not settings.problems("azure") else "local"
        return cls(env_file=Path(env_file), workdir=Path(workdir), settings=settings, target=target,
                   new_name=settings.get("VISION_PROJECT_NAME") or "")

    @property
    def status(self) -> dict[str, str]:
        """The current target's step statuses (each target keeps its own)."""
        return self.records.statuses(self.target)

    def effective_settings(self) -> Settings:
        """Saved settings with the wizard's unsaved edits on top: what a run started now uses."""
        return self.settings.with_values(**self.edits) if self.edits else self.settings

    def value(self, name: str) -> str:
        if name in self.edits:
            return self.edits[name]
        return self.settings.raw(name)  # the raw value, defaults are shown as placeholders

    def set_value(self, name: str, value: str) -> None:
        """A setting changed in the wizard (typed on Settings, or picked on a step that edits it): an unsaved
        edit unless it is what the file already says (an unset variable already means its default)."""
        saved = self.settings.raw(name)
        if value == saved or (not saved and value == BY_NAME[name].default):
            self.edits.pop(name, None)
        else:
            self.edits[name] = value

    @property
    def steps(self) -> tuple[str, ...]:
        return AZURE_STEPS if self.target == "azure" else LOCAL_STEPS

    @property
    def run_dir(self) -> Path:
        """The run-state folder: the headless ``local`` command uses ``<workdir>/local`` too, so runs resume
        across both front ends. Absolute, so a relative --workdir works for the local Triton too."""
        folder = local_run_dir(self.workdir) if self.target == "local" else self.workdir
        return folder.resolve()   # absolute: the local Triton gets absolute paths whatever the current folder


def deployment_mode(state: WizardState) -> str:
    """DEPLOYMENT_MODE as the run would read it (an unset variable means its default)."""
    return str(state.effective_settings().get("DEPLOYMENT_MODE") or "")


def no_code(state: WizardState, target: str | None = None) -> bool:
    """Azure target in no-code mode: Package & build writes only the repository (no image, no image ensemble)."""
    from cvtriton_core.deployment_mode import NO_CODE

    return (target or state.target) == "azure" and deployment_mode(state) == NO_CODE


def image_steps(state: WizardState, target: str | None = None) -> tuple[str, ...]:
    """The Triton image steps Package & build runs after import and repository on ``target`` (default: the
    current one): for Azure in container mode, on request for Local; push only for Azure and only with
    IMAGE_REGISTRY."""
    target = target or state.target
    if no_code(state, target) or (target != "azure" and not state.build_image):
        return ()
    return ("package", "build", "push") if target == "azure" and state.value("IMAGE_REGISTRY") else ("package", "build")


def customvision_available() -> bool:
    """True once the Custom Vision adapter module is part of this build (it is imported lazily, in workers)."""
    try:
        return importlib.util.find_spec("cvtriton_core.adapters.customvision") is not None
    except ModuleNotFoundError:
        return False


def core_steps_available(*names: str) -> bool:
    from cvtriton_core.steps.registry import STEP_NAMES

    return all(name in STEP_NAMES for name in names)
