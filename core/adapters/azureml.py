"""The one adapter over Azure Machine Learning (``azure-ai-ml``) with ``azure-identity``'s
``DefaultAzureCredential``: workspace, its container registry, VM sizes and quota, managed online endpoints,
custom-container and no-code Triton deployments, model assets (:mod:`azureml_assets`), keys and tokens, logs,
traffic, deletion.

Both SDKs are imported lazily (``import azure.ai.ml`` takes seconds). Every method is synchronous and blocking:
steps call them through ``StepContext.blocking``. Long-running operations come back as :class:`LongOperation`
so a step can follow the resource's provisioning state while the SDK polls. The SDK's console output is kept
off stdout/stderr (:mod:`cvtriton_core.adapters.sdk_output`). Failures are :class:`AzureMLError` lines.

Which cloud is used follows the SDK's own rules: ``ARM_CLOUD_METADATA_URL`` when set (sovereign clouds, Azure
Stack), else public Azure. When that variable is set but its document could not be loaded the SDK silently
falls back to public Azure; this adapter refuses instead.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

from cvtriton_core.adapters import sdk_output
from cvtriton_core.adapters.azureml_assets import ModelAssets
from cvtriton_core.adapters.azureml_errors import AzureMLError, user_error
from cvtriton_core.errors import UserError
from cvtriton_core.redact import register_secret

# Facts about managed online endpoints (https://learn.microsoft.com/azure/machine-learning/how-to-deploy-custom-container)
TOOL_TAG = ("created-by", "cvtriton-tui")
IMAGE_TAG = "cvtriton-image"        # a deployment's image (Azure reports only its anonymous environment's id)
TRITON_PORT = 8000
LIVENESS_PATH = "/v2/health/live"
READINESS_PATH = "/v2/health/ready"
SCORING_PATH = "/"
QUOTA_RESERVE = 1.2                 # Azure ML reserves 20% extra instances' cores for upgrades
MODEL_DEPLOYMENT_HEADER = "azureml-model-deployment"
MODEL_ERROR_STATUS_HEADER = "ms-azureml-model-error-statuscode"
PUBLIC_ARM = "https://management.azure.com"
REGISTRY_API_VERSION = "2023-07-01"
AUTH_MODES = {"key": "key", "aml_token": "aml_token"}


@dataclass(frozen=True)
class Probe:
    """Seconds; Triton answers ``/v2/health/live`` as soon as it runs and ``/v2/health/ready`` once every
    model is loaded, so readiness gets a long window (a big model or a slow disk) and liveness a short one."""

    initial_delay_s: int
    period_s: int
    timeout_s: int
    failure_threshold: int
    success_threshold: int = 1

    @property
    def window_s(self) -> int:
        return self.initial_delay_s + self.period_s * self.failure_threshold


READINESS = Probe(initial_delay_s=10, period_s=10, timeout_s=5, failure_threshold=60)    # up to ~10 min to load
LIVENESS = Probe(initial_delay_s=30, period_s=10, timeout_s=5, failure_threshold=30)
MAX_CONCURRENT_PER_INSTANCE = 8     # Triton queues and batches itself; Azure's default of 1 would throttle it
REQUEST_TIMEOUT_MS = 90_000         # Azure's ceiling is 180 s


@dataclass(frozen=True)
class Workspace:
    name: str
    location: str
    registry_id: str | None           # ARM id of the attached container registry


@dataclass(frozen=True)
class Registry:
    arm_id: str
    name: str
    login_server: str


@dataclass(frozen=True)
class VmSize:
    name: str
    family: str
    vcpus: int
    gpus: int
    memory_gb: float

    def cores_needed(self, instances: int) -> int:
        return math.ceil(QUOTA_RESERVE * instances - 1e-9) * self.vcpus


@dataclass(frozen=True)
class Usage:
    family: str
    used: int
    limit: int

    @property
    def free(self) -> int:
        return max(0, self.limit - self.used)


@dataclass(frozen=True)
class EndpointInfo:
    name: str
    auth_mode: str                    # "key" | "aml_token" | "aad_token"
    state: str                        # Creating | Updating | Succeeded | Failed | Deleting
    scoring_uri: str
    traffic: dict[str, int] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)

    @property
    def created_by_tool(self) -> bool:
        return self.tags.get(TOOL_TAG[0]) == TOOL_TAG[1]


@dataclass(frozen=True)
class DeploymentInfo:
    name: str
    endpoint: str
    state: str
    instance_type: str
    instance_count: int
    image: str = ""
    model: str = ""                   # no-code: the model asset's ARM id

    @property
    def serves(self) -> str:
        return self.model or self.image


@dataclass(frozen=True)
class DeploymentSpec:
    endpoint: str
    name: str
    image: str
    instance_type: str
    instance_count: int
    readiness: Probe = READINESS
    liveness: Probe = LIVENESS
    max_concurrent_per_instance: int = MAX_CONCURRENT_PER_INSTANCE
    request_timeout_ms: int = REQUEST_TIMEOUT_MS
    environment_variables: dict[str, str] = field(default_factory=dict)
    port: int = TRITON_PORT   # the image's scoring port: 8000 (Triton), or its Custom Vision front (/v2 there too)
    model: str = ""           # no-code: the triton_model asset's ARM id (then no image, no environment)

    @property
    def serves(self) -> str:
        """What the deployment runs: the image, or (no-code) the model asset's ARM id."""
        return self.model or self.image

    @property
    def shown(self) -> str:
        """``serves`` as a user reads it: the image, or ``azureml:NAME:VERSION``."""
        return asset_reference(self.model) if self.model else self.image


