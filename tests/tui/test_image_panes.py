"""Pilot walks of the Triton image panes against the real Docker daemon (``DOCKER_HOST``) and the stand-in
Triton base image (``cvtriton_standins.triton_base_image``, built once and cached by recipe hash):

* Package & build with "Also build the Triton image" streams the build log, shows the Dockerfile and its
  context folder, and finishes with the image in the daemon;
* Local test with "the built image in Docker" runs that image, gets predictions from the container and says
  so; the container is gone once the run ends, once it is cancelled (F8) and once the wizard quits.

Run them with the services started around the command, as the image tests are:

    bash scripts/image-services.sh .venv/bin/pytest tests/tui/test_image_panes.py

(or with ``DOCKER_HOST`` pointing at a running daemon).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.syntax import Syntax
from textual.widgets import Input, Static

from cvtriton_core.run_state import RunState
from cvtriton_core.steps.image_steps import WORKDIR_LABEL
from cvtriton_tui.app import WizardApp
from cvtriton_tui.screens.confirm import ConfirmScreen
from cvtriton_tui.widgets.event_log import EventLog
from cvtriton_tui.widgets.progress_panel import ProgressPanel

from .conftest import PREDICTION_KEY, SESSION, SIZE, env_text, started, wait_for

MODEL = f"panes-{SESSION}"


def containers_for(api: Any, run_dir: Path) -> list[dict]:
    """Containers (running or not) the wizard's run-local step started for ``run_dir``."""
    return api.containers(all=True, filters={"label": f"{WORKDIR_LABEL}={run_dir.resolve()}"})


def log_text(pane: Any) -> str:
    return "\n".join(text.plain for text in pane.query_one(EventLog).texts)


async def test_build_then_test_the_image_in_docker_and_it_is_removed(in_tmp: Path, docker_api: Any,
                                                                     standin_base: str, pillow_wheels: Path) -> None:
    (in_tmp / ".env").write_text(env_text(MODEL_NAME=MODEL, MODEL_VERSION="1", TRITON_BASE_IMAGE=standin_base,
                                          IMAGE_PIP_WHEELS=str(pillow_wheels),
                                          VISION_PREDICTION_KEY=PREDICTION_KEY), encoding="utf-8")
    workdir = Path("work")
    run_dir = (workdir / "local").resolve()
    app = WizardApp(Path(".env"), workdir)
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot)
        # Without an image, Local test offers only the local server and says where to build one.
        test_pane = app.main.pane("local-test")
        test_pane.show_server_choice()
        assert test_pane.query_one("#server-container").disabled
        assert "build it on Package & build" in str(test_pane.query_one("#server-note", Static).render())

        app.goto("package")
        await wait_for(pilot, lambda: app.state.current == "package", what="the Package step")
        pane = app.main.pane("package")
        await pilot.click("#build-image")
        await pilot.pause()
        assert app.state.build_image
        assert list(pane.query_one(ProgressPanel).rows) == ["import", "repository", "package", "build"]
        await pilot.press("f5")
        await wait_for(pilot, lambda: app.state.status.get("package") in ("done", "failed"), 300, "the build")
        assert app.state.status["package"] == "done", app.session_log[-8:]

        rows = pane.query_one(ProgressPanel).rows
        assert {name: row.status for name, row in rows.items()} == dict.fromkeys(rows, "done")
        log = log_text(pane)
        assert "[docker] " in log and "Step 1/" in log, log[-2000:]       # the build's own output, streamed
        built = app.state.results["build"]
        assert docker_api.inspect_image(built.image_id)["Id"] == built.image_id
        assert RunState.load(run_dir).get("image_id") == built.image_id
        dockerfile = pane.query_one("#dockerfile-text", Static).content
        assert isinstance(dockerfile, Syntax) and f"FROM {standin_base}" in dockerfile.code
        context = str(pane.query_one("#image-context", Static).render())
        folder = Path(context.split("Build context ", 1)[1].split("  ", 1)[0])
        assert (folder / "Dockerfile").read_text(encoding="utf-8") == dockerfile.code

        # Local test in the built image: predictions from the container, which is removed afterwards.
        app.goto("local-test")
        await wait_for(pilot, lambda: app.state.current == "local-test", what="the Local test step")
        assert not test_pane.query_one("#server-container").disabled
        await pilot.click("#server-container")
        await pilot.pause()
        assert app.state.test_server == "container"
        assert list(test_pane.query_one(ProgressPanel).rows) == ["run-local", "test"]
        red = workdir / "sample" / "images" / "red.jpg"
        test_pane.query_one("#image-path", Input).value = str(red)
        test_pane.query_one("#requests", Input).value = "3"
        await pilot.pause()
        await pilot.press("f5")
        await wait_for(pilot, lambda: app.state.status.get("local-test") in ("done", "failed"), 240, "the test")
        assert app.state.status["local-test"] == "done", [line for line in app.session_log if "fail" in line][-4:]
        result = app.state.results["test"]
        assert result.predictions[0].label == "red" and len(result.latencies_ms) == 3
        source = str(test_pane.query_one("#results-source").render())
        assert source.startswith(f"Served by the container cvtriton-{MODEL}-"), source
        assert f"(image {built.image_id[7:19]})" in source
        assert "[container] " in log_text(test_pane)
        assert not containers_for(docker_api, run_dir)

        # Cancelled while the container starts: stopped and removed, and the row says so.
        await pilot.press("f5")
        await wait_for(pilot, lambda: bool(containers_for(docker_api, run_dir)), 60, "the container to start")
        await pilot.press("f8")
        await wait_for(pilot, lambda: app.state.status.get("local-test") == "cancelled", 60, "the cancel")
        await wait_for(pilot, lambda: not containers_for(docker_api, run_dir), 30, "the container's removal")
        message = str(test_pane.query_one(ProgressPanel).rows["run-local"].query_one(".step-message").render())
        assert "the container was stopped and removed" in message, message

        # Quitting while the container runs: the dialog says what happens, then it is removed.
        await pilot.press("f5")
        await wait_for(pilot, lambda: bool(containers_for(docker_api, run_dir)), 60, "the container to start")
        await pilot.press("ctrl+q")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen), 5, "the quit confirmation")
        await pilot.press("y")
        await wait_for(pilot, lambda: not app.is_running, 60, "the app to stop")
    assert not containers_for(docker_api, run_dir)


