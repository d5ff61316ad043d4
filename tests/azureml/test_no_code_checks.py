"""No-code deployment checks that need no Azure: the mode's setting and flag, the steps a no-code run refuses
before anything starts (one line, exit 2), and the repositories Azure ML's Triton cannot load."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from cvtriton_core.deployment_mode import DEPLOYMENT_MODES
from cvtriton_core.errors import UserError
from cvtriton_core.pipeline import preflight
from cvtriton_core.settings import Settings
from cvtriton_core.steps.azureml_nocode import repository_digest, repository_problem
from cvtriton_core.steps.azureml_options import AzureOptions
from cvtriton_core.steps.registry import RunOptions, build_steps

ROOT = Path(__file__).resolve().parents[2]
WORKSPACE = {"AZURE_SUBSCRIPTION_ID": "00000000-0000-4000-8000-00000000a2b1", "AZUREML_RESOURCE_GROUP": "rg",
             "AZUREML_WORKSPACE": "ws-cvtriton", "ENDPOINT_NAME": "ep-checks"}


def refused(names: str, settings: dict[str, str], **azure) -> str:
    steps = build_steps(names.split(","), RunOptions(azure=AzureOptions(**azure)))
    with pytest.raises(UserError) as caught:
        preflight(steps, Settings({**WORKSPACE, **settings}))
    return caught.value.one_line()


def test_the_mode_texts_are_the_readme_ones():
    readme = " ".join((ROOT / "README.md").read_text(encoding="utf-8").replace("`", "").split())
    for mode in DEPLOYMENT_MODES.values():
        assert mode.costs in readme and mode.cannot in readme


def test_setting_and_flag_choose_the_mode_and_image_steps_are_refused_with_no_code():
    line = refused("import,repository,package,build,push,deploy", {"DEPLOYMENT_MODE": "no-code",
                                                                    "TRITON_ENSEMBLE": "false"})
    assert "step package builds or pushes an image" in line and "drop package, build, push" in line
    line = refused("registry-login,deploy", {}, deployment_mode="no-code")
    assert "registry-login" in line
    line = refused("import,repository,deploy", {"DEPLOYMENT_MODE": "no-code"})      # TRITON_ENSEMBLE defaults on
    assert "image ensemble" in line and "TRITON_ENSEMBLE=false" in line
    line = refused("deploy", {"DEPLOYMENT_MODE": "no-code"}, image="127.0.0.1:5000/m:1")
    assert "--deploy-image" in line
    assert "DEPLOYMENT_MODE='serverless' is not valid" in refused("deploy", {"DEPLOYMENT_MODE": "serverless"})
    # the flag wins over the setting; container mode keeps its image steps
    preflight(build_steps(["package", "build", "deploy"], RunOptions(azure=AzureOptions(deployment_mode="container"))),
              Settings({**WORKSPACE, "DEPLOYMENT_MODE": "no-code"}))
    preflight(build_steps(["import", "repository", "deploy"], RunOptions(ensemble=False,
                                                                         azure=AzureOptions(deployment_mode="no-code"))),
              Settings(WORKSPACE))


def test_headless_run_refuses_an_image_step_with_no_code(tmp_path):
    env = tmp_path / ".env"
    env.write_text("".join(f"{k}={v}\n" for k, v in WORKSPACE.items()), encoding="utf-8")
    done = subprocess.run([sys.executable, "-m", "cvtriton_tui", "run", "--env-file", str(env), "--workdir",
                           str(tmp_path / "w"), "--steps", "import,repository,build,deploy", "--no-ensemble",
                           "--deployment-mode", "no-code"], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONWARNINGS": "ignore"})
    assert done.returncode == 2, done.stderr
    assert done.stderr.count("\n") == 1 and "step build builds or pushes an image" in done.stderr
    assert not (tmp_path / "w").exists() or not any((tmp_path / "w").iterdir())


def repository(tmp_path: Path, config: str = 'name: "m"\nplatform: "onnxruntime_onnx"\n', version: str = "1") -> Path:
    repo = tmp_path / "model_repository"
    (repo / "m" / version).mkdir(parents=True)
    (repo / "m" / version / "model.onnx").write_bytes(b"onnx")
    if config:
        (repo / "m" / "config.pbtxt").write_text(config, encoding="utf-8")
    return repo


def test_repositories_azure_ml_triton_cannot_load_are_named(tmp_path):
    assert repository_problem(repository(tmp_path / "ok")) is None
    cause, fix = repository_problem(repository(tmp_path / "noconfig", config=""))
    assert "has no config.pbtxt" in cause
    cause, fix = repository_problem(repository(tmp_path / "py", config='name: "m"\nbackend: "python"\n'))
    assert "python backend" in cause and "TRITON_ENSEMBLE=false" in fix
    cause, fix = repository_problem(repository(tmp_path / "v", version="01"))
    assert "version folder m/01 is not a number" in cause
    cause, _ = repository_problem(repository(tmp_path / "latest", version="latest"))
    assert "m/latest" in cause
    empty = tmp_path / "empty"
    empty.mkdir()
    assert "holds no model" in repository_problem(empty)[0]


def test_the_repository_digest_follows_content_and_names(tmp_path):
    a = repository(tmp_path / "a")
    b = repository(tmp_path / "b")
    assert repository_digest(a) == repository_digest(b)
    (b / "m" / "1" / "model.onnx").write_bytes(b"other")
    assert repository_digest(a) != repository_digest(b)


def test_asset_named_after_the_model_and_versioned_after_the_source_iteration(tmp_path):
    from types import SimpleNamespace

    from cvtriton_core.adapters.azureml import asset_reference
    from cvtriton_core.steps.azureml_nocode import DIGEST_TAG, plan_asset

    repo = repository(tmp_path)
    export = tmp_path / "export"
    export.mkdir()
    state = {"model_source": str(export), "export_dir": str(export), "project_id": "p-1",
             "export_iteration": "3f2a9c1d-0000-4000-8000-000000000001"}
    ctx = SimpleNamespace(state=SimpleNamespace(get=state.get))
    plan = plan_asset(ctx, repo, "shelf.v2", "3")
    assert (plan.name, plan.version) == ("shelf-v2", "3f2a9c1d-3")
    assert plan.tags[DIGEST_TAG] == repository_digest(repo) and plan.tags["source.iteration"].startswith("3f2a9c1d")
    state["model_source"] = str(tmp_path / "elsewhere")       # not this run's export: versioned by content
    plan = plan_asset(ctx, repo, "shelf.v2", "3")
    assert plan.version == f"sha-{repository_digest(repo)[:12]}" and "source.iteration" not in plan.tags
    assert asset_reference("/subscriptions/s/resourceGroups/r/providers/Microsoft.MachineLearningServices/"
                           "workspaces/w/models/shelf-v2/versions/3f2a9c1d-3") == "azureml:shelf-v2:3f2a9c1d-3"
