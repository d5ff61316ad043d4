"""Image -> tensor: EXIF orientation, channel order, pixel range, dtype, size, errors, big JPEGs."""

from __future__ import annotations

import io
import time

import numpy as np
import pytest
from PIL import Image

from cvtriton_triton.errors import UserError
from cvtriton_triton.model_info import Contract, ModelInfo, TensorSpec
from cvtriton_triton.preprocess import load_image, prepare, to_tensor


def _info(*, bgr=True, range_255=True, dtype="float32", height=224, width=224) -> ModelInfo:
    return ModelInfo(Contract.CLASSIFICATION, TensorSpec("data", dtype, (1, 3, height, width)),
                     (TensorSpec("model_output", dtype, (1, 2)),), ("a", "b"), height, width,
                     channels_bgr=bgr, range_0_255=range_255)


def _png(pixels: np.ndarray, **save_args) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels.astype(np.uint8)).save(buffer, format="PNG", **save_args)
    return buffer.getvalue()


def _red_left_blue_right(width=40, height=20) -> np.ndarray:
    pixels = np.zeros((height, width, 3), np.uint8)
    pixels[:, : width // 2] = (255, 0, 0)
    pixels[:, width // 2:] = (0, 0, 255)
    return pixels


def test_exif_orientation_is_applied(tmp_path):
    image = Image.fromarray(_red_left_blue_right())
    exif = Image.Exif()
    exif[0x0112] = 6                      # stored sideways: display rotated 90 degrees clockwise
    path = tmp_path / "phone.jpg"
    image.save(path, format="JPEG", exif=exif, quality=95)
    upright = load_image(path)
    assert upright.size == (20, 40)       # portrait after rotation
    pixels = np.asarray(upright).astype(int)
    assert pixels[2, 10, 0] > 200 and pixels[2, 10, 2] < 60      # top is what was the left: red
    assert pixels[37, 10, 2] > 200 and pixels[37, 10, 0] < 60    # bottom: blue
    assert prepare(path, _info()).shape == (1, 3, 224, 224)


def test_bgr_and_rgb_channel_order():
    solid_red = Image.new("RGB", (64, 48), (255, 0, 0))
    bgr = to_tensor(solid_red, _info(bgr=True))
    rgb = to_tensor(solid_red, _info(bgr=False))
    assert bgr.shape == rgb.shape == (1, 3, 224, 224)
    assert (bgr[0, 2] == 255).all() and (bgr[0, 0] == 0).all()
    assert (rgb[0, 0] == 255).all() and (rgb[0, 2] == 0).all()


def test_pixel_range_and_dtype():
    grey = Image.new("RGB", (10, 10), (51, 102, 204))
    raw = to_tensor(grey, _info(bgr=False, range_255=True))
    unit = to_tensor(grey, _info(bgr=False, range_255=False))
    assert raw.dtype == unit.dtype == np.float32
    assert raw[0, :, 0, 0].tolist() == [51.0, 102.0, 204.0]
    assert unit[0, :, 0, 0] == pytest.approx([0.2, 0.4, 0.8])
    half = to_tensor(grey, _info(dtype="float16"))
    assert half.dtype == np.float16 and half[0, :, 0, 0].tolist() == [204.0, 102.0, 51.0]
    assert raw.flags["C_CONTIGUOUS"] and half.flags["C_CONTIGUOUS"]


def test_stretch_resize_to_width_by_height_matches_the_official_recipe():
    rng = np.random.default_rng(3)
    pixels = rng.integers(0, 256, (90, 160, 3)).astype(np.uint8)
    info = _info(height=200, width=300)
    tensor = prepare(_png(pixels), info)
    assert tensor.shape == (1, 3, 200, 300)
    # the export sample, call for call: PIL resize to (W, H) with Pillow's default filter (bicubic),
    # NCHW float32, RGB -> BGR, 0-255 kept
    expected = np.asarray(Image.fromarray(pixels).resize((300, 200)), np.float32)
    expected = expected.transpose(2, 0, 1)[np.newaxis][:, ::-1]
    assert np.array_equal(tensor, expected)


@pytest.mark.parametrize("mode", ["RGBA", "L", "P", "CMYK"])
def test_other_image_modes_become_rgb(mode):
    image = Image.new("RGB", (32, 32), (10, 200, 30)).convert(mode)
    buffer = io.BytesIO()
    image.save(buffer, format="TIFF")
    loaded = load_image(buffer.getvalue())
    assert loaded.mode == "RGB" and loaded.size == (32, 32)


def test_bytes_and_paths_give_the_same_tensor(tmp_path):
    data = _png(_red_left_blue_right())
    path = tmp_path / "x.png"
    path.write_bytes(data)
    assert np.array_equal(prepare(data, _info()), prepare(path, _info()))


def test_unreadable_inputs_are_user_errors(tmp_path):
    text = tmp_path / "notes.jpg"
    text.write_text("this is not a picture")
    truncated = tmp_path / "cut.jpg"
    full = io.BytesIO()
    Image.fromarray(np.full((200, 200, 3), 90, np.uint8)).save(full, format="JPEG")
    truncated.write_bytes(full.getvalue()[:400])
    cases = [(text, "not an image"), (truncated, "could not be decoded"), (tmp_path / "missing.png", "not found"),
             (tmp_path, "folder"), (b"\x00\x01garbage", "not an image")]
    for source, expected in cases:
        with pytest.raises(UserError) as excinfo:
            load_image(source)
        message = str(excinfo.value)
        assert expected in message and "\n" not in message, message


def test_big_jpeg_is_decoded_at_reduced_size_with_the_same_result(tmp_path, jpeg_bytes):
    y, x = np.mgrid[0:3000, 0:4000]
    pixels = np.stack([x * 255 / 4000, y * 255 / 3000, (x + y) * 255 / 7000], axis=-1)
    path = tmp_path / "phone.jpg"
    path.write_bytes(jpeg_bytes(pixels, quality=90))
    info = _info()
    drafted = load_image(path, draft_size=(info.width, info.height))
    assert max(drafted.size) <= 1000 and min(drafted.size) >= 224       # decoded at 1/4 or 1/8 scale
    start = time.perf_counter()
    fast = prepare(path, info)
    fast_s = time.perf_counter() - start
    start = time.perf_counter()
    slow = to_tensor(load_image(path), info)
    slow_s = time.perf_counter() - start
    assert np.abs(fast - slow).mean() < 1.0 and np.abs(fast - slow).max() < 8.0
    assert fast_s < slow_s / 2, (fast_s, slow_s)


def test_small_images_are_not_drafted(tmp_path, jpeg_bytes):
    path = tmp_path / "small.jpg"
    path.write_bytes(jpeg_bytes(np.full((300, 400, 3), 120)))
    assert load_image(path, draft_size=(224, 224)).size == (400, 300)
