"""Read-only looks at Azure ML for the wizard: the endpoints this tool created (found by their tag) and one
endpoint's state, traffic split and deployments. They change nothing, so they run in plain workers beside the
runs; the SDK (seconds to import) loads in a thread so the screen never waits for it. Failures come back as
one line for the pane to show, never as an error dialog: a look is extra, the runs say what went wrong."""

from __future__ import annotations

import asyncio
import importlib
from typing import Any

from cvtriton_core.errors import UserError
from cvtriton_core.redact import redact
from cvtriton_core.steps.azureml_options import AzureOptions

WORKSPACE_SETTINGS = ("AZURE_SUBSCRIPTION_ID", "AZUREML_RESOURCE_GROUP", "AZUREML_WORKSPACE")
POLL_S = AzureOptions().poll_s      # how often the wizard's Azure ML runs read provisioning state and logs


def workspace_known(settings: Any) -> bool:
    """The settings name an Azure ML workspace (set and well-formed): only then is Azure asked anything."""
    return all(settings.get(name) for name in WORKSPACE_SETTINGS) and not settings.problems(
        "azure", names=WORKSPACE_SETTINGS)


async def _steps_module() -> Any:
    return await asyncio.to_thread(importlib.import_module, "cvtriton_core.steps.azureml_steps")


async def find_tool_endpoints(settings: Any) -> list[Any]:
    """``EndpointInfo`` of every endpoint this tool created that still exists in the workspace."""
    return await (await _steps_module()).tool_endpoints(settings)


async def read_endpoint(settings: Any, endpoint: str) -> Any:
    """``EndpointOverview`` of ``endpoint`` (its ``endpoint`` is None when it does not exist)."""
    return await (await _steps_module()).endpoint_overview(settings, endpoint)


def failure_line(exc: BaseException) -> str:
    """One line for a failed look (a UserError's cause and fix; any other error by its type and first line)."""
    if isinstance(exc, UserError):
        return redact(exc.one_line())
    first = (str(exc).strip().splitlines() or [""])[0][:160]
    return redact(f"{type(exc).__name__}: {first}" if first else type(exc).__name__)


def split_text(split: dict[str, int]) -> str:
    """``{"blue": 90, "green": 10}`` -> ``blue 90% · green 10%`` (largest share first)."""
    if not split:
        return "no deployment"
    return " · ".join(f"{name} {share}%" for name, share in sorted(split.items(), key=lambda kv: (-kv[1], kv[0])))
