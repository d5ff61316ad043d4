"""The Settings step: inline validation naming the variable and the fix, secrets masked with a reveal
toggle, atomic save with a backup, target choice, per-service connection checks (the real Triton install,
the Custom Vision emulator through the real SDK), and Back/Next keeping what was typed."""

from __future__ import annotations

from pathlib import Path

import pytest
from textual.widgets import Input, Label, RadioButton

from cvtriton_standins.customvision_emulator import CustomVisionEmulator
from cvtriton_tui.app import WizardApp
from cvtriton_tui.widgets.setting_field import SettingField

from .conftest import PREDICTION_KEY, SIZE, TRAINING_KEY, env_text, started, wait_for


def field(app: WizardApp, name: str) -> SettingField:
    return app.main.pane("settings").query_one(f"#field-{name}", SettingField)


async def type_into(pilot, app: WizardApp, name: str, value: str) -> None:
    widget = field(app, name).query_one(Input)
    widget.value = value
    await pilot.pause()


async def test_invalid_value_is_named_inline_and_clears_when_fixed(local_env: Path) -> None:
    app = WizardApp(Path(".env"), Path("work"))
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot)
        await type_into(pilot, app, "AZURE_LOCATION", "West Europe")
        location = field(app, "AZURE_LOCATION")
        assert location.has_class("invalid")
        message = str(location.query_one(".field-error", Label).render())
        assert "AZURE_LOCATION='West Europe' is not valid" in message and "westeurope" in message
        await type_into(pilot, app, "AZURE_LOCATION", "westeurope")
        assert not location.has_class("invalid")
        await type_into(pilot, app, "VISION_PREDICTION_KEY", "short")
        key_error = str(field(app, "VISION_PREDICTION_KEY").query_one(".field-error", Label).render())
        assert "is not valid" in key_error and "short" not in key_error   # a secret's value is never echoed


async def test_secrets_are_masked_until_revealed(local_env: Path) -> None:
    app = WizardApp(Path(".env"), Path("work"))
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot)
        key_input = field(app, "VISION_PREDICTION_KEY").query_one(Input)
        assert key_input.value == PREDICTION_KEY and key_input.password
        assert PREDICTION_KEY not in app.export_screenshot()
        await pilot.press("ctrl+r")
        await pilot.pause()
        assert not key_input.password
        assert not field(app, "MODEL_NAME").query_one(Input).password
        await pilot.press("ctrl+r")
        await pilot.pause()
        assert key_input.password
        assert PREDICTION_KEY not in app.export_screenshot()


async def test_save_writes_atomically_with_a_backup_and_keeps_comments(local_env: Path) -> None:
    before = local_env.read_text()
    app = WizardApp(Path(".env"), Path("work"))
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot)
        await type_into(pilot, app, "AZURE_LOCATION", "westeurope")
        await type_into(pilot, app, "MODEL_NAME", "colours2")
        assert app.state.edits == {"AZURE_LOCATION": "westeurope", "MODEL_NAME": "colours2"}
        assert "2 unsaved" in str(app.main.pane("settings").query_one("#env-file").render())
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: not app.state.edits, 10, "the save")
        assert "unsaved" not in str(app.main.pane("settings").query_one("#env-file").render())
        assert app.state.settings.get("AZURE_LOCATION") == "westeurope"
    after = local_env.read_text()
    assert (Path(".env.bak")).read_text() == before
    assert after.startswith("# test settings\n")
    assert "MODEL_NAME=colours2\n" in after and "AZURE_LOCATION=westeurope\n" in after
    assert f"VISION_PREDICTION_KEY={PREDICTION_KEY}\n" in after
    assert not [p for p in Path(".").iterdir() if p.name.endswith(".tmp")]


