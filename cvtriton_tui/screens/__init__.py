"""The wizard's screens: the main wizard screen, one pane module per step, and the modals.

The names below are this package's face. They are loaded on first use (PEP 562), so importing one screen
does not import the others: the wizard's first paint needs only the main screen and the Settings pane.
"""

from __future__ import annotations

import importlib
from typing import Any

_WHERE = {
    "MainScreen": "main", "StepPane": "base", "WizardState": "state",
    "SettingsPane": "settings", "ModelPane": "model", "ProjectPane": "project", "TrainPane": "train",
    "PackagePane": "package", "LocalTestPane": "local_test", "DeployPane": "deploy", "ResultsPane": "results",
    "CleanupPane": "cleanup",
    "ConfirmScreen": "confirm", "ChoiceScreen": "confirm", "ErrorModal": "error_modal", "ResumePrompt": "resume",
    "PathPicker": "pickers", "WizardCommands": "palette",
}
__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)
