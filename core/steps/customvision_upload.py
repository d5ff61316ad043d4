"""Uploading an image folder to a project so that a resumed or repeated run sends nothing twice.

The upload manifest (``<workdir>/customvision/uploaded-<project id>.json``) maps each image's sha256 to the id
the service gave it, written atomically after every batch. A run that was interrupted between batches sends
only the images the manifest lacks; a second run over the same folder sends none. (Even without the manifest
nothing would be stored twice — the service answers ``OKDuplicate`` — but the upload would be paid again.)
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from cvtriton_core.adapters.customvision_types import UploadItem, plan_batches
from cvtriton_core.errors import StepFailed, UserError
from cvtriton_core.fsutil import atomic_write_text
from cvtriton_core.image_folder import FolderImage, FolderPlan

# What a per-image status from CreateImagesFromFiles means for the user.
STATUS_HELP = {
    "ErrorSource": "the service could not read the file",
    "ErrorImageFormat": "not an image format the service accepts (jpg, png, bmp, gif)",
    "ErrorImageSize": "larger than the 6 MB limit",
    "ErrorImageDimensions": "outside the accepted width/height",
    "ErrorStorage": "the service could not store it (temporary)",
    "ErrorLimitExceed": "the project's image limit is reached",
    "ErrorTagLimitExceed": "too many tags on one image",
    "ErrorRegionLimitExceed": "too many regions on one image",
    "ErrorInvalidTag": "a tag that does not exist in the project",
    "ErrorNegativeAndRegularTagOnSameImage": "a negative tag together with a regular one",
    "Missing": "no status came back for it",
}


class UploadManifest:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.images: dict[str, str] = {}
        if path.exists():
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
                self.images = {str(k): str(v) for k, v in data.get("images", {}).items()}
            except (ValueError, OSError, AttributeError) as exc:
                raise UserError(f"upload manifest {path} is unreadable ({type(exc).__name__})",
                                "delete it; images already uploaded come back as duplicates and are not stored "
                                "twice") from None

    @classmethod
    def for_project(cls, workdir: Path, project_id: str) -> "UploadManifest":
        return cls(Path(workdir) / "customvision" / f"uploaded-{project_id}.json")

    def __contains__(self, digest: str) -> bool:
        return digest in self.images

    def add(self, digest: str, image_id: str | None) -> None:
        self.images[digest] = image_id or ""

    def save(self) -> None:
        atomic_write_text(self.path, json.dumps({"version": 1, "images": self.images}, indent=1, sort_keys=True) + "\n")


def dataset_digest(plan: FolderPlan) -> str:
    """One value for "these images with these labels": training is needed again only when it changes."""
    h = hashlib.sha256()
    for image in sorted(plan.images, key=lambda i: i.digest):
        h.update(f"{image.digest}|{','.join(sorted(image.tags))}|{sorted(image.regions, key=repr)!r}\n".encode())
    return h.hexdigest()


@dataclass(frozen=True)
class UploadTally:
    uploaded: int
    duplicates: int
    batches: int
    refused: tuple[str, ...]


def build_item(image: FolderImage, tag_ids: dict[str, str]) -> tuple[UploadItem, str]:
    """The request entry for one image and the sha256 of the bytes actually sent."""
    data = image.path.read_bytes()
    return UploadItem(name=image.name, data=data, tag_ids=tuple(tag_ids[t] for t in image.tags),
                      regions=tuple((tag_ids[r.tag], r.left, r.top, r.width, r.height) for r in image.regions)), \
        hashlib.sha256(data).hexdigest()


def batches_for(pending: list[FolderImage]) -> list[list[FolderImage]]:
    return plan_batches(pending, size_of=lambda i: i.size, tags_of=lambda i: i.tag_names)


def refused_error(refused: tuple[str, ...], attempted: int) -> StepFailed:
    first = refused[0]
    name, _, status = first.rpartition(": ")
    why = STATUS_HELP.get(status, status)
    return StepFailed(f"Custom Vision refused {len(refused)} of {attempted} images (first: {name}: {why} [{status}])",
                      "fix or remove those files and run again; images already uploaded are not sent again")
