"""Deploy faults against the offline Azure: each is one clear line naming the cause and the fix; pre-check
failures create nothing; a failed deployment reports the service's reason, the container's last log lines and
what now exists in Azure; transient throttling is retried."""

from __future__ import annotations

import secrets
from dataclasses import replace
from pathlib import Path

import pytest

from cvtriton_core.adapters.registry_login import login
from cvtriton_core.errors import UserError
from cvtriton_core.events import LogLine, StateChanged, StepFailed, StepStarted
from cvtriton_core.pipeline import RunContext
from cvtriton_core.settings import Settings
from cvtriton_core.steps.azureml_common import STATE_CREATED
from cvtriton_core.steps.azureml_options import AzureOptions
from cvtriton_core.steps.azureml_steps import Delete, Deploy, RegistryLogin, Traffic
from cvtriton_core.steps.endpoint_test import EndpointTest


@pytest.fixture
def push(azure, docker_api):
    """``push(local_image, repository)`` -> the pushed reference, through the product's registry login."""
    auth = login(azure.registry.login_server, lambda: azure.issuer.issue(azure.arm.url)[0])

    def run(local: str, repository: str) -> str:
        remote = f"{azure.registry.login_server}/{repository}"
        docker_api.tag(local, remote, "1")
        for chunk in docker_api.push(remote, "1", auth_config=auth.docker_auth(), stream=True, decode=True):
            assert "error" not in chunk, chunk
        return f"{remote}:1"

    return run


@pytest.fixture
def settings(azure):
    def make(**extra: str) -> Settings:
        return Settings({**azure.settings(), "ENDPOINT_NAME": f"ep-{secrets.token_hex(3)}", **extra})

    return make


def run_in(tmp_path: Path, settings: Settings) -> RunContext:
    return RunContext.create(settings, tmp_path / "work")


def failure(events) -> StepFailed:
    failed = [e for e in events if isinstance(e, StepFailed)]
    assert failed, "the step did not fail"
    return failed[0]


def writes(azure) -> list[tuple[str, str, int]]:
    return [r for r in azure.arm.requests if r[0] in ("PUT", "DELETE", "POST") and r[1] != "endpoint.keys"]


OPTIONS = AzureOptions(poll_s=0.2)


# ------------------------------------------------------------------ pre-checks: nothing is created
async def test_quota_exceeded_is_refused_before_anything_is_created(azure, push, settings, tmp_path, kit,
                                                                     fault_images):
    image = push(fault_images["never-ready"], f"faults/quota-{kit.session}")
    azure.arm.set_quota("standardDSv2Family", limit=6, used=0)
    events = await kit.collect([Deploy(replace(OPTIONS, image=image))], run_in(tmp_path, settings()))
    failed = failure(events)
    assert failed.exit_code == 2
    assert "not enough quota for 1 x Standard_DS3_v2 in westeurope" in failed.message
    assert "0/6 vCPUs in use and this deployment needs 8" in failed.message and "20%" in failed.message
    assert "request more standardDSv2Family quota" in failed.message
    assert writes(azure) == [] and azure.arm.endpoints == {}


async def test_gpu_instances_need_gpu_quota_and_a_cuda_image(azure, push, settings, tmp_path, kit, fault_images):
    image = push(fault_images["never-ready"], f"faults/gpu-{kit.session}")
    options = replace(OPTIONS, image=image, instance_type="Standard_NC4as_T4_v3")
    events = await kit.collect([Deploy(options)], run_in(tmp_path, settings()))
    assert "Standard NCASv3_T4 Family family has 0/0 vCPUs in use" in failure(events).message
    azure.arm.set_quota("Standard NCASv3_T4 Family", limit=24)
    events = await kit.collect([Deploy(options)], run_in(tmp_path, settings()))
    message = failure(events).message
    assert "is a GPU instance but image" in message and "no CUDA runtime" in message
    assert "choose a CPU instance type" in message
    assert writes(azure) == []


