"""The Custom Vision prediction route in front of Triton: image bytes in, ``ImagePrediction`` JSON out, on
the same port as Triton's own ``/v2`` API.

    POST /customvision/v3.0/Prediction/{projectId}/classify/iterations/{publishedName}/image[/nostore]
    POST /customvision/v3.0/Prediction/{projectId}/detect/iterations/{publishedName}/image[/nostore]

(also ``v3.1``, which adds ``tagType`` to each prediction; paths are matched case-insensitively: the
prediction SDK sends ``/prediction/``, the documentation shows ``/Prediction/``). The body is the image
(``application/octet-stream`` or any non-multipart type) or ``multipart/form-data`` with the image as a
part (the SDK names it ``imageData``). Answers are those of the Custom Vision prediction API: 200 with the
``ImagePrediction``; errors as ``{"code", "message"}``:

=====  ==============================  =================================================================
 400   BadRequestImageSizeBytes        the image is over 4 MB (the service's limit)
 400   BadRequestImageFormat           the bytes are not a JPEG/PNG/BMP/GIF picture (the ensemble's answer)
 400   BadRequest                      ``classify`` on a detection model or ``detect`` on a classifier
                                       (the service's documented "Invalid project type for operation.")
 400   BadRequestNotSupported          the ``/url`` forms: this front takes image bytes only
 404   NotFoundProject                 another project id than the source iteration's
 404   NotFoundIteration               another published name ("Invalid iteration", as the service says)
 503   ErrorPredictionServiceUnavailable  Triton is not up (yet)
=====  ==============================  =================================================================

The route forwards the image to the ensemble ``<model>_image`` over Triton's HTTP API (binary tensor
data) on localhost; every other path (``/v2/...``) is proxied to Triton unchanged, so ONE port serves both
— Azure ML routes a single scoring port to a container. The project id, published name and task it
answers for come from the ensemble's ids document (``<repository>/<model>_image/customvision.json``,
written with the repository): those of the source Custom Vision iteration; where the published name is
unknown, the model's name.

Standard library only, Python 3.8 or later: the official Triton image's system ``python3`` has no extra
packages; the image builder copies this file to ``/opt/cvtriton/`` and ``image_supervisor`` runs it beside
``tritonserver``. Threaded (one thread per client connection, HTTP/1.1 keep-alive, each connection with its
own kept-alive connection to Triton), request bodies bounded.

    python3 customvision_front.py --document /models/m_image/customvision.json --triton 127.0.0.1:8000 --port 8080

(the image's port is ``image_context.CUSTOMVISION_PORT``); ``--port 0`` picks a free port; the first line
on stdout says where it listens.
"""

from __future__ import annotations

import argparse
import http.client
import json
import re
import signal
import socket
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Dict, List, Optional, Tuple
from urllib.parse import unquote

API_PREFIX = "/customvision/"
#: The prediction API versions answered (v3.1 adds ``tagType`` to each prediction).
API_VERSIONS = ("3.0", "3.1")
ROUTE = re.compile(r"^/customvision/v(?P<version>3\.[01])/prediction/(?P<project>[^/]+)/(?P<task>classify|detect)"
                   r"/iterations/(?P<name>[^/]+)/(?P<kind>image|url)(?P<nostore>/nostore)?/?$", re.IGNORECASE)
#: The Custom Vision prediction API takes images up to 4 MB.
MAX_IMAGE_BYTES = 4 * 1024 * 1024
MULTIPART_OVERHEAD = 64 * 1024           # room for the multipart framing around a 4 MB image
MAX_DRAIN_BYTES = 64 * 1024 * 1024       # a larger body is not read: the connection is closed after the answer
MAX_PROXY_BODY = 256 * 1024 * 1024       # /v2 request bodies (tensors) proxied to Triton
MAX_CONNECTIONS = 256                    # concurrent client connections; more get 503 at once
CLIENT_IDLE_TIMEOUT_S = 90.0             # an idle kept-alive client connection is closed after this
UPSTREAM_TIMEOUT_S = 180.0               # Azure ML gives a request 180 s
REGULAR_TAG = "Regular"                  # v3.1 ``tagType`` of every tag an export can hold