async def test_target_switch_changes_the_steps_and_next_names_what_is_missing(local_env: Path) -> None:
    app = WizardApp(Path(".env"), Path("work"))
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot)
        pane = app.main.pane("settings")
        await pilot.click(pane.query_one("#target-azure", RadioButton))
        await pilot.pause()
        assert app.state.target == "azure"
        assert app.state.steps[:3] == ("settings", "project", "train") and len(app.state.steps) == 8
        assert "*" in str(field(app, "VISION_TRAINING_KEY").query_one(".field-name", Label).render())
        await pilot.press("ctrl+n")
        await pilot.pause()
        assert app.state.current == "settings"              # blocked: the Project step lists with these
        assert field(app, "AZURE_SUBSCRIPTION_ID").has_class("invalid")   # shown, but needed only by Deploy
        assert app.focused is field(app, "VISION_TRAINING_ENDPOINT").query_one(Input)
        await pilot.click(pane.query_one("#target-local", RadioButton))
        await pilot.pause()
        assert app.state.steps == ("settings", "model", "package", "local-test")
        await pilot.press("ctrl+n")
        await wait_for(pilot, lambda: app.state.current == "model", 5, "the Model step")


async def test_back_and_next_keep_what_was_typed(local_env: Path, tmp_path: Path) -> None:
    export = tmp_path / "my-export.zip"
    export.write_bytes(b"PK\x05\x06" + b"\0" * 18)        # an (empty) zip: enough for the path check
    app = WizardApp(Path(".env"), Path("work"))
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot)
        await type_into(pilot, app, "AZURE_LOCATION", "northeurope")
        await pilot.press("ctrl+n")
        await wait_for(pilot, lambda: app.state.current == "model", 5, "the Model step")
        model = app.main.pane("model")
        await pilot.click(model.query_one("#choice-path", RadioButton))
        model.query_one("#model-path", Input).value = "my-export.zip"
        await pilot.pause()
        await pilot.press("ctrl+b")
        await wait_for(pilot, lambda: app.state.current == "settings", 5, "Settings")
        assert field(app, "AZURE_LOCATION").query_one(Input).value == "northeurope"
        await pilot.press("ctrl+n")
        await wait_for(pilot, lambda: app.state.current == "model", 5, "the Model step")
        assert model.query_one("#model-path", Input).value == "my-export.zip"
        assert app.state.model_choice == "path" and app.state.model_path == "my-export.zip"
        model.query_one("#model-path", Input).value = "missing.zip"
        await pilot.pause()
        await pilot.press("ctrl+n")
        await pilot.pause()
        assert app.state.current == "model"
        assert "missing.zip does not exist" in str(model.query_one("#model-error", Label).render())


async def test_local_triton_check_finds_the_real_binary(local_env: Path) -> None:
    app = WizardApp(Path(".env"), Path("work"))
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot)
        pane = app.main.pane("settings")
        pane.check("triton")
        status = pane.query_one("#status-triton", Label)
        await wait_for(pilot, lambda: "✔" in str(status.render()) or "✖" in str(status.render()), 10, "the check")
        assert "✔ tritonserver found" in str(status.render())


@pytest.fixture
def emulator():
    with CustomVisionEmulator(training_key=TRAINING_KEY, delays=0.05) as emu:
        emu.add_project("shapes", tags=("circle", "square"))
        yield emu


async def test_custom_vision_check_against_the_emulator(in_tmp: Path, emulator: CustomVisionEmulator) -> None:
    Path(".env").write_text(env_text(VISION_TRAINING_ENDPOINT=emulator.url, VISION_TRAINING_KEY="0" * 32))
    app = WizardApp(Path(".env"), Path("work"))
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot)
        pane = app.main.pane("settings")
        status = pane.query_one("#status-customvision", Label)
        pane.check("customvision")
        await wait_for(pilot, lambda: str(status.render())[:1] in ("✔", "✖"), 30, "the check")
        assert str(status.render()).startswith("✖") and "VISION_TRAINING_KEY" in str(status.render())
        await type_into(pilot, app, "VISION_TRAINING_KEY", TRAINING_KEY)
        pane.check("customvision")
        await wait_for(pilot, lambda: str(status.render()).startswith("✔"), 30, "the second check")
        assert "1 project(s)" in str(status.render())
        assert TRAINING_KEY not in str(status.render())
