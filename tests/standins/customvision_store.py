"""The Custom Vision emulator's in-memory service: projects, tags, images, iterations, exports.

Kept apart from the HTTP layer (``customvision_emulator``) so the rules read like the service's documented
behaviour: the SDK's generated models (``_attribute_map``) give every camelCase field name, and the limits
come from the service's "Limits and quotas" page (64 images and 20 tags per upload batch, 6 MB per training
image). Re-uploading an image (same bytes) answers ``OKDuplicate``. Training, publishing and export are in
:mod:`customvision_training`.
"""

from __future__ import annotations

import base64
import hashlib
import io
import threading
from collections import Counter
from typing import Any, Callable

from cvtriton_standins.customvision_records import (DEFAULT_DOMAIN, DOMAIN_BY_ID, MAX_IMAGES_PER_BATCH,
                                                    MAX_REGIONS_PER_IMAGE, MAX_TAGS_PER_BATCH, MAX_TAGS_PER_IMAGE,
                                                    MAX_TRAINING_IMAGE_BYTES, ApiError, Export, Iteration, Project,
                                                    StoredImage, Tag, _new_id)
from cvtriton_standins.customvision_training import TrainingRules


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


class Store(TrainingRules):
    """Every operation takes the lock: the HTTP server answers from several threads. Training, publishing and
    export rules are in :class:`~cvtriton_standins.customvision_training.TrainingRules`."""

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
        self.expired_links_to_issue = 0

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
