"""What the Resource Manager emulator stores and how each resource looks on the wire.

Field names are the ARM JSON names the SDK's generated models read and write
(``azure/ai/ml/_restclient/arm_ml_service/models/_models.py``: ``rest_field(name=...)``): camelCase under
``properties``, ``id``/``name``/``type``/``location``/``tags``/``systemData`` at the top. Durations are ISO 8601
(``PT10S``); the service's error body is ``{"error": {"code", "message", "details"}}``.
"""

from __future__ import annotations

import datetime
import math
import re
import secrets
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

PROVIDER = "Microsoft.MachineLearningServices"
ENDPOINT_NAME = re.compile(r"^[a-zA-Z][a-zA-Z0-9-]{1,30}[a-zA-Z0-9]$")
DEPLOYMENT_NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9-]{1,30}[a-zA-Z0-9]$")
QUOTA_RESERVE = 1.2            # Azure ML keeps 20% of a deployment's instances spare for upgrades
TROUBLESHOOTING = "Please see troubleshooting guide, available here: https://aka.ms/oe-tsg#error-{anchor}"


class ArmError(Exception):
    """An answer with Resource Manager's error body."""

    def __init__(self, status: int, code: str, message: str, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message, "details": [], "additionalInfo": []}}


@dataclass(frozen=True)
class VmSize:
    name: str
    family: str
    vcpus: int
    memory_gb: float
    gpus: int = 0

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "family": self.family, "vCPUs": self.vcpus, "gpus": self.gpus,
                "osVhdSizeMB": 1047552, "maxResourceVolumeMB": int(self.memory_gb * 2048),
                "memoryGB": self.memory_gb, "lowPriorityCapable": True, "premiumIO": True,
                "supportedComputeTypes": ["AmlCompute", "ComputeInstance"]}


# A few sizes managed online endpoints offer (vCPUs/memory/GPUs as Azure lists them).
DEFAULT_SIZES = (
    VmSize("Standard_DS2_v2", "standardDSv2Family", 2, 7),
    VmSize("Standard_DS3_v2", "standardDSv2Family", 4, 14),
    VmSize("Standard_DS4_v2", "standardDSv2Family", 8, 28),
    VmSize("Standard_F4s_v2", "standardFSv2Family", 4, 8),
    VmSize("Standard_F8s_v2", "standardFSv2Family", 8, 16),
    VmSize("Standard_NC4as_T4_v3", "Standard NCASv3_T4 Family", 4, 28, gpus=1),
    VmSize("Standard_NC8as_T4_v3", "Standard NCASv3_T4 Family", 8, 56, gpus=1),
    VmSize("Standard_NC24ads_A100_v4", "StandardNCADSA100v4Family", 24, 220, gpus=1),
)
FAMILY_NAMES = {"standardDSv2Family": "Standard DSv2 Family vCPUs",
                "standardFSv2Family": "Standard FSv2 Family vCPUs",
                "Standard NCASv3_T4 Family": "Standard NCASv3_T4 Family vCPUs",
                "StandardNCADSA100v4Family": "Standard NCADSA100v4 Family vCPUs"}


def cores_needed(size: VmSize, instances: int) -> int:
    """Cores a deployment holds against the family quota: ceil(1.2 x instances) x vCPUs."""
    return math.ceil(QUOTA_RESERVE * instances - 1e-9) * size.vcpus


def iso_now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat().replace("+00:00", "Z")


def parse_duration(text: str | None, default_s: float) -> float:
    """ISO 8601 duration (PT1M30S, PT0.5S, P1D) -> seconds."""
    if not text:
        return default_s
    match = re.fullmatch(r"P(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:([\d.]+)S)?)?", text)
    if not match:
        return default_s
    days, hours, minutes, seconds = match.groups()
    return (int(days or 0) * 86400 + int(hours or 0) * 3600 + int(minutes or 0) * 60 + float(seconds or 0))


def system_data() -> dict[str, str]:
    now = iso_now()
    return {"createdAt": now, "createdBy": "standin@example.com", "createdByType": "User",
            "lastModifiedAt": now, "lastModifiedBy": "standin@example.com", "lastModifiedByType": "User"}