async def test_registry_and_image_checks(azure, push, settings, tmp_path, kit, fault_images):
    image = push(fault_images["never-ready"], f"faults/reg-{kit.session}")
    missing = f"{azure.registry.login_server}/faults/not-pushed-{kit.session}:1"
    events = await kit.collect([Deploy(replace(OPTIONS, image=missing))], run_in(tmp_path, settings()))
    assert f"image {missing} is not in registry" in failure(events).message
    events = await kit.collect([Deploy(replace(OPTIONS, image="other.example.com/team/model:1"))],
                               run_in(tmp_path, settings()))
    assert "is in registry other.example.com, but the endpoint pulls from" in failure(events).message
    events = await kit.collect([Deploy(replace(OPTIONS, image=image, instance_type="Standard_Z99"))],
                               run_in(tmp_path, settings()))
    assert "instance type Standard_Z99 is not offered in westeurope" in failure(events).message
    azure.arm.detach_registry()
    events = await kit.collect([Deploy(replace(OPTIONS, image=image))], run_in(tmp_path, settings()))
    assert "has no container registry attached" in failure(events).message
    assert writes(azure) == []


async def test_bad_input_needs_no_network(azure, settings, tmp_path, kit, test_image):
    """Each step's check refuses bad input before the run starts: exit 2, no request to Azure, no run state."""
    cases = {
        "endpoint name '9lives' is not valid": (settings(ENDPOINT_NAME="9lives"), Deploy(OPTIONS)),
        "no endpoint name to deploy to": (settings(ENDPOINT_NAME=""), Deploy(OPTIONS)),
        "deployment name 'b_l' is not valid": (settings(), Deploy(replace(OPTIONS, deployment="b_l"))),
        "traffic 'half' for the new deployment": (settings(), Deploy(replace(OPTIONS, traffic="half"))),
        "instance count 0 is out of range": (settings(), Deploy(replace(OPTIONS, instance_count=0))),
        "instance count 21 is out of range": (settings(), Deploy(replace(OPTIONS, instance_count=21))),
        "auth mode 'aad' is not known": (settings(), Deploy(replace(OPTIONS, auth_mode="aad"))),
        "instance type 'Standard DS3' is not an Azure VM size name":
            (settings(), Deploy(replace(OPTIONS, instance_type="Standard DS3"))),
        "image 'model:1' names no registry": (settings(), Deploy(replace(OPTIONS, image="model:1"))),
        "AZUREML_WORKSPACE is not set": (settings(AZUREML_WORKSPACE=""), Deploy(OPTIONS)),
        "traffic 'green=x' is not DEPLOYMENT=PERCENT": (settings(), Traffic(replace(OPTIONS, traffic="green=x"))),
        "traffic adds up to 150%": (settings(), Traffic(replace(OPTIONS, traffic="blue=90,green=60"))),
        "--rollback and a traffic split were both given":
            (settings(), Traffic(replace(OPTIONS, rollback=True, traffic="blue=100"))),
        "cannot delete 'everything'": (settings(), Delete(replace(OPTIONS, delete="everything"))),
        "deployment name '-x' is not valid": (settings(), Delete(replace(OPTIONS, deployment="-x"))),
        "the endpoint-test step needs a test image": (settings(), EndpointTest(None, options=OPTIONS)),
        "concurrency 65 is too high for an endpoint test":
            (settings(), EndpointTest(test_image, concurrency=65, options=OPTIONS)),
        "endpoint name 'a' is not valid": (settings(), EndpointTest(test_image, options=replace(OPTIONS, endpoint="a"))),
        "IMAGE_REGISTRY='https://acr.example' is not valid":
            (settings(IMAGE_REGISTRY="https://acr.example"), RegistryLogin()),
    }
    for expected, (values, step) in cases.items():
        events = await kit.collect([step], run_in(tmp_path, values))
        failed = failure(events)
        assert expected in failed.message and failed.exit_code == 2 and failed.step == step.name, failed.message
        assert not [e for e in events if isinstance(e, StepStarted)]        # refused before the step started
        assert not (tmp_path / "work" / "run-state.json").exists()
    events = await kit.collect([Deploy(OPTIONS)], run_in(tmp_path, settings()))
    assert "no image to deploy" in failure(events).message and failure(events).exit_code == 2
    assert azure.arm.requests == []
    with pytest.raises(UserError, match="the concurrency must be a whole number from 1 to 1024"):
        EndpointTest(test_image, concurrency=0)


