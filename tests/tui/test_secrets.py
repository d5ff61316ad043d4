"""No secret value used in these tests reaches a snapshot, a saved log, the run state or the screen.

The end-to-end case drives a real failure whose message contains a key (the training endpoint is set to a
URL that carries the prediction key in its path, so the SDK's 404 message quotes it): the error modal, the
session log saved with Ctrl+L, and the run state must all show it masked.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from cvtriton_standins.customvision_emulator import CustomVisionEmulator
from cvtriton_tui.app import WizardApp
from cvtriton_tui.screens.error_modal import ErrorModal

from .conftest import PREDICTION_KEY, SIZE, TEST_SECRETS, TRAINING_KEY, env_text, started, wait_for

SNAPSHOTS = Path(__file__).parent / "__snapshots__"


def leaks(text: str) -> list[str]:
    return [secret for secret in TEST_SECRETS if secret in text]


def test_snapshots_hold_no_test_secret() -> None:
    files = sorted(SNAPSHOTS.rglob("*.svg"))
    assert len(files) >= 14, "snapshots missing: run pytest tests/tui/test_snapshots.py --snapshot-update"
    found = {f.name: leaks(f.read_text(encoding="utf-8")) for f in files}
    assert not {name: hits for name, hits in found.items() if hits}
    # the snapshots do show where the secrets are (masked), so the check above is not vacuous
    assert any("•" in f.read_text(encoding="utf-8") for f in files)


@pytest.fixture
def emulator():
    with CustomVisionEmulator(training_key=TRAINING_KEY, delays=0.05) as emu:
        emu.add_project("shapes")
        yield emu


async def test_a_failure_quoting_a_key_is_masked_everywhere(in_tmp: Path, emulator: CustomVisionEmulator) -> None:
    endpoint = f"{emulator.url}/{PREDICTION_KEY}"
    Path(".env").write_text(env_text(
        AZURE_SUBSCRIPTION_ID="00000000-0000-0000-0000-000000000001", AZUREML_RESOURCE_GROUP="rg",
        AZUREML_WORKSPACE="ws-test", AZURE_LOCATION="westeurope", VISION_TRAINING_ENDPOINT=endpoint,
        VISION_TRAINING_KEY=TRAINING_KEY, VISION_PREDICTION_KEY=PREDICTION_KEY, VISION_PROJECT_NAME="shapes",
        ENDPOINT_NAME="cv-triton-test"))
    workdir = Path("work")
    app = WizardApp(Path(".env"), workdir)
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot)
        await pilot.press("ctrl+r", "ctrl+r")                   # reveal, then mask again
        app.goto("project")                                     # listing the projects fails, quoting the URL
        await wait_for(pilot, lambda: app.state.current == "project", 5, "the Project step")
        await wait_for(pilot, lambda: isinstance(app.screen, ErrorModal), 60, "the listing's error modal")
        modal = app.screen
        shown = "\n".join([modal.message, modal.details, app.export_screenshot()])
        assert "••••••" in modal.message and not leaks(shown)
        await pilot.press("escape")
        await pilot.press("ctrl+l")
        await wait_for(pilot, lambda: any((workdir / "logs").glob("wizard-*.log")), 10, "the saved log")
        await pilot.press("ctrl+q")
    log = next((workdir / "logs").glob("wizard-*.log")).read_text()
    assert "does not serve the Custom Vision training API" in log and "••••••" in log
    assert not leaks(log)
    for path in workdir.rglob("*"):
        if path.is_file():
            assert not leaks(path.read_text(errors="replace")), path
