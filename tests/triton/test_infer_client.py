"""TritonHttpClient against the real tritonserver, directly and behind an authenticating proxy.

The proxy stands in for the Azure ML endpoint's front door: it demands ``Authorization: Bearer``,
answers 401 with a non-JSON body otherwise (and echoes the token, so a leak would show), and
records what crossed the wire, so the tests can see headers and binary tensor encoding.
"""

from __future__ import annotations

import http.client
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import pytest_asyncio
from onnx import TensorProto, helper, numpy_helper

from cvtriton_triton.errors import ServerError, UserError
from cvtriton_triton.infer_client import TritonHttpClient
from cvtriton_triton.local_server import LocalTritonServer

pytestmark = pytest.mark.asyncio(loop_scope="module")

TOKEN = "s3cr3t-endpoint-key-0123456789"
SIZE = 32


def write_model(repo: Path) -> Path:
    rng = np.random.default_rng(11)
    inits = [numpy_helper.from_array(rng.standard_normal((8, 3, 3, 3)).astype(np.float32), "w"),
             numpy_helper.from_array(rng.standard_normal((8, 4)).astype(np.float32), "fc")]
    nodes = [helper.make_node("Conv", ["data", "w"], ["c"], strides=[2, 2], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["r"]),
             helper.make_node("GlobalAveragePool", ["r"], ["p"]),
             helper.make_node("Flatten", ["p"], ["f"]),
             helper.make_node("MatMul", ["f", "fc"], ["logits"]),
             helper.make_node("Softmax", ["logits"], ["model_output"], axis=1)]
    graph = helper.make_graph(
        nodes, "cls", [helper.make_tensor_value_info("data", TensorProto.FLOAT, [1, 3, SIZE, SIZE])],
        [helper.make_tensor_value_info("model_output", TensorProto.FLOAT, [1, 4])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    (repo / "cls" / "1").mkdir(parents=True)
    onnx.save(model, repo / "cls" / "1" / "model.onnx")
    (repo / "cls" / "config.pbtxt").write_text(
        'name: "cls"\nplatform: "onnxruntime_onnx"\nmax_batch_size: 0\n'
        f'input [ {{ name: "data" data_type: TYPE_FP32 dims: [1, 3, {SIZE}, {SIZE}] }} ]\n'
        'output [ { name: "model_output" data_type: TYPE_FP32 dims: [1, 4] } ]\n')
    return repo / "cls" / "1" / "model.onnx"


class AuthProxy(ThreadingHTTPServer):
    """127.0.0.1 reverse proxy to Triton that insists on ``Authorization: Bearer TOKEN``."""

    daemon_threads = True

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.seen: list[dict] = []
        super().__init__(("127.0.0.1", 0), _ProxyHandler)

    @property
    def url(self) -> str:
        return f"127.0.0.1:{self.server_address[1]}"


class _ProxyHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:  # keep pytest output clean
        pass

    def _reply(self, status: int, body: bytes, headers: list[tuple[str, str]] = ()) -> None:
        self.send_response(status)
        for key, value in headers:
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _forward(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        record = {"method": self.command, "path": self.path, "auth": self.headers.get("Authorization"),
                  "request_binary": "Inference-Header-Content-Length" in self.headers}
        self.server.seen.append(record)
        if record["auth"] != f"Bearer {TOKEN}":
            self._reply(401, f"Unauthorized: key {record['auth']} is not valid".encode())
            return
        headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "authorization", "connection")}
        upstream = http.client.HTTPConnection(self.server.upstream, timeout=10)
        upstream.request(self.command, self.path, body, headers)
        response = upstream.getresponse()
        data = response.read()
        upstream.close()
        record["response_binary"] = response.getheader("Inference-Header-Content-Length") is not None
        passed = [(k, v) for k, v in response.getheaders()
                  if k.lower() not in ("content-length", "transfer-encoding", "connection")]
        self._reply(response.status, data, passed)

    do_GET = do_POST = _forward


@pytest.fixture(scope="module")
def model_path(tmp_path_factory) -> Path:
    return write_model(tmp_path_factory.mktemp("repo"))


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def server(model_path):
    async with LocalTritonServer(model_path.parent.parent.parent) as srv:
        await srv.wait_ready("cls")
        yield srv


@pytest.fixture(scope="module")
def proxy(server):
    proxy = AuthProxy(server.url)
    thread = threading.Thread(target=proxy.serve_forever, daemon=True)
    thread.start()
    yield proxy
    proxy.shutdown()
    proxy.server_close()
    thread.join()


@pytest.fixture
def client(server):
    with TritonHttpClient(server.url) as c:
        yield c


def image(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0, 255, (1, 3, SIZE, SIZE)).astype(np.float32)


async def test_health_metadata_config(client):
    assert client.is_server_ready() is True
    assert client.is_model_ready("cls") is True
    assert client.is_model_ready("absent") is False
    meta = client.model_metadata("cls")
    assert meta["inputs"] == [{"name": "data", "datatype": "FP32", "shape": [1, 3, SIZE, SIZE]}]
    assert meta["outputs"][0]["name"] == "model_output"
    config = client.model_config("cls")
    assert config["max_batch_size"] == 0 and config["backend"] == "onnxruntime"


async def test_infer_equals_onnxruntime(client, model_path):
    x = image(1)
    out = client.infer("cls", "data", x, ["model_output"])
    expected = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"]).run(None, {"data": x})[0]
    np.testing.assert_allclose(out["model_output"], expected, rtol=1e-5, atol=1e-6)
    outputs, latency_ms = client.timed_infer("cls", "data", x, ["model_output"])
    np.testing.assert_array_equal(outputs["model_output"], out["model_output"])
    assert 0.0 < latency_ms < 5000.0


async def test_all_outputs_when_none_named(client):
    assert list(client.infer("cls", "data", image(2))) == ["model_output"]


async def test_headers_on_every_call_and_binary_tensors(proxy, model_path):
    with TritonHttpClient(f"http://{proxy.url}", headers={"Authorization": f"Bearer {TOKEN}"}) as c:
        start = len(proxy.seen)
        assert c.is_server_ready() and c.is_model_ready("cls")
        c.model_metadata("cls")
        c.model_config("cls")
        out = c.infer("cls", "data", image(3), ["model_output"])
        c.timed_infer("cls", "data", image(3), ["model_output"])
    calls = proxy.seen[start:]
    assert len(calls) == 6
    assert all(call["auth"] == f"Bearer {TOKEN}" for call in calls)
    infers = [call for call in calls if call["path"].endswith("/infer")]
    assert len(infers) == 2 and all(c["request_binary"] and c["response_binary"] for c in infers)
    expected = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"]).run(
        None, {"data": image(3)})[0]
    np.testing.assert_allclose(out["model_output"], expected, rtol=1e-5, atol=1e-6)


