"""The Triton image: package (build context + Dockerfile), build, push, and run the built image locally.

Steps, in pipeline order after ``repository``: ``package`` → ``build`` → ``push`` → ``run-local``; the
``test`` step then sends the test image to the container (``ctx.run.shared["triton_url"]``).

What a pane can show: every build output line is a ``LogLine`` (source ``docker``), each build step a
``Progress`` (``done``/``total`` = step N of M); every layer of a push or a base-image pull is a
``LayerProgress`` (one row per layer) plus an overall ``Progress`` in bytes; the container's output is a
``LogLine`` (source ``container``). Results carry the Dockerfile, the image id, the pushed digest and the
bytes sent against the image's size.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import hashlib
import importlib.metadata
import secrets
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable
from urllib.parse import quote

from cvtriton_core.errors import StepFailed, UserError
from cvtriton_core.events import LayerProgress
from cvtriton_core.pipeline import StepContext
from cvtriton_core.redact import register_secret
from cvtriton_core.settings import Settings
from cvtriton_core.steps.azureml_state import SHARED_REGISTRY_AUTH, STATE_REGISTRY

SHM_SIZE = 256 * 1024 * 1024     # /dev/shm for the python backend's tensors (Docker's default is 64 MB)
READY_TIMEOUT_S = 180.0
CONTAINER_LABEL = "io.cvtriton.role"
WORKDIR_LABEL = "io.cvtriton.workdir"
_LAYER_EVENT_INTERVAL_S = 0.2    # at most five updates a second per layer (the daemon sends far more)


def tool_version() -> str:
    try:
        return importlib.metadata.version("cvtriton-tui")
    except importlib.metadata.PackageNotFoundError:
        return "0+unknown"


# ------------------------------------------------------------------------------------------------ results
@dataclass(frozen=True)
class PackageResult:
    summary: str
    context_dir: Path          # Dockerfile + model_repository/: build it with any tool
    context_tar: Path
    context_digest: str
    dockerfile: str
    image_ref: str             # cvtriton/<model>:<version>-<digest>
    base_image: str
    labels: dict[str, str]
    files: tuple[str, ...]
    scoring_port: int                  # the port a deployment's liveness/readiness/scoring routes point at
    customvision_route: str | None     # POST path of the Custom Vision route, when the image serves it


@dataclass(frozen=True)
class BuildStepResult:
    number: int
    instruction: str
    cached: bool


@dataclass(frozen=True)
class BuildResult:
    summary: str
    image_id: str
    image_ref: str
    size: int                  # bytes (uncompressed, all layers)
    steps: tuple[BuildStepResult, ...]
    cached_steps: int
    base_image: str


@dataclass(frozen=True)
class PushResult:
    summary: str
    reference: str             # <registry>/<repo>@sha256:... (what a deployment should use)
    tag_ref: str               # <registry>/<repo>:<tag>
    digest: str
    bytes_sent: int
    image_size: int
    layers_sent: int
    layers_total: int


@dataclass(frozen=True)
class RunResult:
    summary: str
    container_id: str
    container_name: str
    image_id: str
    url: str                   # host:port of the HTTP endpoint, for tritonclient
    ports: dict[int, int]      # container port -> host port on 127.0.0.1
    customvision_url: str | None = None   # host:port of the Custom Vision route (and /v2), when the image has it


def _mb(count: int) -> str:
    return f"{count / 1e6:.1f} MB"


def _size(count: int) -> str:
    return _mb(count) if count >= 100_000 else f"{count / 1e3:.1f} kB"


# ------------------------------------------------------------------------------------------------ package
class PackageImage:
    name = "package"
    title = "Package the Triton image (Dockerfile + context)"

    def __init__(self, base_image: str | None = None, *, pip_wheels: Path | None = None) -> None:
        self.base_image = base_image
        self.pip_wheels = pip_wheels        # None: the IMAGE_PIP_WHEELS setting (a folder with Pillow wheels)

    async def run(self, ctx: StepContext) -> PackageResult:
        from cvtriton_triton.image_context import ImageSpec, check_image_reference, write_build_context

        repo, model, version = (ctx.state.get(k) for k in ("repository", "model_name", "model_version"))
        if not repo or not model or not version:
            raise UserError("no model repository in this run", "run the repository step first")
        if self.base_image:
            base, source = self.base_image, "--base-image"
        else:
            ctx.settings.require_valid("TRITON_BASE_IMAGE")
            base, source = ctx.settings["TRITON_BASE_IMAGE"], "TRITON_BASE_IMAGE"
        problem = check_image_reference(base)
        if problem:
            raise UserError(f"{source} '{base}' is not a valid image reference", f"use {problem}")
        wheels = self.pip_wheels or (Path(ctx.settings.raw(WHEELS_SETTING)).expanduser()
                                     if ctx.settings.raw(WHEELS_SETTING) else None)
        spec = ImageSpec(base_image=base, model_name=model, model_version=str(version),
                         tool_version=tool_version(), labels=_source_labels(ctx), pip_wheels=wheels)
        context = await ctx.blocking(write_build_context, Path(repo) / model, ctx.workdir / "image", spec)
        for line in context.dockerfile.splitlines():
            ctx.log(line, source="Dockerfile")
        _log_front(ctx, context, wheels)
        ctx.state.set(image_context=context.tar_path, image_context_digest=context.digest,
                      image_name=context.repository, image_tag=context.tag, image_base=base,
                      image_scoring_port=context.scoring_port,
                      image_customvision_route=context.front.route if context.front else None)
        extra = f"; Custom Vision route on port {context.scoring_port}" if context.front else ""
        return PackageResult(
            summary=f"{context.folder}: Dockerfile FROM {base} + {len(context.files) - 1} files "
                    f"({_size(context.size)}); image {context.image_ref}{extra}",
            context_dir=context.folder, context_tar=context.tar_path, context_digest=context.digest,
            dockerfile=context.dockerfile, image_ref=context.image_ref, base_image=base,
            labels=dict(context.labels), files=context.files, scoring_port=context.scoring_port,
            customvision_route=context.front.route if context.front else None)


#: A folder with Pillow wheels for the image's Python: the image installs Pillow from them, with no network.
WHEELS_SETTING = "IMAGE_PIP_WHEELS"


def _log_front(ctx: StepContext, context: Any, wheels: Path | None) -> None:
    from cvtriton_triton.image_context import pillow_requirement

    front = context.front
    if front is None:
        if wheels:
            ctx.log(f"{WHEELS_SETTING} is not used: the repository has no image ensemble, so the image needs no "
                    "Pillow", level="warning")
        return
    ctx.log(f"the image serves the Custom Vision route on port {context.scoring_port}: POST {front.route} "
            f"(project {front.project}, published name '{front.published_name}'); Triton's /v2 API answers on "
            f"the same port — point a deployment's liveness, readiness and scoring routes at port "
            f"{context.scoring_port}")
    if front.wheels:
        ctx.log(f"Pillow for the ensemble: {pillow_requirement()} from {len(front.wheels)} wheel(s) in {wheels} "
                "(the build needs no network)")
    else:
        ctx.log(f"Pillow for the ensemble: kept if the base image has it, else pip installs {pillow_requirement()} "
                f"from the package index during the build (Docker's configured proxy applies; with no network, "
                f"set {WHEELS_SETTING} to a folder with the wheel)")


def _source_labels(ctx: StepContext) -> dict[str, str]:
    """Project and iteration labels, only when the imported model is this run's Custom Vision export."""
    from cvtriton_triton.image_context import LABEL_PREFIX

    source, export_dir = ctx.state.get("model_source"), ctx.state.get("export_dir")
    if not source or not export_dir or Path(source).resolve() != Path(export_dir).resolve():
        return {}
    values = {"source.project": ctx.state.get("project_id"), "source.project-name": ctx.state.get("project_name"),
              "source.iteration": ctx.state.get("export_iteration"),
              "source.export-flavor": ctx.state.get("export_flavor")}
    return {LABEL_PREFIX + key: str(value) for key, value in values.items() if value}


