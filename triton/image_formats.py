"""Which pictures a test image may be: what the preprocessing (Pillow) decodes, defined once for the CLI,
the wizard's file picker and the error texts. Training images for Custom Vision are a narrower set (the
service accepts .jpg, .png, .bmp and .gif only): see ``cvtriton_core.image_folder.IMAGE_SUFFIXES``."""

from __future__ import annotations

TEST_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp")
TEST_IMAGE_FIX = "give a JPEG, PNG, BMP, GIF, TIFF or WebP picture"
