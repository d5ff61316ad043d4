"""Labels that are true: one median per run, a chart subtitle that says what a bar is, results that say
where they came from, Triton's CPU-only noise explained once, the real endpoint name in the Cleanup hint,
logs that wrap at their real width, check results readable in full, the footer listing Ctrl+S and Ctrl+T,
markers that do not rely on colour, and a wizard usable at 80×24."""

from __future__ import annotations

from pathlib import Path

from textual.widgets import Label, Static
from textual.widgets._footer import FooterKey

from cvtriton_core.events import LogLine
from cvtriton_core.steps.local_target import TestResult as CoreTestResult
from cvtriton_triton.model_info import Prediction
from cvtriton_tui.app import WizardApp
from cvtriton_tui.screens.settings import SettingsPane
from cvtriton_tui.widgets.event_log import EventLog
from cvtriton_tui.widgets.latency_chart import LatencyChart
from cvtriton_tui.widgets.marked_radio import MarkedRadioButton
from cvtriton_tui.widgets.step_list import StepList

from .conftest import SIZE, env_text, wait_for

AZURE = dict(AZURE_SUBSCRIPTION_ID="00000000-0000-0000-0000-000000000001", AZUREML_RESOURCE_GROUP="rg-demo",
             AZUREML_WORKSPACE="ws-demo", AZURE_LOCATION="westeurope", ENDPOINT_NAME="cv-triton-demo")


def result(latencies: tuple[float, ...], median: float) -> CoreTestResult:
    return CoreTestResult(summary=f"red 0.99 ({median:.1f} ms median)", model="colours", task="classification",
                          image=Path("red.jpg"), predictions=(Prediction("red", 0.99, None),), latency_ms=median,
                          latencies_ms=latencies)


async def ready(pilot, app: WizardApp) -> None:
    await wait_for(pilot, lambda: app.main.has_pane("cleanup"), 10, "the panes")
    await pilot.pause()


async def test_one_median_per_run_and_a_subtitle_that_says_what_a_bar_is(local_env: Path) -> None:
    app = WizardApp(Path(".env"), Path("work"))
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot, app)
        app.main.show("local-test")       # shown directly: nothing is packaged in this test
        await pilot.pause()
        pane = app.main.pane("local-test")
        chart = pane.query_one(LatencyChart)
        # an even count: the median (2.5) is not any one request, the nearest-rank p50 would say 2.0
        pane.query_one("#results").show_result(result((1.0, 2.0, 3.0, 10.0), 2.5), source="the local Triton")
        await pilot.pause()
        summary = str(chart.query_one("#latency-summary", Label).render())
        assert "median 2.5 ms" in summary and "p50" not in summary
        assert chart.border_subtitle.startswith("one bar per request")
        many = tuple(float(1 + i % 7) for i in range(200))
        pane.query_one("#results").show_result(result(many, 4.0), source="the local Triton")
        await pilot.pause()
        assert chart.content_size.width < 200
        size = -(-200 // chart.content_size.width)
        assert chart.border_subtitle.startswith(f"one bar per {size} requests")
        shown = str(pane.query_one("#results-source", Label).render())
        assert shown == "Served by the local Triton"


async def test_cpu_only_triton_warnings_become_one_explained_line(local_env: Path) -> None:
    app = WizardApp(Path(".env"), Path("work"))
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot, app)
        log = app.main.pane("local-test").query_one("#triton-log", EventLog)
        noise = ['W1201 20:42:35.402647 12870 pinned_memory_manager.cc:273] "Unable to allocate pinned system memory, '
                 'pinned memory pool will not be available: CUDA driver version is insufficient for CUDA runtime '
                 'version"',
                 'I1201 20:42:35.403117 12870 cuda_memory_manager.cc:117] "CUDA memory pool disabled"',
                 'E1201 20:42:35.403219 12870 server.cc:241] "CudaDriverHelper has not been initialized."',
                 'I1201 20:42:35.405238 12870 model_lifecycle.cc:472] "loading: colours:1"']
        for line in noise:
            log.add_event(LogLine(step="serve-local", line=line, source="triton"))
        shown = [t.plain for t in log.texts]
        assert len(shown) == 2 and "no usable GPU" in shown[0] and "loading: colours:1" in shown[1]
        assert not any("CudaDriverHelper" in line for line in shown)


