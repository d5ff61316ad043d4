"""Step names in pipeline order, how to build each one from the run's options, and what each leaves for later
steps.

Later stages register here too, so ``cvtriton-tui run --steps a,b`` and the wizard share one list.
Builders import their step modules lazily: importing the registry costs nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

from cvtriton_core.errors import UserError
from cvtriton_core.steps.azureml_options import AzureOptions
from cvtriton_core.steps.azureml_state import (
    SHARED_REGISTRY_AUTH, SHARED_REGISTRY_LOGIN, STATE_DEPLOYMENT, STATE_ENDPOINT, STATE_MODEL_ASSET, STATE_REGISTRY,
    STATE_SCORING_URI,
)


@dataclass(frozen=True)
class RunOptions:
    model: Path | None = None      # import step source
    image: Path | None = None      # test step image
    images: Path | None = None     # upload step folder (also decides a new project's task)
    requests: int = 5
    domain: str | None = None      # a new project's domain (id or name); default: the task's compact domain
    concurrency: int = 1           # test, endpoint-test: concurrent requests of their load tests
    ensemble: bool | None = None   # image ensemble: None follows TRITON_ENSEMBLE (repository) / what is there (test)
    time_limit_s: float | None = None   # test, endpoint-test: bound of each load test (default load_test's)
    base_image: str | None = None  # package step: FROM this instead of TRITON_BASE_IMAGE
    container_port: int | None = None  # run-local step: host port for HTTP on 127.0.0.1 (default: a free one)
    azure: AzureOptions = field(default_factory=AzureOptions)   # deploy, endpoint-test, traffic, delete
    steps: tuple[str, ...] = ()    # the run's step names (build_steps fills it): deploy checks its mode against them


def _project(o: RunOptions) -> Any:
    from cvtriton_core.steps.customvision_steps import ChooseProject
    return ChooseProject(o.images, o.domain)


def _upload(o: RunOptions) -> Any:
    from cvtriton_core.steps.customvision_steps import UploadImages
    return UploadImages(o.images)


def _train(o: RunOptions) -> Any:
    from cvtriton_core.steps.customvision_steps import TrainIteration
    return TrainIteration()


def _publish(o: RunOptions) -> Any:
    from cvtriton_core.steps.customvision_steps import PublishIteration
    return PublishIteration()


def _export(o: RunOptions) -> Any:
    from cvtriton_core.steps.customvision_steps import ExportIteration
    return ExportIteration()


def _import(o: RunOptions) -> Any:
    from cvtriton_core.steps.local_target import ImportModel
    return ImportModel(o.model)


def _repository(o: RunOptions) -> Any:
    from cvtriton_core.steps.local_target import WriteRepository
    return WriteRepository(o.ensemble)


def _package(o: RunOptions) -> Any:
    from cvtriton_core.steps.image_steps import PackageImage
    return PackageImage(o.base_image)


def _build(o: RunOptions) -> Any:
    from cvtriton_core.steps.image_steps import BuildImage
    return BuildImage()


def _push(o: RunOptions) -> Any:
    from cvtriton_core.steps.image_steps import PushImage
    return PushImage()


def _run_local(o: RunOptions) -> Any:
    from cvtriton_core.steps.image_steps import RunImage
    return RunImage(http_port=o.container_port)


def _serve_local(o: RunOptions) -> Any:
    from cvtriton_core.steps.local_target import ServeLocal
    return ServeLocal()


def _test(o: RunOptions) -> Any:
    from cvtriton_core.steps.local_target import TestModel
    # no image: one smoke request with a generated picture
    return TestModel(o.image, requests=o.requests, concurrency=o.concurrency, ensemble=o.ensemble,
                     time_limit_s=o.time_limit_s)


def _registry_login(o: RunOptions) -> Any:
    from cvtriton_core.steps.azureml_steps import RegistryLogin
    return RegistryLogin()


def _deploy(o: RunOptions) -> Any:
    from cvtriton_core.steps.azureml_steps import Deploy
    return Deploy(o.azure, run_steps=o.steps, ensemble=o.ensemble)


def _endpoint_test(o: RunOptions) -> Any:
    from cvtriton_core.steps.endpoint_test import EndpointTest
    return EndpointTest(o.image, requests=o.requests, concurrency=o.concurrency, time_limit_s=o.time_limit_s,
                        options=o.azure, ensemble=o.ensemble)


def _traffic(o: RunOptions) -> Any:
    from cvtriton_core.steps.azureml_steps import Traffic
    return Traffic(o.azure)


def _delete(o: RunOptions) -> Any:
    from cvtriton_core.steps.azureml_steps import Delete
    return Delete(o.azure)


BUILDERS: dict[str, Callable[[RunOptions], Any]] = {
    "project": _project,
    "upload": _upload,
    "train": _train,
    "publish": _publish,
    "export": _export,
    "import": _import,
    "repository": _repository,
    "package": _package,
    "build": _build,
    "registry-login": _registry_login,   # before push: it hands push the registry credential
    "push": _push,
    "run-local": _run_local,
    "serve-local": _serve_local,
    "test": _test,
    "deploy": _deploy,
    "endpoint-test": _endpoint_test,
    "traffic": _traffic,
    "delete": _delete,
}
STEP_NAMES: tuple[str, ...] = tuple(BUILDERS)

# What a step leaves for later steps: run-state values and objects in ``RunContext.shared``. When a step
# starts, fails or is cancelled, these results of that step and of every later one are dropped, so no later
# step can use a result made from an older model (the previous model's repository, a server serving it...).
# The steps' own resume records (project, iteration and export IDs, upload digests) are not results: they
# stay, so a second run repeats no work.
RESULTS: dict[str, tuple[str, ...]] = {
    "export": ("export_dir",),
    "import": ("onnx_path", "imported", "model_source"),
    "repository": ("repository", "model_name", "model_version"),
    "package": ("image_context", "image_context_digest", "image_scoring_port", "image_customvision_route"),
    "build": ("image_id", "image_ref", "image_size"),
    "registry-login": (STATE_REGISTRY, SHARED_REGISTRY_AUTH, SHARED_REGISTRY_LOGIN),
    "push": ("image_digest", "image_remote", "image_pushed"),
    "run-local": ("triton_url", "container_id", "customvision_url"),
    "serve-local": ("triton_url",),
    # Pointers to what this work folder deployed: after a failed or restarted deploy they may name an older
    # deployment (endpoint-test would test it, delete would remove it). Endpoint keys and tokens are never
    # kept (read afresh each time); the endpoints this tool created and the traffic history are records.
    "deploy": (STATE_ENDPOINT, STATE_DEPLOYMENT, STATE_SCORING_URI, STATE_MODEL_ASSET),
}


def stale_results(step: str) -> tuple[str, ...]:
    """The results that are no longer true once ``step`` starts again or fails: its own and every later step's."""
    if step not in BUILDERS:
        return ()
    later = STEP_NAMES[STEP_NAMES.index(step):]
    return tuple(key for name in later for key in RESULTS.get(name, ()))


def build_steps(names: list[str], options: RunOptions) -> list[Any]:
    if not names:
        raise UserError("no steps given", "list them, comma-separated, in this order: " + ", ".join(STEP_NAMES))
    unknown = [n for n in names if n not in BUILDERS]
    if unknown:
        raise UserError(f"unknown step {unknown[0]!r}", "choose from " + ", ".join(STEP_NAMES))
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise UserError(f"step {twice[0]!r} is listed twice", "list each step once")
    order = {name: i for i, name in enumerate(STEP_NAMES)}
    if [order[n] for n in names] != sorted(order[n] for n in names):
        raise UserError("steps are out of order", "list them in this order: " + ", ".join(STEP_NAMES))
    options = replace(options, steps=tuple(names))
    return [BUILDERS[n](options) for n in names]
