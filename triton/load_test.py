"""A load generator for Triton's HTTP/REST inference API (KServe v2), local or behind Azure ML over HTTPS.

``run_load`` sends one prebuilt inference request N times from C concurrent keep-alive connections
and reports what a user needs to trust a figure: latency percentiles (p50/p95/p99) of the successful
requests, throughput, errors counted by HTTP status (or ``timeout`` / ``connection``), the latencies
themselves (for a histogram) and why it stopped (all sent, time limit, cancelled).

Why not ``tritonclient`` per request: on a small machine the client competes with the server for
the same cores, and a generator that spends its time encoding tensors and parsing headers measures
itself. The request body is serialized once with ``tritonclient``'s own encoder
(``InferenceServerClient.generate_request_body``: JSON header + binary tensors), then replayed by one
thread per connection with blocking sockets (``sendall`` writes a 600 KB tensor without copying it;
the GIL is released while a thread waits) and a minimal HTTP/1.1 exchange. ``bench/ensemble.py``
compares the result with NVIDIA's perf_analyzer on the same model and concurrency.

Bounded in count and in time: at most ``requests`` measured requests (plus one warm-up per
connection, not counted), none started ``time_limit_s`` after the start (warm-up included), a request
abandoned when a connect, read or write waits longer than ``timeout_s``.
Headers (e.g. ``Authorization: Bearer …``) go with every request and are blanked out of any error
text kept in the report. Cancel from another thread with a ``threading.Event``.
"""

from __future__ import annotations

import json
import os
import socket
import statistics
import ssl as ssl_lib
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence
from urllib.parse import quote

if TYPE_CHECKING:
    import numpy as np

from .errors import UserError

MAX_REQUESTS = 1_000_000
MAX_CONCURRENCY = 1024
MAX_TIME_LIMIT_S = 3600.0
DEFAULT_TIME_LIMIT_S = 120.0
DEFAULT_TIMEOUT_S = 60.0
PROGRESS_EVERY_S = 0.25
_ERROR_TEXT_LIMIT = 300

Progress = Callable[[int, int, int, int], None]     # (done, total, ok, errors)


@dataclass(frozen=True)
class HttpRequest:
    """One inference request, serialized once: POST ``path`` with ``body`` and ``headers``."""

    path: str
    body: bytes
    headers: tuple[tuple[str, str], ...]
    target: str                                   # what it calls, for reports ("customvision", ...)


def infer_request(model: str, inputs: Sequence[tuple[str, np.ndarray]], outputs: Sequence[str] = (), *,
                  parameters: Mapping[str, Any] | None = None) -> HttpRequest:
    """A binary-data inference request for ``model`` (tensors: float/int arrays, or object arrays of
    bytes for TYPE_STRING inputs), encoded by tritonclient exactly as ``TritonHttpClient.infer`` sends it."""
    import numpy as np
    import tritonclient.http as triton_http
    from tritonclient.utils import np_to_triton_dtype

    request_inputs = []
    for name, array in inputs:
        array = np.ascontiguousarray(array)
        datatype = np_to_triton_dtype(array.dtype)
        if datatype is None:
            raise UserError(f"cannot send a tensor of dtype {array.dtype} to Triton",
                            "convert it to float32, float16, int64 or bytes first")
        request_input = triton_http.InferInput(name, list(array.shape), datatype)
        request_input.set_data_from_numpy(array, binary_data=True)
        request_inputs.append(request_input)
    requested = [triton_http.InferRequestedOutput(n, binary_data=True) for n in outputs] or None
    body, json_size = triton_http.InferenceServerClient.generate_request_body(
        request_inputs, outputs=requested, parameters=dict(parameters) if parameters else None)
    headers = [("Content-Type", "application/octet-stream")]
    if json_size is not None:
        headers.append(("Inference-Header-Content-Length", str(json_size)))
    return HttpRequest(f"/v2/models/{quote(model, safe='')}/infer", bytes(body), tuple(headers), model)


