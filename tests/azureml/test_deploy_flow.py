"""The Azure ML target end to end against the offline Azure and the real Docker Engine: the real azure-ai-ml and
azure-identity over the wire; the pushed Triton image really pulled, run and probed; real inference through the
HTTPS scoring front. For a classification and a detection model: deploy blue (100%) → endpoint test (the same
predictions as onnxruntime on this machine) → deploy green next to it at 0% (safe rollout) → test green through
the azureml-model-deployment header → shift 10% → roll back → 100% to green → delete blue → delete the endpoint.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import onnxruntime as ort
import pytest
import requests

from cvtriton_core.events import LogLine, StateChanged
from cvtriton_core.steps.azureml_options import AzureOptions
from cvtriton_core.steps.azureml_steps import Delete, Deploy, Traffic
from cvtriton_core.steps.endpoint_test import EndpointTest
from cvtriton_triton.ensemble import find_ensemble
from cvtriton_triton.model_repository import read_model_info
from cvtriton_triton.postprocess import predictions
from cvtriton_triton.preprocess import prepare
from cvtriton_triton.sample_models import build_classifier, build_detector

MODELS = {
    "classification": lambda path: build_classifier("float", path),
    "detection": lambda path: build_detector("compact", path),
}


def expected(repo_model: Path, image: Path) -> list[dict]:
    from cvtriton_core.steps.image_ensemble import prediction_json

    info = read_model_info(repo_model)
    tensor = prepare(image, info)
    session = ort.InferenceSession(str(repo_model / "1" / "model.onnx"), providers=["CPUExecutionProvider"])
    names = [o.name for o in info.outputs]
    outputs = dict(zip(names, session.run(names, {info.input.name: tensor})))
    return [prediction_json(p) for p in predictions(outputs, info)]


def states(events, resource: str, name: str) -> list[str]:
    return [e.state for e in events if isinstance(e, StateChanged) and e.resource == resource and e.name == name]


@pytest.mark.parametrize("key", list(MODELS))
async def test_deploy_test_rollout_rollback_delete(key, tmp_path, azure, workfolder, test_image, kit, capfd, docker_api):
    model = MODELS[key](tmp_path / "model" / "model.onnx")
    work = await workfolder(model.parent, key)
    endpoint = work.values["ENDPOINT_NAME"]
    base = AzureOptions(poll_s=kit.poll_s)
    repo_model = work.folder / "model_repository" / work.model_name
    want = expected(repo_model, test_image)
    assert find_ensemble(repo_model.parent, work.model_name) is not None    # the image ensemble is on by default

    # blue: a new endpoint, the first deployment, 100% of the traffic
    events = await kit.collect([Deploy(replace(base, deployment="blue")),
                                EndpointTest(test_image, requests=8, concurrency=2, options=base)], work.run())
    deployed = kit.result_of(events, "deploy")
    assert deployed.endpoint_created and deployed.traffic == {"blue": 100}
    assert deployed.image == work.image and "@sha256:" in work.image
    assert states(events, "endpoint", endpoint)[0] == "Creating" and "Succeeded" in states(events, "endpoint", endpoint)
    assert states(events, "deployment", "blue")[0] in ("Creating", "Updating")
    assert states(events, "deployment", "blue")[-1] == "Succeeded"
    triton_lines = [e.line for e in events if isinstance(e, LogLine) and e.source == "inference-server"]
    loaded = [line for line in triton_lines if "successfully loaded" in line]
    # streamed live, each container line once: the model and the image ensemble's three entries, no repeats
    assert len(loaded) == len(set(loaded)) == 4, triton_lines
    assert any("Started HTTPService" in line for line in triton_lines), triton_lines
    tested = kit.result_of(events, "endpoint-test")
    kit.same_predictions(list(tested.predictions), want)
    assert tested.deployment == "blue" and tested.requests == 8 and tested.failed == 0
    load = tested.to_json()["load_test"]               # the local test's load generator, over HTTPS with the key
    assert [r["target"] for r in load] == [work.model_name, f"{work.model_name}_image", "Custom Vision route"]
    assert all(r["ok"] == 8 and r["concurrency"] == 2 and r["stopped"] == "completed" for r in load)
    assert [a.path for a in tested.answers] == ["tensor", "image", "customvision"] and not tested.disagreements
    assert 0 < tested.p50_ms <= tested.p95_ms <= tested.p99_ms and tested.throughput_rps > 0
    assert tested.to_json()["predictions"] == list(tested.predictions)
    assert capfd.readouterr().out == ""              # the SDK's poller dots never reach stdout
    front = azure.arm.fronts[endpoint]
    assert front.served.get("blue", 0) >= 9          # warm-up + 8 timed requests really reached the container

    # a wrong key is refused at the scoring front; the right one gets Triton's answer
    ready_url = deployed.scoring_uri.replace("/score", "/v2/health/ready")
    assert requests.get(ready_url, headers={"Authorization": "Bearer wrong"}, timeout=10).status_code == 401
    key_value = azure.arm.endpoints[endpoint].primary_key
    answer = requests.get(ready_url, headers={"Authorization": f"Bearer {key_value}"}, timeout=10)
    assert answer.status_code == 200 and answer.headers["azureml-model-deployment"] == "blue"

    # green next to it: safe rollout at 0%, tested through the header only
    events = await kit.collect([Deploy(replace(base, deployment="green")),
                                EndpointTest(test_image, requests=3, options=replace(base, deployment="green"))],
                               work.run())
    green = kit.result_of(events, "deploy")
    assert not green.endpoint_created and green.traffic == {"blue": 100, "green": 0}
    assert any("safe rollout" in e.line for e in events if isinstance(e, LogLine))
    assert kit.result_of(events, "endpoint-test").deployment == "green"
    assert front.served.get("green", 0) >= 4
    assert azure.arm.endpoints[endpoint].traffic == {"blue": 100}

    # shift 10%, roll back, then all of it to green
    events = await kit.collect([Traffic(replace(base, traffic="green=10"))], work.run())
    assert kit.result_of(events, "traffic").traffic == {"blue": 90, "green": 10}
    assert azure.arm.endpoints[endpoint].traffic == {"blue": 90, "green": 10}
    events = await kit.collect([Traffic(replace(base, rollback=True))], work.run())
    assert kit.result_of(events, "traffic").traffic == {"blue": 100, "green": 0}
    events = await kit.collect([Traffic(replace(base, traffic="green=100"))], work.run())
    assert kit.result_of(events, "traffic").traffic == {"blue": 0, "green": 100}

    # blue goes; then the whole endpoint, and nothing is left running
    events = await kit.collect([Delete(replace(base, delete="deployment", deployment="blue"))], work.run())
    assert kit.result_of(events, "delete").deployment == "blue"
    assert (endpoint, "blue") not in azure.arm.deployments
    events = await kit.collect([Delete(replace(base, delete="endpoint"))], work.run())
    assert kit.result_of(events, "delete").remaining == ()
    assert endpoint not in azure.arm.endpoints
    assert states(events, "endpoint", endpoint)[-1] == "Deleted"
    assert not docker_api.containers(all=True, filters={"label": f"cvtriton.standin.emulator={azure.arm.id}"})
    assert azure.arm.quota["standardDSv2Family"][0] == 0
