"""``cvtriton_triton.annotate``: boxes drawn where the normalised coordinates say, on the image as the user
sees it (EXIF orientation applied), a label banner for classification, atomic PNG writes, clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from cvtriton_triton.annotate import PALETTE, draw_predictions, label_colours, preview_pixels
from cvtriton_triton.errors import UserError
from cvtriton_triton.model_info import Box, Prediction

GREY = (128, 128, 128)


def test_boxes_are_drawn_on_the_exif_rotated_image(tmp_path: Path) -> None:
    src = tmp_path / "phone.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6                                    # stored landscape, shown rotated 90° clockwise
    Image.new("RGB", (200, 100), GREY).save(src, exif=exif, quality=95)
    out = draw_predictions(src, [Prediction("can", 0.9, Box(0.25, 0.5, 0.5, 0.25))], tmp_path / "out" / "p.png")
    with Image.open(out) as drawn:
        assert drawn.format == "PNG" and drawn.size == (100, 200)        # portrait, as displayed
        rgb = drawn.convert("RGB")
        colour = label_colours(["can"])["can"]
        assert rgb.getpixel((50, 149)) == colour                          # bottom edge: y = (0.5 + 0.25) * 200
        assert rgb.getpixel((25, 125)) == colour                          # left edge: x = 0.25 * 100
        assert rgb.getpixel((50, 125)) != colour and max(abs(a - b) for a, b in zip(rgb.getpixel((50, 125)), GREY, strict=True)) < 10
    assert [p.name for p in out.parent.iterdir()] == ["p.png"]           # no temporary file left


def test_two_labels_get_different_colours_and_classification_gets_a_banner(tmp_path: Path) -> None:
    assert len(set(label_colours(["box", "can", "bottle"]).values())) == 3
    src = tmp_path / "plain.png"
    Image.new("RGB", (300, 200), GREY).save(src)
    out = draw_predictions(src, [Prediction("red", 0.93), Prediction("blue", 0.05)], tmp_path / "c.png")
    with Image.open(out) as drawn:
        banner = [drawn.convert("RGB").getpixel((x, 2)) for x in range(0, 40)]
    assert any(pixel in PALETTE for pixel in banner)


def test_unreadable_image_is_a_user_error(tmp_path: Path) -> None:
    bad = tmp_path / "notes.jpg"
    bad.write_text("not an image")
    with pytest.raises(UserError, match="cannot read .*notes.jpg as an image"):
        draw_predictions(bad, [], tmp_path / "x.png")
    with pytest.raises(UserError, match="does not exist"):
        draw_predictions(tmp_path / "missing.jpg", [], tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()


def test_preview_keeps_the_aspect_ratio(tmp_path: Path) -> None:
    src = tmp_path / "wide.png"
    Image.new("RGB", (400, 100), (10, 20, 30)).save(src)
    pixels = preview_pixels(src, 40, 40)
    assert len(pixels) == 10 and len(pixels[0]) == 40 and pixels[0][0] == (10, 20, 30)
