"""The endpoint test against a real deployment behind the emulated scoring front: an aml_token endpoint whose
token is born expired is retried with a fresh one; refusals are explained (401, 424 with the container's own
status, 404 when nothing takes traffic, an unknown deployment)."""

from __future__ import annotations

from dataclasses import replace

from cvtriton_core.events import StepFailed
from cvtriton_core.steps.azureml_options import AzureOptions
from cvtriton_core.steps.azureml_steps import Delete, Deploy
from cvtriton_core.steps.endpoint_test import EndpointTest
from cvtriton_triton.sample_models import build_classifier

OPTIONS = AzureOptions(poll_s=0.2)


def failed_message(events) -> str:
    failed = [e for e in events if isinstance(e, StepFailed)]
    assert failed, "the step did not fail"
    return failed[0].message


async def test_token_refresh_and_refusals(azure, workfolder, tmp_path, test_image, kit):
    work = await workfolder(build_classifier("float", tmp_path / "a" / "model.onnx").parent, "tok")
    endpoint = work.values["ENDPOINT_NAME"]
    events = await kit.collect([Deploy(replace(OPTIONS, auth_mode="aml_token"))], work.run())
    kit.result_of(events, "deploy")
    assert azure.arm.endpoints[endpoint].auth_mode == "AMLToken"

    # a token that is already expired when it arrives: one fresh token, and the test goes through
    azure.arm.stale_aml_tokens = 1
    events = await kit.collect([EndpointTest(test_image, requests=3, options=OPTIONS)], work.run())
    assert kit.result_of(events, "endpoint-test").failed == 0
    assert len([r for r in azure.arm.requests if r[1] == "endpoint.token"]) == 2

    # every token refused
    azure.arm.stale_aml_tokens = 5
    events = await kit.collect([EndpointTest(test_image, requests=3, options=OPTIONS)], work.run())
    message = failed_message(events)
    assert "the endpoint refused the key or token (HTTP 401)" in message
    azure.arm.stale_aml_tokens = 0

    # a model the image does not hold: the front answers 424 and says what the container answered
    other = await workfolder(build_classifier("float", tmp_path / "b" / "model.onnx").parent, "oth", push=False)
    events = await kit.collect([EndpointTest(test_image, requests=2, options=replace(
        OPTIONS, endpoint=endpoint, deployment="blue"))], other.run())
    message = failed_message(events)
    assert "the Triton container of deployment blue answered HTTP 404: Request for unknown model" in message
    assert f"the image's model repository has no model {other.model_name}" in message

    # an unknown deployment, then no traffic anywhere and no header
    events = await kit.collect([EndpointTest(test_image, options=replace(OPTIONS, deployment="nope"))], work.run())
    assert f"endpoint {endpoint} has no deployment nope" in failed_message(events)
    events = await kit.collect([Deploy(replace(OPTIONS, traffic="0"))], work.run())
    assert kit.result_of(events, "deploy").traffic == {}
    events = await kit.collect([EndpointTest(test_image, options=replace(OPTIONS, by_traffic=True))], work.run())
    message = failed_message(events)
    assert "the endpoint has nowhere to send the request (HTTP 404): No valid deployments to route to" in message
    assert "give traffic to a deployment (traffic step)" in message

    events = await kit.collect([Delete(OPTIONS)], work.run())
    assert kit.result_of(events, "delete").endpoint == endpoint
