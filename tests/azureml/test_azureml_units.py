"""Pure parts of the Azure ML steps and adapter: log tails, traffic arithmetic, refusal texts,
image references, the SDK's stdout dots."""

from __future__ import annotations

import sys
import threading

import pytest

from cvtriton_core.adapters import sdk_output
from cvtriton_core.adapters.registry_login import ImageRef
from cvtriton_core.errors import UserError
from cvtriton_core.steps.azureml_common import complete_traffic, describe_traffic, parse_traffic
from cvtriton_core.steps.azureml_logs import LogFollower
from cvtriton_core.steps.endpoint_test import explain_status


def test_log_follower_emits_only_new_lines():
    follower = LogFollower()
    assert follower.feed("") == []
    assert follower.feed("a\nb\n") == ["a", "b"]
    assert follower.feed("a\nb\n") == []
    assert follower.feed("b\nc\nd\n") == ["c", "d"]            # the tail window moved on
    assert follower.feed("x\ny\n") == ["x", "y"]               # no overlap: more than a window arrived
    assert follower.feed("y\ny\ny\n") == ["y", "y"]            # repeated lines are real lines
    assert follower.total == 8


def test_traffic_arithmetic():
    assert parse_traffic("blue=90, green=10%") == {"blue": 90, "green": 10}
    for bad in ("blue", "blue=x", "blue=101", ""):
        with pytest.raises(UserError):
            parse_traffic(bad)
    assert complete_traffic({"green": 10}, {"blue": 100, "green": 0}) == {"green": 10, "blue": 90}
    assert complete_traffic({"green": 100}, {"blue": 100, "green": 0}) == {"green": 100, "blue": 0}
    assert complete_traffic({"c": 40}, {"a": 50, "b": 50, "c": 0}) == {"c": 40, "a": 30, "b": 30}
    assert sum(complete_traffic({"c": 1}, {"a": 50, "b": 50, "c": 0}).values()) == 100
    with pytest.raises(UserError, match="no other deployment serves the rest"):
        complete_traffic({"green": 10}, {"green": 0})
    with pytest.raises(UserError, match="adds up to 120%"):
        complete_traffic({"a": 60, "b": 60}, {})
    assert describe_traffic({"blue": 90, "green": 10, "red": 0}) == "blue 90%, green 10%"


def test_refusals_are_explained():
    cause, fix = explain_status(429, "", model="m", deployment="blue", limit_hint="2 x 8 x 1 instance(s) = 16")
    assert "throttled" in cause and "= 16" in cause and "lower --concurrency" in fix
    cause, fix = explain_status(424, "bad input", model="m", deployment="blue", limit_hint="", container_status="400")
    assert "answered HTTP 400: bad input" in cause and "input name, shape and data type" in fix
    cause, fix = explain_status(408, "", model="m", deployment=None, limit_hint="")
    assert "the endpoint did not answer within its request timeout" in cause


def test_load_test_failures_are_explained(tmp_path):
    from cvtriton_core.steps.endpoint_test import EndpointTest, _Target
    from cvtriton_triton.load_test import LoadReport

    target = _Target("ep", "blue", "ep.westeurope.inference.ml.azure.com", "m", None, None, {},
                     "2 x 8 (max_concurrent_requests_per_instance) x 1 instance(s) = 16")
    step = EndpointTest(tmp_path / "x.jpg", concurrency=20)

    def report(errors: dict[str, int], first: str) -> LoadReport:
        return LoadReport(target="m", concurrency=20, planned=40, ok=0, errors=errors, latencies_ms=(), wall_s=1.0,
                          stopped="completed", request_bytes=100, first_error=first)

    cause, fix = step._explain_load(target, "429", report({"429": 40}, "HTTP 429: Too many requests"), every=True)
    assert "deployment blue throttled the request (HTTP 429)" in cause and "= 16" in cause
    assert "lower --concurrency" in fix
    cause, _ = step._explain_load(target, "401", report({"401": 3}, 'HTTP 401: {"message": "bad key"}'), every=True)
    assert cause == "the endpoint refused the key or token (HTTP 401): bad key"
    cause, fix = step._explain_load(target, "timeout", report({"timeout": 2}, "no answer within 60 s"))
    assert "got no answer within 60 s" in cause and "--concurrency" in fix
    cause, _ = step._explain_load(target, "connection", report({"connection": 1}, "ConnectionError: reset"))
    assert "lost the connection to the endpoint (ConnectionError: reset)" in cause


def test_image_references():
    ref = ImageRef.parse("myacr.azurecr.io/cvtriton/model@sha256:" + "a" * 64)
    assert (ref.registry, ref.repository, ref.reference) == ("myacr.azurecr.io", "cvtriton/model", "sha256:" + "a" * 64)
    assert str(ref) == "myacr.azurecr.io/cvtriton/model@sha256:" + "a" * 64
    assert ImageRef.parse("127.0.0.1:5000/m:3").reference == "3"
    assert ImageRef.parse("localhost:5000/team/m").reference == "latest"
    with pytest.raises(UserError, match="names no registry"):
        ImageRef.parse("cvtriton/model:1")


class _Poller:
    def __init__(self) -> None:
        self.callbacks = []

    def add_done_callback(self, fn) -> None:
        self.callbacks.append(fn)

    def finish(self) -> None:
        for fn in self.callbacks:
            fn(None)


