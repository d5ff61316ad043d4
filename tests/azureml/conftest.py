"""Fixtures for the Azure ML tests: one offline Azure per session (test CA, managed-identity endpoint, the
registry behind ACR's token service, the workspace's blob storage (Azurite behind the blob proxy), the Resource
Manager emulator with Docker-backed deployments), selected by the standard variables only
(``ARM_CLOUD_METADATA_URL``, ``REQUESTS_CA_BUNDLE``, ``IDENTITY_ENDPOINT``, ``IDENTITY_HEADER``, ``HTTPS_PROXY``,
``NO_PROXY``); the emulator, the proxy's counters and the storage are reset between tests. Azurite comes from
``scripts/bootstrap.sh`` (npm). Needs the Docker Engine at ``DOCKER_HOST`` and
Debian's ``docker-registry``; the stand-in Triton base image is built once and cached
(``cvtriton_standins.triton_base_image``).

One emulator serves the whole session because ``azure-ai-ml`` caches the cloud it read from
``ARM_CLOUD_METADATA_URL`` once per process.
"""

from __future__ import annotations

import io
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import docker
import numpy as np
import pytest
from PIL import Image

from cvtriton_core.pipeline import RunContext
from cvtriton_core.settings import Settings
from cvtriton_core.steps.image_steps import BuildImage, PackageImage, PushImage
from cvtriton_core.steps.local_target import ImportModel, WriteRepository
from cvtriton_standins.azure_world import AzureWorld
from cvtriton_standins.run_events import collect, failures, result_of
from cvtriton_standins.triton_base_image import ensure_base_image

SESSION = secrets.token_hex(3)
TIME_SCALE = 0.05          # probe periods and delays of the emulated deployments (10 s -> 0.5 s)
POLL_S = 0.2               # how often the steps read state and logs


@pytest.fixture(scope="session")
def docker_api() -> Any:
    try:
        api = docker.APIClient(**docker.utils.kwargs_from_env(), version="auto", timeout=300)
        api.ping()
    except Exception as exc:  # noqa: BLE001
        pytest.fail(f"no Docker daemon for the Azure ML tests ({type(exc).__name__}) — start dockerd and export "
                    "DOCKER_HOST (CI: scripts/image-services.sh)", pytrace=False)
    yield api
    for image in api.images():
        for tag in image.get("RepoTags") or []:
            if SESSION in tag:
                try:
                    api.remove_image(tag, force=True)
                except docker.errors.APIError:
                    pass
    api.close()


@pytest.fixture(scope="session")
def world(tmp_path_factory: pytest.TempPathFactory, docker_api: Any, standin_base: str):
    mp = pytest.MonkeyPatch()
    with AzureWorld(tmp_path_factory.mktemp("azure"), time_scale=TIME_SCALE) as azure:
        azure.arm.triton_image = standin_base     # Azure ML's own Triton image for no-code deployments
        for name, value in azure.env().items():
            mp.setenv(name, value)
        for name in ("AZURE_CLIENT_ID", "AZURE_TENANT_ID", "AZURE_CLIENT_SECRET", "AZUREML_CURRENT_CLOUD"):
            mp.delenv(name, raising=False)
        try:
            yield azure
        finally:
            mp.undo()
    # this world's containers only: other test runs may share the Docker daemon
    leftovers = docker_api.containers(all=True, filters={"label": f"cvtriton.standin.emulator={azure.arm.id}"})
    assert not leftovers, f"emulated deployments left containers: {[c['Names'] for c in leftovers]}"


@pytest.fixture
def azure(world: AzureWorld):
    """The session's offline Azure, emptied before the test (endpoints, faults, quota)."""
    world.arm.reset()
    world.issuer.reset()
    world.proxy.reset()
    world.empty_storage()
    world.arm.time_scale = TIME_SCALE
    world.arm.attach_registry(world.registry.login_server, world.registry.system_pull_auth_for)
    yield world
    world.arm.reset()


@pytest.fixture(scope="session")
def standin_base(docker_api: Any, request: pytest.FixtureRequest) -> str:
    cache = Path(request.config.cache.mkdir("cvtriton-standin"))
    return ensure_base_image(cache, api=docker_api, log=lambda line: print(f"[standin] {line}"))


