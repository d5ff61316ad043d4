"""What goes wrong with a no-code deployment, each a clear line and nothing orphaned: an upload cut off by a
killed run (nothing registered; the next run uploads again and registers once), the storage account refusing the
datastore's key, the storage initializer finding no files at the asset's path, an asset version that already
holds other content."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import replace

from cvtriton_core.steps.azureml_nocode import DIGEST_TAG, repository_digest
from cvtriton_core.steps.azureml_options import AzureOptions
from cvtriton_core.steps.azureml_steps import Delete, Deploy
from cvtriton_standins.arm_assets import ModelVersion
from cvtriton_triton.sample_models import build_classifier

NO_CODE = {"TRITON_ENSEMBLE": "false", "DEPLOYMENT_MODE": "no-code"}


async def prepared(workfolder, tmp_path, key: str):
    model = build_classifier("float", tmp_path / key / "model.onnx")
    work = await workfolder(model.parent, key, push=False, **NO_CODE)
    repo = work.folder / "model_repository"
    return work, repo, f"sha-{repository_digest(repo)[:12]}"


def options(kit) -> AzureOptions:
    return AzureOptions(poll_s=kit.poll_s)


async def test_upload_cut_off_by_a_killed_run_registers_nothing_and_resumes(azure, workfolder, tmp_path, kit):
    work, repo, version = await prepared(workfolder, tmp_path, "cut")
    env_file = tmp_path / ".env"
    env_file.write_text("".join(f"{k}={v}\n" for k, v in work.values.items()), encoding="utf-8")
    azure.proxy.stall_writes()
    run = subprocess.Popen([sys.executable, "-m", "cvtriton_tui", "run", "--env-file", str(env_file), "--workdir",
                            str(work.folder), "--steps", "deploy", "--poll-seconds", "0.2"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                           env={**os.environ, "PYTHONWARNINGS": "ignore"})
    try:
        assert azure.proxy.stalled.wait(120), "the upload never started"
        time.sleep(0.3)
        run.send_signal(signal.SIGKILL)              # the machine dies mid-upload
        run.wait(30)
    finally:
        if run.poll() is None:
            run.kill()
        azure.proxy.release_writes()
    assert azure.arm.models == {} and azure.arm.endpoints == {}          # nothing half-registered, nothing made
    puts_before = azure.proxy.puts(lambda path: "/LocalUpload/" in path)

    events = await kit.collect([Deploy(options(kit))], work.run())
    deployed = kit.result_of(events, "deploy")
    assert deployed.model_asset == f"azureml:{work.model_name}:{version}" and deployed.uploaded_bytes > 0
    assert list(azure.arm.models) == [(work.model_name, version)]           # registered once
    assert azure.proxy.puts(lambda path: "/LocalUpload/" in path) > puts_before   # the upload started over
    await kit.collect([Delete(options(kit))], work.run())


async def test_storage_refusing_the_datastore_key_is_one_line(azure, workfolder, tmp_path, kit):
    work, _, _ = await prepared(workfolder, tmp_path, "key")
    azure.arm.refuse_storage_key()
    events = await kit.collect([Deploy(options(kit))], work.run())
    [failed] = kit.failures(events)
    assert "storage account" in failed.message and "refused the datastore's credential" in failed.message
    assert "sync-keys" in failed.message and "nothing was registered" in failed.message
    assert "Traceback" not in failed.details and "Eby8vdM02" not in failed.message + failed.details
    assert azure.arm.models == {} and azure.arm.endpoints == {}


async def test_storage_initializer_failure_names_the_download(azure, workfolder, tmp_path, kit):
    work, _, version = await prepared(workfolder, tmp_path, "lost")
    azure.arm.lose_model_files(work.model_name, version)
    events = await kit.collect([Deploy(replace(options(kit), deployment="blue"))], work.run())
    [failed] = kit.failures(events)
    assert "could not download the model asset" in failed.message and "storage-initializer log" in failed.message
    assert "Storage initializer log:" in failed.details and "no files found" in failed.details
    assert "exists in state Failed" in failed.message and "delete step" in failed.message
    assert azure.arm.deployments[(work.values["ENDPOINT_NAME"], "blue")].provisioning_state == "Failed"
    events = await kit.collect([Delete(options(kit))], work.run())
    assert not kit.failures(events) and azure.arm.endpoints == {}


async def test_asset_version_with_other_content_is_refused_before_anything_is_sent(azure, workfolder, tmp_path,
                                                                                   kit):
    work, _, version = await prepared(workfolder, tmp_path, "taken")
    arm_id = f"{azure.arm._ws_id()}/models/{work.model_name}/versions/{version}"
    azure.arm.models[(work.model_name, version)] = ModelVersion(
        work.model_name, version, arm_id, {"modelType": "triton_model", "modelUri": "azureml://elsewhere"},
        {DIGEST_TAG: "0" * 64})
    events = await kit.collect([Deploy(options(kit))], work.run())
    [failed] = kit.failures(events)
    assert f"model asset {work.model_name}:{version} already exists in the workspace with other content" \
        in failed.message and "MODEL_VERSION" in failed.message
    assert azure.proxy.puts() == 0 and azure.arm.endpoints == {}
