"""Real deployments for the Resource Manager emulator: the image is pulled from the registry stand-in into the
local Docker Engine (``DOCKER_HOST``) as the endpoint's identity would pull it, run once per instance, and
probed as Azure ML probes a managed online deployment (Kubernetes semantics):

* ``initialDelay`` before the first probe, then one readiness and one liveness ``GET`` every ``period``
  (``timeout`` each; a status from 200 to 399 passes);
* ``successThreshold`` readiness passes make an instance ready; ``failureThreshold`` failures in a row of the
  readiness probe fail the deployment with ``ResourceNotReady``; of the liveness probe restart the container;
* a container that exits is restarted with a back-off; after ``crash_limit`` exits the deployment fails
  with ``ResourceNotReady`` ("User container has crashed or terminated");
* a pull failure fails it with ``BadArgument`` ("Unable to download user container image").

Every duration from the deployment's settings is multiplied by ``time_scale`` so tests do not wait minutes;
probe timeouts are never scaled below one second (a loaded machine must not fail a healthy probe).
Containers carry the label ``cvtriton.standin.emulator=<id>`` and are removed with their deployment, and
all of them when the emulator stops.
"""

from __future__ import annotations

import http.client
import os
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from cvtriton_standins.arm_records import TROUBLESHOOTING, ArmError, Deployment, Environment, parse_duration

LABEL = "cvtriton.standin.emulator"
PID_LABEL = "cvtriton.standin.pid"        # the emulator's process: its containers outlive it only if it was killed
Initializer = Callable[[list[str]], "tuple[dict[str, Any], ArmError | None]"]
PROBE_DEFAULTS = {"initialDelay": 10.0, "period": 10.0, "timeout": 2.0, "successThreshold": 1,
                  "failureThreshold": 30}


@dataclass(frozen=True)
class Probe:
    path: str
    port: int
    initial_delay_s: float
    period_s: float
    timeout_s: float
    success_threshold: int
    failure_threshold: int

    @classmethod
    def from_settings(cls, route: dict[str, Any] | None, settings: dict[str, Any] | None, scale: float,
                      default_path: str) -> "Probe":
        route = route or {}
        settings = settings or {}
        delay = parse_duration(settings.get("initialDelay"), PROBE_DEFAULTS["initialDelay"])
        period = parse_duration(settings.get("period"), PROBE_DEFAULTS["period"])
        timeout = parse_duration(settings.get("timeout"), PROBE_DEFAULTS["timeout"])
        return cls(path=str(route.get("path") or default_path), port=int(route.get("port") or 8000),
                   initial_delay_s=delay * scale, period_s=max(period * scale, 0.05),
                   timeout_s=max(timeout * scale, 1.0),
                   success_threshold=int(settings.get("successThreshold") or PROBE_DEFAULTS["successThreshold"]),
                   failure_threshold=int(settings.get("failureThreshold") or PROBE_DEFAULTS["failureThreshold"]))


@dataclass
class Instance:
    container_id: str
    host_port: int
    ready: bool = False
    exits: int = 0
    last_exit_code: int | None = None


@dataclass
class Running:
    """The containers serving one deployment generation."""

    generation: int
    instances: list[Instance] = field(default_factory=list)
    storage_log: list[str] = field(default_factory=list)   # the storage initializer's lines (no-code models)
    stopped: threading.Event = field(default_factory=threading.Event)


