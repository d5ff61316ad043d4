"""Errors the core raises. ``UserError`` is shared with cvtriton_triton so every layer speaks one type."""

from __future__ import annotations

from cvtriton_triton.errors import ModelImportError, ServerError, UserError

__all__ = ["UserError", "ModelImportError", "ServerError", "SettingsError", "StepFailed"]


class SettingsError(UserError):
    """``.env`` is missing a variable or holds a wrong value."""


class StepFailed(UserError):
    """A step failed while running (service error, timeout...)."""

    exit_code = 1