@dataclass(frozen=True)
class LoadSpec:
    requests: int = 100
    concurrency: int = 1
    time_limit_s: float = DEFAULT_TIME_LIMIT_S
    timeout_s: float = DEFAULT_TIMEOUT_S
    warmup: bool = True                           # one uncounted request per connection first

    def __post_init__(self) -> None:
        whole = lambda v: isinstance(v, int) and not isinstance(v, bool)  # noqa: E731
        if not whole(self.requests) or not 1 <= self.requests <= MAX_REQUESTS:
            raise UserError(f"the request count must be a whole number from 1 to {MAX_REQUESTS}, "
                            f"not {self.requests!r}", "pass --requests N, e.g. --requests 200")
        if not whole(self.concurrency) or not 1 <= self.concurrency <= MAX_CONCURRENCY:
            raise UserError(f"the concurrency must be a whole number from 1 to {MAX_CONCURRENCY}, "
                            f"not {self.concurrency!r}", "pass --concurrency C, e.g. --concurrency 8")
        for what, value, top in (("time limit", self.time_limit_s, MAX_TIME_LIMIT_S),
                                 ("request timeout", self.timeout_s, 600.0)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= top:
                raise UserError(f"the load test's {what} must be from 0 to {top:.0f} seconds, not {value!r}",
                                "give a positive number of seconds")


def _percentile(values: Sequence[float], q: float) -> float | None:
    import numpy as np      # imported when figures are asked for: the command line reads this module's limits

    return float(np.percentile(np.asarray(values, dtype=np.float64), q)) if len(values) else None


def latency_histogram(series: Sequence[Sequence[float]], buckets: int = 20,
                      ) -> tuple[list[tuple[float, float]], list[list[int]]]:
    """Equal-width buckets from the fastest to the slowest value of all ``series`` (at most ``buckets``, no
    more than there are values; one when all are alike), and each series' counts in them:
    ([(low, high)], [[count per bucket] per series]). A value on a bound between two buckets counts in the
    upper one; the slowest in the last."""
    values = [v for one in series for v in one]
    if not values:
        return [], [[] for _ in series]
    low, high = min(values), max(values)
    count = max(1, min(buckets, len(values))) if high > low else 1
    width = (high - low) / count
    edges = [(low + i * width, low + (i + 1) * width if i < count - 1 else high) for i in range(count)]
    counts = []
    for one in series:
        row = [0] * count
        for v in one:
            row[min(count - 1, int((v - low) / width)) if width > 0 else 0] += 1
        counts.append(row)
    return edges, counts


@dataclass(frozen=True)
class LoadReport:
    target: str
    concurrency: int
    planned: int                                  # measured requests asked for
    ok: int
    errors: Mapping[str, int]                     # "400", "503", "timeout", "connection" -> count
    latencies_ms: tuple[float, ...] = field(repr=False)   # successful measured requests, in completion order
    wall_s: float                                 # measured phase: first send to last answer
    stopped: str                                  # "completed" | "time limit" | "cancelled"
    request_bytes: int                            # bytes on the wire per request (head + body)
    warmup_errors: Mapping[str, int] = field(default_factory=dict)
    first_error: str = ""                         # the first error's text (header values blanked)

    @property
    def sent(self) -> int:
        return self.ok + sum(self.errors.values())

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())

    @property
    def throughput_rps(self) -> float:
        return self.ok / self.wall_s if self.wall_s > 0 else 0.0

    def percentile(self, q: float) -> float | None:
        return _percentile(self.latencies_ms, q)

    @property
    def p50_ms(self) -> float | None:
        return self.percentile(50)

    @property
    def p95_ms(self) -> float | None:
        return self.percentile(95)

    @property
    def p99_ms(self) -> float | None:
        return self.percentile(99)

    def histogram(self, bins: int = 20) -> list[tuple[float, float, int]]:
        """[(low_ms, high_ms, count)] over the successful requests' latencies (``latency_histogram``)."""
        edges, (counts,) = latency_histogram([self.latencies_ms], bins)
        return [(low, high, count) for (low, high), count in zip(edges, counts)]

    def summary(self) -> str:
        if not self.ok:
            return f"{self.target}: no successful request ({self.describe_errors()})"
        text = (f"{self.target}: {self.ok}/{self.planned} ok at concurrency {self.concurrency}, "
                f"{self.throughput_rps:.1f} req/s, p50 {self.p50_ms:.1f} ms, p95 {self.p95_ms:.1f} ms, "
                f"p99 {self.p99_ms:.1f} ms")
        if self.errors:
            text += f"; {self.describe_errors()}"
        if self.stopped != "completed":
            text += f"; stopped early ({self.stopped})"
        return text

    def describe_errors(self) -> str:
        if not self.errors:
            return "no errors"
        parts = ", ".join(f"{n} x {status}" for status, n in sorted(self.errors.items()))
        return f"errors {parts}" + (f" (first: {self.first_error})" if self.first_error else "")

    def to_json(self) -> dict[str, Any]:
        rounded = lambda v: None if v is None else round(v, 3)  # noqa: E731
        return {"target": self.target, "concurrency": self.concurrency, "requests": self.planned,
                "sent": self.sent, "ok": self.ok, "errors": dict(self.errors),
                "warmup_errors": dict(self.warmup_errors), "first_error": self.first_error,
                "stopped": self.stopped, "wall_s": round(self.wall_s, 4),
                "throughput_rps": round(self.throughput_rps, 3),
                "latency_ms": {"p50": rounded(self.p50_ms), "p95": rounded(self.p95_ms),
                               "p99": rounded(self.p99_ms),
                               "mean": rounded(statistics.fmean(self.latencies_ms)) if self.latencies_ms else None,
                               "min": rounded(min(self.latencies_ms)) if self.latencies_ms else None,
                               "max": rounded(max(self.latencies_ms)) if self.latencies_ms else None},
                "latencies_ms": [round(v, 3) for v in self.latencies_ms],
                "request_bytes": self.request_bytes}


