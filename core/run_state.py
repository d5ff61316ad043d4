"""A small JSON file that remembers what a run has done, so an interrupted run resumes where it stopped.

``<workdir>/run-state.json``: ``{"version": 1, "values": {...}, "steps": {name: {"status", "at", "summary"}}}``.
Values are IDs and paths later steps need (project_id, iteration_id, export_dir, repository...), never secrets.
Every change is written atomically.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from cvtriton_core.errors import UserError
from cvtriton_core.fsutil import atomic_write_text

FILENAME = "run-state.json"


class RunState:
    def __init__(self, path: Path, data: dict[str, Any] | None = None) -> None:
        self.path = Path(path)
        self._data: dict[str, Any] = data or {"version": 1, "values": {}, "steps": {}}

    @classmethod
    def load(cls, workdir: Path) -> "RunState":
        path = Path(workdir) / FILENAME
        if not path.exists():
            return cls(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            if not isinstance(data, dict) or data.get("version") != 1:
                raise ValueError("unknown format")
        except (ValueError, OSError) as exc:
            raise UserError(f"run state {path} is unreadable ({exc})", "delete it to start the run afresh")
        data.setdefault("values", {})
        data.setdefault("steps", {})
        return cls(path, data)

    # values -----------------------------------------------------------------
    def get(self, key: str, default: Any = None) -> Any:
        return self._data["values"].get(key, default)

    def set(self, **values: Any) -> None:
        self._data["values"].update({k: (str(v) if isinstance(v, Path) else v) for k, v in values.items()})
        self.save()

    def drop(self, *keys: str) -> None:
        """Forget ``keys`` (saved only when one of them was there)."""
        found = [k for k in keys if k in self._data["values"]]
        for key in found:
            del self._data["values"][key]
        if found:
            self.save()

    @property
    def values(self) -> dict[str, Any]:
        return dict(self._data["values"])

    # steps ------------------------------------------------------------------
    def step_status(self, step: str) -> str | None:
        return self._data["steps"].get(step, {}).get("status")

    def mark(self, step: str, status: str, summary: str = "") -> None:
        self._data["steps"][step] = {"status": status, "at": time.time(), "summary": summary}
        self.save()

    @property
    def steps(self) -> dict[str, dict[str, Any]]:
        return {k: dict(v) for k, v in self._data["steps"].items()}

    def unfinished(self) -> list[str]:
        """Steps that started but neither finished nor failed (an interrupted run): still marked "running"
        (the process died) or "cancelled" (the user stopped it, e.g. by quitting). "discarded" ends that."""
        return [name for name, s in self._data["steps"].items() if s.get("status") in ("running", "cancelled")]

    def save(self) -> None:
        atomic_write_text(self.path, json.dumps(self._data, indent=2, sort_keys=True) + "\n")
