"""Fixtures for the wizard's Pilot and snapshot tests.

Every test runs in its own temporary folder (the current directory), with relative paths for the settings
file and the work folder, so what the wizard shows — and every snapshot — is the same on every machine.
The test secrets below are the only keys these tests use; ``test_secrets.py`` checks that none of them
ever reaches a snapshot or a saved log.

There is no Azure ML here: the wizard's read-only looks at it (this tool's endpoints at start, an endpoint's
split on Deploy and Cleanup) answer from ``azure_looks`` — by default no endpoint at all — so no test reaches
out to the public cloud and every snapshot is the same. The looks against the offline Azure are tested in
``tests/azureml/test_wizard_walk.py``.
"""

from __future__ import annotations

import asyncio
import os
import secrets
from pathlib import Path
from typing import Any, Callable

import pytest

TRAINING_KEY = "Tr41n1ngK3yUs3dOnlyInTh3W1zardT3sts0001"
PREDICTION_KEY = "Pr3d1ct10nK3yUs3dOnlyInW1zardT3sts0002"
TEST_SECRETS = (TRAINING_KEY, PREDICTION_KEY)
SIZE = (120, 40)


def env_text(**values: str) -> str:
    return "".join(f"{k}={v}\n" for k, v in values.items())


@pytest.fixture
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The test's own folder as the current directory (the wizard shows relative paths)."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture
def local_env(in_tmp: Path) -> Path:
    """A settings file for the Local target (no Azure values), holding the test secrets."""
    env = in_tmp / ".env"
    env.write_text("# test settings\n" + env_text(MODEL_NAME="colours", MODEL_VERSION="1",
                                                   VISION_PREDICTION_KEY=PREDICTION_KEY), encoding="utf-8")
    return env


class AzureLooks:
    """What the wizard's Azure ML looks answer in these tests: ``endpoints`` (EndpointInfo) exist, created by
    this tool; ``calls`` counts the looks."""

    def __init__(self) -> None:
        self.endpoints: list[Any] = []
        self.deployments: dict[str, list[Any]] = {}       # endpoint -> DeploymentInfo
        self.calls: list[str] = []

    async def find(self, settings: Any) -> list[Any]:
        self.calls.append("tool_endpoints")
        return list(self.endpoints)

    async def read(self, settings: Any, endpoint: str) -> Any:
        from cvtriton_core.steps.azureml_steps import EndpointOverview

        self.calls.append(f"endpoint {endpoint}")
        found = next((e for e in self.endpoints if e.name == endpoint), None)
        return EndpointOverview(found, tuple(self.deployments.get(endpoint, ())) if found else ())


@pytest.fixture(autouse=True)
def azure_looks(monkeypatch: pytest.MonkeyPatch) -> AzureLooks:
    from cvtriton_tui.screens import azure_reads

    looks = AzureLooks()
    monkeypatch.setattr(azure_reads, "find_tool_endpoints", looks.find)
    monkeypatch.setattr(azure_reads, "read_endpoint", looks.read)
    return looks


async def wait_for(pilot, predicate: Callable[[], bool], timeout: float = 30.0, what: str = "condition") -> None:
    """Let the app run until ``predicate()`` holds (the UI keeps processing while we wait)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await pilot.pause(0.05)


async def started(pilot) -> None:
    """Let the wizard finish building itself: the first paint shows the frame and the first step's heading;
    the Settings fields and the other steps' panes are built right after it."""
    await wait_for(pilot, lambda: pilot.app.main.has_pane("cleanup"), 20, "the wizard to be built")
    await pilot.pause()


def tritonservers_for(workdir: Path) -> list[int]:
    """PIDs of tritonserver processes whose command line mentions ``workdir`` (ours, not a neighbour's)."""
    marker = str(workdir.resolve())
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if "tritonserver" in cmdline and marker in cmdline:
            pids.append(int(entry.name))
    return [p for p in pids if p != os.getpid()]


# The Triton image walks: the real Docker daemon (DOCKER_HOST) and the stand-in Triton base image.
HINT = ("start a Docker daemon for these tests: bash scripts/image-services.sh .venv/bin/pytest "
        "tests/tui/test_image_panes.py (or export DOCKER_HOST=unix:///path/to/docker.sock)")
SESSION = secrets.token_hex(3)     # in the name of every model (and so image) a walk builds


@pytest.fixture(scope="session")
def docker_api() -> Any:
    import docker
    import docker.errors

    try:
        api = docker.APIClient(**docker.utils.kwargs_from_env(), version="auto", timeout=120)
        api.ping()
    except Exception as exc:  # noqa: BLE001 - any failure means the same here: no daemon
        pytest.fail(f"no Docker daemon reachable ({type(exc).__name__}) — {HINT}", pytrace=False)
    yield api
    for image in api.images():          # the images the walks built (their model names carry SESSION)
        for tag in image.get("RepoTags") or []:
            if SESSION in tag:
                try:
                    api.remove_image(tag)
                except docker.errors.APIError:  # already gone, or still used by another test's image
                    pass
    api.close()


@pytest.fixture(scope="session")
def standin_base(docker_api: Any, request: pytest.FixtureRequest) -> str:
    """The stand-in for the official Triton image (see cvtriton_standins.triton_base_image)."""
    from cvtriton_standins.triton_base_image import ensure_base_image

    cache = Path(request.config.cache.mkdir("cvtriton-standin"))
    return ensure_base_image(cache, api=docker_api, log=lambda line: print(f"[standin] {line}"))