class _HttpError(Exception):
    def __init__(self, status: str, text: str) -> None:
        super().__init__(text)
        self.status = status


def default_ssl_context() -> ssl_lib.SSLContext:
    """System CAs (OpenSSL also reads SSL_CERT_FILE), plus REQUESTS_CA_BUNDLE when set, as the Azure SDKs do."""
    bundle = os.environ.get("REQUESTS_CA_BUNDLE") or None
    return ssl_lib.create_default_context(cafile=bundle)


class _Target:
    """Where to send: host, port, TLS, base path; and the request bytes to replay."""

    def __init__(self, url: str, request: HttpRequest, *, ssl: bool, headers: Mapping[str, str],
                 ssl_context: ssl_lib.SSLContext | None) -> None:
        from .infer_client import _split_url     # imports tritonclient (gevent): only when a test runs

        address, use_ssl = _split_url(url, ssl)
        if not address:
            raise UserError("the Triton URL is empty", "give host:port, e.g. 127.0.0.1:8000")
        hostport, _, base = address.partition("/")
        host, sep, port = hostport.rpartition(":")
        if not sep or not port.isdigit():
            host, port = hostport, ("443" if use_ssl else "80")
        host = host.strip("[]")
        if not host:
            raise UserError(f"the Triton URL {url!r} has no host", "give host:port, e.g. 127.0.0.1:8000")
        self.host, self.port, self.ssl = host, int(port), use_ssl
        self.ssl_context = (ssl_context or default_ssl_context()) if use_ssl else None
        self.secrets = [str(v) for v in headers.values() if v]
        path = ("/" + base.strip("/") if base.strip("/") else "") + request.path
        lines = [f"POST {path} HTTP/1.1", f"Host: {hostport}", f"Content-Length: {len(request.body)}",
                 "Connection: keep-alive"]
        lines += [f"{k}: {v}" for k, v in request.headers]
        lines += [f"{k}: {v}" for k, v in headers.items()]
        self.payload = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + request.body

    def scrub(self, text: str) -> str:
        text = " ".join(str(text).split())
        for value in self.secrets:
            text = text.replace(value, "***")
            for part in value.split():
                if len(part) >= 8:
                    text = text.replace(part, "***")
        return text[:_ERROR_TEXT_LIMIT]


