"""Scan a folder of training images and say, before anything is uploaded, what is wrong with it.

Two layouts, following how Custom Vision labels images:

* **classification** — one sub-folder per tag: ``ROOT/<tag>/*.jpg``. For a multilabel project the same image
  (same bytes) may sit in several tag folders and is uploaded once with all those tags; a multiclass project
  allows one tag per image.
* **object detection** — images anywhere under ROOT plus ``ROOT/regions.csv``, one row per region::

      image,tag,left,top,width,height
      shelf/001.jpg,can,0.10,0.20,0.30,0.25

  ``image`` is the path relative to ROOT; ``left``/``top``/``width``/``height`` are normalised to 0..1 of the
  image's width and height (the service's ``Region`` format).

The service's documented limits are checked here so a bad folder fails in a second, not after an upload:
accepted formats jpg/png/bmp/gif, at most 6 MB per training image, at most 10,240 px per side and an aspect
ratio up to 25:1, at least 2 tags with 5 images each (classification), 15 regions per tag (detection), at most
300 regions per image. :func:`scan_image_folder` never raises for content problems: it lists them, so the
wizard can show them all and the headless run can refuse with the first one.
"""

from __future__ import annotations

import csv
import hashlib
import io
import dataclasses
import posixpath
from dataclasses import dataclass, field
from pathlib import Path

from cvtriton_core.adapters.customvision_types import CLASSIFICATION_TASKS, DETECTION_TASK, TASKS
from cvtriton_core.errors import UserError

REGIONS_FILE = "regions.csv"
REGIONS_HEADER = ("image", "tag", "left", "top", "width", "height")
# What Custom Vision accepts for training ("Images must be .jpg, .png, .bmp or .gif", at most 6 MB:
# https://learn.microsoft.com/azure/ai-services/custom-vision-service/limits-and-quotas). A test image only has to
# be readable by Pillow (cvtriton_triton.image_formats.TEST_IMAGE_SUFFIXES): WebP is fine there, not here.
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif"})
ACCEPTED_FORMATS = frozenset({"JPEG", "PNG", "BMP", "GIF"})
MAX_TRAINING_IMAGE_BYTES = 6 * 1024 * 1024
MAX_SIDE_PX = 10_240
MIN_SIDE_PX = 256                  # smaller images are accepted but upscaled by the service
MAX_ASPECT_RATIO = 25.0
MIN_TAGS = 2
MIN_IMAGES_PER_TAG = 5
MIN_REGIONS_PER_TAG = 15
MAX_REGIONS_PER_IMAGE = 300
_IGNORED_NAMES = frozenset({"thumbs.db", "desktop.ini", REGIONS_FILE})


@dataclass(frozen=True)
class Region:
    tag: str
    left: float
    top: float
    width: float
    height: float


@dataclass(frozen=True)
class FolderImage:
    """One image to upload: where it is, its tags or regions, and the digest that identifies it on resume."""

    path: Path
    name: str                       # relative to the folder, with forward slashes
    tags: tuple[str, ...]
    regions: tuple[Region, ...]
    size: int
    digest: str                     # sha256 of the bytes
    width: int
    height: int

    @property
    def tag_names(self) -> tuple[str, ...]:
        return self.tags or tuple(dict.fromkeys(r.tag for r in self.regions))


@dataclass(frozen=True)
class FolderPlan:
    root: Path
    task: str
    tags: dict[str, int]            # tag -> images (classification) or regions (detection)
    images: tuple[FolderImage, ...]
    problems: tuple[str, ...]
    warnings: tuple[str, ...] = field(default=())

    @property
    def ok(self) -> bool:
        return not self.problems

    def raise_for_problems(self) -> None:
        """One UserError (bad input, exit 2) naming the first problem and how many more there are."""
        if self.problems:
            more = f" (and {len(self.problems) - 1} more problems)" if len(self.problems) > 1 else ""
            cause, _, fix = self.problems[0].partition(" — ")
            raise UserError(f"image folder {self.root}: {cause}{more}", fix)


def scan_image_folder(root: Path, task: str | None = None) -> FolderPlan:
    """Read every image under ``root`` (the layout follows ``task``, or decides it when ``task`` is None)."""
    root = Path(root).expanduser()
    if task is not None and task not in TASKS:
        return FolderPlan(root, task, {}, (), (f"unknown project task {task!r} — use one of {', '.join(TASKS)}",))
    if not root.is_dir():
        what = "is not a folder" if root.exists() else "does not exist"
        return FolderPlan(root, task or CLASSIFICATION_TASKS[0], {}, (),
                          (f"{root} {what} — pass a folder of images (one sub-folder per tag, or regions.csv)",))
    if task is None:
        task = DETECTION_TASK if (root / REGIONS_FILE).is_file() else CLASSIFICATION_TASKS[0]
    scan = _Scan(root, task)
    if task == DETECTION_TASK:
        scan.detection()
    else:
        scan.classification()
    return scan.plan()


