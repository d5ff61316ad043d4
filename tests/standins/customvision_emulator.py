"""A wire-level emulator of the Custom Vision training REST API (v3.x) that the real SDK talks to.

Routes, query parameters and camelCase bodies follow the SDK's generated code
(``azure/cognitiveservices/vision/customvision/training/operations`` and ``models._attribute_map``): routes in
:mod:`customvision_routes`, the service's rules in :mod:`customvision_store` and :mod:`customvision_training`.
What the real service does that callers trip over is reproduced on purpose:

* a wrong ``Training-Key`` answers 401 "Access Denied" with the gateway's ``{"error": {...}}`` body, which the
  SDK cannot parse into ``CustomVisionError`` (its message becomes "Operation returned an invalid status code
  'Access Denied'");
* ``inject_429`` answers the next requests with 429 + ``Retry-After`` (whole seconds, as the gateway sends);
* ``inject_error`` answers with a 5xx, optionally *after* doing the work (a lost response: a naive retry of a
  POST would then create things twice);
* re-uploaded images come back 207 / ``OKDuplicate``; an export is "Exporting" with an empty ``downloadUri``
  until it is "Done"; the download URI is a SAS-style URL on this server that serves a real export zip built
  by the project's own sample-model code (``cvtriton_triton.sample_models``).

Run at a shell: ``python -m cvtriton_standins.customvision_emulator --port 8950 --key KEY``.
"""

from __future__ import annotations

import argparse
import json
import re
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from cvtriton_standins.customvision_exportzip import build_zip_for
from cvtriton_standins.customvision_prediction import PREDICTION_PATH, image_bytes, predict
from cvtriton_standins.customvision_records import DOMAINS, ApiError, StoredImage
from cvtriton_standins.customvision_routes import ROUTES, dispatch
from cvtriton_standins.customvision_store import Store

DEFAULT_KEY = "0123456789abcdef0123456789abcdef"
API_PREFIX = re.compile(r"^/customvision/v3\.[0-4](?:-preview)?/training(/.*)$")
ACCESS_DENIED = {"error": {"code": "401", "message": "Access denied due to invalid subscription key or wrong API "
                           "endpoint. Make sure to provide a valid key for an active subscription and use a correct "
                           "regional API endpoint for your resource."}}
_BLOB_ERROR = ('<?xml version="1.0" encoding="utf-8"?><Error><Code>{code}</Code><Message>The request was refused.'
               '</Message></Error>')
COMPACT = {"Classification": "0732100f-1a38-4e49-a514-c9b44c697ab5",
           "ObjectDetection": "a27d5ca5-bb19-49d8-a70a-fec086c47f5b"}


@dataclass(frozen=True)
class Delays:
    """Seconds the emulated service takes: ``training_s`` per training, ``export_s`` per export,
    ``request_s`` added to every request (network latency)."""

    training_s: float = 2.0
    export_s: float = 1.0
    request_s: float = 0.0


@dataclass
class _Hold:
    op: str
    skip: int
    held: threading.Event
    go: threading.Event
    process: bool = False


@dataclass
class _Fault:
    remaining: int
    status: int
    retry_after: int | None
    ops: frozenset[str] | None
    after: bool                      # do the work, then lose the response


