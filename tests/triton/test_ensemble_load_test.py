"""``cvtriton_triton.load_test`` against small HTTP(S) servers of our own that misbehave on purpose
(status codes, chunked bodies, closed connections, slow answers, auth) — the real Triton is in
tests/integration/test_ensemble.py and bench/ensemble.py."""

from __future__ import annotations

import datetime
import ssl
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest

from cvtriton_triton.errors import UserError
from cvtriton_triton.load_test import HttpRequest, LoadSpec, infer_request, run_load

TOKEN = "s3cret-token-abcdefgh"


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    seen: list = []

    def log_message(self, *args):  # quiet
        pass

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        server = self.server
        with server.lock:
            server.count += 1
            n = server.count
            server.seen.append((self.path, dict(self.headers), body))
        mode = server.mode
        if mode == "auth" and self.headers.get("Authorization") != f"Bearer {TOKEN}":
            return self._send(401, b'{"error": "bad token ' + TOKEN.encode() + b'"}')
        if mode == "every-third-fails" and n % 3 == 0:
            return self._send(503, b'{"error": "model not ready"}')
        if mode == "slow":
            time.sleep(server.delay)
        if mode == "chunked":
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for part in (b'{"outputs":', b"[]}"):
                self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
            self.wfile.write(b"0\r\n\r\n")
            return
        if mode == "close":
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(b"{}")
            self.close_connection = True
            return
        self._send(200, b'{"outputs": []}')

    def _send(self, status, body):
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def _serve(mode="ok", delay=0.0, tls=None):
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.daemon_threads = True
    server.mode, server.delay, server.count, server.seen, server.lock = mode, delay, 0, [], threading.Lock()
    if tls is not None:
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.fixture
def serve():
    servers = []

    def start(*args, **kwargs):
        server = _serve(*args, **kwargs)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


REQUEST = HttpRequest("/v2/models/m/infer", b"x" * 1000, (("Content-Type", "application/octet-stream"),), "m")


def _url(server):
    return f"127.0.0.1:{server.server_address[1]}"


def test_counts_latencies_and_warmup(serve):
    server = serve()
    progress = []
    report = run_load(_url(server), REQUEST, LoadSpec(requests=40, concurrency=4),
                      progress=lambda *a: progress.append(a))
    assert (report.ok, report.errors, report.stopped, report.sent) == (40, {}, "completed", 40)
    assert server.count == 44                       # + one warm-up per connection
    assert len(report.latencies_ms) == 40 and all(v > 0 for v in report.latencies_ms)
    assert report.p50_ms <= report.p95_ms <= report.p99_ms <= max(report.latencies_ms)
    assert report.throughput_rps > 0 and report.request_bytes > 1000
    assert progress[-1] == (40, 40, 40, 0)
    assert sum(c for _, _, c in report.histogram(5)) == 40
    path, headers, body = server.seen[0]
    assert path == "/v2/models/m/infer" and body == b"x" * 1000 and headers["Content-Type"] == "application/octet-stream"
    data = report.to_json()
    assert data["ok"] == 40 and len(data["latencies_ms"]) == 40 and data["latency_ms"]["p99"] is not None


def test_errors_are_counted_by_status_not_raised(serve):
    server = serve("every-third-fails")
    report = run_load(_url(server), REQUEST, LoadSpec(requests=30, concurrency=1, warmup=False))
    assert report.errors == {"503": 10} and report.ok == 20 and len(report.latencies_ms) == 20
    assert "HTTP 503: model not ready" in report.first_error
    assert "10 x 503" in report.summary()


def test_connection_refused_is_an_error_count(serve):
    server = serve()
    url = _url(server)
    server.shutdown()
    server.server_close()
    report = run_load(url, REQUEST, LoadSpec(requests=3, concurrency=1, warmup=False))
    assert report.errors == {"connection": 3} and report.ok == 0
    assert "no successful request" in report.summary()


@pytest.mark.parametrize("mode", ["chunked", "close"])
def test_chunked_bodies_and_closed_connections(serve, mode):
    server = serve(mode)
    report = run_load(_url(server), REQUEST, LoadSpec(requests=12, concurrency=3))
    assert report.ok == 12 and not report.errors