class DeploymentRunner:
    def __init__(self, emulator_id: str, *, pull_auth: Callable[[str], dict[str, str] | None],
                 time_scale: Callable[[], float], crash_limit: int = 3) -> None:
        import docker

        self.emulator_id = emulator_id
        self._docker = docker.from_env(timeout=600)
        self._pull_auth = pull_auth
        self._time_scale = time_scale
        self.crash_limit = crash_limit
        self._lock = threading.Lock()
        self._serving: dict[tuple[str, str], Running] = {}     # what the scoring front routes to
        self._starting: dict[tuple[str, str], Running] = {}    # a new generation being provisioned
        self._failed: dict[tuple[str, str], Running] = {}      # the last failed one, stopped, kept for its logs
        self.pulls: list[str] = []
        self.sweep_orphans()

    # queries ------------------------------------------------------------------------------------
    def ready_ports(self, endpoint: str, deployment: str) -> list[int]:
        with self._lock:
            running = self._serving.get((endpoint, deployment))
            return [i.host_port for i in running.instances if i.ready] if running else []

    def logs(self, endpoint: str, deployment: str, tail: int, *, storage_initializer: bool = False) -> str:
        with self._lock:
            key = (endpoint, deployment)
            running = self._starting.get(key) or self._failed.get(key) or self._serving.get(key)
            if storage_initializer:
                lines = list(running.storage_log) if running else []
                return "".join(line + "\n" for line in lines[-max(1, tail):])
            instance = running.instances[0] if running and running.instances else None
        if instance is None:
            return ""
        try:
            raw = self._docker.api.logs(instance.container_id, stdout=True, stderr=True, tail=max(1, tail))
        except Exception:   # noqa: BLE001 - removed meanwhile: nothing to show
            return ""
        return raw.decode("utf-8", "replace")

    # lifecycle ----------------------------------------------------------------------------------
    def provision(self, deployment: Deployment, environment: Environment, *,
                  on_done: Callable[[ArmError | None], None], is_current: Callable[[], bool],
                  initializer: Initializer | None = None) -> None:
        """``initializer(storage_log)`` runs before the containers (a no-code model's download): it returns
        their extra settings (``volumes``, ``environment``, ``command``) or the deployment's error."""
        key = (deployment.endpoint, deployment.name)
        running = Running(deployment.generation)
        with self._lock:
            previous = [r for r in (self._starting.pop(key, None), self._failed.pop(key, None)) if r]
            self._starting[key] = running
        for old in previous:
            old.stopped.set()
            self._remove(old)
        thread = threading.Thread(target=self._provision, args=(deployment, environment, running, on_done,
                                                                 is_current, initializer),
                                  name=f"standin-deploy-{deployment.endpoint}-{deployment.name}", daemon=True)
        thread.start()

    def remove(self, endpoint: str, deployment: str) -> None:
        with self._lock:
            key = (endpoint, deployment)
            doomed = [r for r in (self._starting.pop(key, None), self._failed.pop(key, None),
                                  self._serving.pop(key, None)) if r is not None]
        for running in doomed:
            running.stopped.set()
            self._remove(running)

    def stop_all(self) -> None:
        with self._lock:
            keys = set(self._starting) | set(self._failed) | set(self._serving)
        for endpoint, deployment in keys:
            self.remove(endpoint, deployment)
        self.sweep(self.emulator_id)

    def sweep_orphans(self) -> int:
        """Remove containers of emulators whose process is gone (a killed test run leaves them running)."""
        removed = 0
        for container in self._docker.containers.list(all=True, filters={"label": LABEL}):
            pid = container.labels.get(PID_LABEL, "")
            if pid.isdigit() and not _alive(int(pid)):
                try:
                    container.remove(force=True)
                    removed += 1
                except Exception:   # noqa: BLE001 - another sweeper got it
                    pass
        return removed

    def sweep(self, emulator_id: str | None = None) -> int:
        """Remove containers left by an emulator (``None``: by any emulator of this kit)."""
        selector = f"{LABEL}={emulator_id}" if emulator_id else LABEL
        removed = 0
        for container in self._docker.containers.list(all=True, filters={"label": selector}):
            try:
                container.remove(force=True)
                removed += 1
            except Exception:   # noqa: BLE001 - already gone
                pass
        return removed

    # provisioning -------------------------------------------------------------------------------
    def _provision(self, deployment: Deployment, environment: Environment, running: Running,
                   on_done: Callable[[ArmError | None], None], is_current: Callable[[], bool],
                   initializer: Initializer | None) -> None:
        key = (deployment.endpoint, deployment.name)
        try:
            error = self._bring_up(deployment, environment, running, is_current, initializer)
        except Exception as exc:   # noqa: BLE001 - the service reports its own failures as InternalServerError
            error = ArmError(500, "InternalServerError", f"{type(exc).__name__}: {exc}")
        if running.stopped.is_set() or not is_current():
            self._remove(running)
            return
        with self._lock:
            if self._starting.get(key) is running:
                del self._starting[key]
            old = None
            if error is None:
                old = self._serving.get(key)
                self._serving[key] = running
            else:
                self._failed[key] = running
        if error is not None:
            self._remove(running, keep_logs=True)
        elif old is not None:
            old.stopped.set()
            self._remove(old)
        on_done(error)
        if error is None:
            self._watch(running, deployment, environment)

    def _bring_up(self, deployment: Deployment, environment: Environment, running: Running,
                  is_current: Callable[[], bool], initializer: Initializer | None = None) -> ArmError | None:
        import docker

        extra: dict[str, Any] = {}
        if initializer is not None:
            extra, error = initializer(running.storage_log)
            if error is not None:
                return error
        image = environment.image
        try:
            if extra.get("pull", True):      # Azure ML's own Triton image is on the hosts already
                self._pull(image)
        except docker.errors.APIError as exc:
            reason = (exc.explanation or str(exc)).strip() if hasattr(exc, "explanation") else str(exc)
            return ArmError(400, "BadArgument", f"Unable to download user container image {image}: {reason}. "
                            + TROUBLESHOOTING.format(anchor="badargument"))
        config = environment.inference_config
        scale = self._time_scale()
        readiness = Probe.from_settings(config.get("readinessRoute"), deployment.props.get("readinessProbe"),
                                        scale, "/")
        liveness = Probe.from_settings(config.get("livenessRoute"), deployment.props.get("livenessProbe"),
                                       scale, "/")
        port = readiness.port
        env = {**dict(deployment.props.get("environmentVariables") or {}), **extra.get("environment", {})}
        for index in range(deployment.instance_count):
            if running.stopped.is_set() or not is_current():
                return None
            container = self._docker.containers.run(
                image, detach=True, name=f"cvtemu-{self.emulator_id}-{deployment.endpoint}-{deployment.name}-"
                                         f"g{deployment.generation}-{index}",
                environment=env, ports={f"{port}/tcp": ("127.0.0.1", None)},
                volumes=extra.get("volumes"), command=extra.get("command"),
                labels={LABEL: self.emulator_id, PID_LABEL: str(os.getpid()),
                        "cvtriton.standin.endpoint": deployment.endpoint,
                        "cvtriton.standin.deployment": deployment.name})
            running.instances.append(Instance(container.id, self._host_port(container.id, port)))
        for instance in running.instances:
            error = self._until_ready(instance, readiness, liveness, running, is_current)
            if error is not None:
                return error
        return None

    def _pull(self, image: str) -> None:
        from docker.utils import parse_repository_tag

        repository, tag = parse_repository_tag(image)
        self.pulls.append(image)
        self._docker.images.pull(repository, tag=tag or "latest", auth_config=self._pull_auth(image))

    def _host_port(self, container_id: str, port: int) -> int:
        for _ in range(50):
            attrs = self._docker.api.inspect_container(container_id)
            bindings = (attrs.get("NetworkSettings", {}).get("Ports") or {}).get(f"{port}/tcp")
            if bindings:
                return int(bindings[0]["HostPort"])
            if not attrs.get("State", {}).get("Running"):
                return 0      # exited before its port was published: the probes report the crash
            time.sleep(0.05)
        return 0

    def _until_ready(self, instance: Instance, readiness: Probe, liveness: Probe, running: Running,
                     is_current: Callable[[], bool]) -> ArmError | None:
        backoff = 10.0 * self._time_scale()
        if running.stopped.wait(readiness.initial_delay_s):
            return None
        passes = failures = live_failures = 0
        while not running.stopped.is_set() and is_current():
            state = self._docker.api.inspect_container(instance.container_id).get("State", {})
            if not state.get("Running"):
                instance.exits += 1
                instance.last_exit_code = state.get("ExitCode")
                if instance.exits >= self.crash_limit:
                    return ArmError(400, "ResourceNotReady",
                                    f"User container has crashed or terminated: the container exited with code "
                                    f"{instance.last_exit_code} ({instance.exits} times). "
                                    + TROUBLESHOOTING.format(anchor="resourcenotready"))
                if running.stopped.wait(backoff):
                    return None
                backoff *= 2
                self._restart(instance, readiness.port)
                passes = failures = live_failures = 0
                if running.stopped.wait(readiness.initial_delay_s):
                    return None
                continue
            ok, detail = self._probe(instance, readiness)
            if ok:
                passes += 1
                failures = 0
                if passes >= readiness.success_threshold:
                    instance.ready = True
                    return None
            else:
                passes = 0
                failures += 1
                if failures >= readiness.failure_threshold:
                    return ArmError(400, "ResourceNotReady",
                                    f"User container has crashed or terminated: Readiness probe failed: {detail}. "
                                    + TROUBLESHOOTING.format(anchor="resourcenotready"))
            live_ok, _ = self._probe(instance, liveness)
            live_failures = 0 if live_ok else live_failures + 1
            if live_failures >= liveness.failure_threshold:
                instance.exits += 1
                self._restart(instance, readiness.port)
                live_failures = 0
            if running.stopped.wait(readiness.period_s):
                return None
        return None

    def _watch(self, running: Running, deployment: Deployment, environment: Environment) -> None:
        """After success: keep probing liveness; restart a container that exits (as the kubelet does)."""
        liveness = Probe.from_settings(environment.inference_config.get("livenessRoute"),
                                       deployment.props.get("livenessProbe"), self._time_scale(), "/")
        while not running.stopped.wait(liveness.period_s):
            for instance in list(running.instances):
                try:
                    state = self._docker.api.inspect_container(instance.container_id).get("State", {})
                except Exception:   # noqa: BLE001 - removed under us: the deployment is going away
                    return
                if not state.get("Running"):
                    instance.ready = False
                    instance.exits += 1
                    self._restart(instance, liveness.port)
                    instance.ready = True

    def _restart(self, instance: Instance, port: int) -> None:
        try:
            self._docker.api.start(instance.container_id)
            instance.host_port = self._host_port(instance.container_id, port)
        except Exception:   # noqa: BLE001 - the next probe reports it
            pass

    @staticmethod
    def _probe(instance: Instance, probe: Probe) -> tuple[bool, str]:
        if not instance.host_port:
            return False, f'Get "http://127.0.0.1:{probe.port}{probe.path}": connection refused'
        conn = http.client.HTTPConnection("127.0.0.1", instance.host_port, timeout=probe.timeout_s)
        try:
            conn.request("GET", probe.path)
            status = conn.getresponse().status
        except (OSError, http.client.HTTPException) as exc:
            reason = "context deadline exceeded" if isinstance(exc, TimeoutError) else "connection refused"
            return False, f'Get "http://127.0.0.1:{probe.port}{probe.path}": {reason}'
        finally:
            conn.close()
        if 200 <= status < 400:
            return True, ""
        return False, f"HTTP probe failed with statuscode: {status}"

    def _remove(self, running: Running, *, keep_logs: bool = False) -> None:
        for instance in running.instances:
            try:
                if keep_logs:
                    self._docker.api.stop(instance.container_id, timeout=1)
                else:
                    self._docker.api.remove_container(instance.container_id, force=True)
            except Exception:   # noqa: BLE001 - already gone
                pass


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
