"""Folder -> import-name mapping (see README "Layout"). Sub-packages are found, so none is forgotten.

The design card fixes the folders (``core/``, ``triton/``); the installed names are unique so nothing
shadows PyTorch's ``triton`` compiler package or another ``core``.
"""

from setuptools import find_packages, setup

PACKAGE_DIRS = {
    "cvtriton_tui": "cvtriton_tui",
    "cvtriton_core": "core",
    "cvtriton_triton": "triton",
    "cvtriton_standins": "tests/standins",
}

setup(
    package_dir=PACKAGE_DIRS,
    packages=[f"{name}.{sub}" if sub else name
              for name, folder in PACKAGE_DIRS.items() for sub in ["", *find_packages(folder)]],
)
