"""The one adapter over the Docker Engine: the docker SDK's low-level ``APIClient`` (never the ``docker`` CLI).

Every method blocks (steps call them through ``ctx.blocking``); streaming ones report through callbacks
and can be interrupted from another thread with a :class:`Stopper`, which shuts the HTTP response's
socket down: the daemon sees the client go away and abandons the build, push or pull, and the reading
thread returns at once instead of waiting for the next chunk.

Engine failures become one-line :class:`~cvtriton_core.errors.UserError`\\ s naming the cause and the fix
(no daemon, daemon too old, base image missing, build failure, push refused, registry unreachable, port
in use, disk full). Registry credentials go only into the ``X-Registry-Auth`` header of a push; they are
registered for redaction before use.
"""

from __future__ import annotations

import collections
import contextlib
import re
import socket
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

import docker
import docker.errors
import requests

from cvtriton_core.errors import StepFailed
from cvtriton_core.redact import register_secret

MIN_API_VERSION = (1, 41)           # Docker Engine 20.10 (Debian bookworm's docker.io)
MIN_ENGINE = "20.10"
DEFAULT_HOST = "unix:///var/run/docker.sock"
CALL_TIMEOUT_S = 60                 # non-streaming calls; streams have no read timeout (a Stopper ends them)
LAST_LINES = 20                     # build / container output quoted in a failure
_STEP = re.compile(r"^Step (\d+)/(\d+) : (.*)$")
_LAYER_ID = re.compile(r"^[0-9a-f]{12}$")
_NO_SPACE = "no space left on device"


# ----------------------------------------------------------------------------------------------- results
@dataclass(frozen=True)
class LayerUpdate:
    """One layer's state in a push or pull, as the daemon reports it (ids are 12 hex characters)."""

    layer: str
    status: str            # "waiting" | "transferring" | "extracting" | "done" | "exists"
    current: int | None = None
    total: int | None = None


@dataclass(frozen=True)
class BuildStep:
    number: int
    instruction: str       # "COPY model_repository/ /models/"
    cached: bool           # the daemon reused its layer cache ("Using cache")


@dataclass(frozen=True)
class BuildOutcome:
    image_id: str
    steps: tuple[BuildStep, ...]
    lines: int             # build output lines streamed


@dataclass(frozen=True)
class PushOutcome:
    digest: str
    bytes_sent: int                       # sizes of the layers sent (uncompressed, as the image's size counts)
    layers_sent: tuple[str, ...]
    layers_present: tuple[str, ...]       # the registry had them: not sent again


@dataclass(frozen=True)
class ContainerState:
    running: bool
    exit_code: int | None
    oom_killed: bool
    error: str


@dataclass
class Stopper:
    """Interrupts the streams of one operation from another thread (cancellation, quitting)."""

    _responses: list[Any] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    stopped: bool = False

    def watch(self, response: requests.Response, *args: Any, **kwargs: Any) -> requests.Response:
        """A ``requests`` response hook: remember the response whose socket ``stop`` shuts down."""
        with self._lock:
            self._responses.append(response)
            stopped = self.stopped
        if stopped:
            _shutdown(response)
        return response

    def stop(self) -> None:
        with self._lock:
            self.stopped = True
            responses = list(self._responses)
        for response in responses:
            _shutdown(response)


def _shutdown(response: requests.Response) -> None:
    connection = getattr(response.raw, "connection", None)
    sock = getattr(connection, "sock", None)
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)


