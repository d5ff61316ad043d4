"""The wizard's choices that are not settings — target, model, test image, image folder, new-project and
deploy fields — kept in ``<workdir>/wizard-choices.json`` so they survive a restart. Settings (the export
flavour, the endpoint name…) live in the ``.env`` file and are saved with Ctrl+S, not here.

The file is rewritten atomically a moment after the last change and when the wizard closes; a missing or
unreadable file just means the defaults.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from cvtriton_core.steps.azureml_options import AUTH_MODES, DELETE_TARGETS, INSTANCE_TYPES

if TYPE_CHECKING:
    from cvtriton_tui.screens.state import WizardState

FILENAME = "wizard-choices.json"
VERSION = 1
# WizardState field -> accepted type
FIELDS: dict[str, type] = {
    "target": str, "model_choice": str, "model_path": str, "build_image": bool, "test_server": str,
    "image_path": str, "requests": str, "concurrency": str,
    "new_project": bool, "new_folder": str, "new_name": str, "new_task": str, "new_domain": str,
    "deployment_name": str, "instance_type": str, "instance_count": str, "auth_mode": str, "traffic": str,
    "traffic_share": str, "endpoint_requests": str, "endpoint_concurrency": str, "test_by_traffic": bool,
    "delete_target": str,
}
ALLOWED = {"target": ("azure", "local"), "model_choice": ("sample", "path"), "test_server": ("local", "container"),
           "auth_mode": AUTH_MODES, "delete_target": DELETE_TARGETS,
           "instance_type": tuple(t.name for t in INSTANCE_TYPES)}     # a retired size saved earlier is dropped


def path_for(state: "WizardState") -> Path:
    return state.workdir / FILENAME


def snapshot(state: "WizardState") -> str:
    data = {"version": VERSION, **{name: getattr(state, name) for name in FIELDS}}
    return json.dumps(data, indent=2, sort_keys=True) + "\n"


def restore(state: "WizardState") -> None:
    """Apply the saved choices to ``state``; values of the wrong type or out of range are ignored."""
    try:
        data = json.loads(path_for(state).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return
    if not isinstance(data, dict) or data.get("version") != VERSION:
        return
    for name, kind in FIELDS.items():
        value = data.get(name)
        if isinstance(value, kind) and (name not in ALLOWED or value in ALLOWED[name]):
            setattr(state, name, value)


def save(state: "WizardState", text: str) -> None:
    """Write ``text`` (a ``snapshot``) atomically; raises OSError when the work folder is unusable."""
    from cvtriton_core.fsutil import atomic_write_text

    atomic_write_text(path_for(state), text)
