"""The results view tells the truth about a load test: a histogram whose buckets hold exactly the requests
that took that long, errors by status, every path's answer side by side with whether they agree, an
endpoint test's result (its own fields) and the Custom Vision URL an app uses; the Local test pane refuses a
concurrency it cannot run, in one line that names the fix."""

from __future__ import annotations

from pathlib import Path

from textual.app import App, ComposeResult
from textual.widgets import DataTable, Input, Label, Static

from cvtriton_core.steps.endpoint_test import EndpointTestResult
from cvtriton_core.steps.image_ensemble import PathAnswer
from cvtriton_triton.load_test import LoadReport
from cvtriton_triton.model_info import Prediction
from cvtriton_tui.app import WizardApp
from cvtriton_tui.screens.local_test import concurrency_problem
from cvtriton_tui.widgets.latency_chart import LatencyHistogram, histogram, histogram_subtitle
from cvtriton_tui.widgets.results_view import ResultsView, error_counts

from .conftest import SIZE, wait_for


def test_histogram_buckets_hold_exactly_the_requests_that_took_that_long():
    edges, (counts,) = histogram([[1.0, 1.1, 1.9, 2.0, 2.5, 3.0]], buckets=4)
    assert edges == [(1.0, 1.5), (1.5, 2.0), (2.0, 2.5), (2.5, 3.0)]
    assert counts == [2, 1, 1, 2] and sum(counts) == 6      # 2.0 counts in the upper bucket, 3.0 in the last
    # two paths: the same buckets, from the fastest to the slowest of both
    edges, (a, b) = histogram([[1.0, 2.0], [3.0, 5.0]], buckets=4)
    assert edges[0][0] == 1.0 and edges[-1][1] == 5.0 and a == [1, 1, 0, 0] and b == [0, 0, 1, 1]
    # never more buckets than requests; all alike: one bucket
    assert len(histogram([[4.0, 9.0]])[0]) == 2
    assert histogram([[3.0, 3.0, 3.0]]) == ([(3.0, 3.0)], [[3]])
    assert histogram_subtitle([("tensor", (3.0, 3.0))]).endswith("(one bucket (all alike))")
    assert histogram_subtitle([("tensor", (1.0, 2.0, 3.0))]) == (
        "successful timed requests per latency bucket (3 buckets of 0.67 ms)")


def test_errors_by_status_and_concurrency_refusal_name_the_fix():
    assert error_counts({"503": 2, "timeout": 1, "429": 4}) == "HTTP 429 × 4, HTTP 503 × 2, timeout × 1"
    assert error_counts({}) == "no errors"
    for bad in ("0", "65", "x", "", "-1"):
        problem = concurrency_problem(bad)
        assert problem and " — type one, e.g. 4" in problem and "from 1 to 64" in problem
    assert concurrency_problem("8") is None


class _Host(App):
    def compose(self) -> ComposeResult:
        yield ResultsView(id="results")


def _endpoint_result() -> EndpointTestResult:
    preds = (Prediction("red", 0.97, None), Prediction("blue", 0.03, None))
    routed = (Prediction("red", 0.97, None), Prediction("blue", 0.03, None))
    answers = (PathAnswer("tensor", "colours", preds, 40.0, 602_112),
               PathAnswer("image", "colours_image", preds, 41.0, 1_500),
               PathAnswer("customvision", "colours_image", routed, 44.0, 1_500))
    load = (LoadReport("colours", 2, 6, 5, {"429": 1}, (30.0, 31.0, 32.0, 33.0, 60.0), 0.5, "completed", 602_400),
            LoadReport("colours_image", 2, 6, 6, {}, (35.0,) * 6, 0.5, "completed", 1_700))
    url = "https://ep.westeurope.inference.ml.azure.com/customvision/v3.0/Prediction/p/classify/iterations/prod/image"
    return EndpointTestResult(
        summary="red 0.97 from ep/blue", model="colours", task="classification", image=Path("red.jpg"),
        endpoint="ep", deployment="blue", predictions=({"label": "red", "probability": 0.97},
                                                        {"label": "blue", "probability": 0.03}),
        latency_ms=32.0, p50_ms=32.0, p95_ms=60.0, p99_ms=60.0, throughput_rps=10.0, requests=6, concurrency=2,
        failed=1, errors={"HTTP 429": 1}, customvision=({"label": "red", "probability": 0.968},
                                                          {"label": "blue", "probability": 0.032}),
        customvision_latency_ms=80.0, answers=answers, disagreements=(), customvision_url=url,
        latencies_ms=load[0].latencies_ms, load=load)


async def test_an_endpoint_result_renders_with_every_answer_the_url_and_errors_by_status():
    app = _Host()
    async with app.run_test(size=(140, 80)) as pilot:
        view = app.query_one(ResultsView)
        view.show_result(_endpoint_result(), source="endpoint ep (deployment blue)")
        await pilot.pause()
        assert "colours · classification · red.jpg: red (0.97)" in str(view.query_one("#results-summary", Label).render())
        url = str(view.query_one("#customvision-url", Label).render())
        assert "/customvision/v3.0/Prediction/p/classify/iterations/prod/image" in url and "Authorization: Bearer" in url
        table = view.query_one("#answers", DataTable)
        assert [str(c.label) for c in table.columns.values()] == [
            "label", "tensor → model", "bytes → ensemble", "bytes → CV route", "Custom Vision service"]
        assert [str(cell) for cell in table.get_row_at(0)] == ["red", "0.9700", "0.9700", "0.9700", "0.9680"]
        assert str(view.query_one("#agreement", Label).render()).startswith("✓ the 3 paths agree")
        report = str(view.query_one("#load-report", Static).render())
        assert "colours: 5/6 ok at concurrency 2" in report and "errors: HTTP 429 × 1" in report
        assert "colours_image: 6/6 ok" in report and "errors: no errors" in report
        histogram_widget = view.query_one(LatencyHistogram)
        assert [name for name, _ in histogram_widget.series] == ["tensor → model", "bytes → ensemble"]
        assert sum(len(v) for _, v in histogram_widget.series) == 11


async def test_the_local_test_pane_refuses_a_concurrency_it_cannot_run(local_env: Path) -> None:
    app = WizardApp(Path(".env"), Path("work"))
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: app.main.has_pane("local-test"), 10, "the panes")
        app.main.show("local-test")
        await pilot.pause()
        pane = app.main.pane("local-test")
        image = Path("red.png")
        from PIL import Image

        Image.new("RGB", (8, 8), (200, 0, 0)).save(image)
        pane.query_one("#image-path", Input).value = str(image)
        pane.query_one("#concurrency", Input).value = "500"
        await pilot.pause()
        pane.run_step()
        await pilot.pause()
        shown = str(pane.query_one("#test-error", Label).render())
        assert shown.startswith("concurrency (requests in flight at once) must be a whole number from 1 to 64")
        assert not pane.running
        assert app.state.concurrency == "500"
