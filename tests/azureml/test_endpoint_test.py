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


async def test_image_bytes_through_the_ensemble_and_the_customvision_route(azure, workfolder, tmp_path, test_image,
                                                                          kit, monkeypatch):
    """The deployment of this run's image serves tensors, the image ensemble over /v2 and the Custom Vision
    route on the endpoint's own host: the step load-tests the three paths with progress, puts the three answers
    side by side, and gives the URL an app uses — which the Custom Vision prediction SDK calls with
    ``Authorization: Bearer <key>`` and gets the tensor path's answer; a wrong key is a 401, explained."""
    import re

    import numpy as np
    import pytest
    from azure.cognitiveservices.vision.customvision.prediction import CustomVisionPredictionClient
    from azure.cognitiveservices.vision.customvision.prediction.models import ImagePrediction
    from msrest.authentication import ApiKeyCredentials
    from msrest.exceptions import HttpOperationError

    from cvtriton_core.adapters.azureml import AzureML, EndpointSecret
    from cvtriton_core.events import Progress

    work = await workfolder(build_classifier("float", tmp_path / "r" / "model.onnx").parent, "cvr")
    kit.result_of(await kit.collect([Deploy(OPTIONS)], work.run()), "deploy")
    events = await kit.collect([EndpointTest(test_image, requests=6, concurrency=2, options=OPTIONS)], work.run())
    tested = kit.result_of(events, "endpoint-test")

    assert [a.path for a in tested.answers] == ["tensor", "image", "customvision"] and not tested.disagreements
    assert [r.target for r in tested.load] == [work.model_name, f"{work.model_name}_image", "Custom Vision route"]
    assert all(r.ok == 6 and not r.errors and r.concurrency == 2 for r in tested.load)
    assert tested.failed == 0 and tested.errors == {} and "image ensemble and Custom Vision route agree" in tested.summary
    progress = [e for e in events if isinstance(e, Progress) and e.step == "endpoint-test" and e.total]
    assert progress and progress[-1].done == progress[-1].total == 18     # 6 requests x 3 paths
    # the route's bytes are the picture itself, the tensor's a float32 tensor
    assert tested.answers[2].request_bytes == test_image.stat().st_size < tested.answers[0].request_bytes

    route = re.fullmatch(r"(https://127\.0\.0\.1:\d+)/customvision/v3\.0/Prediction/([0-9a-f-]{36})/classify/"
                         r"iterations/([^/]+)/image", tested.customvision_url)
    assert route, tested.customvision_url
    base, project, published = route.groups()
    # the route's answer, read with the SDK's own model, is the tensor path's within tolerance
    document = ImagePrediction.deserialize(tested.answers[2].response)
    tensor = {p.label: p.probability for p in tested.answers[0].predictions}
    routed = {p.tag_name: p.probability for p in document.predictions}
    assert set(routed) == set(tensor)
    np.testing.assert_allclose([routed[k] for k in sorted(tensor)], [tensor[k] for k in sorted(tensor)], atol=1e-4)

    # an app: the SDK pointed at the endpoint, the endpoint key as a Bearer token (the SDK lower-cases the path)
    key = azure.arm.endpoints[work.values["ENDPOINT_NAME"]].primary_key
    app = CustomVisionPredictionClient(base, ApiKeyCredentials(in_headers={"Authorization": f"Bearer {key}"}))
    answer = app.classify_image(project, published, test_image.read_bytes())
    assert {p.tag_name: round(p.probability, 4) for p in answer.predictions} == {
        k: round(v, 4) for k, v in tensor.items()}
    wrong = CustomVisionPredictionClient(base, ApiKeyCredentials(in_headers={"Authorization": "Bearer " + "0" * 32}))
    with pytest.raises(HttpOperationError) as refused:
        wrong.classify_image(project, published, test_image.read_bytes())
    assert refused.value.response.status_code == 401

    # the step with a wrong key: one line that says so and what to do
    monkeypatch.setattr(AzureML, "secret", lambda self, endpoint: EndpointSecret("key", "0" * 32))
    events = await kit.collect([EndpointTest(test_image, requests=2, options=OPTIONS)], work.run())
    message = failed_message(events)
    assert "the endpoint refused the key or token (HTTP 401)" in message and "0" * 32 not in message
    assert "check the auth mode" in message

    events = await kit.collect([Delete(OPTIONS)], work.run())
    assert kit.result_of(events, "delete").endpoint == work.values["ENDPOINT_NAME"]
