"""Fixtures shared by every test folder."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def pillow_wheels(request: pytest.FixtureRequest) -> Path:
    """A folder with the Pillow wheel for the stand-in Triton image's Python: image builds get it through
    IMAGE_PIP_WHEELS, since the stand-in (like the official image) has no Pillow and a build has no network
    here. Downloaded once on the host (pytest's cache)."""
    from cvtriton_standins.triton_base_image import pillow_wheels as download

    return download(Path(request.config.cache.mkdir("cvtriton-standin")), log=lambda line: print(f"[pillow] {line}"))