@dataclass(frozen=True, repr=False)
class EndpointSecret:
    """What goes after ``Bearer``: the endpoint's primary key, or an aml_token with its expiry."""

    kind: str                         # "key" | "aml_token"
    value: str
    expires_at: float | None = None

    def __repr__(self) -> str:
        return f"EndpointSecret({self.kind}, ••••••)"


class LongOperation:
    """A running Azure operation (azure-core ``LROPoller``); ``result()`` raises :class:`AzureMLError`."""

    def __init__(self, poller: Any, what: str, arm_url: str) -> None:
        self._poller = poller
        self.what = what
        self._arm_url = arm_url
        sdk_output.poller_lease(poller)

    def done(self) -> bool:
        return bool(self._poller.done())

    def result(self, timeout: float | None = None) -> Any:
        try:
            return self._poller.result(timeout=timeout)
        except Exception as exc:   # noqa: BLE001 - mapped below; non-Azure errors re-raised by user_error
            raise user_error(exc, self.what, arm_url=self._arm_url) from None


class AzureML(ModelAssets):
    """One workspace (its model assets: :class:`~cvtriton_core.adapters.azureml_assets.ModelAssets`). ``log`` receives the SDKs' warnings (one line each) instead of the terminal."""

    def __init__(self, subscription_id: str, resource_group: str, workspace: str, *,
                 log: Callable[[str], None] | None = None, credential: Any = None) -> None:
        self.subscription_id = subscription_id
        self.resource_group = resource_group
        self.workspace_name = workspace
        self._log = log
        self._credential = credential
        self._client: Any = None
        self.arm_url = ""

    def set_log(self, log: Callable[[str], None] | None) -> None:
        """Where the SDKs' warnings go from now on (the running step's log)."""
        self._log = log
        if self._client is not None:
            sdk_output.bridge_sdk_logs(log)

    # --------------------------------------------------------------------------- client
    def client(self) -> Any:
        if self._client is not None:
            return self._client
        sdk_output.bridge_sdk_logs(self._log)
        from azure.ai.ml import MLClient   # lazy: seconds to import
        from azure.identity import DefaultAzureCredential

        sdk_output.bridge_sdk_logs(self._log)   # azure.ai.ml adds its own stderr handler on import
        if self._credential is None:
            self._credential = DefaultAzureCredential()
        client = MLClient(self._credential, self.subscription_id, self.resource_group, self.workspace_name,
                          show_progress=False)   # uploads report progress as events (azureml_assets)
        self.arm_url = str(getattr(client, "_base_url", "") or "").rstrip("/")
        metadata_url = os.environ.get("ARM_CLOUD_METADATA_URL")
        if metadata_url and self.arm_url == PUBLIC_ARM and "management.azure.com" not in metadata_url:
            raise UserError(f"could not load the cloud metadata from ARM_CLOUD_METADATA_URL={metadata_url} "
                            "(the Azure ML SDK would fall back to public Azure)",
                            "check the URL and the network, and that REQUESTS_CA_BUNDLE trusts its certificate")
        self._client = client
        return client

    def _call(self, what: str, fn: Callable[[], Any]) -> Any:
        try:
            return fn()
        except UserError:
            raise
        except Exception as exc:   # noqa: BLE001 - Azure failures mapped; anything else propagates
            raise user_error(exc, what, arm_url=self.arm_url) from None

    def _not_found(self, exc: BaseException) -> bool:
        from azure.core.exceptions import ResourceNotFoundError

        return isinstance(exc, ResourceNotFoundError) or getattr(exc, "status_code", None) == 404

    def arm_token(self) -> str:
        """An Entra access token for Resource Manager (what ``az acr login`` exchanges at the registry)."""
        self.client()
        token = self._call("get an Azure access token", lambda: self._credential.get_token(self.arm_url + "/.default"))
        register_secret(token.token)
        return token.token

    # --------------------------------------------------------------------------- workspace
    def workspace(self) -> Workspace:
        client = self.client()
        try:
            ws = client.workspaces.get(self.workspace_name)
        except Exception as exc:   # noqa: BLE001
            if self._not_found(exc):
                raise AzureMLError(f"workspace {self.workspace_name} not found in resource group "
                                   f"{self.resource_group} of subscription {self.subscription_id}",
                                   "check AZUREML_WORKSPACE, AZUREML_RESOURCE_GROUP and AZURE_SUBSCRIPTION_ID",
                                   exit_code=2, status=404) from None
            raise user_error(exc, f"read workspace {self.workspace_name}", arm_url=self.arm_url) from None
        return Workspace(self.workspace_name, str(ws.location or ""), getattr(ws, "container_registry", None) or None)

    def registry(self, registry_id: str) -> Registry:
        """The attached registry's ``loginServer`` as Resource Manager reports it (never guessed from the name)."""
        from azure.core.pipeline import policies
        from azure.core.rest import HttpRequest
        from azure.mgmt.core import ARMPipelineClient
        from azure.mgmt.core.policies import ARMChallengeAuthenticationPolicy

        self.client()
        pipeline = ARMPipelineClient(base_url=self.arm_url, policies=[
            policies.RequestIdPolicy(), policies.HeadersPolicy(), policies.UserAgentPolicy("cvtriton-tui"),
            policies.RetryPolicy(), ARMChallengeAuthenticationPolicy(self._credential, self.arm_url + "/.default"),
            policies.HttpLoggingPolicy()])
        what = f"read container registry {registry_id.rsplit('/', 1)[-1]}"

        def get() -> Any:
            from azure.core.exceptions import HttpResponseError

            response = pipeline.send_request(
                HttpRequest("GET", f"{self.arm_url}{registry_id}?api-version={REGISTRY_API_VERSION}"))
            if response.status_code != 200:
                raise HttpResponseError(response=response)
            return response.json()

        body = self._call(what, get)
        login_server = (body.get("properties") or {}).get("loginServer")
        if not login_server:
            raise AzureMLError(f"container registry {registry_id} has no loginServer", "check the registry in "
                               "the Azure portal")
        return Registry(registry_id, str(body.get("name") or registry_id.rsplit("/", 1)[-1]), str(login_server))

    def vm_sizes(self, location: str) -> list[VmSize]:
        items = self._call(f"list VM sizes in {location}",
                           lambda: list(self.client().compute.list_sizes(location=location)))
        return [VmSize(str(s.name), str(s.family or ""), int(getattr(s, "v_cp_us", None) or _raw(s, "vCPUs") or 0),
                       int(s.gpus or 0), float(getattr(s, "memory_gb", None) or _raw(s, "memoryGB") or 0))
                for s in items]

    def usages(self, location: str) -> list[Usage]:
        items = self._call(f"read the quota in {location}",
                           lambda: list(self.client().compute.list_usage(location=location)))
        found = []
        for u in items:
            name = u.name if isinstance(u.name, dict) else getattr(u.name, "__dict__", {}) or {}
            family = name.get("value") if isinstance(name, dict) else getattr(u.name, "value", "")
            used = getattr(u, "current_value", None)
            if used is None:   # azure-ai-ml 1.35 copies the wire name beside the empty attribute
                used = _raw(u, "currentValue")
            found.append(Usage(str(family or ""), int(used or 0), int(u.limit or 0)))
        return found

    # --------------------------------------------------------------------------- endpoints
    def endpoint(self, name: str) -> EndpointInfo | None:
        client = self.client()
        try:
            ep = client.online_endpoints.get(name)
        except Exception as exc:   # noqa: BLE001
            if self._not_found(exc):
                return None
            raise user_error(exc, f"read endpoint {name}", arm_url=self.arm_url) from None
        return _endpoint_info(ep)

    def endpoints(self) -> list[EndpointInfo]:
        return [_endpoint_info(e) for e in self._call("list online endpoints",
                                                      lambda: list(self.client().online_endpoints.list()))]

    def begin_endpoint(self, name: str, auth_mode: str, *, description: str = "") -> LongOperation:
        """Create the endpoint (tagged as this tool's), or update its description; traffic is left as is."""
        from azure.ai.ml.entities import ManagedOnlineEndpoint

        client = self.client()
        existing = self._call(f"read endpoint {name}", lambda: self._get_endpoint_entity(name))
        if existing is None:
            entity = ManagedOnlineEndpoint(name=name, auth_mode=AUTH_MODES[auth_mode], description=description,
                                           tags={TOOL_TAG[0]: TOOL_TAG[1]})
        else:
            entity = existing
            entity.tags = {**(entity.tags or {}), TOOL_TAG[0]: TOOL_TAG[1]}
            if description:
                entity.description = description
        return LongOperation(self._call(f"create endpoint {name}",
                                        lambda: client.online_endpoints.begin_create_or_update(entity)),
                             f"create endpoint {name}", self.arm_url)

    def _get_endpoint_entity(self, name: str) -> Any:
        try:
            return self.client().online_endpoints.get(name)
        except Exception as exc:   # noqa: BLE001
            if self._not_found(exc):
                return None
            raise

    def begin_traffic(self, name: str, traffic: dict[str, int]) -> LongOperation:
        client = self.client()
        entity = self._call(f"read endpoint {name}", lambda: self._get_endpoint_entity(name))
        if entity is None:
            raise AzureMLError(f"endpoint {name} does not exist", "run the deploy step first", exit_code=2)
        entity.traffic = {k: int(v) for k, v in traffic.items()}
        what = "set traffic " + ", ".join(f"{k}={v}%" for k, v in traffic.items()) + f" on endpoint {name}"
        return LongOperation(self._call(what, lambda: client.online_endpoints.begin_create_or_update(entity)),
                             what, self.arm_url)

    def secret(self, endpoint: str) -> EndpointSecret:
        keys = self._call(f"read the keys of endpoint {endpoint}",
                          lambda: self.client().online_endpoints.get_keys(endpoint))
        if getattr(keys, "primary_key", None):
            register_secret(keys.primary_key)
            register_secret(getattr(keys, "secondary_key", None))
            return EndpointSecret("key", keys.primary_key)
        token = getattr(keys, "access_token", None)
        if not token:
            raise AzureMLError(f"endpoint {endpoint} gave neither a key nor a token",
                               "check the endpoint's auth mode in the studio")
        register_secret(token)
        expiry = getattr(keys, "expiry_time_utc", None)
        return EndpointSecret("aml_token", token, float(expiry) if expiry else None)

    def begin_delete_endpoint(self, name: str) -> LongOperation:
        what = f"delete endpoint {name}"
        return LongOperation(self._call(what, lambda: self.client().online_endpoints.begin_delete(name=name)),
                             what, self.arm_url)

    # --------------------------------------------------------------------------- deployments
    def deployment(self, endpoint: str, name: str) -> DeploymentInfo | None:
        client = self.client()
        try:
            dep = client.online_deployments.get(name=name, endpoint_name=endpoint)
        except Exception as exc:   # noqa: BLE001
            if self._not_found(exc):
                return None
            raise user_error(exc, f"read deployment {name}", arm_url=self.arm_url) from None
        return _deployment_info(dep, endpoint)

    def deployments(self, endpoint: str) -> list[DeploymentInfo]:
        items = self._call(f"list deployments of endpoint {endpoint}",
                           lambda: list(self.client().online_deployments.list(endpoint_name=endpoint)))
        return [_deployment_info(d, endpoint) for d in items]

    def begin_deployment(self, spec: DeploymentSpec) -> LongOperation:
        from azure.ai.ml.entities import Environment, ManagedOnlineDeployment, OnlineRequestSettings, ProbeSettings

        def probe(p: Probe) -> Any:
            return ProbeSettings(initial_delay=p.initial_delay_s, period=p.period_s, timeout=p.timeout_s,
                                 failure_threshold=p.failure_threshold, success_threshold=p.success_threshold)

        route = lambda path: {"path": path, "port": spec.port}  # noqa: E731
        # no-code: Azure ML supplies the Triton image and its routes; the deployment names only the model
        environment = None if spec.model else Environment(image=spec.image, inference_config={
            "liveness_route": route(LIVENESS_PATH), "readiness_route": route(READINESS_PATH),
            "scoring_route": route(SCORING_PATH)})
        tags = {TOOL_TAG[0]: TOOL_TAG[1], **({IMAGE_TAG: spec.image} if spec.image else {})}
        deployment = ManagedOnlineDeployment(
            name=spec.name, endpoint_name=spec.endpoint, environment=environment, model=spec.model or None,
            instance_type=spec.instance_type, instance_count=spec.instance_count,
            readiness_probe=probe(spec.readiness), liveness_probe=probe(spec.liveness),
            request_settings=OnlineRequestSettings(
                max_concurrent_requests_per_instance=spec.max_concurrent_per_instance,
                request_timeout_ms=spec.request_timeout_ms),
            environment_variables=dict(spec.environment_variables) or None, tags=tags)
        what = f"deploy {spec.name} to endpoint {spec.endpoint}"
        client = self.client()
        return LongOperation(self._call(what, lambda: client.online_deployments.begin_create_or_update(deployment)),
                             what, self.arm_url)

    def logs(self, endpoint: str, deployment: str, lines: int, *, storage_initializer: bool = False) -> str:
        container = "storage-initializer" if storage_initializer else None
        return self._call(f"read the logs of deployment {deployment}",
                          lambda: self.client().online_deployments.get_logs(
                              name=deployment, endpoint_name=endpoint, lines=lines, container_type=container)) or ""

    def begin_delete_deployment(self, endpoint: str, name: str) -> LongOperation:
        what = f"delete deployment {name} of endpoint {endpoint}"
        return LongOperation(self._call(what, lambda: self.client().online_deployments.begin_delete(
            name=name, endpoint_name=endpoint)), what, self.arm_url)


