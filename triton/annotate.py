"""Draw predictions on the test image and save it as a PNG; also a small pixel grid for terminal previews.

Used by the wizard (in a worker) and headless. Boxes are normalised (0-1, origin top-left, see
``model_info.Box``) and are drawn on the image as the user sees it: EXIF orientation is applied first, the
same way preprocessing does, or boxes from a phone photo would land rotated. A classification result has no
boxes: its top labels are written in a banner instead. The PNG is written to a temporary file in the target
folder and renamed, so a reader never sees half an image.
"""

from __future__ import annotations

import io
import os
import tempfile
from pathlib import Path
from typing import Sequence

from PIL import Image, ImageDraw, ImageFont, ImageOps, UnidentifiedImageError

from cvtriton_triton.errors import UserError
from cvtriton_triton.model_info import Prediction

PALETTE = ((230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48), (145, 30, 180),
           (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212), (0, 128, 128), (170, 110, 40))
BANNER_LABELS = 3


def label_colours(labels: Sequence[str]) -> dict[str, tuple[int, int, int]]:
    """Distinct colours for the labels in one picture (sorted, so the same labels get the same colours)."""
    return {label: PALETTE[i % len(PALETTE)] for i, label in enumerate(sorted(set(labels)))}


def _open(image_path: Path) -> Image.Image:
    try:
        with Image.open(image_path) as img:
            img = ImageOps.exif_transpose(img)
            return img.convert("RGB")
    except FileNotFoundError:
        raise UserError(f"test image {image_path} does not exist", "pick an existing JPEG or PNG file") from None
    except Image.DecompressionBombError:
        raise UserError(f"{image_path} is too large to decode safely", "resize it below ~170 megapixels") from None
    except (UnidentifiedImageError, OSError) as exc:
        raise UserError(f"cannot read {image_path} as an image ({type(exc).__name__})",
                        "pick a JPEG or PNG file") from exc


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow without FreeType: the fixed bitmap font
        return ImageFont.load_default()


def _tag(draw: ImageDraw.ImageDraw, xy: tuple[float, float], text: str, colour: tuple[int, int, int],
         font: ImageFont.ImageFont | ImageFont.FreeTypeFont, limit: tuple[int, int]) -> None:
    """A filled label box with readable text, kept inside the image."""
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    width, height = right - left + 6, bottom - top + 4
    x = min(max(0.0, xy[0]), max(0, limit[0] - width))
    y = xy[1] - height if xy[1] - height >= 0 else xy[1]
    y = min(y, max(0, limit[1] - height))
    draw.rectangle((x, y, x + width, y + height), fill=colour)
    ink = (0, 0, 0) if sum(colour) > 382 else (255, 255, 255)
    draw.text((x + 3 - left, y + 2 - top), text, fill=ink, font=font)


def draw_predictions(image_path: Path, predictions: Sequence[Prediction], out_png: Path) -> Path:
    """Draw ``predictions`` on ``image_path`` and write the result to ``out_png`` (atomically). Returns it."""
    image = _open(Path(image_path))
    draw = ImageDraw.Draw(image)
    w, h = image.size
    font = _font(max(11, min(w, h) // 28))
    line = max(2, min(w, h) // 150)
    boxed = [p for p in predictions if p.box is not None]
    colours = label_colours([p.label for p in predictions])
    for p in boxed:
        b = p.box
        x0, y0 = b.left * w, b.top * h
        x1, y1 = (b.left + b.width) * w, (b.top + b.height) * h
        x0, x1 = sorted((min(max(x0, 0), w - 1), min(max(x1, 0), w - 1)))
        y0, y1 = sorted((min(max(y0, 0), h - 1), min(max(y1, 0), h - 1)))
        colour = colours[p.label]
        draw.rectangle((x0, y0, x1, y1), outline=colour, width=line)
        _tag(draw, (x0, y0), f"{p.label} {p.probability:.2f}", colour, font, (w, h))
    if not boxed:
        y = 0.0
        for p in list(predictions)[:BANNER_LABELS]:
            text = f"{p.label} {p.probability:.2f}"
            _tag(draw, (0, y), text, colours[p.label], font, (w, h))
            y += draw.textbbox((0, 0), text, font=font)[3] + 8
    return _save_png(image, Path(out_png))


def _save_png(image: Image.Image, out_png: Path) -> Path:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    try:
        out_png.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{out_png.name}.", suffix=".tmp", dir=out_png.parent)
    except OSError as exc:
        raise UserError(f"cannot write {out_png} ({exc.strerror or type(exc).__name__})",
                        "choose a writable folder (--workdir)") from exc
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(buffer.getvalue())
        os.replace(tmp, out_png)
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, OSError):   # disk full, out_png is a folder...
            raise UserError(f"cannot write {out_png} ({exc.strerror or type(exc).__name__})",
                            "choose a writable file path with free space (--workdir)") from None
        raise
    return out_png


def preview_pixels(image_path: Path, max_width: int = 48, max_height: int = 32) -> list[list[tuple[int, int, int]]]:
    """The image shrunk to at most ``max_width`` x ``max_height`` pixels (aspect kept), as rows of RGB.

    A terminal cell holds two pixel rows (half blocks) and is about twice as tall as wide, so pixels map
    to roughly square cells when ``max_height`` counts pixel rows.
    """
    image = _open(Path(image_path))
    image.thumbnail((max_width, max_height), Image.Resampling.BILINEAR)
    width, height = image.size
    raw = image.tobytes()
    return [[(raw[i], raw[i + 1], raw[i + 2]) for i in range(y * width * 3, (y + 1) * width * 3, 3)]
            for y in range(height)]
