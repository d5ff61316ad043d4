"""The Custom Vision adapter's plain types and rules, free of the SDK so the wizard and tests import them cheaply.

The conversions read SDK model objects by attribute (``settings.domain_id``, ``publish_name``...), the names
the SDK's generated models use; nothing here imports the SDK.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Callable, Sequence, TypeVar

from cvtriton_core.errors import StepFailed, UserError

T = TypeVar("T")

# Project tasks: the domain type plus, for classification, the classification type.
CLASSIFICATION_TASKS = ("Classification-Multiclass", "Classification-Multilabel")
DETECTION_TASK = "ObjectDetection"
TASKS = CLASSIFICATION_TASKS + (DETECTION_TASK,)
# "General (compact)" per domain type: the default for a new project, because only compact domains export.
COMPACT_DOMAIN = {"Classification": "0732100f-1a38-4e49-a514-c9b44c697ab5",
                  "ObjectDetection": "a27d5ca5-bb19-49d8-a70a-fec086c47f5b"}
# Flavors the service documents for platform ONNX (SDK enum ExportFlavor + the export samples' ONNXFloat16).
ONNX_FLAVORS = ("ONNX10", "ONNX12", "ONNXFloat16")
DEFAULT_EXPORT_FLAVOR = "ONNX12"
ONNX_FLAVOR_NOTES = {"ONNX12": "float32", "ONNX10": "float32, older runtimes", "ONNXFloat16": "half precision"}
MAX_IMAGES_PER_BATCH = 64            # CreateImagesFromFiles: "Limited to 64 images and 20 tags per batch"
MAX_TAGS_PER_BATCH = 20
MAX_BATCH_BYTES = 32 * 1024 * 1024   # our own cap: keeps one request (base64 JSON) to ~45 MB
UPLOADED = ("OK", "OKDuplicate")     # per-image statuses that mean "the service has this image"


class ServiceRefusal(StepFailed):
    """The service answered a 4xx with its own error code: the request itself was refused (exit 1)."""

    def __init__(self, what: str, status: int, code: str | None, message: str) -> None:
        self.status, self.code, self.service_message = status, code, message
        super().__init__(f"Custom Vision refused to {what}: {message}" + (f" ({code})" if code else ""),
                         "fix what the service names and run again")


class IterationNotFound(UserError):
    """The project has no iteration with that id (deleted in the portal, or a wrong VISION_ITERATION_ID)."""


def canonical_flavor(value: str | None) -> str | None:
    """The documented spelling of an ONNX export flavor given in any letter case; None if it is not one."""
    wanted = (value or "").strip().lower()
    return next((known for known in ONNX_FLAVORS if known.lower() == wanted), None)


def domain_type(task: str) -> str:
    return DETECTION_TASK if task == DETECTION_TASK else "Classification"


def task_of(domain_kind: str, classification_type: str | None) -> str:
    if domain_kind == DETECTION_TASK:
        return DETECTION_TASK
    return f"Classification-{classification_type or 'Multiclass'}"


@dataclass(frozen=True)
class DomainInfo:
    id: str
    name: str
    type: str                   # "Classification" | "ObjectDetection"
    exportable: bool


@dataclass(frozen=True)
class ProjectInfo:
    id: str
    name: str
    task: str                   # "Classification-Multiclass" | "Classification-Multilabel" | "ObjectDetection"
    domain_id: str
    domain_name: str
    exportable: bool
    created: datetime | None


@dataclass(frozen=True)
class IterationInfo:
    id: str
    name: str
    status: str                 # "Training" | "Completed" | "Failed" (others are treated as still running)
    created: datetime | None
    trained_at: datetime | None
    published_name: str | None
    domain_id: str | None
    exportable: bool
    precision: float | None
    recall: float | None
    average_precision: float | None
    training_error: str | None = None


@dataclass(frozen=True)
class ExportInfo:
    platform: str
    flavor: str | None
    status: str                 # "Exporting" | "Done" | "Failed"
    download_uri: str           # empty until Done; a pre-signed URL: never log it
    newer_version_available: bool = False

    def matches(self, platform: str, flavor: str | None) -> bool:
        return self.platform == platform and (self.flavor or "").lower() == (flavor or "").lower()


@dataclass(frozen=True)
class UploadItem:
    """One image for CreateImagesFromFiles: tags (classification) or regions (tag_id, left, top, width, height)."""

    name: str
    data: bytes
    tag_ids: tuple[str, ...] = ()
    regions: tuple[tuple[str, float, float, float, float], ...] = ()


@dataclass(frozen=True)
class ImageOutcome:
    name: str
    status: str                 # "OK", "OKDuplicate", "ErrorImageFormat", "ErrorImageSize", ...
    image_id: str | None

    @property
    def uploaded(self) -> bool:
        return self.status in UPLOADED


def plan_batches(items: Sequence[T], *, size_of: Callable[[T], int], tags_of: Callable[[T], Sequence[str]],
                 max_images: int = MAX_IMAGES_PER_BATCH, max_tags: int = MAX_TAGS_PER_BATCH,
                 max_bytes: int = MAX_BATCH_BYTES) -> list[list[T]]:
    """Split ``items`` in order into batches within the service's per-request limits."""
    batches: list[list[T]] = []
    current: list[T] = []
    tags: set[str] = set()
    size = 0
    for item in items:
        item_tags = set(tags_of(item))
        if current and (len(current) >= max_images or len(tags | item_tags) > max_tags
                        or size + size_of(item) > max_bytes):
            batches.append(current)
            current, tags, size = [], set(), 0
        current.append(item)
        tags |= item_tags
        size += size_of(item)
    if current:
        batches.append(current)
    return batches


def domain_info(d: Any) -> DomainInfo:
    return DomainInfo(id=str(d.id), name=d.name or "", type=d.type or "", exportable=bool(d.exportable))


def project_info(p: Any, domains: dict[str, DomainInfo]) -> ProjectInfo:
    settings = p.settings
    domain_id = str(settings.domain_id) if settings and settings.domain_id else ""
    domain = domains.get(domain_id)
    kind = domain.type if domain else ("ObjectDetection" if not (settings and settings.classification_type)
                                       else "Classification")
    return ProjectInfo(id=str(p.id), name=p.name or "", task=task_of(kind, settings.classification_type if settings
                                                                      else None),
                       domain_id=domain_id, domain_name=domain.name if domain else "(unknown domain)",
                       exportable=bool(domain and domain.exportable), created=p.created)


def iteration_info(it: Any, performance: Any = None) -> IterationInfo:
    return IterationInfo(
        id=str(it.id), name=it.name or "", status=it.status or "", created=it.created, trained_at=it.trained_at,
        published_name=it.publish_name or None, domain_id=str(it.domain_id) if it.domain_id else None,
        exportable=bool(it.exportable),
        precision=getattr(performance, "precision", None), recall=getattr(performance, "recall", None),
        average_precision=getattr(performance, "average_precision", None),
        training_error=getattr(it, "training_error_details", None) or None)


def export_info(e: Any) -> ExportInfo:
    return ExportInfo(platform=e.platform or "", flavor=e.flavor or None, status=e.status or "",
                      download_uri=e.download_uri or "", newer_version_available=bool(e.newer_version_available))