def _raw(entity: Any, wire_name: str) -> Any:
    return getattr(entity, "__dict__", {}).get(wire_name)


def _state(value: Any) -> str:
    text = str(getattr(value, "value", value) or "")
    return text[:1].upper() + text[1:].lower() if text.isupper() or text.islower() else text


def _endpoint_info(ep: Any) -> EndpointInfo:
    auth = str(ep.auth_mode or "key").lower()
    auth = {"amltoken": "aml_token", "aadtoken": "aad_token"}.get(auth, auth)
    traffic = {str(k): int(v) for k, v in (ep.traffic or {}).items()}
    return EndpointInfo(name=str(ep.name), auth_mode=auth, state=_state(ep.provisioning_state),
                        scoring_uri=str(ep.scoring_uri or ""), traffic=traffic, tags=dict(ep.tags or {}))


def _deployment_info(dep: Any, endpoint: str) -> DeploymentInfo:
    image = str((dep.tags or {}).get(IMAGE_TAG) or "")
    model = dep.model if isinstance(dep.model, str) else str(getattr(dep.model, "id", "") or "")
    return DeploymentInfo(name=str(dep.name), endpoint=endpoint, state=_state(dep.provisioning_state),
                          instance_type=str(dep.instance_type or ""), instance_count=int(dep.instance_count or 1),
                          image=image, model="" if image else (model or ""))


def asset_reference(arm_id: str) -> str:
    """``…/models/NAME/versions/VERSION`` -> ``azureml:NAME:VERSION`` (other text unchanged)."""
    parts = arm_id.rstrip("/").split("/")
    if len(parts) >= 4 and parts[-2] == "versions" and parts[-4] == "models":
        return f"azureml:{parts[-3]}:{parts[-1]}"
    return arm_id


def families_usage(usages: Iterable[Usage], family: str) -> Usage | None:
    wanted = family.lower().replace(" ", "")
    return next((u for u in usages if u.family.lower().replace(" ", "") == wanted), None)
