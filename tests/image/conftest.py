"""Fixtures for the Triton image tests: the real Docker daemon (``DOCKER_HOST``), the stand-in Triton base
image (built once, cached by recipe hash), real registries on 127.0.0.1, and models in a work folder.

Run them with their services started and stopped around the command (CI does exactly this):

    bash scripts/image-services.sh .venv/bin/pytest tests/image

or, with a daemon you already have: ``DOCKER_HOST=unix:///path/docker.sock .venv/bin/pytest tests/image``
(the registries are then started by these fixtures). Every image a test builds is named with this
session's id and removed at the end; the session fails if any container it started is still there.
"""

from __future__ import annotations

import io
import os
import secrets
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import docker
import docker.errors
import pytest

from cvtriton_core.pipeline import RunContext
from cvtriton_core.settings import Settings
from cvtriton_core.steps.image_steps import CONTAINER_LABEL
from cvtriton_core.steps.local_target import ImportModel, WriteRepository
from cvtriton_standins.registry import LocalRegistry
from cvtriton_standins.run_events import collect, failures, result_of
from cvtriton_standins.triton_base_image import ensure_base_image

SERVICES_HINT = ("start the services the image tests use: bash scripts/image-services.sh .venv/bin/pytest "
                 "tests/image (or export DOCKER_HOST=unix:///path/to/docker.sock for a running daemon)")
SESSION = secrets.token_hex(3)          # in every image and model name a test makes: cleanup finds them


@dataclass(frozen=True)
class Registry:
    host: str
    user: str = ""
    password: str = ""


@pytest.fixture(scope="session")
def docker_api() -> Any:
    try:
        api = docker.APIClient(**docker.utils.kwargs_from_env(), version="auto", timeout=120)
        api.ping()
    except Exception as exc:  # noqa: BLE001 - any failure here means the same: no daemon for these tests
        pytest.fail(f"no Docker daemon reachable for the image tests ({type(exc).__name__}) — {SERVICES_HINT}",
                    pytrace=False)
    yield api
    try:
        leftovers = our_containers(api)
        for _ in range(3):             # children first: a base image goes once the images FROM it are gone
            for tag in session_tags(api):
                try:
                    api.remove_image(tag)
                except docker.errors.APIError:
                    pass
    finally:
        api.close()
    assert not leftovers, f"containers left behind by the image tests: {[c['Names'] for c in leftovers]}"


@pytest.fixture(scope="session")
def standin_base(docker_api: Any, request: pytest.FixtureRequest) -> str:
    """The stand-in for nvcr.io/nvidia/tritonserver (see cvtriton_standins.triton_base_image)."""
    cache = Path(request.config.cache.mkdir("cvtriton-standin"))
    return ensure_base_image(cache, api=docker_api, log=lambda line: print(f"[standin] {line}"))


@pytest.fixture(scope="session")
def registry(tmp_path_factory: pytest.TempPathFactory):
    """An open registry: the one .ci/run started (CVTRITON_TEST_REGISTRY), else one of our own."""
    if os.environ.get("CVTRITON_TEST_REGISTRY"):
        yield Registry(os.environ["CVTRITON_TEST_REGISTRY"])
        return
    with LocalRegistry(tmp_path_factory.mktemp("registry-open")) as local:
        yield Registry(local.host)


@pytest.fixture(scope="session")
def auth_registry(tmp_path_factory: pytest.TempPathFactory):
    """A registry that wants htpasswd basic auth (CVTRITON_TEST_REGISTRY_AUTH + user/password, else ours)."""
    if os.environ.get("CVTRITON_TEST_REGISTRY_AUTH"):
        yield Registry(os.environ["CVTRITON_TEST_REGISTRY_AUTH"], os.environ["CVTRITON_TEST_REGISTRY_USER"],
                       os.environ["CVTRITON_TEST_REGISTRY_PASSWORD"])
        return
    user, password = "cvtriton-test", secrets.token_urlsafe(18)
    with LocalRegistry(tmp_path_factory.mktemp("registry-auth"), users={user: password}) as local:
        yield Registry(local.host, user, password)


def import_tar_image(api: Any, name: str, files: dict[str, bytes | None], *, changes: list[str] | None = None) -> str:
    """``docker import`` a tiny filesystem ({path: bytes, or None for a folder}) as image ``name``."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for path, data in sorted(files.items()):
            info = tarfile.TarInfo(path)
            info.mtime = 946684800
            if data is None:
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(info)
            else:
                info.size, info.mode = len(data), 0o755
                tar.addfile(info, io.BytesIO(data))
    repo, tag = name.rsplit(":", 1)
    api.import_image_from_data(buffer.getvalue(), repository=repo, tag=tag, changes=changes or [])
    return name


@pytest.fixture(scope="session")
def tiny_base(docker_api: Any) -> str:
    """A few-kB base image (nothing runs in it): for tests about the build and the push, not the server."""
    return import_tar_image(docker_api, f"cvtriton-test/tiny-base:{SESSION}", {"etc/": None, "etc/tiny": SESSION.encode()})


@dataclass
class Workspace:
    """A work folder with one imported model and its repository written: ready for package/build/..."""

    workdir: Path
    model_name: str
    model_source: Path
    values: dict[str, str]

    def settings(self, **extra: str) -> Settings:
        return Settings({**self.values, **extra})

    def run(self, **extra: str) -> RunContext:
        return RunContext.create(self.settings(**extra), self.workdir)


@pytest.fixture
def workspace(tmp_path: Path, pillow_wheels: Path) -> Callable[..., Any]:
    """``await workspace(model_dir, base_image, key=..., **settings)``: import + repository done (with the image
    ensemble unless ``TRITON_ENSEMBLE="false"``; IMAGE_PIP_WHEELS set); returns a Workspace."""

    async def make(model_dir: Path, base_image: str, *, key: str = "m", **values: str) -> Workspace:
        name = f"{key}-{SESSION}"
        work = Workspace(tmp_path / f"work-{key}", name, Path(model_dir),
                         {"MODEL_NAME": name, "TRITON_BASE_IMAGE": base_image, "IMAGE_PIP_WHEELS": str(pillow_wheels),
                          **values})
        events = await collect([ImportModel(Path(model_dir)), WriteRepository()], work.run())
        assert not failures(events), [e.message for e in failures(events)]
        return work

    return make


def dangling_images(api: Any) -> set[str]:
    return {image["Id"] for image in api.images(filters={"dangling": True})}


def session_tags(api: Any) -> set[str]:
    """Tags and digests (an image pulled by digest has no tag) of the images this session made."""
    return {ref for image in api.images() for ref in (image.get("RepoTags") or []) + (image.get("RepoDigests") or [])
            if SESSION in ref}


def our_containers(api: Any) -> list[dict]:
    return api.containers(all=True, filters={"label": CONTAINER_LABEL})


@pytest.fixture
def kit() -> Any:
    """The helpers above, for test modules (pytest's importlib mode lets them import no conftest)."""
    import types

    return types.SimpleNamespace(collect=collect, failures=failures, result_of=result_of,
                                 dangling_images=dangling_images, session_tags=session_tags,
                                 our_containers=our_containers, import_tar_image=import_tar_image,
                                 session=SESSION, Registry=Registry)
