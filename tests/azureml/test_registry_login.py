"""Registry login without the CLI against real registries: the ACR stand-in (token exchange found from the
/v2/ challenge), an open registry (used as it is) and an htpasswd one (refused with the fix); the
registry-login step reading the login server from Resource Manager or taking IMAGE_REGISTRY; the push step going
to the workspace's registry unless IMAGE_REGISTRY says otherwise."""

from __future__ import annotations

import pytest

from cvtriton_core.adapters.registry_login import NULL_USER, ImageRef, image_facts, login
from cvtriton_core.errors import UserError
from cvtriton_core.pipeline import RunContext
from cvtriton_core.settings import Settings
from cvtriton_core.steps.azureml_steps import RegistryLogin
from cvtriton_core.steps.image_steps import PushImage
from cvtriton_triton.sample_models import build_classifier
from cvtriton_standins.entra_identity import TokenIssuer
from cvtriton_standins.registry import LocalRegistry


def test_token_exchange_with_the_acr_standin(azure):
    asked = []
    auth = login(azure.registry.login_server, lambda: asked.append(1) or azure.issuer.issue(azure.arm.url)[0])
    assert asked == [1] and auth.scheme == "https"
    assert auth.docker_auth() == {"username": NULL_USER, "password": auth.password}
    assert "password" not in repr(auth) and auth.password not in repr(auth)
    assert azure.registry.counters["exchanges"] >= 1
    missing = ImageRef.parse(f"{azure.registry.login_server}/nothing/here:1")
    assert image_facts(auth, missing) is None


def test_a_token_from_another_tenant_is_refused(azure):
    foreign = TokenIssuer(tenant_id="11111111-0000-4000-8000-000000000000")
    with pytest.raises(UserError, match=r"refused the Azure sign-in token \(HTTP 401\).*AcrPush"):
        login(azure.registry.login_server, lambda: foreign.issue(azure.arm.url)[0])


def test_open_and_basic_auth_registries(tmp_path):
    with LocalRegistry(tmp_path / "open") as open_registry:
        auth = login(open_registry.host, lambda: pytest.fail("an open registry needs no token"))
        assert auth.docker_auth() is None and auth.scheme == "http"
    with LocalRegistry(tmp_path / "basic", users={"ci": "secret-password"}) as basic:
        with pytest.raises(UserError, match="asks for Basic authentication, not Azure's token exchange"):
            login(basic.host, lambda: "unused")


async def test_registry_login_step(azure, tmp_path, kit):
    run = RunContext.create(Settings(azure.settings()), tmp_path / "w1")
    events = await kit.collect([RegistryLogin()], run)
    result = kit.result_of(events, "registry-login")
    assert result.login_server == azure.registry.login_server and not result.anonymous
    assert run.shared["registry_auth"]["username"] == NULL_USER
    assert ("GET", "registry.get", 200) in azure.arm.requests            # read from Resource Manager
    with LocalRegistry(tmp_path / "open") as open_registry:
        run = RunContext.create(Settings({**azure.settings(), "IMAGE_REGISTRY": f"{open_registry.host}/team"}),
                                tmp_path / "w2")
        events = await kit.collect([RegistryLogin()], run)
        assert kit.result_of(events, "registry-login").anonymous
        assert run.shared["registry_auth"] is None
    with LocalRegistry(tmp_path / "basic", users={"ci": "secret-password"}) as basic:
        values = {**azure.settings(), "IMAGE_REGISTRY": basic.host, "IMAGE_REGISTRY_USERNAME": "ci",
                  "IMAGE_REGISTRY_PASSWORD": "secret-password"}
        run = RunContext.create(Settings(values), tmp_path / "w4")
        events = await kit.collect([RegistryLogin()], run)        # the settings' credential: no exchange tried
        assert "IMAGE_REGISTRY_USERNAME/PASSWORD from the settings" in kit.result_of(events, "registry-login").summary
        assert run.shared["registry_auth"] is None
    azure.arm.detach_registry()
    events = await kit.collect([RegistryLogin()], RunContext.create(Settings(azure.settings()), tmp_path / "w3"))
    assert "has no container registry attached" in kit.failures(events)[0].message


async def test_endpoints_this_tool_created_are_found_by_their_tag(azure, tmp_path):
    from cvtriton_core.adapters.azureml import AzureML
    from cvtriton_core.steps.azureml_steps import tool_endpoints

    values = azure.settings()
    adapter = AzureML(values["AZURE_SUBSCRIPTION_ID"], values["AZUREML_RESOURCE_GROUP"], values["AZUREML_WORKSPACE"])
    adapter.begin_endpoint("ours-1", "key").result()
    azure.arm.put_endpoint({"e": "theirs-1"}, {"location": "westeurope", "properties": {"authMode": "Key"}}, {})
    found = await tool_endpoints(Settings(values))
    assert [e.name for e in found] == ["ours-1"] and found[0].created_by_tool
    assert {e.name for e in adapter.endpoints()} == {"ours-1", "theirs-1"}


async def test_push_goes_to_the_workspace_registry_unless_image_registry_is_set(azure, workfolder, tmp_path, kit):
    work = await workfolder(build_classifier("float", tmp_path / "m" / "model.onnx").parent, "reg")
    assert "IMAGE_REGISTRY" not in work.values
    assert work.image.startswith(f"{azure.registry.login_server}/") and "@sha256:" in work.image
    assert RunContext.create(work.settings(), work.folder).state.get("registry") == azure.registry.login_server
    with LocalRegistry(tmp_path / "open") as open_registry:
        events = await kit.collect([RegistryLogin(), PushImage()],
                                   work.run(IMAGE_REGISTRY=f"{open_registry.host}/team"))
        pushed = kit.result_of(events, "push").reference
    assert pushed.startswith(f"{open_registry.host}/team/")


async def test_push_without_a_registry_names_both_ways(tmp_path, kit):
    events = await kit.collect([PushImage()], RunContext.create(Settings({}), tmp_path / "w"))
    message = kit.failures(events)[0].message
    assert "no registry to push to: IMAGE_REGISTRY is not set and no registry-login step ran" in message
    assert "add IMAGE_REGISTRY" in message and "run registry-login before push" in message