async def test_endpoint_of_someone_else_is_left_alone(azure, push, settings, tmp_path, kit, fault_images):
    image = push(fault_images["never-ready"], f"faults/foreign-{kit.session}")
    values = settings()
    name = values["ENDPOINT_NAME"]
    azure.arm.put_endpoint({"e": name}, {"location": "westeurope", "properties": {"authMode": "Key"}}, {})
    events = await kit.collect([Deploy(replace(OPTIONS, image=image))], run_in(tmp_path, values))
    assert f"endpoint {name} already exists in workspace" in failure(events).message
    assert "was not created by this tool" in failure(events).message
    assert not azure.arm.deployments


async def test_endpoint_name_taken_in_the_region(azure, push, settings, tmp_path, kit, fault_images):
    image = push(fault_images["never-ready"], f"faults/taken-{kit.session}")
    values = settings()
    azure.arm.take_name(values["ENDPOINT_NAME"])
    run = run_in(tmp_path, values)
    events = await kit.collect([Deploy(replace(OPTIONS, image=image))], run)
    failed = failure(events)
    assert f"endpoint name {values['ENDPOINT_NAME']} is already taken in westeurope" in failed.message
    assert "choose another ENDPOINT_NAME" in failed.message and failed.exit_code == 2
    assert azure.arm.endpoints == {} and run.state.get(STATE_CREATED) == []


# ------------------------------------------------------------------ the service fails the deployment
async def deploy_failing(azure, kit, tmp_path, values, image) -> tuple[StepFailed, list]:
    run = run_in(tmp_path, values)
    events = await kit.collect([Deploy(replace(OPTIONS, image=image))], run)
    failed = failure(events)
    name = values["ENDPOINT_NAME"]
    assert failed.exit_code == 1
    assert f"Deployment blue now exists in state Failed on endpoint {name} (created by this run)" in failed.message
    assert "or the delete step to remove it" in failed.message
    assert azure.arm.deployments[(name, "blue")].provisioning_state == "Failed"
    assert run.state.get(STATE_CREATED) == [name]
    deployment_states = [e.state for e in events if isinstance(e, StateChanged) and e.resource == "deployment"]
    assert deployment_states[-1] == "Failed"
    return failed, events


async def test_crash_loop_reports_the_reason_and_the_last_log_lines(azure, push, settings, tmp_path, kit,
                                                                     fault_images):
    image = push(fault_images["crash"], f"faults/crash-{kit.session}")
    failed, events = await deploy_failing(azure, kit, tmp_path, settings(), image)
    assert "the container keeps crashing" in failed.message
    assert "exited with code 3" in failed.message
    assert "error: model repository /models not found" in failed.details
    streamed = [e.line for e in events if isinstance(e, LogLine) and e.source == "inference-server"]
    assert "error: model repository /models not found" in streamed


async def test_readiness_never_reached(azure, push, settings, tmp_path, kit, fault_images):
    image = push(fault_images["never-ready"], f"faults/never-{kit.session}")
    azure.arm.time_scale = 0.005                    # the 10-minute readiness window becomes ~3 s
    failed, _ = await deploy_failing(azure, kit, tmp_path, settings(), image)
    assert "Triton did not become ready within the readiness probe's window" in failed.message
    assert "Readiness probe failed" in failed.message
    assert "loading forever" in failed.details


async def test_image_pull_refused(azure, push, settings, tmp_path, kit, fault_images):
    image = push(fault_images["never-ready"], f"faults/pull-{kit.session}")
    azure.arm.revoke_acr_pull()
    failed, _ = await deploy_failing(azure, kit, tmp_path, settings(), image)
    assert f"the endpoint could not pull the image {image}" in failed.message
    assert "needs AcrPull" in failed.message
    assert failed.details == "The container log was empty."


async def test_quota_taken_between_check_and_deploy(azure, push, settings, tmp_path, kit, fault_images):
    image = push(fault_images["never-ready"], f"faults/q2-{kit.session}")
    azure.arm.fail_next_deployment("OutOfQuota", "Not enough quota available for Standard_DS3_v2 in SubscriptionId "
                                   f"{azure.arm.subscription}. Current usage/limit: 24/24. Additional needed: 8")
    failed, _ = await deploy_failing(azure, kit, tmp_path, settings(), image)
    assert "Azure ML has not enough quota for 1 x Standard_DS3_v2 in westeurope" in failed.message
    assert "Current usage/limit: 24/24" in failed.message