# ------------------------------------------------------------------------------------------------ build
class BuildImage:
    name = "build"
    title = "Build the Triton image"

    async def run(self, ctx: StepContext) -> BuildResult:
        from cvtriton_core.adapters.docker_engine import BuildStep, DockerEngine, Stopper

        tar = ctx.state.get("image_context")
        name, tag, base = ctx.state.get("image_name"), ctx.state.get("image_tag"), ctx.state.get("image_base")
        if not tar or not name or not tag or not base:
            raise UserError("no build context in this run", "run the package step first")
        digest = await ctx.blocking(_file_digest, Path(tar))
        if digest != ctx.state.get("image_context_digest"):
            raise UserError(f"the build context {tar} is missing or changed since it was packaged",
                            "run the package step again")
        ref = f"{name}:{tag}"
        engine = await ctx.blocking(DockerEngine.connect)
        stopper = Stopper()
        try:
            if await ctx.blocking(engine.image, base) is None:
                ctx.log(f"base image {base} is not on this machine: pulling it first", source="docker")
                layers = _LayerReporter(ctx, "pull")
                await _interruptible(ctx, stopper, engine.pull_base, base, on_layer=layers.update, stopper=stopper)
            previous = await ctx.blocking(engine.image, ref)
            say = ctx.logger("docker")

            def on_step(step: BuildStep, total: int) -> None:
                ctx.progress(f"step {step.number}/{total}: {step.instruction}", done=step.number - 1, total=total)

            outcome = await _interruptible(ctx, stopper, engine.build, Path(tar), ref, on_line=say,
                                           on_step=on_step, stopper=stopper)
            info = await ctx.blocking(engine.image, outcome.image_id) or {}
            if previous and previous.get("Id") != outcome.image_id:      # the tag moved: drop the orphan
                old = await ctx.blocking(engine.image, previous["Id"])
                if old is not None and not old.get("RepoTags") and await ctx.blocking(engine.remove_image, previous["Id"]):
                    ctx.log(f"removed the previous untagged image {previous['Id'][7:19]}", source="docker")
        finally:
            await ctx.blocking(engine.close)
        steps = tuple(BuildStepResult(s.number, s.instruction, s.cached) for s in outcome.steps)
        cached = sum(1 for s in steps if s.cached)
        size = int(info.get("Size") or 0)
        ctx.state.set(image_id=outcome.image_id, image_ref=ref, image_size=size)
        ctx.run.shared["image_id"] = outcome.image_id
        reused = f"{cached} of {len(steps) - 1} steps from cache" if len(steps) > 1 else "no cache"
        return BuildResult(summary=f"built {ref} ({outcome.image_id[7:19]}, {_size(size)}; {reused})",
                           image_id=outcome.image_id, image_ref=ref, size=size, steps=steps,
                           cached_steps=cached, base_image=base)