def test_poller_dots_never_reach_stdout(capsys):
    original = sys.stdout
    poller = _Poller()
    sdk_output.poller_lease(poller)
    dots = threading.Thread(target=lambda: print(".", end="", flush=True), name="LROPoller(1234)")
    dots.start()
    dots.join()
    print("ours")
    poller.finish()
    assert sys.stdout is original
    assert capsys.readouterr().out == "ours\n"


def test_state_changes_have_their_line_and_tone():
    from cvtriton_core.event_text import describe_event
    from cvtriton_core.events import StateChanged

    moved = describe_event(StateChanged(step="deploy", resource="deployment", name="blue", state="Succeeded",
                                        previous="Creating"))
    assert (moved.plain, moved.tone) == ("[azureml] deployment blue: Creating → Succeeded", "ok")
    failed = describe_event(StateChanged(step="deploy", resource="deployment", name="blue", state="Failed",
                                         previous="Creating", detail="ResourceNotReady"))
    assert failed.tone == "error" and failed.text.endswith("— ResourceNotReady")
    first = describe_event(StateChanged(step="deploy", resource="endpoint", name="ep", state="Creating"))
    assert (first.text, first.tone) == ("endpoint ep: Creating", "info")
    assert StateChanged(step="deploy", resource="endpoint", name="ep", state="Creating").to_dict()["kind"] == "state"


async def test_follow_reports_each_state_once_and_survives_failed_reads(tmp_path):
    from cvtriton_core.events import LogLine, StateChanged
    from cvtriton_core.pipeline import RunContext, run_steps
    from cvtriton_core.settings import Settings
    from cvtriton_core.steps.azureml_common import follow

    answers = [UserError("throttled"), "Creating", "Creating", UserError("throttled"), "Succeeded"]
    tails = [UserError("no logs yet"), "", "a\n", "a\nb\n", "a\nb\n"]

    class Operation:
        def done(self) -> bool:
            return not answers

        def result(self) -> str:
            return "done"

    def pop(queue):
        value = queue.pop(0)
        if isinstance(value, Exception):
            raise value
        return value

    class Step:
        name, title = "deploy", "Deploy"

        async def run(self, ctx):
            return await follow(ctx, resource="deployment", name="blue", read_state=lambda: pop(answers),
                                operation=Operation(), poll_s=0.01, logs=lambda: pop(tails), follower=LogFollower())

    events = [e async for e in run_steps([Step()], RunContext.create(Settings({}), tmp_path))]
    assert [(e.previous, e.state) for e in events if isinstance(e, StateChanged)] == [
        (None, "Creating"), ("Creating", "Succeeded")]
    warnings = [e.line for e in events if isinstance(e, LogLine) and e.level == "warning"]
    assert len(warnings) == 1 and "throttled" in warnings[0]
    assert [e.line for e in events if isinstance(e, LogLine) and e.source == "inference-server"] == ["a", "b"]


def test_custom_vision_route_refusals_are_explained(tmp_path):
    """What the route's client reads off a refusal (status, Custom Vision code, Azure's headers), and the
    endpoint test's explanation: the endpoint's own refusals as for the other paths, the route's own words
    behind a 424, and Triton's plain 404 (a scoring port without the route) told apart."""
    import json
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from cvtriton_core.steps.endpoint_test import EndpointTest, _no_route, _Target
    from cvtriton_triton.customvision_client import RouteRefused, predict_image

    answers: list[tuple[int, dict, dict]] = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

        def do_POST(self) -> None:  # noqa: N802
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            status, body, headers = answers.pop(0)
            data = json.dumps(body).encode()
            self.send_response(status)
            for name, value in {"Content-Type": "application/json", "Content-Length": str(len(data)),
                                **headers}.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"127.0.0.1:{server.server_address[1]}"
    target = _Target("ep", "blue", url, "m", None, None, {}, "2 x 8 x 1 instance(s) = 16")
    step = EndpointTest(tmp_path / "x.jpg")

    def refusal(status: int, body: dict, headers: dict | None = None) -> RouteRefused:
        answers.append((status, body, headers or {}))
        with pytest.raises(RouteRefused) as caught:
            predict_image(url, "/customvision/v3.0/Prediction/p/classify/iterations/prod/image", b"jpeg")
        return caught.value

    try:
        exc = refusal(401, {"message": "Unauthorized: the key or token is missing, wrong or expired."})
        assert (exc.http_status, exc.code) == (401, None) and not _no_route(exc)
        cause, fix = step._route_refused(target, exc)
        assert cause.startswith("the endpoint refused the key or token (HTTP 401): Unauthorized") and "auth mode" in fix

        exc = refusal(424, {"code": "NotFoundProject", "message": "Project p not found."},
                      {"ms-azureml-model-error-statuscode": "404"})
        assert exc.code == "NotFoundProject" and not _no_route(exc)
        cause, fix = step._route_refused(target, exc)
        assert cause == "the Custom Vision route of deployment blue answered HTTP 404: NotFoundProject: Project p not found."
        assert "from this run's repository" in fix

        exc = refusal(424, {"error": "Not Found"}, {"ms-azureml-model-error-statuscode": "404"})
        assert _no_route(exc) and exc.message == "Not Found"      # Triton's own port: no route there
    finally:
        server.shutdown()
        server.server_close()
