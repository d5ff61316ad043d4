"""What a Triton model may be called and numbered: the one definition the settings, the wizard and the
repository writer share.

* The model name is the name of its folder in the model repository and the ``<name>`` in Triton's
  ``/v2/models/<name>/...`` URLs. Triton itself loads any name made of letters, digits, ``_``, ``.`` and ``-``
  (checked with the 2.51 server); a space, ``%``, ``:`` or a non-ASCII letter makes it fail to load or to
  answer. We also refuse a leading ``.`` or ``-`` (a hidden folder, an option-like argument) and more than
  255 characters (one folder name on Linux file systems).
* The version is a numbered sub-folder: Triton ignores sub-folders "that are not numerically named, or have
  names that start with zero (0)" (https://github.com/triton-inference-server/server/blob/main/docs/user_guide/model_repository.md#repository-layout),
  so ``01`` or ``0`` would silently serve nothing. Versions are 64-bit integers: at most 18 digits here.
"""

from __future__ import annotations

import re

DEFAULT_MODEL_NAME = "customvision"
DEFAULT_MODEL_VERSION = "1"
MODEL_NAME_PATTERN = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,254}")
MODEL_VERSION_PATTERN = re.compile(r"[1-9][0-9]{0,17}")
MODEL_NAME_RULE = "1-255 letters, digits, '_', '.' or '-', starting with a letter, digit or '_'"
MODEL_VERSION_RULE = "a whole number from 1 up, without leading zeros (Triton ignores version folders like 01)"


def model_name_problem(name: str) -> str | None:
    """None when Triton can serve a model of that name, else what the name should look like."""
    return None if MODEL_NAME_PATTERN.fullmatch(name or "") else MODEL_NAME_RULE


def model_version_problem(version: str) -> str | None:
    return None if MODEL_VERSION_PATTERN.fullmatch(str(version or "")) else MODEL_VERSION_RULE