async def test_push_rows_collapse_per_layer_and_end_with_the_digest(local_env: Path) -> None:
    """No daemon needed: the pane renders the core's push events (one row per layer, the latest update of
    each), and the push plan follows IMAGE_REGISTRY."""
    from cvtriton_core.events import LayerProgress, StepFinished
    from cvtriton_core.steps.image_steps import PushResult
    from cvtriton_tui.widgets.layer_progress import LayerProgressView

    app = WizardApp(Path(".env"), Path("work"))
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot)
        pane = app.main.pane("package")
        app.state.target = "azure"
        assert pane.step_names() == ["import", "repository", "package", "build"]
        pane.show_plan()
        assert "set IMAGE_REGISTRY" in str(pane.query_one("#image-plan", Static).render())
        app.state.edits["IMAGE_REGISTRY"] = "127.0.0.1:5000"
        assert pane.step_names()[-1] == "push" and "IMAGE_REGISTRY" in pane.needs_to_run
        app.state.target = "local"
        assert pane.step_names() == ["import", "repository"]       # Local builds only when asked to

        for sent in (0, 400_000, 900_000, 1_000_000):
            pane.handle_event(LayerProgress(step="push", layer="aaaaaaaaaaaa", direction="push",
                                            status="done" if sent == 1_000_000 else "transferring",
                                            current=sent, total=1_000_000))
        pane.handle_event(LayerProgress(step="push", layer="bbbbbbbbbbbb", direction="push", status="exists"))
        view = pane.query_one(LayerProgressView)
        assert list(view.latest) == ["aaaaaaaaaaaa", "bbbbbbbbbbbb"] and view.latest["aaaaaaaaaaaa"].status == "done"
        digest = "sha256:" + "c" * 64
        pane.handle_event(StepFinished(step="push", result=PushResult(
            summary="", reference=f"127.0.0.1:5000/m@{digest}", tag_ref="127.0.0.1:5000/m:1", digest=digest,
            bytes_sent=1_000_000, image_size=4_000_000, layers_sent=1, layers_total=2)))
        await pilot.pause()
        shown = view.content       # the table the view shows
        from rich.console import Console

        console = Console(width=110, record=True)
        console.print(shown)
        text = console.export_text()
        assert text.count("aaaaaaaaaaaa") == 1 and "already there" in text
        assert "Sent 1.0 MB of the 4.0 MB image (25.0%): 1 of 2 layers, 1 already in the registry" in text
        assert digest in text
