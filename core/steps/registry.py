"""Step names in pipeline order and how to build each one from the run's options.

Later stages register here too, so ``cvtriton-tui run --steps a,b`` and the wizard share one list.
Builders import their step modules lazily: importing the registry costs nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from cvtriton_core.errors import UserError
from cvtriton_core.steps.azureml_options import AzureOptions


@dataclass(frozen=True)
class RunOptions:
    model: Path | None = None      # import step source
    image: Path | None = None      # test step image
    images: Path | None = None     # upload step folder (also decides a new project's task)
    requests: int = 5
    domain: str | None = None      # a new project's domain (id or name); default: the task's compact domain
    base_image: str | None = None  # package step: FROM this instead of TRITON_BASE_IMAGE
    container_port: int | None = None  # run-local step: host port for HTTP on 127.0.0.1 (default: a free one)
    azure: AzureOptions = field(default_factory=AzureOptions)   # deploy, endpoint-test, traffic, delete


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
    return WriteRepository()


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
    if o.image is None:
        raise UserError("the test step needs an image", "pass --image PATH")
    return TestModel(o.image, requests=o.requests)


def _registry_login(o: RunOptions) -> Any:
    from cvtriton_core.steps.azureml_steps import RegistryLogin
    return RegistryLogin()


def _deploy(o: RunOptions) -> Any:
    from cvtriton_core.steps.azureml_steps import Deploy
    return Deploy(o.azure)


def _endpoint_test(o: RunOptions) -> Any:
    from cvtriton_core.steps.endpoint_test import EndpointTest
    if o.image is None:
        raise UserError("the endpoint-test step needs an image", "pass --image PATH")
    return EndpointTest(o.image, requests=o.requests, options=o.azure)


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


def build_steps(names: list[str], options: RunOptions) -> list[Any]:
    unknown = [n for n in names if n not in BUILDERS]
    if unknown:
        raise UserError(f"unknown step {unknown[0]!r}", "choose from " + ", ".join(STEP_NAMES))
    order = {name: i for i, name in enumerate(STEP_NAMES)}
    if [order[n] for n in names] != sorted(order[n] for n in names):
        raise UserError("steps are out of order", "list them in this order: " + ", ".join(STEP_NAMES))
    return [BUILDERS[n](options) for n in names]
