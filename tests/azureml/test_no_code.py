"""No-code Triton deployments end to end against the offline Azure: the model repository (without the image
ensemble) registered as a triton_model asset through the real azure-ai-ml — its files uploaded to Azurite by the
SDK's own host-style storage URLs through HTTPS_PROXY — then a deployment without an environment that the
emulator serves by downloading the asset (storage initializer) and running the stand-in Triton image on it.
For a classification and a detection model: deploy → endpoint test (real inference, the same predictions as the
local target on the same repository) → a second deployment of the unchanged repository uploads nothing → delete.
"""

from __future__ import annotations

import re
from dataclasses import replace

import pytest

from cvtriton_core.events import LogLine, Progress
from cvtriton_core.steps.azureml_options import AzureOptions
from cvtriton_core.steps.azureml_steps import Delete, Deploy
from cvtriton_core.steps.endpoint_test import EndpointTest
from cvtriton_core.steps.image_ensemble import prediction_json
from cvtriton_core.steps.local_target import ServeLocal
from cvtriton_core.steps.local_target import TestModel as LocalTest
from cvtriton_triton.sample_models import build_classifier, build_detector

MODELS = {
    "classification": lambda path: build_classifier("float", path),
    "detection": lambda path: build_detector("compact", path),
}
NO_CODE = AzureOptions(deployment_mode="no-code")


def asset_puts(azure) -> int:
    return azure.proxy.puts(lambda path: "/LocalUpload/" in path)


@pytest.mark.parametrize("key", list(MODELS))
async def test_no_code_deploy_test_redeploy_delete(key, tmp_path, azure, workfolder, test_image, kit, capfd, docker_api):
    model = MODELS[key](tmp_path / "model" / "model.onnx")
    work = await workfolder(model.parent, f"nc{key[:3]}", push=False, TRITON_ENSEMBLE="false", DEPLOYMENT_MODE="no-code")
    endpoint = work.values["ENDPOINT_NAME"]
    base = replace(NO_CODE, poll_s=kit.poll_s)

    # the local target serves the same repository first
    events = await kit.collect([ServeLocal(), LocalTest(test_image, requests=2)], work.run())
    local = [prediction_json(p) for p in kit.result_of(events, "test").predictions]
    assert local

    events = await kit.collect([Deploy(replace(base, deployment="blue")),
                                EndpointTest(test_image, requests=4, concurrency=2, options=base)], work.run())
    deployed = kit.result_of(events, "deploy")
    assert deployed.mode == "no-code" and deployed.image == "" and deployed.endpoint_created
    assert deployed.model_asset.startswith(f"azureml:{work.model_name}:sha-") and deployed.uploaded_bytes > 0
    assert deployed.traffic == {"blue": 100}
    uploads = [e for e in events if isinstance(e, Progress) and e.message.startswith("Uploading the model repository")]
    assert uploads and uploads[-1].done == uploads[-1].total == deployed.uploaded_bytes
    counts = [re.search(r"(\d+)/(\d+) files", e.message).groups() for e in uploads]
    assert all(int(sent) <= int(count) for sent, count in counts), [e.message for e in uploads]
    assert counts[-1][0] == counts[-1][1], [e.message for e in uploads]
    storage = [e.line for e in events if isinstance(e, LogLine) and e.source == "storage-initializer"]
    assert any(line.startswith("Downloading model " + deployed.model_asset) for line in storage), storage
    assert any("Model download completed" in line for line in storage), storage
    triton = [e.line for e in events if isinstance(e, LogLine) and e.source == "inference-server"]
    assert any("successfully loaded" in line and work.model_name in line for line in triton), triton
    name, version = deployed.model_asset.split(":")[1:]
    stored = azure.arm.models[(name, version)]
    assert stored.properties["modelType"] == "triton_model" and "/LocalUpload/" in stored.model_uri
    props = azure.arm.deployments[(endpoint, "blue")].props
    assert "environmentId" not in props and props["model"].endswith(f"/models/{name}/versions/{version}")
    first_puts = asset_puts(azure)
    assert first_puts >= 3             # config.pbtxt, labels.txt, the model file (and the sidecar)

    tested = kit.result_of(events, "endpoint-test")
    assert tested.deployment == "blue" and tested.failed == 0 and tested.requests == 4
    kit.same_predictions(list(tested.predictions), local)
    assert capfd.readouterr().out == ""

    # the unchanged repository again, as a second deployment: the asset is reused, nothing is uploaded
    events = await kit.collect([Deploy(replace(base, deployment="green"))], work.run())
    green = kit.result_of(events, "deploy")
    assert green.model_asset == deployed.model_asset and green.uploaded_bytes == 0
    assert asset_puts(azure) == first_puts
    assert any("nothing to upload" in e.line for e in events if isinstance(e, LogLine))
    assert green.traffic == {"blue": 100, "green": 0}

    # the asset gone from the registry but its files still in the datastore: the SDK's content hash finds them
    azure.arm.models.clear()
    events = await kit.collect([Deploy(replace(base, deployment="green"))], work.run())
    again = kit.result_of(events, "deploy")
    assert again.model_asset == deployed.model_asset and again.uploaded_bytes == 0
    assert asset_puts(azure) == first_puts and (name, version) in azure.arm.models
    assert any("same content hash" in e.line for e in events if isinstance(e, LogLine))

    events = await kit.collect([Delete(replace(base, delete="endpoint"))], work.run())
    assert kit.result_of(events, "delete").endpoint == endpoint
    assert endpoint not in azure.arm.endpoints
    assert not docker_api.containers(all=True, filters={"label": f"cvtriton.standin.emulator={azure.arm.id}"})