def build_variant(api: Any, base: str, name: str, dockerfile_tail: str) -> str:
    """``FROM base`` plus a few lines, tagged ``name`` (seconds: no layer is rebuilt)."""
    dockerfile = f"FROM {base}\n{dockerfile_tail}\n".encode()
    for _ in api.build(fileobj=io.BytesIO(dockerfile), tag=name, rm=True, decode=True):
        pass
    return name


@pytest.fixture(scope="session")
def fault_images(docker_api: Any, standin_base: str) -> dict[str, str]:
    """Images that fail the way users' images do: one crashes at start, one never answers the probes."""
    return {
        "crash": build_variant(docker_api, standin_base, f"cvtriton-test/crash:{SESSION}",
                               'CMD ["sh", "-c", "echo \\"error: model repository /models not found\\"; exit 3"]'),
        "never-ready": build_variant(docker_api, standin_base, f"cvtriton-test/never-ready:{SESSION}",
                                     'CMD ["sh", "-c", "echo loading forever; exec sleep 3600"]'),
    }


@pytest.fixture
def test_image(tmp_path: Path) -> Path:
    rng = np.random.default_rng(11)
    pixels = (rng.random((240, 320, 3)) * 255).astype(np.uint8)
    pixels[40:200, 60:260] = (200, 40, 40)
    path = tmp_path / "test.jpg"
    Image.fromarray(pixels).save(path, quality=95)
    return path


@dataclass
class Work:
    """A work folder whose model is imported, written as a Triton repository, built and pushed."""

    folder: Path
    values: dict[str, str]
    model_name: str
    model_dir: Path
    image: str = ""

    def settings(self, **extra: str) -> Settings:
        return Settings({**self.values, **extra})

    def run(self, **extra: str) -> RunContext:
        return RunContext.create(self.settings(**extra), self.folder)


@pytest.fixture
def workfolder(tmp_path: Path, azure: AzureWorld, standin_base: str, pillow_wheels: Path) -> Callable[..., Any]:
    """``await workfolder(model_dir, key)``: import → repository → package → build → registry-login → push into
    the workspace's registry, as the user's run does (``push=False``: import → repository only; keyword
    arguments are more settings). Returns a :class:`Work`."""
    from cvtriton_core.steps.azureml_steps import RegistryLogin

    async def make(model_dir: Path, key: str = "m", *, endpoint: str | None = None, push: bool = True,
                   **settings: str) -> Work:
        name = f"{key}-{SESSION}"
        # no IMAGE_REGISTRY: push goes to the workspace's registry, which registry-login reads from Azure
        values = {**azure.settings(), "MODEL_NAME": name, "TRITON_BASE_IMAGE": standin_base,
                  "IMAGE_PIP_WHEELS": str(pillow_wheels), "ENDPOINT_NAME": endpoint or f"ep-{key}-{secrets.token_hex(2)}",
                  **settings}
        work = Work(tmp_path / f"work-{key}", values, name, Path(model_dir))
        steps = [ImportModel(Path(model_dir)), WriteRepository()]
        if push:
            steps += [PackageImage(), BuildImage(), RegistryLogin(), PushImage()]
        events = await collect(steps, work.run())
        assert not failures(events), [(e.message, e.details[-600:]) for e in failures(events)]
        if push:
            work.image = result_of(events, "push").reference
        return work

    return make


def same_predictions(got: list[dict], want: list[dict]) -> None:
    """Predictions in the shape ``local --json`` prints agree: labels in order, probabilities and boxes."""
    assert [p["label"] for p in got] == [p["label"] for p in want]
    np.testing.assert_allclose([p["probability"] for p in got], [p["probability"] for p in want], rtol=1e-4, atol=1e-5)
    for g, w in zip(got, want):
        assert ("box" in g) == ("box" in w)
        if "box" in w:
            np.testing.assert_allclose(list(g["box"].values()), list(w["box"].values()), atol=1e-4)


@pytest.fixture
def kit() -> Any:
    import types

    return types.SimpleNamespace(collect=collect, failures=failures, result_of=result_of, session=SESSION,
                                 poll_s=POLL_S, build_variant=build_variant, same_predictions=same_predictions)