@dataclass
class Operation:
    """A long-running operation as ``Azure-AsyncOperation`` reports it."""

    id: str
    location: str
    status: str = "InProgress"        # InProgress | Succeeded | Failed | Canceled
    error: ArmError | None = None
    started: str = field(default_factory=iso_now)
    ended: str | None = None
    done: threading.Event = field(default_factory=threading.Event)

    def finish(self, error: ArmError | None = None) -> None:
        self.status = "Failed" if error else "Succeeded"
        self.error = error
        self.ended = iso_now()
        self.done.set()

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {"id": self.id, "name": self.id.rsplit("/", 1)[-1], "status": self.status,
                                "startTime": self.started}
        if self.ended:
            body["endTime"] = self.ended
        if self.error is not None:
            body["error"] = self.error.body()["error"]
        return body


@dataclass
class Environment:
    arm_id: str
    body: dict[str, Any]

    @property
    def image(self) -> str:
        return str(self.body.get("properties", {}).get("image") or "")

    @property
    def inference_config(self) -> dict[str, Any]:
        return self.body.get("properties", {}).get("inferenceConfig") or {}


@dataclass
class Endpoint:
    name: str
    arm_id: str
    location: str
    auth_mode: str                        # Key | AMLToken | AADToken
    tags: dict[str, str]
    description: str
    traffic: dict[str, int]
    scoring_uri: str = ""
    provisioning_state: str = "Creating"
    primary_key: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    secondary_key: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    principal_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    system: dict[str, str] = field(default_factory=system_data)
    properties: dict[str, str] = field(default_factory=dict)

    def to_json(self, tenant_id: str) -> dict[str, Any]:
        swagger = self.scoring_uri.rsplit("/", 1)[0] + "/swagger.json" if self.scoring_uri else None
        return {
            "id": self.arm_id, "name": self.name, "type": f"{PROVIDER}/workspaces/onlineEndpoints",
            "location": self.location, "tags": dict(self.tags), "kind": "Managed",
            "identity": {"type": "SystemAssigned", "principalId": self.principal_id, "tenantId": tenant_id},
            "systemData": dict(self.system),
            "properties": {"authMode": self.auth_mode, "description": self.description,
                           "properties": dict(self.properties), "scoringUri": self.scoring_uri or None,
                           "swaggerUri": swagger, "traffic": dict(self.traffic), "mirrorTraffic": {},
                           "provisioningState": self.provisioning_state, "publicNetworkAccess": "Enabled"},
        }


@dataclass
class Deployment:
    name: str
    endpoint: str
    arm_id: str
    location: str
    body: dict[str, Any]                  # the properties/sku/tags as last PUT
    provisioning_state: str = "Creating"
    system: dict[str, str] = field(default_factory=system_data)
    cores_held: int = 0
    family: str = ""
    generation: int = 0                   # bumped by every PUT: a runner of an older one stops

    @property
    def props(self) -> dict[str, Any]:
        return self.body.get("properties") or {}

    @property
    def instance_type(self) -> str:
        return str(self.props.get("instanceType") or "")

    @property
    def instance_count(self) -> int:
        sku = self.body.get("sku") or {}
        return int(sku.get("capacity") or 1)

    def to_json(self) -> dict[str, Any]:
        props = dict(self.props)
        props["provisioningState"] = self.provisioning_state
        props.setdefault("endpointComputeType", "Managed")
        props.setdefault("scaleSettings", {"scaleType": "Default"})
        props.setdefault("requestSettings", {"maxConcurrentRequestsPerInstance": 1, "requestTimeout": "PT5S",
                                             "maxQueueWait": "PT0.5S"})
        props.setdefault("appInsightsEnabled", False)
        props.setdefault("egressPublicNetworkAccess", "Enabled")
        return {"id": self.arm_id, "name": self.name,
                "type": f"{PROVIDER}/workspaces/onlineEndpoints/deployments", "location": self.location,
                "tags": dict(self.body.get("tags") or {}), "kind": "Managed",
                "sku": {"name": "Default", "tier": "Standard", "capacity": self.instance_count},
                "systemData": dict(self.system), "properties": props}


@dataclass
class AmlToken:
    value: str
    expires: float

    def valid(self) -> bool:
        return time.time() < self.expires
