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
import json
import re
import signal
import socket
import socketserver
import sys
import threading
import time
import uuid
from email.utils import formatdate
from http import HTTPStatus
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
MAX_LINE = 65536                         # request line / header line
MAX_HEADERS = 100

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


class HttpError(Exception):
    """A malformed HTTP message (answered 400 and the connection closed)."""


class Headers:
    """HTTP headers as received (pairs, in order), looked up case-insensitively. Parsed by hand: the
    standard library's parser goes through the ``email`` package, which costs more than the rest of a
    forwarded request."""

    __slots__ = ("pairs", "_lower")

    def __init__(self, pairs: List[Tuple[str, str]]) -> None:
        self.pairs = pairs
        self._lower = {name.lower(): value for name, value in pairs}

    def get(self, name: str, default: Optional[str] = None) -> Optional[str]:
        return self._lower.get(name.lower(), default)

    def items(self) -> List[Tuple[str, str]]:
        return list(self.pairs)


_TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")


def read_headers(rfile: Any) -> Headers:
    """Header lines up to the blank line (at most MAX_HEADERS lines of at most MAX_LINE bytes)."""
    pairs: List[Tuple[str, str]] = []
    while True:
        line = rfile.readline(MAX_LINE + 1)
        if not line:
            raise ConnectionResetError("the peer closed the connection in the headers")
        if len(line) > MAX_LINE:
            raise HttpError("a header line is too long")
        if line in (b"\r\n", b"\n"):
            return Headers(pairs)
        if len(pairs) >= MAX_HEADERS:
            raise HttpError("too many header lines")
        name, sep, value = line.decode("latin-1").partition(":")
        if not sep or not _TOKEN.match(name):
            raise HttpError(f"malformed header line {line[:60]!r}")
        pairs.append((name, value.strip()))