BAD_IMAGE = "BadRequestImageFormat"
IMAGE_TOO_LARGE = "BadRequestImageSizeBytes"
WRONG_TASK = "BadRequest"
NOT_SUPPORTED = "BadRequestNotSupported"
UNKNOWN_PROJECT = "NotFoundProject"
UNKNOWN_ITERATION = "NotFoundIteration"
UNAVAILABLE = "ErrorPredictionServiceUnavailable"
PREDICTION_FAILED = "ErrorPrediction"
#: A Triton error message that carries a Custom Vision code, as the ensemble's steps raise them
#: ("in ensemble 'm_image', BadRequestImageFormat: ...").
_CODED_ERROR = re.compile(r"\b(BadRequest[A-Za-z]*): (.*)$", re.DOTALL)
_HOP_BY_HOP = frozenset(("connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer",
                         "trailers", "transfer-encoding", "upgrade", "host", "content-length", "expect"))


def route_path(project: str, task: str, published_name: str, *, nostore: bool = False, version: str = "3.0") -> str:
    """The path an app posts its image to, as the Custom Vision documentation writes it."""
    from urllib.parse import quote

    tail = "/image/nostore" if nostore else "/image"
    return f"/customvision/v{version}/Prediction/{project}/{task}/iterations/{quote(published_name, safe='')}{tail}"


def served_name(publish_name: str, model: str) -> str:
    """The published name the front answers for: the source iteration's, else the model's name."""
    return publish_name or model


class FrontError(Exception):
    """A request answered with a Custom Vision error body."""

    def __init__(self, status: int, code: str, message: str, *, close: bool = False) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.close = close


class Target:
    """What the front answers for: the ensemble and the source iteration's ids."""

    def __init__(self, document: Dict[str, Any]) -> None:
        try:
            ids = document["ids"]
            self.model = str(document["model"])
            self.ensemble = str(document["ensemble"])
            self.task = str(document["task"])
            self.input = str(document["input"])
            self.output = str(document["output"])
            self.batched = int(document["max_batch_size"]) > 0
            self.project = str(uuid.UUID(str(ids["project"])))
            self.iteration = str(ids["iteration"])
            self.published_name = served_name(str(ids.get("publishName") or ""), self.model)
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"not an image-ensemble ids document ({type(exc).__name__}: {exc})") from None
        if self.task not in ("classify", "detect"):
            raise ValueError(f"unknown task {self.task!r} (expected classify or detect)")

    @classmethod
    def load(cls, path: str) -> "Target":
        with open(path, encoding="utf-8") as handle:
            return cls(json.load(handle))

    def route(self, *, nostore: bool = False, version: str = "3.0") -> str:
        return route_path(self.project, self.task, self.published_name, nostore=nostore, version=version)


def error_body(code: str, message: str) -> bytes:
    return json.dumps({"code": code, "message": message}).encode("utf-8")


def coded_error(text: str) -> Optional[Tuple[str, str]]:
    """(code, message) from a Triton error raised by an ensemble step, else None."""
    match = _CODED_ERROR.search(text or "")
    return (match.group(1), match.group(2).strip()) if match else None


def multipart_image(content_type: str, body: bytes) -> bytes:
    """The image part of a ``multipart/form-data`` body: the part named ``imageData`` (what the prediction
    SDK sends), else the first part with content."""
    match = re.search(r'boundary=(?:"([^"]+)"|([^;\s]+))', content_type, re.IGNORECASE)
    if not match:
        raise FrontError(400, BAD_IMAGE, "multipart/form-data without a boundary")
    delimiter = b"--" + (match.group(1) or match.group(2)).encode("latin-1")
    chunks = body.split(delimiter)
    if len(chunks) < 3:
        raise FrontError(400, BAD_IMAGE, "the multipart body holds no part: send the image as a part (imageData)")
    first = None
    for chunk in chunks[1:-1]:
        if chunk.startswith(b"\r\n"):
            chunk = chunk[2:]
        head, sep, data = chunk.partition(b"\r\n\r\n")
        if not sep:
            continue
        if data.endswith(b"\r\n"):
            data = data[:-2]
        name = re.search(rb'name="([^"]*)"', head, re.IGNORECASE)
        if name and name.group(1).lower() == b"imagedata":
            return data
        if first is None and data:
            first = data
    if first is None:
        raise FrontError(400, BAD_IMAGE, "the multipart body holds no image: send the image as a part (imageData)")
    return first


def _infer_body(target: Target, image: bytes) -> Tuple[bytes, int]:
    """Triton's binary-data infer request for one image: (body, JSON header length)."""
    header = json.dumps({
        "inputs": [{"name": target.input, "shape": [1, 1] if target.batched else [1], "datatype": "BYTES",
                    "parameters": {"binary_data_size": len(image) + 4}}],
        "outputs": [{"name": target.output, "parameters": {"binary_data": True}}],
    }, separators=(",", ":")).encode("utf-8")
    return b"".join((header, len(image).to_bytes(4, "little"), image)), len(header)


