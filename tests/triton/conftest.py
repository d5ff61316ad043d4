"""Shared fixtures for cvtriton_triton tests: generated sample models (one per export contract) and
the README's sample export, built once per session from fixed seeds (no downloads)."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
import pytest

from cvtriton_triton.sample_models import build_all_contracts, build_sample_export


@pytest.fixture(scope="session")
def sample_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """key -> model.onnx path (labels.txt beside it); keys as documented in build_all_contracts."""
    return build_all_contracts(tmp_path_factory.mktemp("sample_models"))


@pytest.fixture(scope="session")
def sample_export(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The dominant-colour classifier export zip; its JPEGs are in ``<zip dir>/images`` (SAMPLE_IMAGES_DIRNAME)."""
    return build_sample_export(tmp_path_factory.mktemp("sample_export"))


@pytest.fixture
def make_zip(tmp_path: Path):
    """Write a zip from {name: bytes | str | ZipInfo-ready (ZipInfo, bytes)} and return its path."""
    def _make(members: dict, name: str = "export.zip") -> Path:
        path = tmp_path / name
        with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
            for member, data in members.items():
                if isinstance(data, tuple):
                    archive.writestr(*data)
                else:
                    archive.writestr(member, data)
        return path
    return _make


def _listing(folder: Path) -> list[str]:
    """Every path under ``folder`` (hidden ones included), relative, sorted; [] when it is absent."""
    if not folder.exists():
        return []
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def _jpeg_bytes(pixels: np.ndarray, **save_args) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(pixels.astype(np.uint8), "RGB").save(buffer, format="JPEG", **save_args)
    return buffer.getvalue()


@pytest.fixture
def listing():
    """``listing(folder)``: every path under it, relative and sorted (importlib mode: no conftest imports)."""
    return _listing


@pytest.fixture
def jpeg_bytes():
    """``jpeg_bytes(pixels_uint8_hwc, **save_args)``: encode an RGB array as JPEG."""
    return _jpeg_bytes