class _Response:
    """An answer from Triton: status, headers and a body read by its framing (length, chunks or close)."""

    def __init__(self, reader: Any, method: str) -> None:
        line = reader.readline(MAX_LINE + 1)
        if not line:
            raise ConnectionResetError("Triton closed the connection")
        parts = line.decode("latin-1").rstrip("\r\n").split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
            raise HttpError(f"not an HTTP answer: {line[:60]!r}")
        self.status = int(parts[1])
        self.reason = parts[2] if len(parts) > 2 else ""
        self.headers = read_headers(reader)
        self.reader = reader
        self.reusable = (self.headers.get("Connection") or "").lower() != "close"
        length = self.headers.get("Content-Length")
        self.chunked = "chunked" in (self.headers.get("Transfer-Encoding") or "").lower()
        if method == "HEAD" or self.status in (204, 304) or 100 <= self.status < 200:
            self.length: Optional[int] = 0
        elif self.chunked:
            self.length = None
        elif length is not None:
            self.length = int(length)
        else:
            self.length = None           # until Triton closes the connection
            self.reusable = False

    def read(self) -> bytes:
        return b"".join(self.chunks())

    def chunks(self) -> Any:
        if self.length is not None:
            data = self.reader.read(self.length)
            if len(data) != self.length:
                raise ConnectionResetError("Triton closed the connection mid-answer")
            if data:
                yield data
        elif self.chunked:
            while True:
                size = int(self.reader.readline(1024).split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    while self.reader.readline(MAX_LINE).strip():    # trailers
                        pass
                    return
                data = self.reader.read(size)
                self.reader.readline(8)
                if len(data) != size:
                    raise ConnectionResetError("Triton closed the connection mid-answer")
                yield data
        else:
            while True:
                data = self.reader.read1(65536)
                if not data:
                    return
                yield data


class _Upstream:
    """One kept-alive HTTP/1.1 connection to Triton (per client connection, so per thread)."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.sock: Optional[socket.socket] = None
        self.reader: Any = None
        self.host_header = f"{host}:{port}"

    def close(self) -> None:
        if self.sock is not None:
            try:
                self.reader.close()
                self.sock.close()
            finally:
                self.sock = self.reader = None

    def _connect(self) -> None:
        self.sock = socket.create_connection((self.host, self.port), timeout=UPSTREAM_TIMEOUT_S)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.reader = self.sock.makefile("rb", buffering=65536)

    def request(self, method: str, path: str, headers: List[Tuple[str, str]], body: Optional[bytes]) -> _Response:
        """Send one request and read the answer's head; a kept-alive connection that Triton closed meanwhile
        is reopened once (only when nothing of an answer came)."""
        lines = [f"{method} {path} HTTP/1.1", f"Host: {self.host_header}"]
        lines += [f"{name}: {value}" for name, value in headers]
        if body is not None:
            lines.append(f"Content-Length: {len(body)}")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        for attempt in (0, 1):
            fresh = self.sock is None
            if fresh:
                self._connect()
            try:
                if body and len(body) > 65536:
                    self.sock.sendall(head)
                    self.sock.sendall(body)
                else:
                    self.sock.sendall(head + (body or b""))
                return _Response(self.reader, method)
            except (ConnectionResetError, BrokenPipeError, ConnectionAbortedError):
                self.close()
                if fresh or attempt:
                    raise
            except BaseException:
                self.close()
                raise
        raise AssertionError("unreachable")

    def done(self, response: _Response) -> None:
        """After the answer's body was read: keep the connection, unless Triton said it closes it."""
        if not response.reusable:
            self.close()


class FrontServer(socketserver.ThreadingTCPServer):
    """One thread per client connection (``socketserver``'s threading server, as ``http.server``'s is)."""

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


class FrontHandler(socketserver.StreamRequestHandler):
    """HTTP/1.1 with keep-alive: requests on one connection are answered in turn."""

    timeout = CLIENT_IDLE_TIMEOUT_S
    server: FrontServer

    def setup(self) -> None:
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.upstream = _Upstream(*self.server.triton)
        self.close_connection = False

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.upstream.close()

    def handle(self) -> None:
        while not self.close_connection:
            try:
                self._one_request()
            except (ConnectionError, socket.timeout, TimeoutError, OSError):
                return           # the client went away or stayed idle: nothing to answer

    def _one_request(self) -> None:
        line = self.rfile.readline(MAX_LINE + 1)
        if not line:
            self.close_connection = True
            return
        if line in (b"\r\n", b"\n"):
            return               # a stray empty line between requests (RFC 9112 allows ignoring it)
        self.command, self.path, self.version = "", "", "HTTP/1.1"
        parts = line.decode("latin-1").rstrip("\r\n").split()
        try:
            if len(line) > MAX_LINE or len(parts) != 3 or parts[2] not in ("HTTP/1.1", "HTTP/1.0"):
                raise HttpError(f"malformed request line {line[:80]!r}")
            self.command, self.path, self.version = parts
            self.headers = read_headers(self.rfile)
        except HttpError as exc:
            self.close_connection = True
            self._send(400, json.dumps({"error": str(exc)}).encode())
            return
        connection = (self.headers.get("Connection") or "").lower()
        self.keep_alive_header = False
        if "close" in connection:
            self.close_connection = True
        elif self.version == "HTTP/1.0":
            self.close_connection = "keep-alive" not in connection
            self.keep_alive_header = not self.close_connection
        self.continue_pending = (self.headers.get("Expect") or "").lower() == "100-continue" \
            and self.version == "HTTP/1.1"
        self._dispatch()

    # ---- dispatch ---------------------------------------------------------------------------------
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
        except HttpError as exc:
            self.close_connection = True
            self._send(400, json.dumps({"error": str(exc)}).encode())

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
        content_type = self.headers.get("Content-Type") or ""
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
        headers = [("Content-Type", "application/octet-stream"),
                   ("Inference-Header-Content-Length", str(header_length))]
        try:
            response = self.upstream.request("POST", f"/v2/models/{target.ensemble}/infer", headers, body)
            data = response.read()
            self.upstream.done(response)
        except (OSError, HttpError, ValueError) as exc:
            self.upstream.close()
            raise FrontError(503, UNAVAILABLE, f"the model server is not reachable ({type(exc).__name__}); retry "
                             "shortly") from None
        if response.status == 200:
            try:
                return _prediction_from(data, response.headers.get("Inference-Header-Content-Length"), target.output)
            except (ValueError, KeyError, IndexError, TypeError) as exc:
                raise FrontError(500, PREDICTION_FAILED, f"unreadable answer from the model server: {exc}") from None
        try:
            text = str(json.loads(data).get("error", ""))
        except (ValueError, AttributeError):
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
        headers = [(name, value) for name, value in self.headers.items() if name.lower() not in _HOP_BY_HOP]
        sends_body = bool(body) or self.command in ("POST", "PUT", "PATCH")
        try:
            response = self.upstream.request(self.command, self.path, headers, body if sends_body else None)
        except (OSError, HttpError, ValueError) as exc:
            self.upstream.close()
            self._send(503, json.dumps({"error": f"Triton is not reachable ({type(exc).__name__}): it may still "
                                                 "be starting"}).encode())
            return
        passed = [(name, value) for name, value in response.headers.items() if name.lower() not in _HOP_BY_HOP]
        try:
            if response.length is not None:
                data = response.read() if self.command != "HEAD" else b""
                length = str(response.length) if self.command == "HEAD" else str(len(data))
                self._write_head(response.status, response.reason, passed + [("Content-Length", length)])
                if data:
                    self.wfile.write(data)
            else:                                  # a streamed answer: pass it on as it comes
                self._write_head(response.status, response.reason, passed + [("Transfer-Encoding", "chunked")])
                for chunk in response.chunks():
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                self.wfile.write(b"0\r\n\r\n")
            self.upstream.done(response)
        except (OSError, HttpError, ValueError):
            self.upstream.close()
            self.close_connection = True
        if response.status >= 400:
            self._log(response.status)

    # ---- bodies and answers -----------------------------------------------------------------------
    def _continue(self) -> None:
        if self.continue_pending:
            self.continue_pending = False
            self.wfile.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    def _read_body(self, limit: int, *, too_large: Optional[Tuple[str, str]]) -> bytes:
        """The request body (Content-Length or chunked), at most ``limit`` bytes."""
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            self._continue()
            return self._read_chunked(limit, too_large)
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            raise FrontError(400, "BadRequest", "Content-Length is not a number", close=True) from None
        if length < 0:
            raise FrontError(400, "BadRequest", "Content-Length is negative", close=True)
        if length > limit:
            self._too_large(length, too_large)
        if length:
            self._continue()
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
                while self.rfile.readline(MAX_LINE).strip():      # trailers
                    pass
                return b"".join(parts)
            total += size
            if total > limit:
                raise FrontError(*((400, *too_large) if too_large else (413, "BadRequest", "request body too large")),
                                 close=True)
            parts.append(self._read_exactly(size))
            self.rfile.readline(8)

    def _too_large(self, length: int, too_large: Optional[Tuple[str, str]]) -> None:
        if too_large is None:
            raise FrontError(413, "BadRequest", f"request body over {MAX_PROXY_BODY} bytes", close=True)
        code, message = too_large
        if length <= MAX_DRAIN_BYTES and not self.continue_pending:   # read and drop it: the client reads the answer
            remaining = length
            while remaining:
                chunk = self.rfile.read(min(remaining, 1 << 20))
                if not chunk:
                    raise ConnectionResetError("the client closed the connection mid-body")
                remaining -= len(chunk)
            raise FrontError(400, code, message)
        raise FrontError(400, code, message, close=True)           # not read: the connection cannot go on

    def _discard_body(self) -> None:
        try:
            self._read_body(MAX_DRAIN_BYTES, too_large=("BadRequest", "request body too large"))
        except FrontError:
            self.close_connection = True

    def _write_head(self, status: int, reason: str, headers: List[Tuple[str, str]], tail: bytes = b"") -> None:
        lines = [f"HTTP/1.1 {status} {reason or _reason(status)}", f"Date: {_http_date()}"]
        lines += [f"{name}: {value}" for name, value in headers]
        if self.close_connection:
            lines.append("Connection: close")
        elif self.keep_alive_header:
            lines.append("Connection: keep-alive")
        self.wfile.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + tail)

    def _send(self, status: int, body: bytes) -> None:
        """Status line, headers and body in one write (no Nagle/delayed-ACK stall between them)."""
        if status >= 400:
            self._log(status)
        self._write_head(status, "", [("Content-Type", "application/json; charset=utf-8"),
                                      ("Content-Length", str(len(body)))], b"" if self.command == "HEAD" else body)

    def _log(self, status: int) -> None:
        """Only failures are logged (one line each, no headers: keys travel in headers)."""
        if not self.server.quiet:
            sys.stderr.write(f'customvision-front: "{self.command} {self.path.split("?", 1)[0]}" {status}\n')


def _reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return ""


_date_cache: List[Any] = [0, ""]


def _http_date() -> str:
    now = int(time.time())
    if _date_cache[0] != now:
        _date_cache[:] = [now, formatdate(now, usegmt=True)]
    return _date_cache[1]


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
