"""``annotate`` failures are one-line ``UserError``s that leave no temporary file behind (the drawing
itself is tested in tests/tui/test_annotate.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from cvtriton_triton.annotate import draw_predictions
from cvtriton_triton.errors import UserError
from cvtriton_triton.model_info import Box, Prediction


def test_unwritable_target_is_a_user_error_and_leaves_no_temp_file(tmp_path: Path) -> None:
    src = tmp_path / "plain.png"
    Image.new("RGB", (40, 30), (90, 90, 90)).save(src)
    target = tmp_path / "out" / "taken.png"
    target.mkdir(parents=True)                        # a folder where the PNG should go
    with pytest.raises(UserError, match="cannot write") as caught:
        draw_predictions(src, [Prediction("can", 0.9, Box(0.1, 0.1, 0.5, 0.5))], target)
    assert "\n" not in str(caught.value)
    assert [p.name for p in target.parent.iterdir()] == ["taken.png"] and target.is_dir()


def test_decompression_bomb_is_a_user_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = tmp_path / "big.png"
    Image.new("RGB", (300, 300), (0, 0, 0)).save(src)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)   # 90000 px is > 2x the limit: Pillow refuses it
    with pytest.raises(UserError, match="too large"):
        draw_predictions(src, [], tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()
