"""Records and constants of the Custom Vision emulator: domains, error answers, projects and their parts.

Field names follow the SDK's generated models (``_attribute_map``); limits follow the service's "Limits and
quotas" page. Shared by :mod:`customvision_store` (projects, tags, images) and :mod:`customvision_training`
(training, publishing, export).
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

MAX_IMAGES_PER_BATCH = 64
MAX_TAGS_PER_BATCH = 20
MAX_TRAINING_IMAGE_BYTES = 6 * 1024 * 1024
MAX_REGIONS_PER_IMAGE = 300
MAX_TAGS_PER_IMAGE = 100
MAX_ITERATIONS = 20
MIN_IMAGES_PER_TAG = 5
MIN_REGIONS_PER_TAG = 15
EXPORT_PLATFORMS = ["CoreML", "TensorFlow", "DockerFile", "ONNX", "VAIDK", "OpenVino"]
ONNX_FLAVORS = {"onnx10": "ONNX10", "onnx12": "ONNX12", "onnxfloat16": "ONNXFloat16"}
PREDICTION_RESOURCE = re.compile(
    r"^/subscriptions/[0-9a-f-]{36}/resourceGroups/[^/]+/providers/Microsoft\.CognitiveServices/accounts/[^/]+$",
    re.IGNORECASE)
PUBLISH_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


@dataclass(frozen=True)
class Domain:
    id: str
    name: str
    type: str
    exportable: bool

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "type": self.type, "exportable": self.exportable,
                "enabled": True, "exportablePlatforms": EXPORT_PLATFORMS if self.exportable else []}


# The compact ids are the public ones (the same as cvtriton_core.adapters.customvision_types.COMPACT_DOMAIN, and
# listed by the service's GetDomains); the others are the well-known non-exportable domains.
DOMAINS = (
    Domain("ee85a74c-405e-4adc-bb47-ffa8ca0c9f31", "General", "Classification", False),
    Domain("c151d5b5-dd07-472a-acc8-15d29dea8518", "Food", "Classification", False),
    Domain("ca455789-012d-4b50-9fec-5bb63841c793", "Landmarks", "Classification", False),
    Domain("b30a91ae-e3c1-4f73-a81e-c270bff27c39", "Retail", "Classification", False),
    Domain("0732100f-1a38-4e49-a514-c9b44c697ab5", "General (compact)", "Classification", True),
    Domain("a1db07ca-a19a-4830-bae8-e004a42dc863", "General (compact) [S1]", "Classification", True),
    Domain("da2e3a8a-40a5-4171-82f4-58522f70fbc1", "General", "ObjectDetection", False),
    Domain("1d8ffafe-ec40-4fb2-8f90-72b3b6cecea4", "Logo", "ObjectDetection", False),
    Domain("a27d5ca5-bb19-49d8-a70a-fec086c47f5b", "General (compact)", "ObjectDetection", True),
    Domain("7ec2ac80-887b-48a6-8df9-8b1357765430", "General (compact) [S1]", "ObjectDetection", True),
)
DOMAIN_BY_ID = {d.id: d for d in DOMAINS}
DEFAULT_DOMAIN = {"Classification": DOMAINS[0].id, "ObjectDetection": DOMAINS[6].id}


class ApiError(Exception):
    """An error answer: status plus the CustomVisionError body ``{"code", "message"}``."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def now_iso() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _new_id() -> str:
    return str(uuid.uuid4())


@dataclass
class Tag:
    id: str
    name: str
    description: str = ""
    type: str = "Regular"


@dataclass
class StoredImage:
    id: str
    digest: str
    width: int
    height: int
    tag_ids: list[str]
    regions: list[dict[str, Any]]
    created: str = field(default_factory=now_iso)


@dataclass
class Export:
    platform: str
    flavor: str | None
    started: float
    fail_reason: str | None = None
    token: str = field(default_factory=lambda: uuid.uuid4().hex)
    signatures: set[str] = field(default_factory=set)     # the SAS sigs handed out and still valid


@dataclass
class Iteration:
    id: str
    name: str
    domain_id: str
    classification_type: str | None
    started: float
    tag_counts: dict[str, int]
    created: str = field(default_factory=now_iso)
    fail_reason: str | None = None
    publish_name: str = ""
    publish_resource: str = ""
    exports: list[Export] = field(default_factory=list)


@dataclass
class Project:
    id: str
    name: str
    description: str
    domain_id: str
    classification_type: str | None
    target_platforms: list[str]
    created: str = field(default_factory=now_iso)
    tags: dict[str, Tag] = field(default_factory=dict)
    images: dict[str, StoredImage] = field(default_factory=dict)     # by content digest
    iterations: list[Iteration] = field(default_factory=list)
    changed: bool = False          # images or tags changed since the last training

    @property
    def domain(self) -> Domain:
        return DOMAIN_BY_ID[self.domain_id]
