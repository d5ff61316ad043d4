"""Two runs at once on one settings file, and what a killed run leaves behind, with real processes against the
Custom Vision emulator."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

CLI = [sys.executable, "-m", "cvtriton_tui"]


def test_two_runs_on_one_settings_file_create_one_project(cv_emulator, cv_env, make_classification_folder, tmp_path):
    env, images = cv_env(), make_classification_folder({"red": 5, "green": 5})
    held = cv_emulator.hold("get_projects")        # the first run stops while it looks for the project
    first = subprocess.Popen([*CLI, "--env-file", str(env), "--workdir", str(tmp_path / "one"), "run", "--steps",
                              "project", "--images", str(images), "--json"], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    try:
        assert held.wait(60), "the first run never asked for the projects"
        second = subprocess.run([*CLI, "--env-file", str(env), "--workdir", str(tmp_path / "two"), "run", "--steps",
                                 "project", "--images", str(images), "--json"], capture_output=True, text=True,
                                timeout=60)
        cv_emulator.release(process=True)
        out, err = first.communicate(timeout=60)
    finally:
        cv_emulator.release(process=True)
        if first.poll() is None:
            first.kill()
    assert first.returncode == 0, err
    assert second.returncode == 2, second.stderr
    (line,) = second.stderr.strip().splitlines()
    assert f"another cvtriton-tui run (pid {first.pid}) is using the settings file" in line
    assert len(cv_emulator.store.projects) == 1
    assert not (tmp_path / "two" / "run-state.json").exists()


def test_a_download_a_killed_run_left_unfinished_is_removed_by_the_next_run(cv_emulator, cv_env, run_cli, tmp_path):
    cv_emulator.add_project("colours", tags=("cat", "dog"))
    downloads = tmp_path / "work" / "downloads"
    downloads.mkdir(parents=True)
    left = downloads / ".0f5e-ONNX12.zip.k1ll3d.part"       # what download_file's temporary file looks like
    left.write_bytes(b"half a zip")
    result = run_cli(cv_env(), "project,export")
    assert result.code == 0, result.events[-1]
    assert not left.exists() and not list(downloads.glob("*.part")) and not list(downloads.glob(".*.part"))
    assert any("left unfinished" in e["line"] for e in result.of("export", "log"))
    # a second run reuses the export and finds nothing to clean
    again = run_cli(cv_env(), "project,export")
    assert again.code == 0 and again.of("export", "finished")[0]["skipped"]
    assert (tmp_path / "work" / "export" / "labels.txt").is_file()
    assert Path(again.of("export", "finished")[0]["result"]["export_dir"]).is_dir()
