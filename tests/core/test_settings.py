"""Settings: every variable documented (README, .env.example), problems named one per line, secrets masked,
atomic save + backup."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from dotenv import dotenv_values

from cvtriton_core.errors import SettingsError
from cvtriton_core.settings import BY_NAME, VARIABLES, Settings, save_env

ROOT = Path(__file__).resolve().parents[2]
KEY = "0123456789abcdef0123456789abcdef"
GOOD = {
    "AZURE_SUBSCRIPTION_ID": "11111111-2222-3333-4444-555555555555",
    "AZUREML_RESOURCE_GROUP": "rg-vision",
    "AZUREML_WORKSPACE": "ws-vision",
    "AZURE_LOCATION": "westeurope",
    "VISION_TRAINING_ENDPOINT": "https://cv.cognitiveservices.azure.com/",
    "VISION_TRAINING_KEY": KEY,
    "VISION_PROJECT_NAME": "birds",
    "ENDPOINT_NAME": "cv-triton",
}


def _readme_settings_table() -> dict[str, list[str]]:
    """group -> variables, from the README's Settings table (the rows between its header and the next blank)."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    table = text.split("| group | variables |", 1)[1].split("\n\n", 1)[0]
    groups = {}
    for row in table.splitlines()[2:]:
        group, variables = (cell.strip() for cell in row.strip().strip("|").split("|", 1))
        groups[group] = re.findall(r"`([A-Z][A-Z0-9]*_[A-Z0-9_]+)`", variables)   # ONNX12 is a value
    return groups


def _example_groups() -> dict[str, list[str]]:
    """group -> variables, in order, from .env.example's "# --- Group ---" sections."""
    groups: dict[str, list[str]] = {}
    current = None
    for line in (ROOT / ".env.example").read_text(encoding="utf-8").splitlines():
        header = re.match(r"^# --- (.+?) [-(]", line)
        if header:
            current = groups.setdefault(header.group(1).strip(), [])
        elif re.match(r"^[A-Z][A-Z0-9_]*=", line):
            current.append(line.split("=", 1)[0])
    return groups


def test_env_example_lists_every_variable_in_the_readme_groups():
    """The error text tells users to copy .env.example: it must hold every variable the settings know, in
    the README's groups, and load as a valid (if empty) settings file."""
    expected: dict[str, list[str]] = {}
    for var in VARIABLES:
        expected.setdefault(var.group, []).append(var.name)
    assert _example_groups() == expected
    assert set(dotenv_values(ROOT / ".env.example")) == set(BY_NAME)
    example = Settings.load(ROOT / ".env.example")
    assert example.problems("local") == [] and example.get("MODEL_NAME") == BY_NAME["MODEL_NAME"].default


def test_readme_documents_every_variable_in_its_group():
    readme = _readme_settings_table()
    assert {g: set(v) for g, v in readme.items()} == {
        g: {var.name for var in VARIABLES if var.group == g} for g in {var.group for var in VARIABLES}}


def test_complete_settings_have_no_problems():
    assert Settings(GOOD).problems("azure") == []


def test_missing_and_wrong_values_are_named():
    settings = Settings({**GOOD, "AZURE_SUBSCRIPTION_ID": "not-a-guid", "ENDPOINT_NAME": "9bad_name"})
    del_settings = Settings({k: v for k, v in settings.items() if k != "AZUREML_WORKSPACE"})
    messages = [p.message for p in del_settings.problems("azure")]
    assert any(m.startswith("AZUREML_WORKSPACE is not set") for m in messages)
    assert any(m.startswith("AZURE_SUBSCRIPTION_ID='not-a-guid' is not valid") for m in messages)
    assert any(m.startswith("ENDPOINT_NAME") for m in messages)
    assert all("\n" not in m for m in messages)


def test_local_target_needs_no_azure():
    assert Settings({}).problems("local") == []


def test_secret_never_in_repr_or_problem():
    settings = Settings({**GOOD, "VISION_TRAINING_KEY": "has spaces " + KEY})
    assert KEY not in repr(settings) and KEY not in str(settings)
    problems = " ".join(p.message for p in settings.problems("azure"))
    assert "VISION_TRAINING_KEY" in problems and KEY not in problems


def test_require_raises_one_line():
    with pytest.raises(SettingsError) as err:
        Settings({}).require("VISION_TRAINING_KEY")
    assert "VISION_TRAINING_KEY is not set" in str(err.value) and "\n" not in str(err.value)


def test_defaults():
    assert Settings({}).get("MODEL_NAME") == "customvision" and Settings({}).get("MODEL_VERSION") == "1"


def test_save_keeps_comments_order_and_backup(tmp_path):
    env = tmp_path / ".env"
    env.write_text("# my settings\nVISION_PROJECT_NAME=birds\nexport AZURE_LOCATION=westeurope\nOTHER=1\n")
    backup = save_env(env, {"VISION_PROJECT_ID": "11111111-2222-3333-4444-555555555555",
                            "AZURE_LOCATION": "northeurope", "VISION_PROJECT_NAME": "my birds #1"})
    text = env.read_text()
    assert text.splitlines()[0] == "# my settings"
    assert "AZURE_LOCATION=northeurope" in text and "OTHER=1" in text
    assert text.rstrip().endswith("VISION_PROJECT_ID=11111111-2222-3333-4444-555555555555")
    assert backup and backup.read_text().startswith("# my settings\nVISION_PROJECT_NAME=birds")
    reloaded = Settings.load(env)
    assert reloaded["VISION_PROJECT_NAME"] == "my birds #1"
    assert oct(os.stat(env).st_mode & 0o777) == "0o600"
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_load_missing_file_required(tmp_path):
    with pytest.raises(SettingsError) as err:
        Settings.load(tmp_path / "nope.env", required=True)
    assert "not found" in str(err.value)


def test_save_replaces_every_occurrence_of_a_duplicated_variable(tmp_path):
    # python-dotenv keeps the last occurrence: updating only the first would silently lose the change.
    env = tmp_path / ".env"
    env.write_text("VISION_PROJECT_NAME=old\nOTHER=1\nVISION_PROJECT_NAME=older\n")
    save_env(env, {"VISION_PROJECT_NAME": "new"})
    assert Settings.load(env).raw("VISION_PROJECT_NAME") == "new"
    assert "old" not in env.read_text()


def test_backup_is_private_even_when_the_file_was_not(tmp_path):
    env = tmp_path / ".env"
    env.write_text(f"VISION_TRAINING_KEY={KEY}\n")
    os.chmod(env, 0o644)
    backup = save_env(env, {"VISION_PROJECT_NAME": "birds"})
    assert backup is not None and KEY in backup.read_text()
    assert oct(os.stat(backup).st_mode & 0o777) == "0o600"


def test_one_character_resource_group_is_valid():
    # Azure: 1-90 characters (letters, digits, _ - . ( )), not ending with a period.
    assert Settings({**GOOD, "AZUREML_RESOURCE_GROUP": "r"}).problems("azure") == []
    assert Settings({**GOOD, "AZUREML_RESOURCE_GROUP": "rg."}).problems("azure")
