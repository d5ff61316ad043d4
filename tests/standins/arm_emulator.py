"""An HTTPS Azure Resource Manager emulator for what ``azure-ai-ml`` calls when it deploys to a managed online
endpoint. The real SDK talks to it over the wire, selected by the standard ``ARM_CLOUD_METADATA_URL`` (its
``/metadata/endpoints`` document) and trusting the test CA through ``REQUESTS_CA_BUNDLE``.

Routes follow the SDK's generated request builders (``azure/ai/ml/_restclient/arm_ml_service/operations``):
workspace ``GET``; the attached registry's ``Microsoft.ContainerRegistry/registries`` ``GET`` (``loginServer``);
``locations/{l}/vmSizes`` and ``locations/{l}/usages``; ``onlineEndpoints`` and their ``deployments``
``PUT``/``GET``/``DELETE``/list; ``environments/{n}/versions/{v}`` ``PUT``/``GET``; ``listKeys``, ``token``,
``getLogs``; the default datastore and model assets (:mod:`cvtriton_standins.arm_assets`: ``datastores``,
``listSecrets``, ``models/{n}/versions/{v}``). Writes are long-running operations as ARM runs them: ``201``/``200``/``202`` with
``Azure-AsyncOperation`` (``mfeOperationsStatus``) and ``Location`` (``mfeOperationResults``) headers and
``retry-after-ms`` on every poll, the status going ``InProgress`` → ``Succeeded`` | ``Failed`` with the service's
``error`` body. Every request needs a Bearer token from the Entra stand-in for this Resource Manager; an
expired one is 401 ``ExpiredAuthenticationToken``.

Deployments are real (:mod:`cvtriton_standins.arm_deployments`): pulled from the registry stand-in into the
local Docker Engine, run and probed; each endpoint is fronted by its own HTTPS scoring front
(:mod:`cvtriton_standins.scoring_front`). A deployment of a ``triton_model`` asset without an environment is
a no-code one (:mod:`cvtriton_standins.arm_nocode`). The online routes' handlers are in :mod:`cvtriton_standins.arm_online`.
Faults: ``inject(status, count, ops, retry_after)`` answers the next matching requests with 429/5xx;
``fail_next_deployment(code, message)`` fails the next deployment operation; ``take_name(name)`` makes an
endpoint name belong to someone else in the region; ``set_quota(family, limit, used)`` sets a VM family's vCPU
quota; ``detach_registry()``; ``revoke_acr_pull()`` (the endpoints' identity may no longer pull);
``stale_aml_tokens = n`` (the next endpoint tokens are born expired); ``aml_token_lifetime_s``.
"""

from __future__ import annotations

import json
import random
import re
import secrets
import threading
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable
from urllib.parse import parse_qs, urlsplit

from cvtriton_standins.arm_records import (
    DEFAULT_SIZES, FAMILY_NAMES, PROVIDER, AmlToken, ArmError, Deployment, Endpoint, Environment, Operation, VmSize,
    system_data,
)
from cvtriton_standins.arm_assets import AssetRoutes
from cvtriton_standins.arm_online import OnlineRoutes
from cvtriton_standins.entra_identity import TokenIssuer, TokenRejected
from cvtriton_standins.http_servers import serve_in_thread, stop_server
from cvtriton_standins.scoring_front import NO_ROUTE, ScoringFront, request_timeout_s
from cvtriton_standins.test_ca import TestCA

SUBSCRIPTION = "00000000-0000-4000-8000-00000000a2b1"
RESOURCE_GROUP = "rg-cvtriton"
WORKSPACE = "ws-cvtriton"
LOCATION = "westeurope"
REGISTRY_NAME = "crcvtriton"
STORAGE_SUFFIX = "core.standin.local"      # the cloud's storage suffix: blob hosts are <account>.blob.<suffix>
_SEG = r"[^/]+"
_WS = (rf"/subscriptions/(?P<sub>{_SEG})/resourceGroups/(?P<rg>{_SEG})/providers/{PROVIDER}"
       rf"/workspaces/(?P<ws>{_SEG})")