class _Scan:
    def __init__(self, root: Path, task: str) -> None:
        self.root, self.task = root, task
        self.problems: list[str] = []
        self.warnings: list[str] = []
        self.images: list[FolderImage] = []
        self.small: list[str] = []

    def plan(self) -> FolderPlan:
        counts: dict[str, int] = {}
        for image in self.images:
            for tag in image.tags:
                counts[tag] = counts.get(tag, 0) + 1
            for region in image.regions:
                counts[region.tag] = counts.get(region.tag, 0) + 1
        if not self.images and not self.problems:
            self.problems.append(f"no images found in {self.root} — put each tag's images in a sub-folder named "
                                 f"after the tag, or add images with a {REGIONS_FILE} for object detection")
        elif self.images:
            self._check_counts(counts)
        if self.small:
            self.warnings.append(f"{len(self.small)} image(s) are under {MIN_SIDE_PX} px on a side (e.g. "
                                 f"{self.small[0]}); the service upscales them, which can cost accuracy")
        return FolderPlan(self.root, self.task, dict(sorted(counts.items())), tuple(self.images),
                          tuple(dict.fromkeys(self.problems)), tuple(dict.fromkeys(self.warnings)))

    def _check_counts(self, counts: dict[str, int]) -> None:
        by_folded: dict[str, list[str]] = {}
        for tag in sorted(counts):
            by_folded.setdefault(tag.casefold(), []).append(tag)
        for same in (tags for tags in by_folded.values() if len(tags) > 1):
            self.problems.append(f"tags {' and '.join(repr(t) for t in same)} differ only in letter case; Custom "
                                 "Vision treats them as one tag — give them one spelling")
        if self.task == DETECTION_TASK:
            for tag, n in sorted(counts.items()):
                if n < MIN_REGIONS_PER_TAG:
                    self.problems.append(f"tag {tag!r} has {n} regions; training needs at least "
                                         f"{MIN_REGIONS_PER_TAG} per tag — add {MIN_REGIONS_PER_TAG - n} more rows "
                                         f"for it to {REGIONS_FILE}")
            return
        if len(counts) < MIN_TAGS:
            self.problems.append(f"found {len(counts)} tag folder(s); training needs at least {MIN_TAGS} tags — add "
                                 "another sub-folder of images named after its tag")
        for tag, n in sorted(counts.items()):
            if n < MIN_IMAGES_PER_TAG:
                self.problems.append(f"tag {tag!r} has {n} images; training needs at least {MIN_IMAGES_PER_TAG} per "
                                     f"tag — add {MIN_IMAGES_PER_TAG - n} more images to {tag}/ or remove the folder")

    # classification ---------------------------------------------------------------------------
    def classification(self) -> None:
        by_digest: dict[str, FolderImage] = {}
        loose = [p for p in self._files(self.root, recursive=False)]
        if loose:
            self.warnings.append(f"{len(loose)} file(s) directly in {self.root} are not in a tag folder and will not "
                                 "be uploaded")
        for folder in sorted(p for p in self.root.iterdir() if p.is_dir() and not p.name.startswith(".")):
            tag = folder.name.strip()
            for path in self._files(folder, recursive=True):
                image = self._read(path, tags=(tag,))
                if image is None:
                    continue
                twin = by_digest.get(image.digest)
                if twin is None:
                    by_digest[image.digest] = image
                elif tag in twin.tags:
                    self.warnings.append(f"{image.name} and {twin.name} are the same image; it is uploaded once")
                elif self.task == CLASSIFICATION_TASKS[1]:
                    by_digest[image.digest] = dataclasses.replace(twin, tags=twin.tags + (tag,))
                else:
                    self.problems.append(f"{image.name} and {twin.name} are the same image under two tags; a "
                                         "multiclass project allows one tag per image — remove one copy, or set "
                                         "VISION_PROJECT_TASK=Classification-Multilabel")
        self.images = list(by_digest.values())

    # detection --------------------------------------------------------------------------------
    def detection(self) -> None:
        csv_path = self.root / REGIONS_FILE
        if not csv_path.is_file():
            self.problems.append(f"{REGIONS_FILE} not found in {self.root} — an object detection folder needs "
                                 f"{REGIONS_FILE} with the columns {','.join(REGIONS_HEADER)}")
            return
        regions = self._read_regions(csv_path)
        listed = set(regions)
        unlisted = [p for p in self._files(self.root, recursive=True) if self._rel(p) not in listed]
        if unlisted:
            self.warnings.append(f"{len(unlisted)} image(s) have no rows in {REGIONS_FILE} and will not be uploaded")
        seen: dict[str, str] = {}
        for name, boxes in regions.items():
            path = self.root / name
            if not path.is_file():
                self.problems.append(f"{REGIONS_FILE} lists {name}, which does not exist — fix the path (relative "
                                     f"to {self.root}) or remove its rows")
                continue
            if len(boxes) > MAX_REGIONS_PER_IMAGE:
                self.problems.append(f"{name} has {len(boxes)} regions; the service takes at most "
                                     f"{MAX_REGIONS_PER_IMAGE} per image — split or remove some rows")
            image = self._read(path, regions=tuple(boxes))
            if image is None:
                continue
            if image.digest in seen:
                self.problems.append(f"{name} and {seen[image.digest]} are the same image — keep one file and "
                                     f"merge their rows in {REGIONS_FILE}")
                continue
            seen[image.digest] = name
            self.images.append(image)

    def _read_regions(self, csv_path: Path) -> dict[str, list[Region]]:
        out: dict[str, list[Region]] = {}
        try:
            with csv_path.open(newline="", encoding="utf-8-sig") as handle:
                rows = list(csv.reader(handle))
        except (OSError, UnicodeDecodeError) as exc:
            self.problems.append(f"cannot read {csv_path} ({type(exc).__name__}) — save it as UTF-8 text")
            return out
        rows = [r for r in rows if r and any(c.strip() for c in r)]
        if not rows or tuple(c.strip().lower() for c in rows[0]) != REGIONS_HEADER:
            self.problems.append(f"{csv_path} must start with the header {','.join(REGIONS_HEADER)} — add that line")
            return out
        for line, row in enumerate(rows[1:], start=2):
            where = f"{REGIONS_FILE} line {line}"
            if len(row) != len(REGIONS_HEADER):
                self.problems.append(f"{where} has {len(row)} columns, expected {len(REGIONS_HEADER)} — use "
                                     f"{','.join(REGIONS_HEADER)}")
                continue
            raw, tag = row[0].strip().replace("\\", "/"), row[1].strip()
            name = posixpath.normpath(raw) if raw else ""      # "./a.jpg" and "a.jpg" are one image
            try:
                left, top, width, height = (float(c) for c in row[2:])
            except ValueError:
                self.problems.append(f"{where}: left/top/width/height must be numbers — fix the row")
                continue
            resolved = (self.root / name).resolve()
            if not name or not resolved.is_relative_to(self.root.resolve()):
                self.problems.append(f"{where}: image path {name!r} is outside {self.root} — use a path "
                                     "relative to it")
                continue
            if not tag:
                self.problems.append(f"{where}: the tag is empty — name the object's tag")
                continue
            if not (0 <= left <= 1 and 0 <= top <= 1 and 0 < width <= 1 and 0 < height <= 1
                    and left + width <= 1 + 1e-6 and top + height <= 1 + 1e-6):
                self.problems.append(f"{where}: the box ({left}, {top}, {width}, {height}) is not inside 0..1 — "
                                     "give left, top, width, height as fractions of the image size")
                continue
            out.setdefault(name, []).append(Region(tag, left, top, width, height))
        return out

    # files ------------------------------------------------------------------------------------
    def _files(self, folder: Path, *, recursive: bool) -> list[Path]:
        found = folder.rglob("*") if recursive else folder.iterdir()
        return sorted(p for p in found if p.is_file() and not any(part.startswith(".") for part in
                                                                  p.relative_to(self.root).parts)
                      and p.name.lower() not in _IGNORED_NAMES)

    def _rel(self, path: Path) -> str:
        return path.relative_to(self.root).as_posix()

    def _read(self, path: Path, *, tags: tuple[str, ...] = (), regions: tuple[Region, ...] = ()) -> FolderImage | None:
        name = self._rel(path)
        if path.suffix.lower() not in IMAGE_SUFFIXES:
            self.problems.append(f"{name} is not an image file (accepted: jpg, png, bmp, gif) — remove it or move it "
                                 "out of the folder")
            return None
        try:
            size = path.stat().st_size
            if size > MAX_TRAINING_IMAGE_BYTES:
                self.problems.append(f"{name} is {size / 1048576:.1f} MB; training images may be at most 6 MB — "
                                     "resize or recompress it")
                return None
            data = path.read_bytes()
        except OSError as exc:
            self.problems.append(f"cannot read {name} ({exc.strerror or type(exc).__name__}) — check its permissions")
            return None
        checked = _decode(data)
        if isinstance(checked, str):
            self.problems.append(f"{name} {checked} — replace it with a valid jpg, png, bmp or gif, or remove it")
            return None
        width, height = checked
        if max(width, height) > MAX_SIDE_PX or max(width, height) > MAX_ASPECT_RATIO * min(width, height):
            self.problems.append(f"{name} is {width}x{height} px; the service takes at most {MAX_SIDE_PX} px per side "
                                 f"and an aspect ratio up to 25:1 — resize or crop it")
            return None
        if min(width, height) < MIN_SIDE_PX:
            self.small.append(name)
        return FolderImage(path, name, tags, regions, size, hashlib.sha256(data).hexdigest(), width, height)


def _decode(data: bytes) -> tuple[int, int] | str:
    """(width, height) when the bytes decode as an accepted image, else what is wrong with them."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as img:
            if img.format not in ACCEPTED_FORMATS:
                return f"is a {img.format} image, which the service does not accept"
            size = img.size
            if img.format == "JPEG":
                img.draft("RGB", (max(1, size[0] // 8), max(1, size[1] // 8)))   # decode every byte, cheaply
            img.load()
    except UnidentifiedImageError:
        return "is not a readable image"
    except Image.DecompressionBombError:
        return "has too many pixels to decode safely"
    except (OSError, ValueError, SyntaxError) as exc:
        return f"is damaged ({' '.join(str(exc).split())[:80]})"
    return size