# ----------------------------------------------------------------------------------------------- engine
class DockerEngine:
    """A connection to one Docker daemon (``DOCKER_HOST``, else the default socket)."""

    def __init__(self, api: docker.APIClient, host: str, version: dict[str, Any]) -> None:
        self._api = api
        self.host = host
        self.version = version          # the daemon's /version answer
        self._kwargs: dict[str, Any] = {}

    # ---- connecting ---------------------------------------------------------------------------------
    @classmethod
    def connect(cls) -> "DockerEngine":
        kwargs = docker.utils.kwargs_from_env()
        host = kwargs.get("base_url") or DEFAULT_HOST
        try:
            api = docker.APIClient(version="auto", timeout=CALL_TIMEOUT_S, **kwargs)
            version = api.version()
        except docker.errors.DockerException as exc:
            raise _unreachable(host, exc) from None
        except requests.exceptions.RequestException as exc:
            raise _unreachable(host, exc) from None
        engine = cls(api, host, version)
        engine._kwargs = {**kwargs, "version": api.api_version}
        api_version = str(version.get("ApiVersion", "0"))
        if _version_tuple(api_version) < MIN_API_VERSION:
            api.close()
            raise StepFailed(f"the Docker daemon at {host} is too old: Docker Engine {version.get('Version', '?')} "
                             f"(API {api_version}); this tool needs Docker Engine {MIN_ENGINE} or later "
                             f"(API {'.'.join(map(str, MIN_API_VERSION))})",
                             "upgrade Docker Engine, or set DOCKER_HOST to a newer daemon")
        return engine

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._api.close()

    def __enter__(self) -> "DockerEngine":
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    @contextlib.contextmanager
    def _stream_client(self, stopper: Stopper | None) -> Iterator[docker.APIClient]:
        """A client of its own for one stream: no read timeout, and the stopper sees its responses."""
        api = docker.APIClient(timeout=None, **self._kwargs)
        if stopper is not None:
            api.hooks["response"].append(stopper.watch)
        try:
            yield api
        finally:
            with contextlib.suppress(Exception):
                api.close()

    @property
    def data_root(self) -> str:
        with contextlib.suppress(Exception):
            return str(self._api.info().get("DockerRootDir") or "")
        return ""

    # ---- images -------------------------------------------------------------------------------------
    def image(self, ref: str) -> dict[str, Any] | None:
        """``docker image inspect`` or None when the daemon does not have it."""
        try:
            return self._api.inspect_image(ref)
        except docker.errors.ImageNotFound:
            return None
        except docker.errors.APIError as exc:
            if exc.status_code == 404:
                return None
            raise _api_failure("inspecting the image", exc) from None

    def images(self, label: str) -> list[dict[str, Any]]:
        return self._api.images(all=True, filters={"label": label})

    def tag(self, image: str, repository: str, tag: str) -> None:
        self._api.tag(image, repository, tag, force=True)

    def remove_image(self, ref: str) -> bool:
        """Remove a tag or an untagged image; False when it is in use or already gone."""
        try:
            self._api.remove_image(ref)
            return True
        except docker.errors.APIError:
            return False

    def pull(self, ref: str, *, on_layer: Callable[[LayerUpdate], None], stopper: Stopper | None = None,
             auth: Mapping[str, str] | None = None) -> None:
        repository, tag = _split_tag(ref)
        if auth:
            _register_auth(auth)
        with self._stream_client(stopper) as api:
            try:
                stream = api.pull(repository, tag=tag, stream=True, decode=True,
                                  auth_config=dict(auth) if auth else None)
                for message in _interruptible(stream, stopper):
                    if "error" in message:
                        raise _PullError(_error_text(message))
                    update = _layer_update(message, pull=True)
                    if update is not None:
                        on_layer(update)
            except docker.errors.APIError as exc:
                raise _PullError(_api_text(exc)) from None
            except requests.exceptions.RequestException as exc:
                _raise_if_stopped(stopper)
                raise _PullError(str(exc)) from None

    def pull_base(self, ref: str, *, on_layer: Callable[[LayerUpdate], None], stopper: Stopper | None = None) -> None:
        """Pull a missing base image; a failure says what to do instead."""
        try:
            self.pull(ref, on_layer=on_layer, stopper=stopper)
        except _PullError as exc:
            _raise_if_stopped(stopper)
            if _NO_SPACE in str(exc).lower():
                raise self._disk_full("pulling the base image", str(exc)) from None
            raise StepFailed(f"base image {ref} is not on this machine and could not be pulled: {_short(str(exc))}",
                             f"pull it where its registry is reachable (docker pull {ref}), build or load it "
                             "locally, or set TRITON_BASE_IMAGE (or --base-image) to an image this daemon has") from None

    # ---- build --------------------------------------------------------------------------------------
    def build(self, context_tar: Path, tag: str, *, on_line: Callable[[str], None],
              on_step: Callable[[BuildStep, int], None] | None = None,
              stopper: Stopper | None = None) -> BuildOutcome:
        """Build from an uncompressed context tar (Dockerfile at its root); every output line to ``on_line``."""
        steps: list[BuildStep] = []
        last: collections.deque[str] = collections.deque(maxlen=LAST_LINES)
        current: dict[str, Any] = {"number": 0, "total": 0, "instruction": "", "cached": False, "created": []}
        image_id = ""
        count = 0
        pending = ""

        def finish_step() -> None:
            if current["number"]:
                step = BuildStep(current["number"], current["instruction"], current["cached"])
                steps.append(step)

        def line_out(line: str) -> None:
            nonlocal count
            count += 1
            last.append(line)
            on_line(line)
            match = _STEP.match(line)
            if match:
                finish_step()
                current.update(number=int(match.group(1)), total=int(match.group(2)),
                               instruction=match.group(3).strip(), cached=False)
                if on_step is not None:
                    on_step(BuildStep(current["number"], current["instruction"], False), current["total"])
            elif line.strip() == "---> Using cache":
                current["cached"] = True
            else:
                created = re.match(r"^ ---> ([0-9a-f]{12})$", line)
                if created:
                    current["created"].append(created.group(1))

        with self._stream_client(stopper) as api, open(context_tar, "rb") as context:
            try:
                stream = api.build(fileobj=context, custom_context=True, tag=tag, rm=True, forcerm=True,
                                   pull=False, decode=True)
                for message in _interruptible(stream, stopper):
                    if "stream" in message:
                        pending += message["stream"]
                        *complete, pending = pending.split("\n")
                        for line in complete:
                            line_out(line.rstrip("\r"))
                    elif "aux" in message and isinstance(message["aux"], dict) and "ID" in message["aux"]:
                        image_id = message["aux"]["ID"]
                    elif "error" in message:
                        if pending:
                            line_out(pending)
                            pending = ""
                        self._build_failed(_error_text(message), current, list(last))
                    elif "status" in message:      # the daemon pulling a FROM image itself
                        line_out(str(message["status"]))
            except docker.errors.APIError as exc:
                self._build_failed(_api_text(exc), current, list(last))
            except requests.exceptions.RequestException as exc:
                _raise_if_stopped(stopper)
                raise StepFailed(f"the connection to the Docker daemon broke during the build: {_short(str(exc))}",
                                 "check that dockerd is still running and build again") from None
            finally:
                if stopper is not None and stopper.stopped or not image_id:
                    self._drop_leftovers(current["created"])
        if pending:
            line_out(pending)
        finish_step()
        if not image_id:
            _raise_if_stopped(stopper)
            raise StepFailed("the Docker daemon ended the build without an image id",
                             "build again; the build log has the daemon's last words")
        return BuildOutcome(image_id=image_id, steps=tuple(steps), lines=count)

    def _build_failed(self, message: str, current: dict[str, Any], last: list[str]) -> None:
        where = (f"step {current['number']}/{current['total']} `{current['instruction']}`"
                 if current["number"] else "before the first step")
        tail = " | ".join(line.strip() for line in last[-5:] if line.strip())
        if _NO_SPACE in message.lower():
            raise self._disk_full(f"building ({where})", message)
        raise StepFailed(f"the image build failed at {where}: {_short(message)}"
                         + (f" (last output: {_short(tail, 300)})" if tail else ""),
                         "fix the cause above and build again; the full build log is in the step's log")

    def _disk_full(self, during: str, message: str) -> StepFailed:
        root = self.data_root
        where = f" under {root}" if root else ""
        return StepFailed(f"disk full while {during}: {_short(message)}",
                          f"free space{where} (for example remove unused images: docker image prune) and try again")

    def _drop_leftovers(self, created: list[str]) -> None:
        """After a failed or cancelled build: remove the untagged images it left (no dangling images)."""
        for image_id in reversed(created):
            info = self.image(image_id)
            if info is not None and not info.get("RepoTags"):
                self.remove_image(image_id)

    # ---- push ---------------------------------------------------------------------------------------
    def push(self, repository: str, tag: str, *, auth: Mapping[str, str] | None,
             on_layer: Callable[[LayerUpdate], None], stopper: Stopper | None = None) -> PushOutcome:
        registry = repository.split("/", 1)[0]
        if auth:
            _register_auth(auth)
        sent: dict[str, int] = {}
        present: list[str] = []
        progress: dict[str, int] = {}
        sizes: dict[str, int] = {}
        digest = ""
        with self._stream_client(stopper) as api:
            try:
                stream = api.push(repository, tag=tag, stream=True, decode=True,
                                  auth_config=dict(auth) if auth else None)
                for message in _interruptible(stream, stopper):
                    if "error" in message:
                        raise _push_failure(registry, _error_text(message), bool(auth))
                    aux = message.get("aux")
                    if isinstance(aux, dict) and aux.get("Digest"):
                        digest = aux["Digest"]
                        continue
                    update = _layer_update(message, pull=False)
                    if update is None:
                        continue
                    if update.status == "transferring" and update.current is not None:
                        progress[update.layer] = update.current
                        if update.total:
                            sizes[update.layer] = update.total
                    elif update.status == "done":
                        # the layer's size as the daemon states it (its count of tar bytes read runs a
                        # little over, headers included), so a first push of every layer is the image size
                        sent[update.layer] = sizes.get(update.layer) or progress.get(update.layer, 0)
                    elif update.status == "exists" and update.layer not in present:
                        present.append(update.layer)
                    on_layer(update)
            except docker.errors.APIError as exc:
                raise _push_failure(registry, _api_text(exc), bool(auth)) from None
            except requests.exceptions.RequestException as exc:
                _raise_if_stopped(stopper)
                raise StepFailed(f"the connection to the Docker daemon broke during the push: {_short(str(exc))}",
                                 "check that dockerd is still running and push again") from None
        _raise_if_stopped(stopper)
        if not digest:
            raise StepFailed(f"the push to {registry} ended without a digest",
                             "push again; the push log has the daemon's last words")
        return PushOutcome(digest=digest, bytes_sent=sum(sent.values()), layers_sent=tuple(sent),
                           layers_present=tuple(present))

    # ---- containers ---------------------------------------------------------------------------------
    def create_container(self, image: str, *, name: str, ports: Mapping[int, int | None], shm_size: int,
                         labels: Mapping[str, str]) -> str:
        """Create (not start) a container whose ports are published on 127.0.0.1 only."""
        bindings = {f"{port}/tcp": ("127.0.0.1", host) if host else ("127.0.0.1",) for port, host in ports.items()}
        host_config = self._api.create_host_config(port_bindings=bindings, shm_size=shm_size, init=True)
        try:
            created = self._api.create_container(image, name=name, labels=dict(labels), host_config=host_config,
                                                 ports=[(port, "tcp") for port in ports], detach=True)
        except docker.errors.ImageNotFound:
            raise StepFailed(f"image {image} is not on this machine", "run the build step first") from None
        except docker.errors.APIError as exc:
            raise _api_failure("creating the container", exc) from None
        return created["Id"]

    def start_container(self, container: str) -> None:
        try:
            self._api.start(container)
        except docker.errors.APIError as exc:
            text = _api_text(exc)
            busy = re.search(r"(\d+\.\d+\.\d+\.\d+:\d+)[^:]*: bind: address already in use", text) \
                or re.search(r"(\d+\.\d+\.\d+\.\d+:\d+).*address already in use", text)
            if busy or "address already in use" in text:
                where = busy.group(1) if busy else "a published port"
                raise StepFailed(f"port {where} is already in use by another program",
                                 "stop what listens there, or choose another port (leave it empty to pick a free one)") from None
            if _NO_SPACE in text.lower():
                raise self._disk_full("starting the container", text) from None
            raise _api_failure("starting the container", exc) from None

    def published_port(self, container: str, port: int) -> int:
        info = self._api.inspect_container(container)
        bindings = (info.get("NetworkSettings", {}).get("Ports") or {}).get(f"{port}/tcp") or []
        for binding in bindings:
            if binding.get("HostPort"):
                return int(binding["HostPort"])
        raise StepFailed(f"the daemon published no host port for container port {port}",
                         "check the daemon's networking (is the bridge network available?)")

    def container_state(self, container: str) -> ContainerState | None:
        try:
            state = self._api.inspect_container(container).get("State", {})
        except docker.errors.NotFound:
            return None
        return ContainerState(running=bool(state.get("Running")), exit_code=state.get("ExitCode"),
                              oom_killed=bool(state.get("OOMKilled")), error=str(state.get("Error") or ""))

    def follow_logs(self, container: str, on_line: Callable[[str], None], stopper: Stopper) -> None:
        """Every line the container writes (stdout and stderr) until it stops, is removed, or ``stopper``."""
        pending = b""
        with self._stream_client(stopper) as api:
            try:
                for chunk in _interruptible(api.logs(container, stream=True, follow=True), stopper):
                    pending += chunk
                    *complete, pending = pending.split(b"\n")
                    for raw in complete:
                        on_line(raw.decode("utf-8", "replace").rstrip("\r"))
            except (docker.errors.APIError, requests.exceptions.RequestException, OSError, ValueError):
                pass   # the container went away or the stream was stopped: nothing more to show
        if pending:
            on_line(pending.decode("utf-8", "replace"))

    def remove_container(self, container: str, *, stop_timeout: int = 10) -> None:
        """Stop (SIGTERM, then SIGKILL after ``stop_timeout``) and remove; fine if already gone."""
        with contextlib.suppress(docker.errors.NotFound):
            try:
                self._api.stop(container, timeout=stop_timeout)
            except docker.errors.APIError as exc:
                if exc.status_code == 404:
                    return
            self._api.remove_container(container, force=True, v=True)

    def containers(self, label: str) -> list[dict[str, Any]]:
        return self._api.containers(all=True, filters={"label": label})