_LOC = rf"/subscriptions/(?P<sub>{_SEG})/providers/{PROVIDER}/locations/(?P<loc>{_SEG})"


@dataclass
class _Fault:
    status: int
    remaining: int
    ops: frozenset[str] | None
    retry_after: int | None


@dataclass
class ScoringRoute:
    status: int = 0
    message: str = ""
    deployment: str | None = None
    ports: list[int] = field(default_factory=list)
    limit: int = 0
    timeout_s: float = 5.0


class ResourceManagerEmulator(OnlineRoutes, AssetRoutes):
    def __init__(self, folder: Path, ca: TestCA, issuer: TokenIssuer, *, registry_login_server: str | None,
                 pull_auth: Callable[[str], dict[str, str] | None] | None = None,
                 subscription: str = SUBSCRIPTION, resource_group: str = RESOURCE_GROUP,
                 workspace: str = WORKSPACE, location: str = LOCATION, poll_ms: int = 50,
                 time_scale: float = 1.0, provision_s: float = 0.2) -> None:
        self.folder = Path(folder)
        self.ca = ca
        self.issuer = issuer
        self.subscription, self.resource_group, self.workspace, self.location = (
            subscription, resource_group, workspace, location)
        self.poll_ms = poll_ms
        self.time_scale = time_scale
        self.provision_s = provision_s
        self.aml_token_lifetime_s = 3600.0
        self.id = uuid.uuid4().hex[:8]
        self.sizes: dict[str, VmSize] = {s.name.lower(): s for s in DEFAULT_SIZES}
        self.quota: dict[str, list[int]] = _default_quota()    # family -> [vCPUs used, limit]
        self.registry_login_server = registry_login_server
        self.registry_id = (f"/subscriptions/{subscription}/resourceGroups/{resource_group}/providers/"
                            f"Microsoft.ContainerRegistry/registries/{REGISTRY_NAME}") if registry_login_server else None
        self.endpoints: dict[str, Endpoint] = {}
        self.deployments: dict[tuple[str, str], Deployment] = {}
        self.environments: dict[str, Environment] = {}
        self.models: dict[tuple[str, str], Any] = {}          # (name, version) -> arm_assets.ModelVersion
        self.storage_suffix = STORAGE_SUFFIX
        self.storage = None                                   # an Azurite (arm_assets: the default datastore)
        self.storage_key_refused = False
        self.secrets_handed_out = 0
        self.lost_models: set[tuple[str, str]] = set()
        self.triton_image = ""                                # Azure ML's Triton image for no-code deployments
        self.operations: dict[str, Operation] = {}
        self.fronts: dict[str, ScoringFront] = {}
        self.tokens: dict[str, list[AmlToken]] = {}
        self.taken_names: set[str] = set()
        self.acr_pull = True
        self.stale_aml_tokens = 0
        self.keys_handed_out: set[str] = set()       # every endpoint key and token given to a client
        self.requests: list[tuple[str, str, int]] = []             # (method, op, status)
        self._faults: list[_Fault] = []
        self._failures: list[ArmError] = []
        self._lock = threading.RLock()
        self._pull_auth = pull_auth or (lambda image: None)
        self._server: ThreadingHTTPServer | None = None
        self._runner = None

    # lifecycle --------------------------------------------------------------------------------
    @property
    def url(self) -> str:
        assert self._server is not None, "start() first"
        return f"https://127.0.0.1:{self._server.server_address[1]}"

    @property
    def metadata_url(self) -> str:
        return f"{self.url}/metadata/endpoints?api-version=2019-05-01"

    @property
    def cloud_name(self) -> str:
        return f"CvtritonStandIn{self._server.server_address[1]}" if self._server else "CvtritonStandIn"

    @property
    def audiences(self) -> tuple[str, ...]:
        return (self.url + "/", self.url)

    def start(self) -> "ResourceManagerEmulator":
        from cvtriton_standins.arm_deployments import DeploymentRunner

        self.server_cert = self.ca.server_cert("arm")
        self._runner = DeploymentRunner(self.id, pull_auth=self._endpoint_pull_auth,
                                        time_scale=lambda: self.time_scale)
        handler = type("Handler", (_ArmHandler,), {"emulator": self})
        self._server = serve_in_thread(handler, "arm-emulator", tls=self.server_cert.server_context())
        return self

    def stop(self) -> None:
        if self._runner is not None:
            self._runner.stop_all()
        for front in list(self.fronts.values()):
            front.stop()
        self.fronts.clear()
        stop_server(self._server)
        self._server = None

    def __enter__(self) -> "ResourceManagerEmulator":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def reset(self) -> None:
        """Forget every endpoint, deployment and fault (between tests sharing one emulator)."""
        with self._lock:
            names = list(self.endpoints)
        for name in names:
            self._drop_endpoint(name)
        with self._lock:
            self.environments.clear()
            self.models.clear()
            self.storage_key_refused = False
            self.lost_models.clear()
            self.operations.clear()
            self.tokens.clear()
            self.taken_names.clear()
            self.requests.clear()
            self._faults.clear()
            self._failures.clear()
            self.quota = _default_quota()
            self.aml_token_lifetime_s = 3600.0
            self.acr_pull = True
            self.stale_aml_tokens = 0

    # faults and set-up ----------------------------------------------------------------------------
    def inject(self, status: int = 500, count: int = 1, ops: tuple[str, ...] | None = None,
               retry_after: int | None = None) -> None:
        with self._lock:
            self._faults.append(_Fault(status, count, frozenset(ops) if ops else None, retry_after))

    def fail_next_deployment(self, code: str = "InternalServerError",
                             message: str = "An internal server error occurred.") -> None:
        with self._lock:
            self._failures.append(ArmError(500, code, message))

    def take_name(self, name: str) -> None:
        with self._lock:
            self.taken_names.add(name.lower())

    def set_quota(self, family: str, limit: int, used: int = 0) -> None:
        with self._lock:
            self.quota[family] = [used, limit]

    def attach_registry(self, login_server: str, pull_auth: Callable[[str], dict[str, str] | None]) -> None:
        """Attach a registry to the workspace; ``pull_auth(image)`` is the endpoint identity's credential."""
        with self._lock:
            self.registry_login_server = login_server
            self.registry_id = (f"/subscriptions/{self.subscription}/resourceGroups/{self.resource_group}/"
                                f"providers/Microsoft.ContainerRegistry/registries/{REGISTRY_NAME}")
            self._pull_auth = pull_auth

    def detach_registry(self) -> None:
        with self._lock:
            self.registry_id = None

    def revoke_acr_pull(self) -> None:
        """The endpoints' identity loses AcrPull on the attached registry: pulls are refused."""
        with self._lock:
            self.acr_pull = False

    def _endpoint_pull_auth(self, image: str) -> dict[str, str] | None:
        """The endpoint's identity may pull only from the workspace's attached registry (AcrPull)."""
        with self._lock:
            attached = self.registry_id is not None and self.registry_login_server and self.acr_pull
            host = image.split("/", 1)[0] if "/" in image else ""
            return self._pull_auth(image) if attached and host == self.registry_login_server else None

    # scoring ------------------------------------------------------------------------------------
    def route_scoring(self, endpoint_name: str, token: str, wanted: str | None) -> ScoringRoute:
        with self._lock:
            endpoint = self.endpoints.get(endpoint_name)
            if endpoint is None:
                return ScoringRoute(404, f"Endpoint {endpoint_name} not found.")
            if not self._token_ok(endpoint, token):
                return ScoringRoute(401, "Unauthorized: the key or token is missing, wrong or expired.")
            if wanted:
                name = next((d for (e, d) in self.deployments if e == endpoint_name and d.lower() == wanted.lower()),
                            None)
                if name is None:
                    return ScoringRoute(404, f"Deployment {wanted} not found in endpoint {endpoint_name}.")
            else:
                weights = {d: w for d, w in endpoint.traffic.items() if w > 0}
                if not weights:
                    return ScoringRoute(404, NO_ROUTE)
                name = random.choices(list(weights), weights=list(weights.values()))[0]
            deployment = self.deployments.get((endpoint_name, name))
            if deployment is None:
                return ScoringRoute(404, NO_ROUTE)
            settings = deployment.props.get("requestSettings") or {}
            per_instance = int(settings.get("maxConcurrentRequestsPerInstance") or 1)
            limit = 2 * per_instance * deployment.instance_count
            timeout = request_timeout_s(deployment.props)
        ports = self._runner.ready_ports(endpoint_name, name) if self._runner else []
        if not ports:
            return ScoringRoute(503, f"Deployment {name} has no ready instance yet.")
        return ScoringRoute(deployment=name, ports=ports, limit=limit, timeout_s=timeout)

    def _token_ok(self, endpoint: Endpoint, token: str) -> bool:
        if not token:
            return False
        if endpoint.auth_mode.lower() == "key":
            return secrets.compare_digest(token, endpoint.primary_key) or secrets.compare_digest(
                token, endpoint.secondary_key)
        if endpoint.auth_mode.lower() == "amltoken":
            return any(t.value == token and t.valid() for t in self.tokens.get(endpoint.name, []))
        try:
            self.issuer.verify(token, ("https://ml.azure.com", "https://ml.azure.com/"))
            return True
        except TokenRejected:
            return False

    # request handling ---------------------------------------------------------------------------------
    def handle(self, method: str, path: str, query: dict[str, str], headers: Any, body: dict[str, Any] | None,
               meta: dict[str, str]) -> tuple[int, dict[str, Any] | None, dict[str, str]]:
        if method == "GET" and path.rstrip("/") == "/metadata/endpoints":
            meta["op"] = "metadata"
            return 200, self.cloud_metadata(), {}
        for verb, pattern, op, fn in _ROUTES:
            if verb != method:
                continue
            match = pattern.fullmatch(path)
            if not match:
                continue
            meta["op"] = op
            self._check_token(headers.get("Authorization", ""))
            if "api-version" not in query:
                raise ArmError(400, "MissingApiVersionParameter",
                               "The api-version query parameter (?api-version=) is required for all requests.")
            fault = self._take_fault(op)
            if fault is not None:
                extra = {"Retry-After": str(fault.retry_after)} if fault.retry_after is not None else {}
                code = "TooManyRequests" if fault.status == 429 else "InternalServerError"
                raise ArmError(fault.status, code, "The request is being throttled." if fault.status == 429
                               else "An internal server error occurred. Please retry.", headers=extra)
            params = {k: v for k, v in match.groupdict().items()}
            self._check_scope(params)
            return fn(self, params, body or {}, query)
        raise ArmError(404, "NoRegisteredProviderFound" if "/providers/" in path else "NotFound",
                       f"No route for {method} {path} in the Resource Manager emulator.")

    def _check_token(self, header: str) -> None:
        if not header.lower().startswith("bearer "):
            raise ArmError(401, "AuthenticationFailed", "Authentication failed. The 'Authorization' header is "
                           "missing.", headers={"WWW-Authenticate": 'Bearer authorization_uri="https://login.'
                                                "microsoftonline.com/common\", error=\"invalid_token\""})
        try:
            self.issuer.verify(header[7:].strip(), self.audiences)
        except TokenRejected as exc:
            description = "The access token has expired." if exc.code.startswith("Expired") else exc.message
            raise ArmError(401, exc.code, exc.message, headers={
                "WWW-Authenticate": f'Bearer authorization_uri="https://login.microsoftonline.com/'
                                    f'{self.issuer.tenant_id}", error="invalid_token", '
                                    f'error_description="{description}"'}) from None

    def _check_scope(self, params: dict[str, str]) -> None:
        if params.get("sub", self.subscription).lower() != self.subscription.lower():
            raise ArmError(404, "SubscriptionNotFound", f"The subscription '{params['sub']}' could not be found.")
        if "rg" in params and params["rg"].lower() != self.resource_group.lower():
            raise ArmError(404, "ResourceGroupNotFound", f"Resource group '{params['rg']}' could not be found.")
        if "ws" in params and params["ws"].lower() != self.workspace.lower():
            raise ArmError(404, "ResourceNotFound", f"The Resource '{PROVIDER}/workspaces/{params['ws']}' under "
                           f"resource group '{params['rg']}' was not found.")
        if "loc" in params and params["loc"].lower() != self.location:
            raise ArmError(400, "NoRegisteredProviderFound",
                           f"No registered resource provider found for location '{params['loc']}'.")

    def _take_fault(self, op: str) -> _Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.remaining > 0 and (fault.ops is None or op in fault.ops):
                    fault.remaining -= 1
                    return fault
        return None

    def cloud_metadata(self) -> dict[str, Any]:
        return {"name": self.cloud_name, "portal": "https://portal.standin.local",
                "resourceManager": self.url + "/",
                "authentication": {"loginEndpoint": self.url + "/login/", "audiences": [self.url + "/"],
                                   "tenant": "common", "identityProvider": "AAD"},
                "suffixes": {"storage": self.storage_suffix, "acrLoginServer": "azurecr.standin.local"},
                "graph": self.url + "/graph/", "graphAudience": self.url + "/graph/"}

    # LRO helpers --------------------------------------------------------------------------------
    def _operation(self) -> tuple[Operation, dict[str, str]]:
        op_id = uuid.uuid4().hex
        base = f"{self.url}/subscriptions/{self.subscription}/providers/{PROVIDER}/locations/{self.location}"
        op = Operation(id=f"{base}/mfeOperationsStatus/{op_id}", location=f"{base}/mfeOperationResults/{op_id}")
        with self._lock:
            self.operations[op_id] = op
        api = "api-version=2025-12-01"
        return op, {"Azure-AsyncOperation": f"{op.id}?{api}", "Location": f"{op.location}?{api}",
                    "x-ms-async-operation-timeout": "PT1H", "retry-after-ms": str(self.poll_ms)}

    def _later(self, seconds: float, fn: Callable[[], None]) -> None:
        timer = threading.Timer(seconds, fn)
        timer.daemon = True
        timer.start()

    def _ws_id(self) -> str:
        return (f"/subscriptions/{self.subscription}/resourceGroups/{self.resource_group}/providers/{PROVIDER}"
                f"/workspaces/{self.workspace}")

    # routes: workspace, registry, sizes, usages ------------------------------------------------------
    def get_workspace(self, params, body, query):
        props = {"friendlyName": self.workspace, "description": "", "workspaceId": str(uuid.UUID(int=0x5eed)),
                 "containerRegistry": self.registry_id,
                 "storageAccount": f"/subscriptions/{self.subscription}/resourceGroups/{self.resource_group}/"
                                   f"providers/Microsoft.Storage/storageAccounts/stcvtriton",
                 "keyVault": f"/subscriptions/{self.subscription}/resourceGroups/{self.resource_group}/"
                             f"providers/Microsoft.KeyVault/vaults/kv-cvtriton",
                 "applicationInsights": None, "hbiWorkspace": False, "provisioningState": "Succeeded",
                 "publicNetworkAccess": "Enabled",
                 "discoveryUrl": f"{self.url}/discovery", "mlFlowTrackingUri": f"azureml://{self.location}.api"}
        return 200, {"id": self._ws_id(), "name": self.workspace, "type": f"{PROVIDER}/workspaces",
                     "location": self.location, "tags": {}, "kind": "Default",
                     "sku": {"name": "Basic", "tier": "Basic"},
                     "identity": {"type": "SystemAssigned", "principalId": str(uuid.uuid4()),
                                  "tenantId": self.issuer.tenant_id},
                     "systemData": system_data(), "properties": props}, {}

    def get_registry(self, params, body, query):
        wanted = (f"/subscriptions/{params['sub']}/resourceGroups/{params['rg']}/providers/"
                  f"Microsoft.ContainerRegistry/registries/{params['name']}")
        if not self.registry_login_server or not self.registry_id or wanted.lower() != self.registry_id.lower():
            raise ArmError(404, "ResourceNotFound", f"The Resource 'Microsoft.ContainerRegistry/registries/"
                           f"{params['name']}' under resource group '{params['rg']}' was not found.")
        return 200, {"id": self.registry_id, "name": params["name"],
                     "type": "Microsoft.ContainerRegistry/registries", "location": self.location, "tags": {},
                     "sku": {"name": "Basic", "tier": "Basic"}, "systemData": system_data(),
                     "properties": {"loginServer": self.registry_login_server, "adminUserEnabled": False,
                                    "provisioningState": "Succeeded", "publicNetworkAccess": "Enabled",
                                    "creationDate": system_data()["createdAt"]}}, {}

    def list_sizes(self, params, body, query):
        return 200, {"value": [s.to_json() for s in self.sizes.values()]}, {}

    def list_usages(self, params, body, query):
        with self._lock:
            items = [{"id": f"/subscriptions/{self.subscription}/providers/{PROVIDER}/locations/{self.location}/"
                            f"usages/{family}",
                      "amlWorkspaceLocation": self.location, "type": f"{PROVIDER}/vmFamily/usages", "unit": "Count",
                      "currentValue": used, "limit": limit,
                      "name": {"value": family, "localizedValue": FAMILY_NAMES.get(family, family)}}
                     for family, (used, limit) in sorted(self.quota.items())]
        return 200, {"value": items, "nextLink": None}, {}

    # routes: operations -------------------------------------------------------------------------
    def operation_status(self, params, body, query):
        op = self.operations.get(params["id"])
        if op is None:
            raise ArmError(404, "ResourceNotFound", "Operation not found.")
        headers = {"retry-after-ms": str(self.poll_ms)} if op.status == "InProgress" else {}
        return 200, op.to_json(), headers

    def operation_result(self, params, body, query):
        op = self.operations.get(params["id"])
        if op is None:
            raise ArmError(404, "ResourceNotFound", "Operation not found.")
        if op.status == "InProgress":
            return 202, None, {"Location": f"{op.location}?api-version=2025-12-01", "retry-after-ms": str(self.poll_ms)}
        if op.error is not None:
            raise op.error
        return 200, {}, {}