async def test_operation_failed_inside_azure(azure, push, settings, tmp_path, kit, fault_images):
    image = push(fault_images["never-ready"], f"faults/lro-{kit.session}")
    azure.arm.fail_next_deployment()
    failed, _ = await deploy_failing(azure, kit, tmp_path, settings(), image)
    assert "the deployment operation failed inside Azure ML" in failed.message
    assert "open an Azure support ticket" in failed.message


# ------------------------------------------------------------------ Resource Manager itself misbehaves
async def test_transient_429_is_retried_persistent_one_explained(azure, push, settings, tmp_path, kit, fault_images):
    image = push(fault_images["never-ready"], f"faults/429-{kit.session}")
    azure.arm.inject(429, count=2, ops=("workspace.get",), retry_after=1)
    azure.arm.time_scale = 0.005
    events = await kit.collect([Deploy(replace(OPTIONS, image=image))], run_in(tmp_path, settings()))
    assert "Triton did not become ready" in failure(events).message     # got past the throttling to the end
    throttled = [r for r in azure.arm.requests if r[2] == 429]
    assert len(throttled) == 2
    azure.arm.inject(429, count=50, ops=("workspace.get",), retry_after=1)
    events = await kit.collect([Deploy(replace(OPTIONS, image=image))], run_in(tmp_path, settings()))
    failed = failure(events)
    assert "Azure Resource Manager is throttling requests (HTTP 429) while trying to read workspace" in failed.message
    assert "wait for 1 s and run the step again" in failed.message


async def test_resource_manager_5xx(azure, settings, tmp_path, kit):
    azure.arm.inject(503, count=50, ops=("workspace.get",), retry_after=1)
    events = await kit.collect([Deploy(replace(OPTIONS, image=f"{azure.registry.login_server}/x/y:1"))],
                               run_in(tmp_path, settings()))
    failed = failure(events)
    assert "Azure Resource Manager failed to read workspace" in failed.message and "HTTP 503" in failed.message
    assert "run the step again later" in failed.message


async def test_expired_token(azure, settings, tmp_path, kit):
    azure.issuer.issue_stale(5)
    events = await kit.collect([Deploy(replace(OPTIONS, image=f"{azure.registry.login_server}/x/y:1"))],
                               run_in(tmp_path, settings()))
    failed = failure(events)
    assert "Azure refused the sign-in token as expired" in failed.message
    assert "check this machine's clock, then sign in again" in failed.message
    assert "is earlier than current UTC time" in failed.message      # the service's own words
    assert azure.arm.endpoints == {}


# ------------------------------------------------------------------ interrupted, then resumed
async def test_cancelled_deploy_is_followed_by_the_next_run(azure, workfolder, tmp_path, kit):
    from cvtriton_core.pipeline import run_steps
    from cvtriton_triton.sample_models import build_classifier

    model = build_classifier("float", tmp_path / "model" / "model.onnx")
    work = await workfolder(model.parent, "resume")
    endpoint = work.values["ENDPOINT_NAME"]
    azure.arm.time_scale = 0.3                       # 3 s before the first probe: time to interrupt
    run = work.run()
    stream = run_steps([Deploy(OPTIONS)], run)
    async for event in stream:
        if isinstance(event, StateChanged) and event.resource == "deployment" and event.state == "Creating":
            break
    await stream.aclose()                            # what Ctrl+C / F8 does to a running step
    assert run.state.step_status("deploy") == "cancelled"
    assert azure.arm.deployments[(endpoint, "blue")].provisioning_state == "Creating"

    events = await kit.collect([Deploy(OPTIONS)], work.run())
    assert any("already Creating (an earlier run started it): following it" in e.line
               for e in events if isinstance(e, LogLine))
    assert kit.result_of(events, "deploy").traffic == {"blue": 100}
    assert [r for r in azure.arm.requests if r[1] == "deployment.put"] == [("PUT", "deployment.put", 201)]
