"""The wizard's "Check Azure ML" button: a real sign-in (DefaultAzureCredential through the managed-identity
stand-in) and the workspace and its registry read from the Resource Manager emulator."""

from __future__ import annotations

import pytest

from cvtriton_core.errors import UserError
from cvtriton_core.settings import Settings
from cvtriton_tui.screens.settings import _check_service


async def test_check_names_the_workspace_and_its_registry(azure) -> None:
    text = await _check_service("azureml", Settings(azure.settings()))
    assert azure.settings()["AZUREML_WORKSPACE"] in text and azure.registry.login_server in text


async def test_check_of_a_missing_workspace_is_one_line(azure) -> None:
    settings = Settings({**azure.settings(), "AZUREML_WORKSPACE": "no-such-workspace"})
    with pytest.raises(UserError) as caught:
        await _check_service("azureml", settings)
    assert "no-such-workspace" in caught.value.one_line() and "\n" not in caught.value.one_line()