class _Connection:
    """One keep-alive connection, used by one worker thread (blocking sockets: ``sendall`` sends a large
    tensor without copying it, and the thread releases the GIL while it waits)."""

    def __init__(self, target: _Target, timeout_s: float) -> None:
        self.target = target
        self.timeout_s = timeout_s
        self.sock: socket.socket | None = None
        self.reader: Any = None

    def _open(self) -> None:
        t = self.target
        sock = socket.create_connection((t.host, t.port), timeout=self.timeout_s)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if t.ssl_context is not None:
            sock = t.ssl_context.wrap_socket(sock, server_hostname=t.host)
        self.sock, self.reader = sock, sock.makefile("rb", buffering=1 << 16)

    def close(self) -> None:
        sock, self.sock, self.reader = self.sock, None, None
        if sock is not None:
            try:
                sock.close()
            except OSError:
                pass

    def abort(self) -> None:
        """From another thread: wake a worker blocked on this connection (cancel)."""
        sock = self.sock
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def _line(self) -> bytes:
        line = self.reader.readline(1 << 16)
        if not line:
            raise ConnectionError("the server closed the connection")
        return line

    def _exact(self, size: int) -> bytes:
        data = self.reader.read(size)
        if len(data) != size:
            raise ConnectionError("the server closed the connection mid-answer")
        return data

    def exchange(self) -> None:
        """Send the request, read the whole answer; ``_HttpError`` unless the status is 200."""
        if self.sock is None:
            self._open()
        self.sock.sendall(self.target.payload)
        parts = self._line().decode("latin-1").split(" ", 2)
        status = parts[1] if len(parts) > 1 else "?"
        length, chunked, close = None, False, False
        while True:
            line = self._line()
            if line in (b"\r\n", b"\n"):
                break
            name, _, value = line.decode("latin-1").partition(":")
            name = name.strip().lower()
            if name == "content-length":
                length = int(value.strip())
            elif name == "transfer-encoding" and "chunked" in value.lower():
                chunked = True
            elif name == "connection" and value.strip().lower() == "close":
                close = True
        if chunked:
            chunks = []
            while True:
                size = int(self._line().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self._line() not in (b"\r\n", b"\n"):    # trailers end with an empty line
                        pass
                    break
                chunks.append(self._exact(size + 2)[:-2])
            body = b"".join(chunks)
        elif length is not None:
            body = self._exact(length)
        else:                                   # no length: the body ends with the connection
            body = self.reader.read()
            close = True
        if close:
            self.close()
        if status != "200":
            raise _HttpError(status, _error_text(status, body[:2000]))


def _error_text(status: str, body: bytes) -> str:
    try:
        data = json.loads(body)
        message = data.get("error") or data.get("message") or body.decode("utf-8", "replace")
    except (ValueError, AttributeError):
        message = body.decode("utf-8", "replace")
    return f"HTTP {status}: {message}"


class _Run:
    """C worker threads, one connection each, taking request numbers from a shared counter."""

    def __init__(self, target: _Target, spec: LoadSpec, progress: Progress | None, stop: threading.Event | None):
        self.target, self.spec, self.progress = target, spec, progress
        self.stop = stop or threading.Event()
        self.lock = threading.Lock()
        self.next_index = 0
        self.ok = 0
        self.errors: dict[str, int] = {}
        self.warmup_errors: dict[str, int] = {}
        self.first_error = ""
        self.latencies: list[float] = []
        self.deadline = 0.0
        self.stopped = "completed"
        self._reported: tuple[int, int] | None = None     # (ok, errors) of the last progress line
        self.connections = [_Connection(target, spec.timeout_s)
                            for _ in range(min(spec.concurrency, spec.requests))]
        self.warmed = 0                           # connections done with their warm-up request
        self.go = threading.Event()               # set once all are: the measured phase starts

    def _count_error(self, table: dict[str, int], status: str, text: str) -> None:
        with self.lock:
            table[status] = table.get(status, 0) + 1
            if not self.first_error:
                self.first_error = self.target.scrub(text)

    def _once(self, connection: _Connection, table: dict[str, int]) -> float | None:
        start = time.perf_counter()
        try:
            connection.exchange()
            return (time.perf_counter() - start) * 1000.0
        except _HttpError as exc:
            self._count_error(table, exc.status, str(exc))
        except (TimeoutError, socket.timeout):
            connection.close()
            if not self.stop.is_set():
                self._count_error(table, "timeout", f"no answer within {self.spec.timeout_s:g} s")
        except (OSError, ValueError, ssl_lib.SSLError) as exc:
            connection.close()
            if not self.stop.is_set():
                self._count_error(table, "connection", f"{type(exc).__name__}: {exc}")
        return None

    def _take(self) -> bool:
        with self.lock:
            if self.stop.is_set() or self.next_index >= self.spec.requests:
                return False
            if time.monotonic() >= self.deadline:
                self.stopped = "time limit"
                return False
            self.next_index += 1
            return True

    def _worker(self, connection: _Connection) -> None:
        try:
            if self.spec.warmup:
                self._once(connection, self.warmup_errors)
                with self.lock:
                    self.warmed += 1
                while not self.go.wait(0.05):
                    if self.stop.is_set():
                        return
            while self._take():
                latency = self._once(connection, self.errors)
                if latency is not None:
                    with self.lock:
                        self.ok += 1
                        self.latencies.append(latency)
        finally:
            connection.close()

    def _report_progress(self) -> None:
        if self.progress is None:
            return
        with self.lock:
            ok, errors = self.ok, sum(self.errors.values())
        if (ok, errors) == self._reported:          # nothing new since the last line
            return
        self._reported = (ok, errors)
        try:
            self.progress(ok + errors, self.spec.requests, ok, errors)
        except Exception:
            self.progress = None          # a broken progress sink must not stop the test

    def run(self) -> float:
        self.deadline = time.monotonic() + self.spec.time_limit_s
        threads = [threading.Thread(target=self._worker, args=(c,), name=f"load-{i}", daemon=True)
                   for i, c in enumerate(self.connections)]
        for thread in threads:
            thread.start()
        while self.spec.warmup and self.warmed < len(threads) and not self.stop.is_set():
            time.sleep(0.005)
        start = time.perf_counter()
        self.go.set()
        while any(t.is_alive() for t in threads):
            if self.stop.is_set():
                with self.lock:
                    self.stopped = "cancelled"
                for connection in self.connections:
                    connection.abort()
            alive = next((t for t in threads if t.is_alive()), None)
            if alive is not None:
                alive.join(PROGRESS_EVERY_S)
            self._report_progress()
        wall = time.perf_counter() - start
        if self.stop.is_set():
            self.stopped = "cancelled"
        self._report_progress()
        return wall


def run_load(url: str, request: HttpRequest, spec: LoadSpec, *, ssl: bool = False,
             headers: Mapping[str, str] | None = None, ssl_context: ssl_lib.SSLContext | None = None,
             progress: Progress | None = None, stop: threading.Event | None = None) -> LoadReport:
    """Run the load test to completion (blocking: call it from a worker thread of an async program).
    Errors of single requests are counted, never raised. ``stop`` (set from any thread) cancels it."""
    target = _Target(url, request, ssl=ssl, headers=dict(headers or {}), ssl_context=ssl_context)
    run = _Run(target, spec, progress, stop)
    wall = run.run()
    return LoadReport(target=request.target, concurrency=spec.concurrency, planned=spec.requests, ok=run.ok,
                      errors=dict(run.errors), latencies_ms=tuple(run.latencies), wall_s=wall, stopped=run.stopped,
                      request_bytes=len(target.payload), warmup_errors=dict(run.warmup_errors),
                      first_error=run.first_error)