async def test_the_cleanup_hint_names_the_real_endpoint(in_tmp: Path) -> None:
    Path(".env").write_text(env_text(**AZURE))
    app = WizardApp(Path(".env"), Path("work"))
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot, app)
        assert app.state.target == "local"                     # no Custom Vision settings: switch
        app.action_switch_target()
        app.goto("cleanup")
        await wait_for(pilot, lambda: app.state.current == "cleanup", 5, "Cleanup")
        hint = str(app.main.pane("cleanup").query_one("#cleanup-note", Static).render())
        assert "--name cv-triton-demo" in hint and "--resource-group rg-demo" in hint and "NAME " not in hint


async def test_logs_wrap_at_their_width_and_again_when_it_changes(local_env: Path) -> None:
    app = WizardApp(Path(".env"), Path("work"))
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot, app)
        app.goto("package")
        await wait_for(pilot, lambda: app.state.current == "package", 5, "the Package step")
        log = app.main.pane("package").query_one(EventLog)
        log.add_event(LogLine(step="import", line="x" * 30 + " " + "word " * 40, source="import"))
        await pilot.pause()
        assert log.size.width < 78                              # narrower than RichLog's own minimum
        assert log.virtual_size.width <= log.scrollable_content_region.width   # no sideways scrolling
        narrow_lines = len(log.lines)
        assert narrow_lines > 2
        await pilot.resize_terminal(200, 40)
        await pilot.pause(0.3)
        assert len(log.lines) < narrow_lines                    # wrapped again at the new width


async def test_check_results_wrap_in_full(local_env: Path) -> None:
    app = WizardApp(Path(".env"), Path("work"))
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot, app)
        pane = app.main.pane("settings")
        text = "the endpoint answered 404: " + "this resource does not serve the training API " * 4 + "— fix it"
        pane.post_message(SettingsPane.ConnectionChecked("customvision", False, text,
                                                        pane._service_values("customvision")))
        await pilot.pause()
        status = pane.query_one("#status-customvision", Label)
        assert status.size.height >= 2 and status.size.width <= pane.size.width
        assert "— fix it" in str(status.render())


async def test_footer_markers_and_80x24(local_env: Path) -> None:
    app = WizardApp(Path(".env"), Path("work"))
    async with app.run_test(size=(80, 24)) as pilot:
        await ready(pilot, app)
        keys = {key.key for key in app.main.query(FooterKey)}
        assert {"ctrl+s", "ctrl+t", "f5", "f8", "ctrl+q"} <= keys
        steps = app.main.query_one(StepList)
        assert steps.has_class("-narrow") and steps.size.width <= 19
        prompts = [str(steps.get_option_at_index(i).prompt) for i in range(len(steps.steps))]
        assert prompts[0].startswith("▶") and not any(p.startswith("▶") for p in prompts[1:])  # current step
        assert all(len(p) <= steps.scrollable_content_region.width for p in prompts)        # no wrapping
        steps.focus()
        await pilot.press("down")
        await pilot.pause()
        assert str(steps.get_option_at_index(1).prompt).startswith("›")      # the cursor, without colour
        assert steps.styles.border_top[0] == "double"                        # focus, without colour
        pane = app.main.pane("settings")
        assert pane.size.width >= 55
        radios = list(pane.query(MarkedRadioButton))
        chosen = [r for r in radios if "●" in str(r.render())]
        assert chosen == [r for r in radios if r.value] and len(chosen) == 1   # the choice, without colour
