"""The scoring front door of one emulated managed online endpoint (what ``<name>.<region>.inference.ml.azure.com``
does), on its own HTTPS port so the endpoint's scoring URI has its own host:port as in Azure:

* ``Authorization: Bearer <key | aml token | Entra token>`` is checked against the endpoint's auth mode;
  anything else is 401;
* ``azureml-model-deployment: <name>`` sends the request to that deployment whatever its traffic; otherwise a
  deployment is drawn by the endpoint's traffic weights; no deployment to route to is 404 with the service's
  message; the answer names the deployment that served it in ``azureml-model-deployment``;
* more than ``2 x maxConcurrentRequestsPerInstance x instances`` requests in flight on a deployment is 429;
* a container answer other than 200 becomes **424** with ``ms-azureml-model-error-statuscode`` and
  ``ms-azureml-model-error-reason: model_error`` (the body passes through); no answer within the deployment's
  ``requestTimeout`` is 408.

Every path and query is forwarded as is (Triton's ``/v2/...`` routes, not only ``/score``).
"""

from __future__ import annotations

import http.client
import json
import random
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING

from cvtriton_standins.arm_records import parse_duration

if TYPE_CHECKING:
    from cvtriton_standins.arm_emulator import ResourceManagerEmulator

_HOP_BY_HOP = {"connection", "keep-alive", "proxy-authorization", "te", "trailers", "transfer-encoding", "upgrade",
               "host", "authorization", "content-length"}
NO_ROUTE = ("No valid deployments to route to. Please check that the endpoint has at least one deployment with "
            "positive weight values or use a deployment specific header to route.")


class ScoringFront:
    def __init__(self, emulator: "ResourceManagerEmulator", endpoint: str) -> None:
        self.emulator = emulator
        self.endpoint = endpoint
        self._inflight: dict[str, int] = {}
        self._lock = threading.Lock()
        self.served: dict[str, int] = {}        # deployment -> requests answered by its container
        handler = type("Handler", (_FrontHandler,), {"front": self})
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        self._server.socket = emulator.server_cert.server_context().wrap_socket(self._server.socket,
                                                                                server_side=True)
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                         name=f"scoring-front-{endpoint}", daemon=True).start()

    @property
    def scoring_uri(self) -> str:
        return f"https://127.0.0.1:{self._server.server_address[1]}/score"

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def enter(self, deployment: str, limit: int) -> bool:
        with self._lock:
            if self._inflight.get(deployment, 0) >= limit:
                return False
            self._inflight[deployment] = self._inflight.get(deployment, 0) + 1
            return True

    def leave(self, deployment: str, answered: bool) -> None:
        with self._lock:
            self._inflight[deployment] -= 1
            if answered:
                self.served[deployment] = self.served.get(deployment, 0) + 1


class _FrontHandler(BaseHTTPRequestHandler):
    front: ScoringFront
    protocol_version = "HTTP/1.1"
    # headers and body leave in two writes: with Nagle on, each answer waited for the client's delayed ACK
    # (about 40 ms), which the endpoint test then measured as the endpoint's latency
    disable_nagle_algorithm = True

    def log_message(self, *args) -> None:
        pass

    def _answer(self, status: int, body: bytes, headers: dict[str, str] | None = None,
                content_type: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("x-request-id", str(uuid.uuid4()))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def _message(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        self._answer(status, json.dumps({"message": message}).encode(), headers)

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        emulator = self.front.emulator
        auth = self.headers.get("Authorization", "")
        token = auth[7:].strip() if auth.lower().startswith("bearer ") else ""
        route = emulator.route_scoring(self.front.endpoint, token, self.headers.get("azureml-model-deployment"))
        if route.status:
            return self._message(route.status, route.message)
        assert route.deployment is not None
        if not self.front.enter(route.deployment, route.limit):
            return self._message(429, "Too many requests: the deployment's concurrency limit is reached "
                                      f"({route.limit} requests in flight).")
        answered = False
        try:
            port = random.choice(route.ports)
            headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=route.timeout_s)
            try:
                conn.request(self.command, self.path, body=body or None, headers=headers)
                response = conn.getresponse()
                data = response.read()
            except TimeoutError:
                return self._message(408, "Request timed out: the model did not answer within the "
                                          "deployment's request timeout.")
            except (OSError, http.client.HTTPException):
                return self._message(502, "Bad gateway: the model container closed the connection.")
            finally:
                conn.close()
            answered = True
            out = {"azureml-model-deployment": route.deployment}
            for name in ("Inference-Header-Content-Length",):
                if response.getheader(name):
                    out[name] = response.getheader(name)
            content_type = response.getheader("Content-Type") or "application/octet-stream"
            if response.status != 200:
                out["ms-azureml-model-error-statuscode"] = str(response.status)
                out["ms-azureml-model-error-reason"] = "model_error"
                return self._answer(424, data, out, content_type)
            self._answer(200, data, out, content_type)
        finally:
            self.front.leave(route.deployment, answered)

    do_GET = do_POST = do_PUT = do_DELETE = _handle   # noqa: N815


def request_timeout_s(deployment_props: dict) -> float:
    settings = deployment_props.get("requestSettings") or {}
    return parse_duration(settings.get("requestTimeout"), 5.0)