class CustomVisionEmulator:
    """Start with ``.start()`` (or ``with``); ``.url`` is the endpoint for VISION_TRAINING_ENDPOINT.

    ``counters`` counts requests by SDK operation name plus ``images_created``, ``trainings_started`` and
    ``exports_started`` (work the service really did), so tests can prove nothing was done twice.
    """

    def __init__(self, training_key: str = DEFAULT_KEY, *, delays: Delays | float | None = None,
                 host: str = "127.0.0.1", port: int = 0, prediction_key: str | None = None) -> None:
        if isinstance(delays, (int, float)):
            delays = Delays(training_s=float(delays), export_s=float(delays))
        self.delays = delays or Delays()
        self.training_key = training_key
        self.prediction_key = prediction_key or training_key   # the prediction resource's key
        self.store = Store(training_s=self.delays.training_s, export_s=self.delays.export_s, export_zip=build_zip_for)
        self._faults: list[_Fault] = []
        self._hold: _Hold | None = None
        self._host, self._port = host, port
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.requests: list[tuple[str, str, int]] = []      # (method, operation, status) in order

    # lifecycle --------------------------------------------------------------------------------
    def start(self) -> "CustomVisionEmulator":
        handler = type("Handler", (_Handler,), {"emulator": self})
        self._server = ThreadingHTTPServer((self._host, self._port), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="customvision-emulator", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.release()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> "CustomVisionEmulator":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("the emulator is not running: call start() first")
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def counters(self):
        return self.store.counters

    # fault injection ----------------------------------------------------------------------------
    def inject_429(self, count: int, *, retry_after: int = 1, ops: tuple[str, ...] | None = None) -> None:
        """Answer the next ``count`` requests (of ``ops``, SDK operation names) with 429 + Retry-After."""
        self._faults.append(_Fault(count, 429, int(retry_after), frozenset(ops) if ops else None, False))

    def inject_error(self, status: int = 500, count: int = 1, *, ops: tuple[str, ...] | None = None,
                     after: bool = False, retry_after: int | None = None) -> None:
        """Answer with ``status`` (and ``Retry-After`` when given, as a 503 may carry); ``after=True`` does the
        work first and loses the response."""
        self._faults.append(_Fault(count, status, retry_after, frozenset(ops) if ops else None, after))

    def fail_next_training(self, reason: str = "Training failed: the images could not be processed.") -> None:
        self.store.next_training_failure = reason

    def fail_next_export(self, reason: str = "Export failed.") -> None:
        self.store.next_export_failure = reason

    def expire_download_links(self, *, next_issued: int = 0) -> None:
        """Make every download link handed out so far stale (403 from the blob store, as an expired SAS gets),
        and the next ``next_issued`` links stale from the start."""
        with self.store.lock:
            for project in self.store.projects.values():
                for iteration in project.iterations:
                    for export in iteration.exports:
                        export.signatures.clear()
            self.store.expired_links_to_issue = next_issued

    def hold(self, op: str, *, skip: int = 0) -> threading.Event:
        """Keep the next request of ``op`` (after ``skip`` of them) waiting until :meth:`release`, like a slow
        network; the returned Event is set once a request is being held."""
        self._hold = _Hold(op, skip, threading.Event(), threading.Event())
        return self._hold.held

    def release(self, *, process: bool = False) -> None:
        """Let a held request go on: ``process=False`` drops it (503, nothing done), as if it never arrived."""
        if self._hold is not None:
            self._hold.process = process
            self._hold.go.set()

    def _wait_if_held(self, op: str) -> bool:
        """False when a held request must be dropped."""
        with self.store.lock:
            hold = self._hold
            if hold is None or hold.op != op or hold.held.is_set():
                return True
            if hold.skip > 0:
                hold.skip -= 1
                return True
            hold.held.set()
        hold.go.wait(timeout=30)
        self._hold = None
        return hold.process

    def _take_fault(self, op: str) -> _Fault | None:
        with self.store.lock:
            for fault in self._faults:
                if fault.remaining > 0 and (fault.ops is None or op in fault.ops):
                    fault.remaining -= 1
                    return fault
        return None

    # seeding ------------------------------------------------------------------------------------
    def add_project(self, name: str, *, task: str = "Classification-Multiclass", domain_id: str | None = None,
                    trained: bool = True, exportable: bool = True, tags: tuple[str, ...] = ("red", "green", "blue"),
                    images_per_tag: int = 15, published_name: str | None = None) -> str:
        """A project as if made in the portal: tags, images, and (``trained``) one completed iteration."""
        kind = "ObjectDetection" if task == "ObjectDetection" else "Classification"
        if domain_id is None:
            plain = next(d.id for d in DOMAINS if d.type == kind and not d.exportable)
            domain_id = COMPACT[kind] if exportable else plain
        classification = task.split("-", 1)[1] if kind == "Classification" else None
        with self.store.lock:
            project = self.store.create_project(name, "", domain_id, classification, [])
            for tag_name in tags:
                tag = self.store.create_tag(project, tag_name, "", None)
                for n in range(images_per_tag):
                    digest = f"seed-{project.id}-{tag.id}-{n}"
                    regions = [{"regionId": f"r{n}", "tagId": tag.id, "left": 0.1, "top": 0.1, "width": 0.5,
                                "height": 0.5}] if kind == "ObjectDetection" else []
                    project.images[digest] = StoredImage(f"{n:08d}-0000-4000-8000-{tag.id[-12:]}", digest, 640, 480,
                                                         [] if regions else [tag.id], regions)
            project.changed = True
            if trained:
                iteration = self.store.train(project, force=True)
                iteration.started -= self.delays.training_s      # already finished
                if published_name:
                    iteration.publish_name = published_name
                    iteration.publish_resource = "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/" \
                                                 "rg/providers/Microsoft.CognitiveServices/accounts/seeded"
                self.store.counters["trainings_started"] -= 1    # seeding is not work a test should count
            return project.id

    # dispatch -------------------------------------------------------------------------------------
    def handle(self, method: str, path: str, query: dict[str, str], headers: Any, body: bytes) -> tuple[int, Any, dict]:
        if self.delays.request_s:
            time.sleep(self.delays.request_s)
        download = re.match(r"^/exports/([0-9a-f]{32})\.zip$", path)
        if download and method == "GET":
            return self._download(download.group(1), query.get("sig", ""))
        prediction = PREDICTION_PATH.match(path)
        if prediction and method == "POST":
            return self._predict(prediction.groupdict(), headers, body)
        match = API_PREFIX.match(path)
        route = None
        if match:
            sub = match.group(1).rstrip("/") or "/"
            route = next(((op, m.groupdict()) for verb, m, op in ((v, r.match(sub), o) for v, r, o in ROUTES)
                          if m and verb == method), None)
        if route is None:
            return 404, {"error": {"code": "404", "message": "Resource not found"}}, {}
        op, params = route
        self.store.counters[op] += 1
        if (headers.get("Training-Key") or "") != self.training_key:
            return 401, ACCESS_DENIED, {"reason": "Access Denied"}
        if not self._wait_if_held(op):
            return 503, {"code": "ErrorUnknown", "message": "The request was dropped."}, {}
        fault = self._take_fault(op)
        if fault is not None and fault.status == 429:
            return 429, {"error": {"code": "429", "message": f"Rate limit is exceeded. Try again in "
                                                             f"{fault.retry_after} seconds."}}, \
                {"Retry-After": str(fault.retry_after)}
        unavailable = {"code": "ErrorUnknown", "message": "The service is temporarily unavailable."}
        fault_headers = {"Retry-After": str(fault.retry_after)} if fault and fault.retry_after is not None else {}
        if fault is not None and not fault.after:
            return fault.status, unavailable, fault_headers
        try:
            with self.store.lock:
                status, payload = dispatch(self.store, self.url, op, params, query, body)
        except ApiError as err:
            return err.status, {"code": err.code, "message": err.message}, {}
        if fault is not None:
            return fault.status, unavailable, fault_headers
        return status, payload, {}

    def _predict(self, params: dict[str, str], headers: Any, body: bytes) -> tuple[int, Any, dict]:
        """The prediction API (see :mod:`customvision_prediction`)."""
        self.store.counters["predictions"] += 1
        if (headers.get("Prediction-Key") or "") != self.prediction_key:
            return 401, ACCESS_DENIED, {"reason": "Access Denied"}
        try:
            data = image_bytes(headers.get("Content-Type") or "", body)
            return 200, predict(self.store, params, data), {}
        except ApiError as err:
            return err.status, {"code": err.code, "message": err.message}, {}

    def _download(self, token: str, sig: str) -> tuple[int, Any, dict]:
        with self.store.lock:
            found = self.store.find_export(token)
        if found is None:
            return 404, _BLOB_ERROR.format(code="BlobNotFound").encode(), {"Content-Type": "application/xml"}
        if sig not in found[2].signatures:
            return 403, _BLOB_ERROR.format(code="AuthenticationFailed").encode(), {"Content-Type": "application/xml"}
        self.store.counters["downloads"] += 1
        return 200, self.store.export_zip(*found), {"Content-Type": "application/octet-stream"}

class _Handler(BaseHTTPRequestHandler):
    emulator: CustomVisionEmulator
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True     # headers and body are two writes: no wait for the client's delayed ACK

    def _serve(self, method: str) -> None:
        parts = urlsplit(self.path)
        path = re.sub(r"/{2,}", "/", parts.path)
        query = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        status, payload, extra = self.emulator.handle(method, path, query, self.headers, body)
        self.emulator.requests.append((method, path, status))
        reason = extra.pop("reason", None)
        if isinstance(payload, bytes):
            data = payload
        else:
            data = b"" if payload is None and status == 204 else json.dumps(payload).encode()
            extra.setdefault("Content-Type", "application/json; charset=utf-8")
        self.send_response(status, reason)
        for name, value in extra.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if data:
            self.wfile.write(data)

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")

    def do_DELETE(self) -> None:
        self._serve("DELETE")

    def do_PATCH(self) -> None:
        self._serve("PATCH")

    def log_message(self, format: str, *args: Any) -> None:  # quiet: tests read .requests instead
        pass


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cvtriton_standins.customvision_emulator",
                                     description="Custom Vision training API emulator on 127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="port (default: a free one)")
    parser.add_argument("--key", default=DEFAULT_KEY, help="the Training-Key it accepts")
    parser.add_argument("--training-s", type=float, default=Delays.training_s, help="seconds a training takes")
    parser.add_argument("--export-s", type=float, default=Delays.export_s, help="seconds an export takes")
    parser.add_argument("--seed", action="append", default=[], metavar="NAME",
                        help="add a trained, exportable classification project NAME (repeatable)")
    args = parser.parse_args(argv)
    emulator = CustomVisionEmulator(args.key, delays=Delays(args.training_s, args.export_s), port=args.port).start()
    for name in args.seed:
        emulator.add_project(name)
    print(f"Custom Vision emulator at {emulator.url} (Training-Key: the one given with --key)", flush=True)
    try:
        while emulator._thread is not None and emulator._thread.is_alive():
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        emulator.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
