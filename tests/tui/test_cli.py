"""The headless commands as a user meets them: bad input refused in one line before anything is written or
started, the model checked first, a smoke request without --image, Triton's log only when it helps, one run
per work folder, and SIGTERM handled like Ctrl+C. Real processes and the real Triton where it matters."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cvtriton_tui.cli import main
from cvtriton_triton.sample_models import build_classifier, build_legacy_winml, build_non_image, write_sample_images

CLI = [sys.executable, "-m", "cvtriton_tui"]
SHUTDOWN_CHATTER = ("live models", "in-flight", "Signal (15) received", "Exit timeout expired")


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("models")
    found = {
        "good": build_classifier("float", root / "good" / "model.onnx"),
        "legacy": build_legacy_winml(root / "legacy" / "model.onnx"),
        "non_image": build_non_image(root / "non_image" / "model.onnx"),
    }
    (root / "empty.onnx").write_bytes(b"")
    found["empty"] = root / "empty.onnx"
    (root / "empty.zip").write_bytes(b"")
    found["empty_zip"] = root / "empty.zip"
    (root / "corrupt.zip").write_bytes(b"PK\x03\x04 this is not really a zip")
    found["corrupt_zip"] = root / "corrupt.zip"
    found.update({f"image_{k}": v for k, v in write_sample_images(root / "images").items()})
    return found


def one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err and " — " in lines[0] and lines[0].startswith("cvtriton-tui: ")
    return lines[0]


def run_cli(*args: str, cwd: Path, timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, cwd=cwd, timeout=timeout)


def tritonservers_under(folder: Path) -> list[int]:
    marker = str(folder.resolve())
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if "tritonserver" in cmdline and marker in cmdline:
                pids.append(int(entry.name))
    return pids


def test_headless_does_not_import_the_cli_module():
    """cli.py imports headless.py (lazily) to run a command; the other way round would be a cycle."""
    import ast

    import cvtriton_tui.headless as headless

    tree = ast.parse(Path(headless.__file__).read_text(encoding="utf-8"))
    imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    imported |= {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    assert "cvtriton_tui.cli" not in imported and "cvtriton_tui" not in imported


# ---- bad input: one line, exit 2, nothing written --------------------------------------------------------

@pytest.mark.parametrize("extra", [[], ["--model", "model.onnx", "--image", "image.jpg"]])
def test_unusable_workdir_is_bad_input(in_tmp: Path, capsys: pytest.CaptureFixture[str], extra: list[str],
                                       models: dict[str, Path]) -> None:
    Path("afile").write_text("a file where the work folder should be")
    Path("model.onnx").write_bytes(models["good"].read_bytes())
    Path("image.jpg").write_bytes(models["image_red"].read_bytes())
    code = main(["--workdir", "afile", "local", *extra])
    err = one_line(capsys.readouterr().err)
    assert code == 2
    assert "afile" in err and "writable --workdir" in err and "report this" not in err


@pytest.mark.parametrize("case, expected", [
    ("legacy", "legacy WinML-era export"), ("empty", "empty.onnx is empty (0 bytes)"),
    ("empty_zip", "empty.zip is empty (0 bytes)"), ("non_image", "not an image tensor"),
    ("corrupt_zip", "not a readable zip file"),
])
def test_a_broken_model_gets_its_own_message_even_without_an_image(case, expected, models, in_tmp, capsys):
    code = main(["--workdir", "wd", "local", "--model", str(models[case])])
    line = one_line(capsys.readouterr().err)
    assert code == 2 and expected in line
    assert "no test image" not in line and "opset 0" not in line
    assert not Path("wd").exists()                 # nothing written: no run-state.json, no model folder


@pytest.mark.parametrize("case", ["text", "folder", "empty", "missing"])
@pytest.mark.parametrize("model", ["good", "sample"])
def test_a_test_image_that_is_not_a_picture_is_refused_before_triton_starts(case, model, models, in_tmp, capsys):
    image = Path("notes.jpg")
    if case == "text":
        image.write_text("not a picture")
    elif case == "folder":
        image.mkdir()
    elif case == "empty":
        image.write_bytes(b"")
    extra = ["--model", str(models["good"])] if model == "good" else []
    code = main(["--workdir", "wd", "local", *extra, "--image", str(image)])
    line = one_line(capsys.readouterr().err)
    assert code == 2 and "notes.jpg" in line
    assert not Path("wd").exists()                 # no sample written, no Triton started


def test_settings_file_that_is_a_folder_is_bad_input(in_tmp, capsys):
    Path("conf").mkdir()
    code = main(["run", "--env-file", "conf", "--steps", "import", "--workdir", "wd"])
    line = one_line(capsys.readouterr().err)
    assert code == 2 and "conf is a folder" in line and not Path("wd").exists()


@pytest.mark.parametrize("steps, expected", [(",", "no steps given"), (" , ,", "no steps given"),
                                             ("import,import", "listed twice"), ("test,import", "out of order"),
                                             ("import,deploy-everything", "unknown step")])
def test_step_lists_that_run_nothing_or_nonsense_are_bad_input(steps, expected, in_tmp, capsys):
    Path(".env").write_text("MODEL_NAME=m\n")
    code = main(["run", "--env-file", ".env", "--steps", steps, "--workdir", "wd"])
    line = one_line(capsys.readouterr().err)
    assert code == 2 and expected in line and not Path("wd").exists()


def test_run_json_with_bad_input_prints_the_one_line_on_stderr_too(models, in_tmp, capsys):
    Path(".env").write_text("MODEL_NAME=m\n")
    code = main(["run", "--env-file", ".env", "--steps", "import,repository", "--model", str(models["empty"]),
                 "--json", "--workdir", "wd"])
    out = capsys.readouterr()
    assert code == 2 and "is empty (0 bytes)" in one_line(out.err)
    events = [json.loads(line) for line in out.out.splitlines()]
    assert len(events) == 1 and events[0]["kind"] == "failed" and events[0]["step"] == "import"
    assert events[0]["exit_code"] == 2 and "Traceback" not in events[0]["details"]
    assert not Path("wd").exists()


def test_an_expected_failure_carries_no_traceback_in_json(in_tmp, capsys):
    """serve-local on a work folder with nothing packaged: a UserError at run time, exit 2, clean details."""
    Path(".env").write_text("MODEL_NAME=m\n")
    code = main(["run", "--env-file", ".env", "--steps", "serve-local", "--json", "--workdir", "wd"])
    out = capsys.readouterr()
    failed = [json.loads(line) for line in out.out.splitlines() if json.loads(line)["kind"] == "failed"]
    assert code == 2 and len(failed) == 1
    assert failed[0]["message"].startswith("no model repository — run Package first")
    assert failed[0]["details"] == "" and "Traceback" not in out.out
    assert one_line(out.err) == f"cvtriton-tui: {failed[0]['message']}"


def test_an_unusable_model_name_is_refused_before_the_model_is_imported(models, in_tmp, capsys):
    Path(".env").write_text("MODEL_VERSION=01\n")      # Triton would ignore a version folder named 01
    code = main(["--env-file", ".env", "--workdir", "wd", "local", "--model", str(models["good"])])
    line = one_line(capsys.readouterr().err)
    assert code == 2 and "MODEL_VERSION='01' is not valid" in line and not Path("wd").exists()


# ---- the real Triton -------------------------------------------------------------------------------------

def test_local_without_image_sends_one_smoke_request(models, tmp_path):
    result = run_cli("--workdir", "wd", "local", "--model", str(models["good"]), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "loads in Triton and answers (one request with a generated 224x224 image" in result.stdout
    assert "Pass --image PATH for real predictions." in result.stdout
    # Triton's own log is not printed in human mode, its shutdown chatter never
    assert "[triton]" not in result.stderr and not any(c in result.stderr for c in SHUTDOWN_CHATTER)
    as_json = run_cli("--workdir", "wd", "local", "--model", str(models["good"]), "--json", cwd=tmp_path)
    assert as_json.returncode == 0, as_json.stderr
    data = json.loads(as_json.stdout)
    assert data["smoke"] is True and data["predictions"] == [] and data["latency_ms"] > 0


def test_verbose_shows_triton_but_never_its_shutdown_chatter(models, tmp_path):
    result = run_cli("--workdir", "wd", "local", "--model", str(models["good"]), "--image",
                     str(models["image_red"]), "--verbose", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "[triton]" in result.stderr and "Started HTTPService" in result.stderr
    assert not any(c in result.stderr for c in SHUTDOWN_CHATTER), result.stderr


def test_a_failed_start_shows_the_last_triton_lines(models, tmp_path):
    packaged = run_cli("--workdir", "wd", "local", "--model", str(models["good"]), cwd=tmp_path)
    assert packaged.returncode == 0, packaged.stderr
    config = tmp_path / "wd" / "local" / "model_repository" / "customvision" / "config.pbtxt"
    config.write_text(config.read_text().replace('name: "data"', 'name: "pixels"'))   # no such graph input
    (tmp_path / ".env").write_text("MODEL_NAME=customvision\n")
    result = run_cli("--workdir", "wd/local", "run", "--steps", "serve-local", cwd=tmp_path)
    assert result.returncode == 1, result.stderr
    lines = result.stderr.splitlines()
    failed = [i for i, line in enumerate(lines) if line.startswith("✖ serve-local:")]
    assert len(failed) == 1 and "ConfigMismatch" in lines[failed[0]]
    assert "lines of the Triton log" in lines[failed[0] + 1] and len(lines) > failed[0] + 3
    assert "Traceback" not in result.stderr and not tritonservers_under(tmp_path / "wd")


def test_a_second_run_on_the_same_work_folder_is_refused_with_one_line(tmp_path):
    """Two real processes: the second is refused while the first holds the work folder; the first is unharmed."""
    first = subprocess.Popen([*CLI, "--workdir", "wd", "local", "--requests", "3000"], cwd=tmp_path,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        for line in first.stderr:
            if line.startswith("==> Import model"):
                break
        second = run_cli("--workdir", "wd", "local", "--json", cwd=tmp_path, timeout=60)
        assert first.poll() is None, "the first run ended before the second started; the test proves nothing"
        line = one_line(second.stderr)
        assert second.returncode == 2 and second.stdout == ""
        assert f"another cvtriton-tui run (pid {first.pid}) is using the work folder" in line
        out, err = first.communicate(timeout=180)
    finally:
        if first.poll() is None:
            first.kill()
    assert first.returncode == 0, err
    assert "black" in out


@pytest.mark.parametrize("stage", ["==> Test with an image", "    Waiting for model"])
def test_sigterm_stops_triton_cleanly_and_exits_143(stage, tmp_path):
    proc = subprocess.Popen([*CLI, "--workdir", "wd", "local", "--requests", "1000000"], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    seen = []
    try:
        for line in proc.stderr:
            seen.append(line)
            if line.startswith(stage):
                break
        assert tritonservers_under(tmp_path / "wd"), "".join(seen)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 143, err
    assert err.strip().splitlines()[-1].startswith("cvtriton-tui: terminated (SIGTERM)")
    assert "Traceback" not in err
    deadline = time.monotonic() + 5
    while tritonservers_under(tmp_path / "wd") and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not tritonservers_under(tmp_path / "wd")
    triton_dir = tmp_path / "wd" / "local" / "triton"
    assert not triton_dir.exists() or not list(triton_dir.iterdir())       # its work folder removed
    state = json.loads((tmp_path / "wd" / "local" / "run-state.json").read_text())
    assert "cancelled" in {s["status"] for s in state["steps"].values()}    # resumable, like after Ctrl+C
    assert not [p for p in Path("/dev/shm").iterdir() if p.name.startswith(f"cvtriton_{proc.pid}_")]


def test_the_next_run_removes_a_server_folder_a_killed_run_left(tmp_path):
    """SIGKILL skips every cleanup; the folder it leaves is removed by the next run on that work folder."""
    left = tmp_path / "wd" / "local" / "triton" / "cvtriton-triton-killed"
    (left / "backends").mkdir(parents=True)
    result = run_cli("--workdir", "wd", "local", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert not left.exists() and not list(left.parent.iterdir())