def _prediction_from(body: bytes, header_length: Optional[str], output: str) -> bytes:
    """The ensemble's JSON document from Triton's infer response (binary or JSON output)."""
    if header_length:
        size = int(header_length)
        header = json.loads(body[:size])
        offset = size
        for item in header.get("outputs", []):
            length = int((item.get("parameters") or {}).get("binary_data_size", 0))
            if item.get("name") == output:
                element = body[offset:offset + length]
                return element[4:4 + int.from_bytes(element[:4], "little")]
            offset += length
        raise ValueError(f"Triton answered without output '{output}'")
    for item in json.loads(body).get("outputs", []):
        if item.get("name") == output:
            return str(item["data"][0]).encode("utf-8")
    raise ValueError(f"Triton answered without output '{output}'")


def _with_tag_type(document: bytes) -> bytes:
    data = json.loads(document)
    for prediction in data.get("predictions", []):
        prediction.setdefault("tagType", REGULAR_TAG)
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


class _Upstream:
    """One kept-alive HTTP connection to Triton (per client connection, so per thread)."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.conn: Optional[http.client.HTTPConnection] = None

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    def request(self, method: str, path: str, body: Optional[bytes],
                headers: Dict[str, str]) -> http.client.HTTPResponse:
        """Send one request; a kept-alive connection Triton has closed meanwhile is reopened once."""
        for attempt in (0, 1):
            fresh = self.conn is None
            if fresh:
                self.conn = http.client.HTTPConnection(self.host, self.port, timeout=UPSTREAM_TIMEOUT_S)
                self.conn.connect()
                self.conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            try:
                self.conn.request(method, path, body=body, headers=headers)
                return self.conn.getresponse()
            except (http.client.RemoteDisconnected, http.client.CannotSendRequest, BrokenPipeError,
                    ConnectionResetError, ConnectionAbortedError):
                self.close()
                if fresh or attempt:
                    raise
            except BaseException:
                self.close()
                raise
        raise AssertionError("unreachable")


class FrontServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, address: Tuple[str, int], target: Target, triton: Tuple[str, int], *,
                 quiet: bool = False) -> None:
        self.target = target
        self.triton = triton
        self.quiet = quiet
        self.slots = threading.BoundedSemaphore(MAX_CONNECTIONS)
        super().__init__(address, FrontHandler)

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self.slots.acquire(blocking=False):
            try:
                body = error_body(UNAVAILABLE, "too many connections: retry later")
                request.sendall(b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
                                b"Connection: close\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
            except OSError:
                pass
            self.shutdown_request(request)
            return
        super().process_request(request, client_address)

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.slots.release()


class FrontHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"          # keep-alive
    server_version = "cvtriton-customvision"
    sys_version = ""
    timeout = CLIENT_IDLE_TIMEOUT_S
    server: FrontServer

    def setup(self) -> None:
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.upstream = _Upstream(*self.server.triton)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.upstream.close()

    # ---- dispatch ---------------------------------------------------------------------------------
    def do_POST(self) -> None:
        self._dispatch()

    def do_GET(self) -> None:
        self._dispatch()

    def do_HEAD(self) -> None:
        self._dispatch()

    def do_PUT(self) -> None:
        self._dispatch()

    def do_DELETE(self) -> None:
        self._dispatch()

    def do_OPTIONS(self) -> None:
        self._dispatch()

    def _dispatch(self) -> None:
        path = self.path.split("?", 1)[0]
        try:
            if path.lower().startswith(API_PREFIX):
                self._predict(path)
            else:
                self._proxy()
        except FrontError as exc:
            if exc.close:
                self.close_connection = True
            self._send(exc.status, error_body(exc.code, exc.message))
        except (ConnectionError, socket.timeout, TimeoutError):
            self.close_connection = True       # the client went away (or stalled): nothing to answer

    # ---- the Custom Vision route ------------------------------------------------------------------
    def _predict(self, path: str) -> None:
        route = ROUTE.match(path)
        if route is None or self.command != "POST":
            self._discard_body()
            self._send(404, json.dumps({"error": {"code": "404", "message": "Resource not found"}}).encode())
            return
        target = self.server.target
        body = self._read_body(MAX_IMAGE_BYTES + MULTIPART_OVERHEAD, too_large=(IMAGE_TOO_LARGE, "Image size too "
                               f"large: the prediction API takes images up to {MAX_IMAGE_BYTES // (1024 * 1024)} MB"))
        try:
            project = str(uuid.UUID(unquote(route.group("project"))))
        except ValueError:
            project = None
        if project != target.project:
            raise FrontError(404, UNKNOWN_PROJECT, f"Project {unquote(route.group('project'))} not found. This "
                             f"endpoint serves project {target.project}.")
        if unquote(route.group("name")) != target.published_name:
            raise FrontError(404, UNKNOWN_ITERATION, "Invalid iteration")
        if route.group("task").lower() != target.task:
            raise FrontError(400, WRONG_TASK, f"Invalid project type for operation. This project answers "
                             f"/{target.task}/, not /{route.group('task').lower()}/.")
        if route.group("kind").lower() == "url":
            raise FrontError(400, NOT_SUPPORTED, "This endpoint takes image bytes: download the image and POST "
                             "it to .../image")
        content_type = self.headers.get("Content-Type", "")
        image = multipart_image(content_type, body) if content_type.lower().startswith("multipart/") else body
        if len(image) > MAX_IMAGE_BYTES:
            raise FrontError(400, IMAGE_TOO_LARGE, f"Image size too large: the prediction API takes images up to "
                             f"{MAX_IMAGE_BYTES // (1024 * 1024)} MB")
        if not image:
            raise FrontError(400, BAD_IMAGE, "the request holds no image: send the image's bytes as the body")
        document = self._forward(target, image)
        if route.group("version") != "3.0":
            document = _with_tag_type(document)
        self._send(200, document)

    def _forward(self, target: Target, image: bytes) -> bytes:
        body, header_length = _infer_body(target, image)
        headers = {"Content-Type": "application/octet-stream", "Inference-Header-Content-Length": str(header_length)}
        try:
            response = self.upstream.request("POST", f"/v2/models/{target.ensemble}/infer", body, headers)
            data = response.read()
        except (OSError, http.client.HTTPException) as exc:
            raise FrontError(503, UNAVAILABLE, f"the model server is not reachable ({type(exc).__name__}); retry "
                             "shortly") from None
        if response.status == 200:
            try:
                return _prediction_from(data, response.getheader("Inference-Header-Content-Length"), target.output)
            except (ValueError, KeyError, IndexError, TypeError) as exc:
                raise FrontError(500, PREDICTION_FAILED, f"unreadable answer from the model server: {exc}") from None
        try:
            text = str(json.loads(data).get("error", ""))
        except ValueError:
            text = data.decode("utf-8", "replace")
        coded = coded_error(text)
        if coded:
            raise FrontError(400, *coded)
        if response.status == 400:
            raise FrontError(400, "BadRequest", text or "the model server refused the request")
        if response.status in (404, 503):     # the ensemble is not loaded (yet)
            raise FrontError(503, UNAVAILABLE, text or "the model is not ready; retry shortly")
        raise FrontError(500, PREDICTION_FAILED, text or f"the model server answered {response.status}")

    # ---- /v2 and everything else: Triton's own API ----------------------------------------------------
    def _proxy(self) -> None:
        body = self._read_body(MAX_PROXY_BODY, too_large=None)
        headers = {key: value for key, value in self.headers.items() if key.lower() not in _HOP_BY_HOP}
        try:
            response = self.upstream.request(self.command, self.path, body if body or self.command in ("POST", "PUT")
                                             else None, headers)
        except (OSError, http.client.HTTPException) as exc:
            message = json.dumps({"error": f"Triton is not reachable ({type(exc).__name__}): it may still be "
                                           "starting"}).encode()
            self._send(503, message)
            return
        try:
            length = response.getheader("Content-Length")
            self.send_response(response.status, response.reason)
            for key, value in response.getheaders():
                if key.lower() not in _HOP_BY_HOP:
                    self.send_header(key, value)
            if self.command == "HEAD" or response.status in (204, 304) or length is not None:
                data = response.read()
                self.send_header("Content-Length", length if length is not None else str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)
                return
            self.send_header("Transfer-Encoding", "chunked")       # a streamed answer: pass it on as it comes
            self.end_headers()
            while True:
                chunk = response.read1(65536)
                if not chunk:
                    break
                self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            self.wfile.write(b"0\r\n\r\n")
        except (OSError, http.client.HTTPException):
            self.upstream.close()
            self.close_connection = True

    # ---- bodies and answers -----------------------------------------------------------------------
    def _read_body(self, limit: int, *, too_large: Optional[Tuple[str, str]]) -> bytes:
        """The request body (Content-Length or chunked), at most ``limit`` bytes."""
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            return self._read_chunked(limit, too_large)
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            raise FrontError(400, "BadRequest", "Content-Length is not a number", close=True) from None
        if length < 0:
            raise FrontError(400, "BadRequest", "Content-Length is negative", close=True)
        if length > limit:
            self._too_large(length, too_large)
        return self._read_exactly(length)

    def _read_exactly(self, length: int) -> bytes:
        data = self.rfile.read(length)
        if len(data) != length:
            raise ConnectionResetError("the client closed the connection mid-body")
        return data

    def _read_chunked(self, limit: int, too_large: Optional[Tuple[str, str]]) -> bytes:
        parts: List[bytes] = []
        total = 0
        while True:
            line = self.rfile.readline(1024)
            try:
                size = int(line.split(b";", 1)[0].strip(), 16)
            except ValueError:
                raise FrontError(400, "BadRequest", "malformed chunked body", close=True) from None
            if size == 0:
                while self.rfile.readline(1024).strip():      # trailers
                    pass
                return b"".join(parts)
            total += size
            if total > limit:
                self.close_connection = True
                raise FrontError(400, *(too_large or ("BadRequest", f"request body over {limit} bytes")), close=True)
            parts.append(self._read_exactly(size))
            self.rfile.readline(8)

    def _too_large(self, length: int, too_large: Optional[Tuple[str, str]]) -> None:
        code, message = too_large or ("BadRequest", "request body too large")
        if too_large is None:
            self.close_connection = True
            raise FrontError(413, code, message, close=True)
        if length <= MAX_DRAIN_BYTES:          # read and drop it, so the client reads the answer
            remaining = length
            while remaining:
                chunk = self.rfile.read(min(remaining, 1 << 20))
                if not chunk:
                    raise ConnectionResetError("the client closed the connection mid-body")
                remaining -= len(chunk)
            raise FrontError(400, code, message)
        raise FrontError(400, code, message, close=True)

    def _discard_body(self) -> None:
        try:
            self._read_body(MAX_DRAIN_BYTES, too_large=("BadRequest", "request body too large"))
        except FrontError:
            self.close_connection = True

    def _send(self, status: int, body: bytes) -> None:
        """Status line, headers and body in one write (no Nagle/delayed-ACK stall between them)."""
        self.log_request(status)
        lines = [f"{self.protocol_version} {status} {self.responses.get(status, ('',))[0]}",
                 f"Date: {self.date_time_string()}", "Content-Type: application/json; charset=utf-8",
                 f"Content-Length: {len(body)}"]
        if self.close_connection:
            lines.append("Connection: close")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        self.wfile.write(head + (b"" if self.command == "HEAD" else body))

    def log_request(self, code: Any = "-", size: Any = "-") -> None:
        """Only failures are logged (one line each, no headers: keys travel in headers)."""
        status = int(code) if str(code).isdigit() else 0
        if not self.server.quiet and status >= 400:
            self.log_message('"%s %s" %s', self.command, self.path.split("?", 1)[0], code)

    def log_message(self, format: str, *args: Any) -> None:
        sys.stderr.write("customvision-front: " + (format % args) + "\n")


def _host_port(value: str) -> Tuple[str, int]:
    host, _, port = value.rpartition(":")
    if not host or not port.isdigit():
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, not {value!r}")
    return host, int(port)


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description="The Custom Vision prediction route in front of Triton.")
    parser.add_argument("--document", required=True, help="the image ensemble's ids document "
                        "(<repository>/<model>_image/customvision.json)")
    parser.add_argument("--triton", type=_host_port, default=("127.0.0.1", 8000), help="Triton's HTTP HOST:PORT")
    parser.add_argument("--host", default="0.0.0.0", help="address to listen on (default: all)")
    parser.add_argument("--port", type=int, required=True, help="port to listen on (0: any free one)")
    parser.add_argument("--quiet", action="store_true", help="do not log failed requests")
    args = parser.parse_args(argv)
    try:
        target = Target.load(args.document)
    except (OSError, ValueError) as exc:
        print(f"customvision-front: cannot read {args.document}: {exc}", file=sys.stderr)
        return 2
    try:
        server = FrontServer((args.host, args.port), target, args.triton, quiet=args.quiet)
    except OSError as exc:
        print(f"customvision-front: cannot listen on {args.host}:{args.port}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    host, port = server.server_address[:2]
    print(f"customvision-front: listening on {host}:{port}; POST {target.route()} (project {target.project}, "
          f"iteration {target.iteration}, {target.task}) -> Triton {args.triton[0]}:{args.triton[1]} model "
          f"{target.ensemble}; other paths proxied to Triton", flush=True)

    def stop(signum: int, frame: Any) -> None:
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    started = time.monotonic()
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        server.server_close()
    print(f"customvision-front: stopped after {time.monotonic() - started:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