async def test_rejected_key_is_one_line_without_the_key(proxy):
    wrong = "Bearer wrong-key-abcdefghijklmnop"
    with TritonHttpClient(proxy.url, headers={"Authorization": wrong}) as c:
        for call in (c.is_server_ready, lambda: c.is_model_ready("cls"), lambda: c.model_metadata("cls"),
                     lambda: c.infer("cls", "data", image(), ["model_output"])):
            with pytest.raises(ServerError) as caught:
                call()
            message = str(caught.value)
            assert "HTTP 401" in message and "key or token" in message and "Unauthorized" in message
            assert "wrong-key-abcdefghijklmnop" not in message and "\n" not in message
        assert "wrong-key" not in repr(c)


async def test_bad_input_name_is_a_server_error(client):
    with pytest.raises(ServerError, match="HTTP 400.*input") as caught:
        client.infer("cls", "pixels", image(), ["model_output"])
    assert "metadata" in str(caught.value)


async def test_unsupported_dtype_is_a_user_error(client):
    with pytest.raises(UserError, match="complex64"):
        client.infer("cls", "data", image().astype(np.complex64))


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def test_unreachable_server_is_one_line_without_headers():
    with TritonHttpClient(f"127.0.0.1:{_closed_port()}", headers={"Authorization": f"Bearer {TOKEN}"}) as c:
        with pytest.raises(ServerError, match="cannot reach Triton") as caught:
            c.is_server_ready()
    assert TOKEN not in str(caught.value) and "\n" not in str(caught.value)


async def test_silent_server_times_out():
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        with TritonHttpClient(f"127.0.0.1:{silent.getsockname()[1]}", timeout=1.0) as c:
            start = time.monotonic()
            with pytest.raises(ServerError, match="cannot reach Triton"):
                c.infer("cls", "data", image())
            assert time.monotonic() - start < 10


async def test_url_forms():
    assert TritonHttpClient("https://ep.westeurope.inference.ml.azure.com/").ssl is True
    assert TritonHttpClient("https://ep.westeurope.inference.ml.azure.com/").url == "ep.westeurope.inference.ml.azure.com"
    assert TritonHttpClient("http://127.0.0.1:8000").ssl is False
    with pytest.raises(UserError, match="http://"):
        TritonHttpClient("http://127.0.0.1:8000", ssl=True)
    with pytest.raises(UserError, match="empty"):
        TritonHttpClient("  ")
