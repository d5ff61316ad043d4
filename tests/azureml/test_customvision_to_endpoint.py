"""The Azure target's whole chain in one run, in the registry's order: Custom Vision (emulator, real SDK) project
→ export → import → repository → package → build → registry-login → push → deploy → endpoint-test → delete; the
endpoint test puts the published iteration's own answer (Custom Vision's prediction API) next to Triton's."""

from __future__ import annotations

import numpy as np

from cvtriton_core.events import LogLine
from cvtriton_core.pipeline import RunContext
from cvtriton_core.settings import Settings
from cvtriton_core.steps.azureml_options import AzureOptions
from cvtriton_core.steps.registry import RunOptions, build_steps
from cvtriton_standins.customvision_emulator import CustomVisionEmulator, Delays

TRAINING_KEY = "0123456789abcdef0123456789abcdef"
PREDICTION_KEY = "fedcba9876543210fedcba9876543210"
STEPS = ["project", "export", "import", "repository", "package", "build", "registry-login", "push", "deploy",
         "endpoint-test", "delete"]


async def test_customvision_export_to_tested_endpoint(azure, standin_base, pillow_wheels, tmp_path, test_image, kit):
    with CustomVisionEmulator(TRAINING_KEY, prediction_key=PREDICTION_KEY,
                              delays=Delays(training_s=0.05, export_s=0.05)) as cv:
        project_id = cv.add_project(f"colours-{kit.session}", published_name="prod")
        iteration_id = cv.store.projects[project_id].iterations[0].id
        settings = Settings({**azure.settings(), "VISION_TRAINING_ENDPOINT": cv.url,
                             "VISION_TRAINING_KEY": TRAINING_KEY, "VISION_PROJECT_ID": project_id,
                             "VISION_ITERATION_ID": iteration_id, "VISION_PREDICTION_ENDPOINT": cv.url,
                             "VISION_PREDICTION_KEY": PREDICTION_KEY, "VISION_PUBLISH_ITERATION_NAME": "prod",
                             "MODEL_NAME": f"colours-{kit.session}", "TRITON_BASE_IMAGE": standin_base,
                             "IMAGE_PIP_WHEELS": str(pillow_wheels), "ENDPOINT_NAME": f"cv-{kit.session}"})
        options = RunOptions(image=test_image, requests=5, azure=AzureOptions(poll_s=kit.poll_s))
        events = await kit.collect(build_steps(STEPS, options), RunContext.create(settings, tmp_path / "work"))
        tested = kit.result_of(events, "endpoint-test")
        assert cv.counters["predictions"] == 1
    ours = {p["label"]: p["probability"] for p in tested.predictions}
    theirs = {p["label"]: p["probability"] for p in tested.customvision}
    assert set(ours) == set(theirs) == {"red", "green", "blue"}
    np.testing.assert_allclose([ours[k] for k in sorted(ours)], [theirs[k] for k in sorted(ours)], atol=1e-5)
    assert tested.customvision_latency_ms > 0
    lines = [e.line for e in events if isinstance(e, LogLine) and e.source == "endpoint-test"]
    assert any(line.startswith("side by side (Triton | Custom Vision") for line in lines)
    assert kit.result_of(events, "delete").endpoint == f"cv-{kit.session}" and azure.arm.endpoints == {}


def test_prediction_api_refusals_name_the_setting(test_image):
    import pytest

    from cvtriton_core.adapters.customvision_prediction import predict
    from cvtriton_core.errors import UserError

    with CustomVisionEmulator(TRAINING_KEY, prediction_key=PREDICTION_KEY) as cv:
        project_id = cv.add_project("shapes", published_name="prod")
        image = test_image.read_bytes()
        found = predict(cv.url, PREDICTION_KEY, project_id, "prod", image, detection=False)
        assert [p["label"] for p in found.predictions][:1] and "box" not in found.predictions[0]
        with pytest.raises(UserError, match="HTTP 401.*check VISION_PREDICTION_KEY"):
            predict(cv.url, "0" * 32, project_id, "prod", image, detection=False)
        with pytest.raises(UserError, match="HTTP 404.*VISION_PUBLISH_ITERATION_NAME is published"):
            predict(cv.url, PREDICTION_KEY, project_id, "not-published", image, detection=False)
        with pytest.raises(UserError, match="HTTP 400"):
            predict(cv.url, PREDICTION_KEY, project_id, "prod", image, detection=True)
