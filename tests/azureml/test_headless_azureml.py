"""``cvtriton-tui run --steps deploy,endpoint-test,traffic,delete --json`` as a user runs it: stdout holds one
JSON object per event and nothing else (the SDK's poller dots are kept off it), provisioning states arrive as
``state`` events, and endpoint-test's result carries the predictions in the shape ``local --json`` prints."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from cvtriton_triton.sample_models import build_classifier


def write_env(path: Path, values: dict[str, str]) -> Path:
    path.write_text("".join(f"{k}={v}\n" for k, v in values.items()), encoding="utf-8")
    return path


def cli(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cvtriton_tui", *args], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "PYTHONWARNINGS": "ignore"})


async def test_run_deploy_test_delete_json(azure, workfolder, tmp_path, test_image):
    work = await workfolder(build_classifier("float", tmp_path / "m" / "model.onnx").parent, "cli")
    env_file = write_env(tmp_path / ".env", work.values)
    done = cli("run", "--env-file", str(env_file), "--workdir", str(work.folder), "--json",
               "--steps", "deploy,endpoint-test,traffic,delete", "--image", str(test_image), "--requests", "4",
               "--concurrency", "2", "--time-limit", "60", "--poll-seconds", "0.2")
    assert done.returncode == 0, done.stderr[-2000:]
    events = [json.loads(line) for line in done.stdout.splitlines()]          # every line is one JSON object
    assert all(isinstance(e, dict) and "kind" in e for e in events)
    states = [(e["resource"], e["state"]) for e in events if e["kind"] == "state"]
    assert ("deployment", "Succeeded") in states and states[-1] == ("endpoint", "Deleted")
    finished = {e["step"]: e for e in events if e["kind"] == "finished"}
    assert set(finished) == {"deploy", "endpoint-test", "traffic", "delete"}
    result = finished["endpoint-test"]["result"]
    assert result["requests"] == 4 and result["deployment"] == "blue" and result["failed"] == 0
    assert result["predictions"] and set(result["predictions"][0]) == {"label", "probability"}
    # every path the deployment serves, side by side and load-tested at concurrency 2, with progress
    assert [a["path"] for a in result["answers"]] == ["tensor", "image", "customvision"]
    assert result["disagreements"] == [] and result["errors"] == {} and result["concurrency"] == 2
    assert "/customvision/v3.0/Prediction/" in result["customvision_url"]
    assert [(r["concurrency"], r["planned"], r["ok"]) for r in result["load"]] == [(2, 4, 4)] * 3
    progress = [e for e in events if e["step"] == "endpoint-test" and e["kind"] == "progress" and e.get("total")]
    assert progress and progress[-1]["done"] == progress[-1]["total"] == 12     # 4 requests x 3 paths
    assert finished["traffic"]["result"]["skipped"] is True                 # blue already had 100%
    assert azure.arm.endpoints == {}
    printed = done.stdout + done.stderr                 # no key, token or registry credential is ever shown
    assert azure.arm.keys_handed_out and not any(key in printed for key in azure.arm.keys_handed_out)
    assert "eyJ" not in printed                          # no JWT (Entra or registry token) either


def test_bad_input_is_one_line_and_exit_2(azure, tmp_path, test_image):
    """Refused by the steps' checks before the work folder or its run state is written, in both output modes."""
    env_file = write_env(tmp_path / ".env", {**azure.settings(), "ENDPOINT_NAME": "ok-name"})
    cases = {
        "deployment name 'no_underscores' is not valid — use 3-32 letters": ["--steps", "deploy", "--deployment",
                                                                              "no_underscores"],
        "invalid choice: 'aad'": ["--steps", "deploy", "--auth-mode", "aad"],        # argparse's choices
        "traffic adds up to 110%": ["--steps", "traffic", "--traffic", "blue=100,green=10"],
        "traffic '50=blue' is not DEPLOYMENT=PERCENT": ["--steps", "traffic", "--traffic", "50=blue"],
        "traffic 'blue=50' for the new deployment is not a percentage": ["--steps", "deploy,traffic", "--traffic",
                                                                          "blue=50"],
        "the endpoint-test step needs a test image": ["--steps", "endpoint-test"],
        "concurrency 100 is too high for an endpoint test": ["--steps", "endpoint-test", "--image", str(test_image),
                                                              "--concurrency", "100"],
    }
    for expected, args in cases.items():
        for json_mode in (False, True):
            workdir = tmp_path / "w"
            done = cli("run", "--env-file", str(env_file), "--workdir", str(workdir), *args,
                       *(["--json"] if json_mode else []))
            assert done.returncode == 2, (args, done.stderr)
            lines = [line for line in done.stderr.splitlines() if line.strip()]
            assert any(expected in line for line in lines), (expected, done.stderr)
            assert "Traceback" not in done.stderr and not workdir.exists()
            if json_mode and "invalid choice" not in expected:
                failed = json.loads(done.stdout)
                assert failed["kind"] == "failed" and expected in failed["message"]
            else:
                assert done.stdout == ""
