"""The Custom Vision emulator's in-memory service: projects, tags, images, iterations, exports.

Kept apart from the HTTP layer (``customvision_emulator``) so the rules read like the service's documented
behaviour: the SDK's generated models (``_attribute_map``) give every camelCase field name, and the limits
come from the service's "Limits and quotas" page (64 images and 20 tags per upload batch, 6 MB per training
image, 5 images per tag for classification and 15 regions per tag for detection, 20 iterations per project).
Training and export run on the clock: an iteration is "Training" until ``training_s`` has passed, an export
is "Exporting" (with an empty ``downloadUri``) until ``export_s`` has passed.
"""

from __future__ import annotations

import base64
import hashlib
import io
import re
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable

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


# The compact ids are the public ones (facts.md); the others are the well-known non-exportable domains.
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


def image_size(data: bytes) -> tuple[int, int, str] | None:
    """(width, height, format) when the bytes are an accepted image (jpg, png, bmp, gif), else None."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as img:
            fmt = img.format or ""
            size = img.size
            img.verify()
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
        return None
    if fmt not in ("JPEG", "PNG", "BMP", "GIF"):
        return None
    return size[0], size[1], fmt


class Store:
    """Every operation takes the lock: the HTTP server answers from several threads."""

    def __init__(self, *, training_s: float, export_s: float,
                 export_zip: Callable[[Project, Iteration, Export], bytes]) -> None:
        self.lock = threading.RLock()
        self.projects: dict[str, Project] = {}
        self.training_s = training_s
        self.export_s = export_s
        self.counters: Counter[str] = Counter()
        self.export_zip = export_zip
        self.next_training_failure: str | None = None
        self.next_export_failure: str | None = None
        self.allowed_prediction_resources: set[str] | None = None

    # projects ---------------------------------------------------------------------------------
    def project(self, project_id: str) -> Project:
        found = self.projects.get(project_id.lower())
        if found is None:
            raise ApiError(404, "NotFoundProject", f"Project {project_id} not found.")
        return found

    def create_project(self, name: str | None, description: str | None, domain_id: str | None,
                       classification_type: str | None, target_platforms: list[str]) -> Project:
        if not name or len(name) > 255:
            raise ApiError(400, "BadRequestProjectName", "Project name is missing or longer than 255 characters.")
        if any(p.name == name for p in self.projects.values()):
            raise ApiError(400, "BadRequestProjectNameNotUnique", f"A project named '{name}' already exists.")
        domain_id = (domain_id or DEFAULT_DOMAIN["Classification"]).lower()
        domain = DOMAIN_BY_ID.get(domain_id)
        if domain is None:
            raise ApiError(400, "BadRequestProjectUnknownDomain", f"Unknown domain {domain_id}.")
        if domain.type == "Classification":
            classification_type = classification_type or "Multiclass"
            if classification_type not in ("Multiclass", "Multilabel"):
                raise ApiError(400, "BadRequestProjectUnknownClassification",
                               f"Unknown classification type '{classification_type}'.")
        else:
            classification_type = None
        if target_platforms and not domain.exportable:
            raise ApiError(400, "BadRequestProjectUnsupportedExportPlatform",
                           f"Domain '{domain.name}' cannot export to {', '.join(target_platforms)}.")
        project = Project(_new_id(), name, description or "", domain.id, classification_type, target_platforms)
        self.projects[project.id] = project
        return project

    def project_json(self, p: Project) -> dict[str, Any]:
        return {"id": p.id, "name": p.name, "description": p.description, "created": p.created,
                "lastModified": p.created, "thumbnailUri": None, "drModeEnabled": False, "status": "Succeeded",
                "settings": {"domainId": p.domain_id, "classificationType": p.classification_type,
                             "targetExportPlatforms": p.target_platforms, "useNegativeSet": True,
                             "detectionParameters": None, "imageProcessingSettings": {"augmentationMethods": {}}}}

    # tags -------------------------------------------------------------------------------------
    def create_tag(self, project: Project, name: str | None, description: str | None, tag_type: str | None) -> Tag:
        if not name or len(name) > 256:
            raise ApiError(400, "BadRequestTagName", "Tag name is missing or too long.")
        if any(t.name.lower() == name.lower() for t in project.tags.values()):
            raise ApiError(400, "BadRequestTagNameNotUnique", f"Tag '{name}' already exists in this project.")
        if tag_type not in (None, "Regular", "Negative", "GeneralProduct"):
            raise ApiError(400, "BadRequestTagType", f"Unknown tag type '{tag_type}'.")
        tag = Tag(_new_id(), name, description or "", tag_type or "Regular")
        project.tags[tag.id] = tag
        project.changed = True
        return tag

    def tag_json(self, project: Project, tag: Tag) -> dict[str, Any]:
        count = sum(1 for img in project.images.values()
                    if tag.id in img.tag_ids or any(r["tagId"] == tag.id for r in img.regions))
        return {"id": tag.id, "name": tag.name, "description": tag.description, "type": tag.type,
                "imageCount": count}

    # images -----------------------------------------------------------------------------------
    def create_images(self, project: Project, batch: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        entries = batch.get("images") or []
        if len(entries) > MAX_IMAGES_PER_BATCH:
            raise ApiError(400, "BadRequestImageBatch",
                           f"Batch contains {len(entries)} images; the limit is {MAX_IMAGES_PER_BATCH}.")
        batch_tags = list(batch.get("tagIds") or [])
        all_tags = set(batch_tags)
        for entry in entries:
            all_tags.update(entry.get("tagIds") or [])
            all_tags.update(r.get("tagId") for r in entry.get("regions") or [])
        if len(all_tags) > MAX_TAGS_PER_BATCH:
            raise ApiError(400, "BadRequestImageBatch",
                           f"Batch uses {len(all_tags)} tags; the limit is {MAX_TAGS_PER_BATCH}.")
        self.counters["images_received"] += len(entries)
        results = [self._create_image(project, entry, batch_tags) for entry in entries]
        ok = all(r["status"] == "OK" for r in results) and bool(results)
        return (200 if ok else 207), {"isBatchSuccessful": ok, "images": results}

    def _create_image(self, project: Project, entry: dict[str, Any], batch_tags: list[str]) -> dict[str, Any]:
        name = entry.get("name")

        def fail(status: str) -> dict[str, Any]:
            return {"sourceUrl": name, "status": status, "image": None}

        try:
            data = base64.b64decode(entry.get("contents") or "", validate=True)
        except (ValueError, TypeError):
            return fail("ErrorSource")
        if len(data) > MAX_TRAINING_IMAGE_BYTES:
            return fail("ErrorImageSize")
        size = image_size(data)
        if size is None:
            return fail("ErrorImageFormat")
        tag_ids = list(dict.fromkeys(batch_tags + list(entry.get("tagIds") or [])))
        regions = list(entry.get("regions") or [])
        if len(tag_ids) > MAX_TAGS_PER_IMAGE:
            return fail("ErrorTagLimitExceed")
        if len(regions) > MAX_REGIONS_PER_IMAGE:
            return fail("ErrorRegionLimitExceed")
        if any(t not in project.tags for t in tag_ids + [r.get("tagId") for r in regions]):
            return fail("ErrorInvalidTag")
        for r in regions:
            box = [r.get(k) for k in ("left", "top", "width", "height")]
            if not all(isinstance(v, (int, float)) for v in box) or min(box) < 0 or box[0] + box[2] > 1.0001 \
                    or box[1] + box[3] > 1.0001 or box[2] <= 0 or box[3] <= 0:
                return fail("ErrorUnknown")
        digest = hashlib.sha256(data).hexdigest()
        existing = project.images.get(digest)
        if existing is not None:
            return {"sourceUrl": name, "status": "OKDuplicate", "image": self.image_json(project, existing)}
        stored = StoredImage(_new_id(), digest, size[0], size[1], tag_ids,
                             [{"regionId": _new_id(), **{k: r[k] for k in ("tagId", "left", "top", "width", "height")}}
                              for r in regions])
        project.images[digest] = stored
        project.changed = True
        self.counters["images_created"] += 1
        return {"sourceUrl": name, "status": "OK", "image": self.image_json(project, stored)}

    def image_json(self, project: Project, img: StoredImage) -> dict[str, Any]:
        def tag_name(tag_id: str) -> str:
            return project.tags[tag_id].name if tag_id in project.tags else ""

        uri = f"https://emulator.invalid/images/{img.id}"
        return {"id": img.id, "created": img.created, "width": img.width, "height": img.height,
                "resizedImageUri": uri, "thumbnailUri": uri, "originalImageUri": uri, "metadata": {},
                "tags": [{"tagId": t, "tagName": tag_name(t), "created": img.created} for t in img.tag_ids],
                "regions": [{**r, "tagName": tag_name(r["tagId"]), "created": img.created} for r in img.regions]}

    def tagged_count(self, project: Project, tagged: bool) -> int:
        return sum(1 for img in project.images.values() if bool(img.tag_ids or img.regions) == tagged)

    # training ---------------------------------------------------------------------------------
    def train(self, project: Project, force: bool) -> Iteration:
        current = [self.status(it) for it in project.iterations]
        if "Training" in current:
            raise ApiError(400, "BadRequestTrainingAlreadyInProgress", "Training is already in progress.")
        if not project.changed and "Completed" in current and not force:
            raise ApiError(400, "BadRequestTrainingNotNeeded", "Nothing changed since the last training.")
        if len(project.iterations) >= MAX_ITERATIONS:
            raise ApiError(400, "BadRequestExceedIterationPerProjectLimit",
                           f"A project holds at most {MAX_ITERATIONS} iterations; delete one first.")
        counts = self._training_counts(project)
        self._validate_training(project, counts)
        iteration = Iteration(_new_id(), f"Iteration {len(project.iterations) + 1}", project.domain_id,
                              project.classification_type, time.monotonic(), counts,
                              fail_reason=self.next_training_failure)
        self.next_training_failure = None
        project.iterations.append(iteration)
        project.changed = False
        self.counters["trainings_started"] += 1
        return iteration

    def _training_counts(self, project: Project) -> dict[str, int]:
        counts = {tag.name: 0 for tag in project.tags.values()}
        for img in project.images.values():
            for tag_id in img.tag_ids:
                counts[project.tags[tag_id].name] += 1
            for region in img.regions:
                counts[project.tags[region["tagId"]].name] += 1
        return counts

    def _validate_training(self, project: Project, counts: dict[str, int]) -> None:
        if project.domain.type == "ObjectDetection":
            used = {n: c for n, c in counts.items() if c}
            short = sorted(n for n, c in used.items() if c < MIN_REGIONS_PER_TAG)
            if not used or short:
                raise ApiError(400, "BadRequestDetectionTrainingValidationFailed",
                               f"Not enough regions to train: each tag needs at least {MIN_REGIONS_PER_TAG} "
                               f"tagged regions (short: {', '.join(short) or 'no tagged images'}).")
            return
        used = {n: c for n, c in counts.items() if c}
        short = sorted(n for n, c in used.items() if c < MIN_IMAGES_PER_TAG)
        if len(used) < 2 or short:
            raise ApiError(400, "BadRequestClassificationTrainingValidationFailed",
                           f"Your project can't be trained just yet: it needs at least 2 tags with at least "
                           f"{MIN_IMAGES_PER_TAG} images each (short: {', '.join(short) or 'fewer than 2 tags'}).")
        if project.classification_type == "Multiclass":
            multi = sum(1 for img in project.images.values() if len(img.tag_ids) > 1)
            if multi:
                raise ApiError(400, "BadRequestMultiClassClassificationTrainingValidationFailed",
                               f"{multi} images carry more than one tag in a multiclass project.")

    def status(self, it: Iteration) -> str:
        if time.monotonic() - it.started < self.training_s:
            return "Training"
        return "Failed" if it.fail_reason else "Completed"

    def iteration(self, project: Project, iteration_id: str) -> Iteration:
        for it in project.iterations:
            if it.id == iteration_id.lower():
                return it
        raise ApiError(404, "NotFoundIteration", f"Iteration {iteration_id} not found.")

    def iteration_json(self, project: Project, it: Iteration) -> dict[str, Any]:
        status = self.status(it)
        domain = DOMAIN_BY_ID[it.domain_id]
        exportable = domain.exportable and status == "Completed"
        return {"id": it.id, "name": it.name, "status": status, "created": it.created, "lastModified": it.created,
                "trainedAt": it.created if status != "Training" else None, "projectId": project.id,
                "exportable": exportable, "exportableTo": EXPORT_PLATFORMS if exportable else [],
                "domainId": it.domain_id, "classificationType": it.classification_type, "trainingType": "Regular",
                "reservedBudgetInHours": 0, "trainingTimeInMinutes": 1, "publishName": it.publish_name or None,
                "originalPublishResourceId": it.publish_resource or None,
                "trainingErrorDetails": it.fail_reason if status == "Failed" else None}

    def performance_json(self, project: Project, it: Iteration) -> dict[str, Any]:
        if self.status(it) != "Completed":
            raise ApiError(400, "BadRequestIterationIsNotTrained", "The iteration is not trained yet.")
        per_tag = []
        for tag in project.tags.values():
            n = it.tag_counts.get(tag.name, 0)
            if n:
                score = round(min(0.99, 0.6 + 0.01 * n), 4)      # more examples, better scores
                per_tag.append({"id": tag.id, "name": tag.name, "precision": score, "precisionStdDeviation": 0.0,
                                "recall": round(score - 0.05, 4), "recallStdDeviation": 0.0,
                                "averagePrecision": round(score - 0.02, 4)})
        mean = (lambda key: round(sum(t[key] for t in per_tag) / len(per_tag), 4) if per_tag else 0.0)
        return {"perTagPerformance": per_tag, "precision": mean("precision"), "precisionStdDeviation": 0.0,
                "recall": mean("recall"), "recallStdDeviation": 0.0, "averagePrecision": mean("averagePrecision")}

    # publish ----------------------------------------------------------------------------------
    def publish(self, project: Project, it: Iteration, name: str | None, resource: str | None, overwrite: bool) -> None:
        if self.status(it) != "Completed":
            raise ApiError(400, "BadRequestIterationIsNotTrained", "Only a completed iteration can be published.")
        if not name or not PUBLISH_NAME.match(name):
            raise ApiError(400, "BadRequestInvalidPublishName", f"Invalid publish name '{name}'.")
        if not resource or not PREDICTION_RESOURCE.match(resource) or (
                self.allowed_prediction_resources is not None and resource not in self.allowed_prediction_resources):
            raise ApiError(400, "BadRequestInvalidPublishTarget",
                           "The prediction resource id is not a valid Custom Vision prediction resource.")
        if it.publish_name:
            raise ApiError(400, "BadRequestIterationIsPublished",
                           f"The iteration is already published as '{it.publish_name}'.")
        holder = next((o for o in project.iterations if o.publish_name == name), None)
        if holder is not None:
            if not overwrite:
                raise ApiError(400, "BadRequestInvalidPublishName",
                               f"The publish name '{name}' is in use by {holder.name}; pass overwrite=true.")
            holder.publish_name, holder.publish_resource = "", ""
        it.publish_name, it.publish_resource = name, resource

    # export -----------------------------------------------------------------------------------
    def export(self, project: Project, it: Iteration, platform: str | None, flavor: str | None) -> Export:
        status = self.status(it)
        if status == "Training":
            raise ApiError(400, "BadRequestExportWhileTraining", "Cannot export while the iteration is training.")
        if status != "Completed":
            raise ApiError(400, "BadRequestIterationIsNotTrained", "Only a completed iteration can be exported.")
        domain = DOMAIN_BY_ID[it.domain_id]
        if not domain.exportable:
            raise ApiError(400, "BadRequestNotSupported",
                           f"Iteration {it.id} is not exportable: domain '{domain.name}' is not a compact domain.")
        if platform not in EXPORT_PLATFORMS:
            raise ApiError(400, "BadRequestNotSupported", f"Unknown export platform '{platform}'.")
        if flavor is not None:
            if platform != "ONNX" or flavor.lower() not in ONNX_FLAVORS:
                raise ApiError(400, "BadRequestNotSupported",
                               f"Flavor '{flavor}' is not supported for platform '{platform}'.")
            flavor = ONNX_FLAVORS[flavor.lower()]
        for existing in it.exports:
            if existing.platform == platform and existing.flavor == flavor and self.export_status(existing) != "Failed":
                raise ApiError(400, "BadRequestExportAlreadyInProgress", f"{it.id} is already queued for export.")
        it.exports = [e for e in it.exports if not (e.platform == platform and e.flavor == flavor)]
        export = Export(platform, flavor, time.monotonic(), fail_reason=self.next_export_failure)
        self.next_export_failure = None
        it.exports.append(export)
        self.counters["exports_started"] += 1
        return export

    def export_status(self, export: Export) -> str:
        if time.monotonic() - export.started < self.export_s:
            return "Exporting"
        return "Failed" if export.fail_reason else "Done"

    def export_json(self, export: Export, base_url: str) -> dict[str, Any]:
        status = self.export_status(export)
        uri = f"{base_url}/exports/{export.token}.zip?sv=2020-08-04&sig={export.token[:16]}" if status == "Done" else ""
        return {"platform": export.platform, "status": status, "downloadUri": uri, "flavor": export.flavor,
                "newerVersionAvailable": False}

    def find_export(self, token: str) -> tuple[Project, Iteration, Export] | None:
        for project in self.projects.values():
            for it in project.iterations:
                for export in it.exports:
                    if export.token == token and self.export_status(export) == "Done":
                        return project, it, export
        return None
