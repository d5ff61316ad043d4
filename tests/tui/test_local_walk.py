"""Pilot walk of the Local target against the real stand-ins: the sample export is generated, imported and
packaged; the real Triton server starts, serves it, and the wizard shows predictions, the annotated PNG and
latency; the server is gone afterwards. Also: quitting while Triton runs asks, then stops it cleanly."""

from __future__ import annotations

from pathlib import Path

from PIL import Image
from rich.syntax import Syntax

from cvtriton_core.run_state import RunState
from cvtriton_tui.app import WizardApp
from cvtriton_tui.screens.confirm import ConfirmScreen
from cvtriton_tui.widgets.latency_chart import LatencyChart
from cvtriton_tui.widgets.progress_panel import ProgressPanel
from cvtriton_tui.widgets.results_view import ResultsView
from textual.widgets import DataTable, Input, Static

from .conftest import SIZE, started, tritonservers_for, wait_for


async def test_local_walk_packages_serves_and_tests_the_sample(local_env: Path) -> None:
    workdir = Path("work")
    app = WizardApp(Path(".env"), workdir)
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot)
        assert app.state.target == "local" and app.state.steps == ("settings", "model", "package", "local-test")
        await pilot.press("ctrl+n")
        await wait_for(pilot, lambda: app.state.current == "model", what="the Model step")
        assert app.state.model_choice == "sample"
        await pilot.press("ctrl+n")
        await wait_for(pilot, lambda: app.state.current == "package", what="the Package step")

        await pilot.press("f5")
        await wait_for(pilot, lambda: app.state.status.get("package") in ("done", "failed"), 60, "packaging")
        assert app.state.status["package"] == "done", app.session_log[-5:]
        shown = app.main.pane("package").query_one("#config-text", Static).content
        assert isinstance(shown, Syntax)                       # highlighted, not plain text
        assert 'name: "colours"' in shown.code and "TYPE_FP32" in shown.code
        assert (workdir / "local" / "model_repository" / "colours" / "config.pbtxt").read_text() == shown.code

        # Back/Next keep what a finished run shows: the Package rows stay done, not re-planned as pending.
        await pilot.press("ctrl+n")
        await wait_for(pilot, lambda: app.state.current == "local-test", what="the Local test step")
        await pilot.press("ctrl+b")
        await wait_for(pilot, lambda: app.state.current == "package", what="back on the Package step")
        await pilot.pause()
        rows = app.main.pane("package").query_one(ProgressPanel).rows
        assert {name: row.status for name, row in rows.items()} == {"import": "done", "repository": "done"}

        await pilot.press("ctrl+n")
        await wait_for(pilot, lambda: app.state.current == "local-test", what="the Local test step")
        pane = app.main.pane("local-test")
        red = workdir / "sample" / "images" / "red.jpg"
        pane.query_one("#image-path", Input).value = str(red)
        pane.query_one("#requests", Input).value = "7"
        await pilot.pause()
        await pilot.press("f5")
        await wait_for(pilot, lambda: app.state.status.get("local-test") in ("done", "failed"), 90, "the local test")
        assert app.state.status["local-test"] == "done", app.session_log[-8:]

        result = app.state.results["test"]
        assert result.predictions[0].label == "red"
        assert len(result.latencies_ms) == 7
        table = pane.query_one("#predictions", DataTable)
        assert table.row_count == len(result.predictions)
        assert table.get_row_at(0)[1] == "red"
        assert pane.query_one(LatencyChart).values == result.latencies_ms

        png = workdir / "results" / "red-predictions.png"
        await wait_for(pilot, png.exists, 20, "the annotated PNG")
        await wait_for(pilot, lambda: "saved to" in str(pane.query_one("#annotated-path").render()), 20,
                       "the saved path on screen")
        assert str(png) in str(pane.query_one("#annotated-path").render())
        # where the result came from and at which precision (the sample model takes float32)
        source = str(pane.query_one("#results-source").render())
        assert source == "Served by the local Triton on this machine · FP32 (float32 input)"
        summary = str(pane.query_one("#latency-summary").render())
        assert f"median {result.latency_ms:.1f} ms" in summary      # the same figure as the progress row
        assert f"({result.latency_ms:.1f} ms median)" in str(
            pane.query_one(ProgressPanel).rows["test"].query_one(".step-message").render())
        with Image.open(png) as drawn, Image.open(red) as original:
            assert drawn.format == "PNG" and drawn.size == original.size
        assert pane.query_one(ResultsView).query_one("#preview").pixels

        # The run is over: the core stopped the server; its log streamed into the pane.
        assert not tritonservers_for(workdir)
        assert any(" triton " in line or "[triton]" in line for line in app.session_log)
        await pilot.press("ctrl+q")
    assert app.return_code == 0


async def test_quit_while_triton_runs_asks_then_stops_it(local_env: Path) -> None:
    workdir = Path("work")
    app = WizardApp(Path(".env"), workdir)
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot)
        app.goto("package")
        await wait_for(pilot, lambda: app.state.current == "package", what="the Package step")
        await pilot.press("f5")
        await wait_for(pilot, lambda: app.state.status.get("package") == "done", 60, "packaging")
        app.goto("local-test")
        await wait_for(pilot, lambda: app.state.current == "local-test", what="the Local test step")
        app.main.pane("local-test").query_one("#requests", Input).value = "1000"
        await pilot.press("f5")
        await pilot.press("ctrl+q")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen), 5, "the quit confirmation")
        await pilot.press("escape")           # keep running
        await pilot.pause()
        assert app.is_running and app.busy()

        await wait_for(pilot, lambda: bool(tritonservers_for(workdir)), 60, "tritonserver to start")
        await pilot.press("ctrl+q")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen), 5, "the quit confirmation")
        await pilot.press("y")
        await wait_for(pilot, lambda: not app.is_running, 60, "the app to stop")
    assert app.return_code == 0
    assert not tritonservers_for(workdir)
    state = RunState.load(workdir / "local")
    statuses = (state.step_status("serve-local"), state.step_status("test"))
    assert "cancelled" in statuses and "running" not in statuses, statuses
