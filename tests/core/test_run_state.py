from __future__ import annotations

import json

import pytest

from cvtriton_core.errors import UserError
from cvtriton_core.run_state import RunState


def test_roundtrip_and_unfinished(tmp_path):
    state = RunState.load(tmp_path)
    state.set(project_id="p1", export_dir=tmp_path / "export")
    state.mark("upload", "running")
    again = RunState.load(tmp_path)
    assert again.get("project_id") == "p1" and again.get("export_dir") == str(tmp_path / "export")
    assert again.unfinished() == ["upload"]


def test_corrupt_state_is_a_clear_error(tmp_path):
    (tmp_path / "run-state.json").write_text("{not json")
    with pytest.raises(UserError) as err:
        RunState.load(tmp_path)
    assert "delete it" in str(err.value)


def test_written_atomically(tmp_path):
    state = RunState.load(tmp_path)
    for i in range(20):
        state.set(i=i)
    assert json.loads((tmp_path / "run-state.json").read_text())["values"]["i"] == 19
    assert [p.name for p in tmp_path.iterdir()] == ["run-state.json"]


def test_cancelled_steps_are_unfinished_until_discarded(tmp_path):
    # Quitting the wizard while a step runs cancels it: the next start must offer to resume it.
    state = RunState.load(tmp_path)
    state.mark("import", "done")
    state.mark("serve-local", "done")
    state.mark("test", "cancelled")
    assert RunState.load(tmp_path).unfinished() == ["test"]
    state.mark("test", "discarded")
    assert RunState.load(tmp_path).unfinished() == []