def _default_quota() -> dict[str, list[int]]:
    quota = {family: [0, 24] for family in {s.family for s in DEFAULT_SIZES}}
    for size in DEFAULT_SIZES:
        if size.gpus:
            quota[size.family] = [0, 0]          # GPU quota is 0 until the user asks for more
    return quota


def _route(verb: str, pattern: str, op: str, fn: Callable) -> tuple[str, re.Pattern[str], str, Callable]:
    return verb, re.compile(pattern, re.IGNORECASE), op, fn


E = ResourceManagerEmulator
_ROUTES = [
    _route("GET", _WS, "workspace.get", E.get_workspace),
    _route("GET", rf"/subscriptions/(?P<sub>{_SEG})/resourceGroups/(?P<rg_any>{_SEG})/providers/"
                  rf"Microsoft\.ContainerRegistry/registries/(?P<name>{_SEG})", "registry.get",
           lambda self, p, b, q: E.get_registry(self, {**p, "rg": p.pop("rg_any")}, b, q)),
    _route("GET", _LOC + "/vmSizes", "vmsizes.list", E.list_sizes),
    _route("GET", _LOC + "/usages", "usages.list", E.list_usages),
    _route("GET", _LOC + rf"/mfeOperationsStatus/(?P<id>{_SEG})", "operation.status", E.operation_status),
    _route("GET", _LOC + rf"/mfeOperationResults/(?P<id>{_SEG})", "operation.result", E.operation_result),
    _route("PUT", _WS + rf"/environments/(?P<name>{_SEG})/versions/(?P<version>{_SEG})", "environment.put",
           E.put_environment),
    _route("GET", _WS + rf"/environments/(?P<name>{_SEG})/versions/(?P<version>{_SEG})", "environment.get",
           E.get_environment),
    _route("GET", _WS + "/datastores", "datastore.list", E.list_datastores),
    _route("GET", _WS + rf"/datastores/(?P<name>{_SEG})", "datastore.get", E.get_datastore),
    _route("POST", _WS + rf"/datastores/(?P<name>{_SEG})/listSecrets", "datastore.secrets", E.list_datastore_secrets),
    _route("GET", _WS + rf"/models/(?P<name>{_SEG})", "model.get", E.get_model_container),
    _route("GET", _WS + rf"/models/(?P<name>{_SEG})/versions", "model.versions", E.list_model_versions),
    _route("GET", _WS + rf"/models/(?P<name>{_SEG})/versions/(?P<version>{_SEG})", "model.version.get",
           E.get_model_version),
    _route("PUT", _WS + rf"/models/(?P<name>{_SEG})/versions/(?P<version>{_SEG})", "model.version.put",
           E.put_model_version),
    _route("GET", _WS + "/onlineEndpoints", "endpoint.list", E.list_endpoints),
    _route("GET", _WS + rf"/onlineEndpoints/(?P<e>{_SEG})", "endpoint.get", E.get_endpoint),
    _route("PUT", _WS + rf"/onlineEndpoints/(?P<e>{_SEG})", "endpoint.put", E.put_endpoint),
    _route("DELETE", _WS + rf"/onlineEndpoints/(?P<e>{_SEG})", "endpoint.delete", E.delete_endpoint),
    _route("POST", _WS + rf"/onlineEndpoints/(?P<e>{_SEG})/listKeys", "endpoint.keys", E.list_keys),
    _route("POST", _WS + rf"/onlineEndpoints/(?P<e>{_SEG})/token", "endpoint.token", E.get_token),
    _route("GET", _WS + rf"/onlineEndpoints/(?P<e>{_SEG})/deployments", "deployment.list", E.list_deployments),
    _route("GET", _WS + rf"/onlineEndpoints/(?P<e>{_SEG})/deployments/(?P<d>{_SEG})", "deployment.get",
           E.get_deployment),
    _route("PUT", _WS + rf"/onlineEndpoints/(?P<e>{_SEG})/deployments/(?P<d>{_SEG})", "deployment.put",
           E.put_deployment),
    _route("DELETE", _WS + rf"/onlineEndpoints/(?P<e>{_SEG})/deployments/(?P<d>{_SEG})", "deployment.delete",
           E.delete_deployment),
    _route("POST", _WS + rf"/onlineEndpoints/(?P<e>{_SEG})/deployments/(?P<d>{_SEG})/getLogs", "deployment.logs",
           E.get_logs),
]


class _ArmHandler(BaseHTTPRequestHandler):
    emulator: ResourceManagerEmulator
    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:
        pass

    def _send(self, status: int, payload: dict[str, Any] | None, headers: dict[str, str]) -> None:
        data = json.dumps(payload).encode() if payload is not None else b""
        self.send_response(status)
        if payload is not None:
            self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("x-ms-request-id", str(uuid.uuid4()))
        self.send_header("x-ms-correlation-request-id", self.headers.get("x-ms-client-request-id") or str(uuid.uuid4()))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def _handle(self) -> None:
        parts = urlsplit(self.path)
        query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        meta = {"op": "?"}
        try:
            body = json.loads(raw) if raw else None
            status, payload, headers = self.emulator.handle(self.command, parts.path, query, self.headers, body, meta)
        except ArmError as exc:
            status, payload, headers = exc.status, exc.body(), exc.headers
        except json.JSONDecodeError:
            status, payload, headers = 400, ArmError(400, "InvalidRequestContent", "The request content was "
                                                     "invalid and could not be deserialized.").body(), {}
        self.emulator.requests.append((self.command, meta["op"], status))
        self._send(status, payload, headers)

    do_GET = do_PUT = do_POST = do_DELETE = do_PATCH = _handle   # noqa: N815