def _file_digest(path: Path) -> str | None:
    if not path.is_file():
        return None
    h = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            h.update(block)
    return f"sha256:{h.hexdigest()}"


async def _interruptible(ctx: StepContext, stopper: Any, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
    """Run a blocking stream in a thread; on cancellation stop it (the daemon abandons the operation)."""
    task = asyncio.ensure_future(ctx.blocking(fn, *args, **kwargs))
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        stopper.stop()
        with contextlib.suppress(BaseException):
            await asyncio.wait_for(task, timeout=30)   # the thread returns at once once its socket is shut
        raise


class _LayerReporter:
    """Turns the adapter's layer updates into throttled ``LayerProgress`` events and an overall ``Progress``."""

    def __init__(self, ctx: StepContext, direction: str) -> None:
        self.ctx = ctx
        self.direction = direction
        self.current: dict[str, int] = {}
        self.total: dict[str, int] = {}
        self.status: dict[str, str] = {}
        self.last_sent: dict[str, float] = {}
        self.last_overall = 0.0

    def update(self, update: Any) -> None:
        layer, status = update.layer, update.status
        if update.current is not None:
            self.current[layer] = update.current
        if update.total:
            self.total[layer] = update.total
        changed = self.status.get(layer) != status
        self.status[layer] = status
        now = time.monotonic()
        total = self.total.get(layer)
        current = self.current.get(layer) if status == "transferring" else None
        if status == "done":
            current = total or self.current.get(layer)
        if current is not None and total:
            current = min(current, total)      # the daemon counts tar headers too: keep bars within 100 %
        if changed or now - self.last_sent.get(layer, 0.0) >= _LAYER_EVENT_INTERVAL_S:
            self.last_sent[layer] = now
            self.ctx.emit(LayerProgress(step=self.ctx.step, layer=layer, direction=self.direction, status=status,
                                        current=current, total=total))
        if changed or now - self.last_overall >= _LAYER_EVENT_INTERVAL_S:
            self.last_overall = now
            self._overall()

    def _moved(self, layer: str) -> int:
        total = self.total.get(layer)
        if self.status[layer] == "done":
            return total or self.current.get(layer, 0)
        current = self.current.get(layer, 0)
        return min(current, total) if total else current

    def _overall(self) -> None:
        moving = [layer for layer, status in self.status.items() if status not in ("exists", "waiting")]
        total = sum(self.total.get(layer, 0) for layer in moving)
        done = sum(self._moved(layer) for layer in moving)
        ready = sum(1 for status in self.status.values() if status in ("done", "exists"))
        verb = "sent" if self.direction == "push" else "received"
        self.ctx.progress(f"{_size(done)}{f' of {_size(total)}' if total else ''} {verb}; "
                          f"{ready}/{len(self.status)} layers ready",
                          done=done if total else None, total=total or None)


# ------------------------------------------------------------------------------------------------ push
class PushImage:
    """Push to IMAGE_REGISTRY when it is set, else to the registry an earlier registry-login step found (the
    Azure ML workspace's), with the credential it handed over."""

    name = "push"
    title = "Push the image to the registry"

    def check(self, settings: Settings) -> None:
        settings.require_valid("IMAGE_REGISTRY")
        _settings_credential(settings)

    async def run(self, ctx: StepContext) -> PushResult:
        from cvtriton_core.adapters.docker_engine import DockerEngine, Stopper
        from cvtriton_triton.image_context import check_registry, repository_component

        registry = _push_registry(ctx)
        problem = check_registry(registry)
        if problem:
            raise UserError(f"IMAGE_REGISTRY={registry!r} is not valid", f"expected {problem}")
        auth = _registry_auth(ctx)
        if auth is None and not ctx.settings.raw("IMAGE_REGISTRY") and SHARED_REGISTRY_AUTH not in ctx.run.shared:
            ctx.log(f"no credential for {registry} from registry-login in this run: the Docker daemon's own login "
                    "is used (run registry-login before push in the same run for a registry token)",
                    source="docker", level="warning")
        image_id, model, tag = ctx.state.get("image_id"), ctx.state.get("model_name"), ctx.state.get("image_tag")
        if not image_id or not model or not tag:
            raise UserError("no built image in this run", "run the build step first")
        remote = f"{registry}/{repository_component(model)}"
        engine = await ctx.blocking(DockerEngine.connect)
        stopper = Stopper()
        tagged = False
        try:
            info = await ctx.blocking(engine.image, image_id)
            if info is None:
                raise UserError(f"the built image {image_id[7:19]} is no longer on this machine", "run the build step again")
            await ctx.blocking(engine.tag, image_id, remote, tag)
            tagged = True
            ctx.log(f"pushing {remote}:{tag}" + (" as " + auth["username"] if auth else ""), source="docker")
            layers = _LayerReporter(ctx, "push")
            outcome = await _interruptible(ctx, stopper, engine.push, remote, tag, auth=auth,
                                           on_layer=layers.update, stopper=stopper)
            tagged = False       # pushed: the registry tag on the local image is wanted (it records the digest)
        finally:
            if tagged:           # failed or cancelled: leave no tag behind that points nowhere useful
                await ctx.blocking(engine.remove_image, f"{remote}:{tag}")
            await ctx.blocking(engine.close)
        size = int(info.get("Size") or 0)
        total_layers = len(info.get("RootFS", {}).get("Layers", []) or []) or len(layers.status)
        reference = f"{remote}@{outcome.digest}"
        ctx.state.set(image_digest=outcome.digest, image_remote=reference, image_pushed=f"{remote}:{tag}")
        share = f"{outcome.bytes_sent / size:.1%}" if size else "?"
        kept = total_layers - len(outcome.layers_sent)
        return PushResult(
            summary=f"pushed {remote}:{tag} → {outcome.digest[:19]}…; sent {_size(outcome.bytes_sent)} of the "
                    f"{_size(size)} image ({share}: {len(outcome.layers_sent)} of {total_layers} layers"
                    + (f"; {kept} already in the registry)" if kept > 0 else ")"),
            reference=reference, tag_ref=f"{remote}:{tag}", digest=outcome.digest, bytes_sent=outcome.bytes_sent,
            image_size=size, layers_sent=len(outcome.layers_sent), layers_total=total_layers)


def _push_registry(ctx: StepContext) -> str:
    """IMAGE_REGISTRY wins; else the login server the registry-login step recorded (the workspace's registry)."""
    registry = ctx.settings.raw("IMAGE_REGISTRY").rstrip("/")
    if registry:
        return registry
    found = str(ctx.state.get(STATE_REGISTRY) or "").rstrip("/")
    if found:
        ctx.log(f"IMAGE_REGISTRY is not set: pushing to {found}, the registry registry-login found", source="docker")
        return found
    raise UserError("no registry to push to: IMAGE_REGISTRY is not set and no registry-login step ran in this "
                    "work folder", f"add IMAGE_REGISTRY to {ctx.settings.path or '.env'} (e.g. myregistry.azurecr.io "
                    "or 127.0.0.1:5000), or run registry-login before push to use the Azure ML workspace's registry")


def _settings_credential(settings: Settings) -> dict[str, str] | None:
    """IMAGE_REGISTRY_USERNAME + IMAGE_REGISTRY_PASSWORD: both, or neither (None)."""
    user, password = settings.raw("IMAGE_REGISTRY_USERNAME"), settings.raw("IMAGE_REGISTRY_PASSWORD")
    if not (user or password):
        return None
    if not (user and password):
        missing = "IMAGE_REGISTRY_PASSWORD" if user else "IMAGE_REGISTRY_USERNAME"
        raise UserError(f"{missing} is not set but its partner is",
                        f"set both IMAGE_REGISTRY_USERNAME and IMAGE_REGISTRY_PASSWORD in "
                        f"{settings.path or '.env'}, or neither")
    return {"username": user, "password": password}


def _registry_auth(ctx: StepContext) -> dict[str, str] | None:
    """Settings win; else credentials an earlier step handed over (a registry login); else none."""
    own = _settings_credential(ctx.settings)
    if own is not None:
        return own
    handed = ctx.run.shared.get(SHARED_REGISTRY_AUTH)
    if isinstance(handed, dict) and handed.get("username") and handed.get("password"):
        register_secret(str(handed["password"]))
        return {"username": str(handed["username"]), "password": str(handed["password"])}
    return None


# ------------------------------------------------------------------------------------------------ run
class RunImage:
    """Start the built image as Azure ML would, on 127.0.0.1 only; ready when the *model* is ready."""

    name = "run-local"
    title = "Run the image locally"

    def __init__(self, *, http_port: int | None = None, ready_timeout: float = READY_TIMEOUT_S) -> None:
        self.http_port = http_port
        self.ready_timeout = ready_timeout

    async def run(self, ctx: StepContext) -> RunResult:
        from cvtriton_core.adapters.docker_engine import DockerEngine, Stopper
        from cvtriton_triton.image_context import (ENSEMBLE_LABEL, EXPOSED_PORTS, HTTP_PORT, ROUTE_LABEL,
                                                   SCORING_PORT_LABEL, repository_component)

        image_id, model = ctx.state.get("image_id"), ctx.state.get("model_name")
        if not image_id or not model:
            raise UserError("no built image in this run", "run the build step first")
        if self.http_port is not None and not 0 < self.http_port < 65536:
            raise UserError(f"port {self.http_port} is not a TCP port", "choose 1-65535, or none to pick a free one")
        engine = await ctx.blocking(DockerEngine.connect)
        ctx.run.resources.callback(engine.close)
        info = await ctx.blocking(engine.image, image_id)
        if info is None:
            raise UserError(f"the built image {image_id[7:19]} is not on this machine", "run the build step again")
        config = info.get("Config") or {}
        exposed = sorted(int(key.split("/")[0]) for key in (config.get("ExposedPorts") or {})
                         if key.endswith("/tcp")) or list(EXPOSED_PORTS)
        image_labels = config.get("Labels") or {}
        front_port = int(image_labels[SCORING_PORT_LABEL]) if image_labels.get(ROUTE_LABEL) else None
        for old in await ctx.blocking(engine.containers, f"{WORKDIR_LABEL}={ctx.workdir}"):
            await ctx.blocking(engine.remove_container, old["Id"], stop_timeout=2)
            ctx.log(f"removed container {old['Id'][:12]} left running by an earlier run", source="docker")

        name = f"cvtriton-{repository_component(model)}-{secrets.token_hex(3)}"
        labels = {CONTAINER_LABEL: "run-local", WORKDIR_LABEL: str(ctx.workdir)}
        ports = {port: (self.http_port if port == HTTP_PORT else None) for port in exposed}
        container = await ctx.blocking(engine.create_container, image_id, name=name, ports=ports,
                                       shm_size=SHM_SIZE, labels=labels)
        lines: collections.deque[str] = collections.deque(maxlen=200)
        stopper = Stopper()
        follower: asyncio.Future | None = None

        async def remove() -> None:
            try:
                await asyncio.to_thread(engine.remove_container, container)
            finally:
                stopper.stop()
                if follower is not None:
                    with contextlib.suppress(BaseException):
                        await asyncio.wait_for(follower, timeout=10)
            ctx.log(f"container {name} stopped and removed", source="docker")

        ctx.run.resources.push_async_callback(remove)     # before start: cancel, failure and quit all remove it

        def on_line(line: str) -> None:
            lines.append(line)
            ctx.log(line, source="container")

        ctx.progress(f"starting container {name}")
        await ctx.blocking(engine.start_container, container)
        follower = asyncio.ensure_future(asyncio.to_thread(engine.follow_logs, container, on_line, stopper))
        published = {port: await ctx.blocking(engine.published_port, container, port) for port in exposed}
        url = f"127.0.0.1:{published[HTTP_PORT]}"
        ctx.progress(f"waiting for model {model} to load in {name} (http://{url})")
        ready = [f"http://{url}/v2/models/{quote(model, safe='')}/ready"]
        front_url = f"127.0.0.1:{published[front_port]}" if front_port in published else None
        if front_url:        # the ensemble, asked through the front: both the route's port and its model are up
            ready.append(f"http://{front_url}/v2/models/{quote(image_labels.get(ENSEMBLE_LABEL, model), safe='')}"
                         "/ready")
        await self._wait_ready(ctx, engine, container, ready, model, lines, follower)
        ctx.run.shared["triton_url"] = url
        ctx.run.shared["container_id"] = container
        tail = ""
        if front_url:
            ctx.run.shared["customvision_url"] = front_url
            tail = f"; Custom Vision route at http://{front_url}{image_labels[ROUTE_LABEL]}"
        return RunResult(summary=f"container {name} serving {model} at http://{url} (image {image_id[7:19]}){tail}",
                         container_id=container, container_name=name, image_id=image_id, url=url, ports=published,
                         customvision_url=front_url)

    async def _wait_ready(self, ctx: StepContext, engine: Any, container: str, paths: list[str], model: str,
                          lines: collections.deque[str], follower: asyncio.Future) -> None:
        """Until every URL in ``paths`` answers 200, in turn; fails at once when the container stops."""
        deadline = time.monotonic() + self.ready_timeout
        pending = list(paths)
        while True:
            state = await ctx.blocking(engine.container_state, container)
            if state is None or not state.running:
                with contextlib.suppress(BaseException):
                    await asyncio.wait_for(asyncio.shield(follower), timeout=3)   # its last words
                code = "gone" if state is None else f"exit code {state.exit_code}"
                if state is not None and state.oom_killed:
                    code += ", out of memory"
                raise StepFailed(f"the container stopped ({code}) before model '{model}' was ready: "
                                 f"{_failure_line(lines)}",
                                 "read the container log above; fix the model repository or the base image and "
                                 "run package, build and run-local again")
            while pending and await ctx.blocking(_http_ok, pending[0]):
                pending.pop(0)
            if not pending:
                return
            if time.monotonic() > deadline:
                what = f"model '{model}'" if pending[0] == paths[0] else f"the Custom Vision route ({pending[0]})"
                raise StepFailed(f"{what} was not ready {self.ready_timeout:.0f} s after the container "
                                 f"started (last log: {_failure_line(lines)})",
                                 "read the container log above; a large model may need more time or memory")
            await asyncio.sleep(0.25)


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError, ValueError):
        return False


def _failure_line(lines: collections.deque[str]) -> str:
    """Triton's own reason (a model's load error...), else its last error line, else its last line."""
    from cvtriton_triton.local_server import triton_failure_reason

    seen = [line.strip() for line in lines if line.strip()]
    reason = triton_failure_reason(seen)
    if reason:
        return reason[:300]
    for line in reversed(seen):
        if line[:1] == "E" and line[1:5].isdigit():
            return line[-300:]
    return seen[-1][-300:] if seen else "(no output)"
