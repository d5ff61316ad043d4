"""Triton backends we serve with, and the backend directory the local ``tritonserver`` is given.

``onnxruntime/model.py`` is data here, never imported by this package: it is a Triton
*Python-based backend* that runs inside the python backend's stub process (where
``triton_python_backend_utils`` exists). The ``tritonserver`` 2.51 binary in the ``nvidia-pytriton``
wheel ships only the python backend, so this file stands in for Triton's native onnxruntime backend.

A backend directory (``--backend-directory``) is ``python/`` (``libtriton_python.so``,
``triton_python_backend_utils.py``, the stub built for this Python minor version) plus
``onnxruntime/model.py``; models whose config says ``platform: "onnxruntime_onnx"`` or
``backend: "onnxruntime"`` are then served by our file.
"""

from __future__ import annotations

import importlib.util
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from ..errors import ServerError

#: Folder holding one sub-folder per Python-based backend.
BACKENDS_DIR = Path(__file__).resolve().parent

#: The Python-based backend that serves ``platform: "onnxruntime_onnx"`` / ``backend: "onnxruntime"``.
ONNXRUNTIME_BACKEND_MODEL = BACKENDS_DIR / "onnxruntime" / "model.py"


@dataclass(frozen=True)
class TritonInstall:
    """Where the ``nvidia-pytriton`` wheel put the server and the pieces the backend dir needs."""

    binary: Path          # pytriton/tritonserver/bin/tritonserver
    libs: Path            # site-packages/nvidia_pytriton.libs (goes on LD_LIBRARY_PATH)
    python_backend: Path  # pytriton/tritonserver/backends/python
    stub: Path            # pytriton/tritonserver/python_backend_stubs/3.X/triton_python_backend_stub


def find_tritonserver() -> TritonInstall:
    """Locate the wheel's files without importing pytriton (its import is slow)."""
    spec = importlib.util.find_spec("pytriton")
    if spec is None or not spec.submodule_search_locations:
        raise ServerError("the local Triton server is not installed (package nvidia-pytriton missing)",
                          "pip install nvidia-pytriton==0.7.0 into this environment")
    root = Path(list(spec.submodule_search_locations)[0]) / "tritonserver"
    minor = f"{sys.version_info.major}.{sys.version_info.minor}"
    install = TritonInstall(
        binary=root / "bin" / "tritonserver",
        libs=root.parent.parent / "nvidia_pytriton.libs",
        python_backend=root / "backends" / "python",
        stub=root / "python_backend_stubs" / minor / "triton_python_backend_stub",
    )
    for what, path in vars(install).items():
        if not path.exists():
            raise ServerError(f"the nvidia-pytriton install is incomplete: {what} not found at {path}",
                              f"reinstall nvidia-pytriton==0.7.0 (it must ship a stub for Python {minor})")
    return install


def assemble_backend_directory(dest: Path, install: TritonInstall) -> None:
    """Fill ``dest`` (must not exist) with ``python/`` and ``onnxruntime/model.py``.

    Copies, not symlinks: Triton 2.51 refuses a symlinked ``libtriton_python.so`` ("backend library
    name ... escapes backend directory"), seen here.
    """
    (dest / "python").mkdir(parents=True)
    (dest / "onnxruntime").mkdir()
    for name in ("libtriton_python.so", "triton_python_backend_utils.py"):
        shutil.copy2(install.python_backend / name, dest / "python" / name)
    shutil.copy2(install.stub, dest / "python" / "triton_python_backend_stub")
    shutil.copy2(ONNXRUNTIME_BACKEND_MODEL, dest / "onnxruntime" / "model.py")