# ----------------------------------------------------------------------------------------------- helpers
class _PullError(Exception):
    pass


def _interruptible(stream: Iterator[Any], stopper: Stopper | None) -> Iterator[Any]:
    for item in stream:
        if stopper is not None and stopper.stopped:
            return
        yield item


def _raise_if_stopped(stopper: Stopper | None) -> None:
    if stopper is not None and stopper.stopped:
        raise StepFailed("stopped", "")


def _version_tuple(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", text)[:2]) or (0,)


def _split_tag(ref: str) -> tuple[str, str | None]:
    if "@" in ref:
        repository, digest = ref.split("@", 1)
        return repository, digest
    head, _, last = ref.rpartition("/")
    if ":" in last:
        name, tag = last.split(":", 1)
        return (f"{head}/{name}" if head else name), tag
    return ref, "latest"


def _register_auth(auth: Mapping[str, str]) -> None:
    register_secret(auth.get("password"))
    register_secret(auth.get("identitytoken"))


def _error_text(message: Mapping[str, Any]) -> str:
    detail = message.get("errorDetail")
    if isinstance(detail, dict) and detail.get("message"):
        return str(detail["message"])
    return str(message.get("error") or "unknown error")


def _api_text(exc: docker.errors.APIError) -> str:
    return str(exc.explanation or exc)


def _short(text: str, limit: int = 400) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _api_failure(doing: str, exc: docker.errors.APIError) -> StepFailed:
    text = _api_text(exc)
    return StepFailed(f"the Docker daemon refused {doing}: {_short(text)}",
                      "see the daemon's message; fix its cause and run the step again")


def _unreachable(host: str, exc: BaseException) -> StepFailed:
    text = str(exc)
    chain: BaseException | None = exc
    while chain is not None:
        if isinstance(chain, PermissionError) or "Permission denied" in str(chain):
            path = host.removeprefix("unix://")
            return StepFailed(f"no permission to use the Docker daemon socket {path}",
                              "add your user to the docker group (sudo usermod -aG docker $USER, then log in "
                              "again) or set DOCKER_HOST to a daemon you may use")
        chain = chain.__cause__ or chain.__context__
    return StepFailed(f"no Docker daemon reachable at {host} ({_short(text, 160)})",
                      "start Docker (sudo systemctl start docker, or run dockerd), or set DOCKER_HOST to a "
                      "running daemon such as unix:///path/to/docker.sock")


_PUSH_STATUS = {"Preparing": "waiting", "Waiting": "waiting", "Pushing": "transferring", "Pushed": "done",
                "Layer already exists": "exists"}
_PULL_STATUS = {"Pulling fs layer": "waiting", "Waiting": "waiting", "Downloading": "transferring",
                "Verifying Checksum": "transferring", "Download complete": "transferring",
                "Extracting": "extracting", "Pull complete": "done", "Already exists": "exists"}


def _layer_update(message: Mapping[str, Any], *, pull: bool) -> LayerUpdate | None:
    layer = str(message.get("id") or "")
    status = str(message.get("status") or "")
    if not _LAYER_ID.match(layer):
        return None
    table = _PULL_STATUS if pull else _PUSH_STATUS
    mapped = table.get(status)
    if mapped is None and status.startswith("Mounted from"):
        mapped = "exists"
    if mapped is None:
        return None
    detail = message.get("progressDetail") or {}
    current = detail.get("current") if isinstance(detail, dict) else None
    total = detail.get("total") if isinstance(detail, dict) else None
    return LayerUpdate(layer, mapped, int(current) if current is not None else None,
                       int(total) if total else None)


def _push_failure(registry: str, text: str, with_auth: bool) -> StepFailed:
    lower = text.lower()
    if any(word in lower for word in ("unauthorized", "authentication required", "denied", "no basic auth",
                                      "forbidden", "insufficient_scope")):
        fix = ("check IMAGE_REGISTRY_USERNAME and IMAGE_REGISTRY_PASSWORD (and that this user may push here)"
               if with_auth else "set IMAGE_REGISTRY_USERNAME and IMAGE_REGISTRY_PASSWORD for this registry")
        return StepFailed(f"registry {registry} refused the push: {_short(text, 200)}", fix)
    if "server gave http response to https client" in lower:
        return StepFailed(f"registry {registry} speaks plain HTTP but the Docker daemon wants HTTPS",
                          "serve the registry over TLS, or add it to the daemon's insecure-registries")
    if any(word in lower for word in ("connection refused", "no such host", "i/o timeout", "dial tcp",
                                      "network is unreachable", "tls handshake timeout", "connection reset")):
        return StepFailed(f"registry {registry} is unreachable from the Docker daemon: {_short(text, 200)}",
                          "check IMAGE_REGISTRY (host and port) and that the registry runs and is reachable")
    if _NO_SPACE in lower:
        return StepFailed(f"the registry {registry} has no space left: {_short(text, 200)}",
                          "free space on the registry and push again")
    return StepFailed(f"the push to {registry} failed: {_short(text)}", "see the registry's message above and push again")

