"""Image -> input tensor, the way Custom Vision's official ONNX export samples feed their models.

The samples (Azure-Samples/customvision-export-samples, python/onnx) stretch-resize the picture to
the model's H x W (no crop, no letterbox), lay it out NCHW, swap to BGR when the model's metadata
says ``Bgr8``, keep 0-255 for ``NominalRange_0_255`` and divide by 255 otherwise, and cast to
float16 for the Float16 flavour; the scripts inside export zips also honour EXIF orientation. We
do the same, with the filter the samples get from ``PIL.Image.resize``'s default: bicubic. Phone
photos are large (4000x3000), so JPEGs are decoded at a reduced DCT scale (``Image.draft``) when
the target is much smaller — the same pixels a full decode followed by a downscale would give,
to within resampling noise, at a fraction of the time.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import UserError
from .image_formats import TEST_IMAGE_FIX
from .model_info import ModelInfo

RESAMPLE = Image.Resampling.BICUBIC      # what the samples' plain ``.resize(size)`` uses


def _describe(source: Path | str | bytes) -> str:
    return "the image data" if isinstance(source, (bytes, bytearray, memoryview)) else Path(source).name


def load_image(source: Path | str | bytes, *, draft_size: tuple[int, int] | None = None) -> Image.Image:
    """Open a picture (path or encoded bytes), apply its EXIF orientation and return it as RGB.

    ``draft_size`` (width, height): the size the picture will be resized to; a JPEG at least twice
    that size in both directions is decoded at a reduced scale that still covers it.
    Unreadable or non-image input -> ``UserError`` naming the file (never its contents).
    """
    name = _describe(source)
    try:
        if isinstance(source, (bytes, bytearray, memoryview)):
            image = Image.open(io.BytesIO(bytes(source)))
        else:
            image = Image.open(Path(source))
        with image, warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            if draft_size is not None and image.format == "JPEG":
                side = max(draft_size)            # covers either orientation after exif_transpose
                image.draft("RGB", (side, side))
            image.load()
            upright = ImageOps.exif_transpose(image)
            return upright.convert("RGB") if upright.mode != "RGB" else upright.copy()
    except FileNotFoundError:
        raise UserError(f"image not found: {source}", "check the path") from None
    except IsADirectoryError:
        raise UserError(f"{name} is a folder, not an image", TEST_IMAGE_FIX) from None
    except UnidentifiedImageError:
        raise UserError(f"{name} is not an image Pillow can read", TEST_IMAGE_FIX) from None
    except Image.DecompressionBombError:
        raise UserError(f"{name} is too large to decode safely", "resize it below ~170 megapixels") from None
    except (OSError, SyntaxError, ValueError) as exc:   # truncated/corrupt data surfaces as these
        raise UserError(f"{name} could not be decoded ({exc.__class__.__name__})",
                        "check the file is a complete, uncorrupted picture") from None


def check_image(path: Path | str) -> None:
    """Quick check that ``path`` is a picture Pillow recognises (header and structure, no full decode), so a
    missing file, a folder or a text file is refused before a server starts. ``UserError`` otherwise."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"image not found: {path}", "check the path")
    if path.is_dir():
        raise UserError(f"{path.name} is a folder, not an image", TEST_IMAGE_FIX)
    try:
        if path.stat().st_size == 0:
            raise UserError(f"{path.name} is empty (0 bytes)", TEST_IMAGE_FIX)
        with Image.open(path) as image, warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image.verify()
    except UserError:
        raise
    except UnidentifiedImageError:
        raise UserError(f"{path.name} is not an image Pillow can read", TEST_IMAGE_FIX) from None
    except Image.DecompressionBombError:
        raise UserError(f"{path.name} is too large to decode safely", "resize it below ~170 megapixels") from None
    except PermissionError:
        raise UserError(f"cannot read {path.name} (permission denied)", "check its permissions") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise UserError(f"{path.name} could not be decoded ({exc.__class__.__name__})",
                        "check the file is a complete, uncorrupted picture") from None


def smoke_tensor(info: ModelInfo) -> np.ndarray:
    """A generated picture of the model's input size (a smooth colour gradient), as the model's input tensor:
    enough to show that a served model loads and answers, without a test image."""
    ys, xs = np.mgrid[0:info.height, 0:info.width].astype(np.float32)
    red = 255.0 * xs / max(info.width - 1, 1)
    green = 255.0 * ys / max(info.height - 1, 1)
    blue = np.full_like(red, 128.0)
    pixels = np.stack([red, green, blue], axis=-1).astype(np.uint8)
    return to_tensor(Image.fromarray(pixels, "RGB"), info)


def to_tensor(image: Image.Image, info: ModelInfo) -> np.ndarray:
    """Stretch-resize to the model's W x H and return a [1, 3, H, W] tensor in the model's channel
    order, pixel range and float type (float32 or float16)."""
    if image.mode != "RGB":
        image = image.convert("RGB")
    if image.size != (info.width, info.height):
        image = image.resize((info.width, info.height), RESAMPLE)
    pixels = np.asarray(image, dtype=np.float32).transpose(2, 0, 1)     # HWC RGB -> CHW RGB
    if info.channels_bgr:
        pixels = pixels[::-1]
    if not info.range_0_255:
        pixels = pixels / np.float32(255.0)
    dtype = np.float16 if info.input_is_fp16 else np.float32
    return np.ascontiguousarray(pixels[np.newaxis], dtype=dtype)


def prepare(source: Path | str | bytes, info: ModelInfo) -> np.ndarray:
    """``load_image`` + ``to_tensor`` with the fast JPEG decode sized for this model."""
    return to_tensor(load_image(source, draft_size=(info.width, info.height)), info)