def test_timeouts_and_the_time_limit_bound_the_run(serve):
    server = serve("slow", delay=0.5)
    start = time.monotonic()
    report = run_load(_url(server), REQUEST, LoadSpec(requests=5, concurrency=1, timeout_s=0.1, warmup=False))
    assert report.errors == {"timeout": 5} and "no answer within 0.1 s" in report.first_error
    server.delay = 0.05
    report = run_load(_url(server), REQUEST, LoadSpec(requests=10_000, concurrency=2, time_limit_s=0.5))
    assert report.stopped == "time limit" and 0 < report.ok < 10_000
    assert time.monotonic() - start < 10


def test_cancel_from_another_thread(serve):
    server = serve("slow", delay=0.02)
    stop = threading.Event()
    threading.Timer(0.3, stop.set).start()
    start = time.monotonic()
    report = run_load(_url(server), REQUEST, LoadSpec(requests=100_000, concurrency=2), stop=stop)
    assert report.stopped == "cancelled" and report.ok < 100_000
    assert time.monotonic() - start < 5
    sent = server.count
    time.sleep(0.2)
    assert server.count == sent                      # nothing is sent after it returned


def _tls_pair(tmp_path):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=1))
            .not_valid_after(now + datetime.timedelta(hours=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(cert_path, key_path)
    return server_ctx, cert_path


def test_https_with_auth_headers_never_leaks_the_token(serve, tmp_path, monkeypatch):
    server_ctx, cert = _tls_pair(tmp_path)
    server = serve("auth", tls=server_ctx)
    url = f"https://localhost:{server.server_address[1]}"
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(cert))      # trusted the way the Azure SDKs are told to
    good = run_load(url, REQUEST, LoadSpec(requests=6, concurrency=2), headers={"Authorization": f"Bearer {TOKEN}"})
    assert good.ok == 6 and not good.errors
    bad = run_load(url, REQUEST, LoadSpec(requests=2, concurrency=1, warmup=False),
                   headers={"Authorization": "Bearer wrong-token-12345678"})
    assert bad.errors == {"401": 2} and bad.first_error.startswith("HTTP 401")
    # the server's error text quotes a value we sent as a header: blanked out of the report
    leaked = run_load(url, REQUEST, LoadSpec(requests=1, concurrency=1, warmup=False),
                      headers={"Authorization": f"Bearer {TOKEN}x", "X-Api-Key": TOKEN})
    assert leaked.errors == {"401": 1} and "***" in leaked.first_error
    assert TOKEN not in leaked.first_error and TOKEN not in str(leaked.to_json())
    monkeypatch.delenv("REQUESTS_CA_BUNDLE")
    untrusted = run_load(url, REQUEST, LoadSpec(requests=1, concurrency=1, warmup=False))
    assert untrusted.errors == {"connection": 1} and "CERTIFICATE_VERIFY_FAILED" in untrusted.first_error


def test_base_path_and_default_ports(serve):
    server = serve()
    report = run_load(f"http://{_url(server)}/some/prefix/", REQUEST, LoadSpec(requests=1, warmup=False))
    assert report.ok == 1 and server.seen[0][0] == "/some/prefix/v2/models/m/infer"


@pytest.mark.parametrize("kwargs, match", [
    ({"requests": 0}, "request count"), ({"requests": 2_000_000}, "request count"),
    ({"concurrency": 0}, "concurrency"), ({"time_limit_s": 0}, "time limit"), ({"timeout_s": -1}, "timeout"),
    ({"concurrency": True}, "concurrency"),
])
def test_spec_bounds(kwargs, match):
    with pytest.raises(UserError, match=match):
        LoadSpec(**kwargs)


def test_infer_request_is_what_tritonclient_sends():
    import tritonclient.http as triton_http

    tensor = np.arange(12, dtype=np.float32).reshape(1, 3, 2, 2)
    request = infer_request("my model", [("data", tensor)], ["out"], parameters={"threshold": 0.5})
    assert request.path == "/v2/models/my%20model/infer"
    headers = dict(request.headers)
    json_size = int(headers["Inference-Header-Content-Length"])
    header = __import__("json").loads(request.body[:json_size])
    assert header["inputs"][0] == {"name": "data", "shape": [1, 3, 2, 2], "datatype": "FP32",
                                   "parameters": {"binary_data_size": 48}}
    assert header["parameters"]["threshold"] == 0.5
    assert request.body[json_size:] == tensor.tobytes()
    text = infer_request("m", [("image", np.array([[b"abc"]], dtype=object))]).body
    assert text.endswith(b"\x03\x00\x00\x00abc")                   # BYTES: 4-byte little-endian length
    assert triton_http.InferInput  # the encoder used is tritonclient's own
