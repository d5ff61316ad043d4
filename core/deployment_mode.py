"""How a model reaches an Azure ML managed online endpoint (the ``DEPLOYMENT_MODE`` setting, ``run
--deployment-mode``, the wizard's Deploy pane), each mode with one line on what it costs and one on what it
cannot do. Import-light: settings, the step registry and the wizard read it.

* ``container``: the Triton image this tool builds (package, build, registry-login, push) runs as a custom
  container (https://learn.microsoft.com/azure/machine-learning/how-to-deploy-custom-container).
* ``no-code``: the model repository is registered as a ``triton_model`` asset and Azure ML runs its own
  Triton image on it (https://learn.microsoft.com/azure/machine-learning/how-to-deploy-with-triton).
"""

from __future__ import annotations

from dataclasses import dataclass

CONTAINER = "container"
NO_CODE = "no-code"
DEFAULT_DEPLOYMENT_MODE = CONTAINER
IMAGE_STEPS = ("package", "build", "registry-login", "push")   # what only the container mode uses


@dataclass(frozen=True)
class DeploymentMode:
    name: str
    title: str
    costs: str            # one line: what it takes
    cannot: str           # one line: what it cannot do


DEPLOYMENT_MODES: dict[str, DeploymentMode] = {
    CONTAINER: DeploymentMode(
        CONTAINER, "Custom container (this tool's Triton image)",
        "builds and pushes a Triton image (about 15 GB with the NGC base) to the workspace's registry, which "
        "the endpoint then pulls: minutes per model change, plus registry storage",
        "needs a container registry the endpoint can pull from (attached to the workspace, AcrPull)"),
    NO_CODE: DeploymentMode(
        NO_CODE, "No-code Triton (Azure ML's own Triton image)",
        "uploads only the model repository (megabytes) to the workspace's blob storage as a triton_model "
        "asset: no image build, no push, no registry",
        "no custom Triton flags or version, no python-backend models (so no image ensemble or Custom Vision "
        "route), no local endpoint in Azure ML's tools (test the same repository with the local target)"),
}


def mode_problem(value: str) -> str | None:
    """What a ``DEPLOYMENT_MODE`` value should look like, or None when it is one of the modes."""
    return None if value in DEPLOYMENT_MODES else " or ".join(DEPLOYMENT_MODES)
