"""The Custom Vision route (``cvtriton_triton.customvision_front``) without Docker: the front runs as a process
(the same file the image runs) against the real local Triton serving a classifier and a detector with
their image ensembles. Its answers parse with the real Custom Vision prediction SDK, errors come back as
the SDK's ``CustomVisionErrorException`` with the service's codes, and Triton's ``/v2`` API answers on the
same port."""

from __future__ import annotations

import http.client
import io
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import numpy as np
import pytest
import pytest_asyncio
from PIL import Image

from azure.cognitiveservices.vision.customvision.prediction import CustomVisionPredictionClient
from azure.cognitiveservices.vision.customvision.prediction.models import CustomVisionErrorException
from msrest.authentication import ApiKeyCredentials

from cvtriton_triton import customvision_front as front_module
from cvtriton_triton.cv_response import parse_predictions, source_ids
from cvtriton_triton.ensemble import find_ensemble, write_ensemble
from cvtriton_triton.ensemble_runtime import BadRequest, IDS_FILENAME, parse_error
from cvtriton_triton.infer_client import TritonHttpClient
from cvtriton_triton.local_server import LocalTritonServer
from cvtriton_triton.model_import import import_model
from cvtriton_triton.model_repository import read_model_info, write_repository
from cvtriton_triton.postprocess import predictions
from cvtriton_triton.preprocess import prepare
from cvtriton_triton.sample_models import build_classifier, build_detector

pytestmark = pytest.mark.asyncio(loop_scope="module")

PROJECTS = {"classify": "0f1e2d3c-4b5a-4968-8776-a5b4c3d2e1f0", "detect": "1a2b3c4d-5e6f-4a0b-8c1d-2e3f4a5b6c7d"}
ITERATIONS = {"classify": "aaaaaaaa-1111-4222-8333-444444444444", "detect": "bbbbbbbb-1111-4222-8333-444444444444"}
PUBLISHED = {"classify": "shapes-prod", "detect": "shelf v2"}          # a space: the SDK URL-quotes it
MODELS = {"classify": "cls", "detect": "det"}
KEY = "prediction-key-never-logged-0123456789"
TOLERANCE = 1e-5


def _scene(width: int = 320, height: int = 240, seed: int = 3) -> bytes:
    rng = np.random.default_rng(seed)
    pixels = np.empty((height, width, 3), np.float64)
    pixels[:] = rng.integers(40, 215, 3)
    pixels[height // 4: height // 2, width // 5: width // 2] = rng.integers(0, 255, 3)
    pixels += rng.normal(0, 6, pixels.shape)
    buffer = io.BytesIO()
    Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB").save(buffer, format="JPEG", quality=92)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def repository(tmp_path_factory) -> Path:
    source = tmp_path_factory.mktemp("models")
    repo = tmp_path_factory.mktemp("repo")
    built = {"classify": build_classifier("float_dynamic", source / "cls" / "model.onnx"),
             "detect": build_detector("compact", source / "det" / "model.onnx")}
    for task, onnx in built.items():
        imported = import_model(onnx.parent, tmp_path_factory.mktemp(f"import-{task}"))
        write_repository(imported, repo, MODELS[task])
        sidecar = json.loads((repo / MODELS[task] / "cvtriton.json").read_text())
        ids = source_ids(sidecar["labels"], sidecar["onnx_sha256"], project=PROJECTS[task],
                         iteration=ITERATIONS[task], publish_name=PUBLISHED[task])
        write_ensemble(repo, MODELS[task], ids)
    return repo


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def triton(repository, tmp_path_factory):
    async with LocalTritonServer(repository, log=lambda line: None, workdir=tmp_path_factory.mktemp("triton")) as srv:
        for model in MODELS.values():
            await srv.wait_ready(f"{model}_image")
        yield srv


class Front:
    """The front as a process: ``python -m cvtriton_triton.customvision_front`` on a free port."""

    def __init__(self, document: Path, triton_url: str, log: Path) -> None:
        self.log = log
        self.stderr = open(log, "wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "cvtriton_triton.customvision_front", "--document", str(document),
             "--triton", triton_url, "--host", "127.0.0.1", "--port", "0"],
            stdout=subprocess.PIPE, stderr=self.stderr)
        line = self.proc.stdout.readline().decode()
        assert "listening on" in line, (line, log.read_text())
        self.banner = line
        self.url = line.split("listening on ", 1)[1].split(";", 1)[0]
        self.host, self.port = self.url.rsplit(":", 1)[0], int(self.url.rsplit(":", 1)[1])

    def connection(self) -> http.client.HTTPConnection:
        return http.client.HTTPConnection(self.host, self.port, timeout=30)

    def post(self, path: str, body: bytes, content_type: str = "application/octet-stream",
             conn: http.client.HTTPConnection | None = None, **headers: str) -> tuple[int, dict, dict]:
        own = conn is None
        conn = conn or self.connection()
        try:
            conn.request("POST", path, body=body, headers={"Content-Type": content_type, **headers})
            response = conn.getresponse()
            data = response.read()
            return response.status, dict(response.getheaders()), json.loads(data) if data else {}
        finally:
            if own:
                conn.close()

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=15)
        finally:
            self.proc.stdout.close()
            self.stderr.close()


@pytest.fixture(scope="module")
def fronts(triton, repository, tmp_path_factory):
    logs = tmp_path_factory.mktemp("front-logs")
    started = {task: Front(repository / f"{model}_image" / IDS_FILENAME, triton.url, logs / f"{task}.log")
               for task, model in MODELS.items()}
    yield started
    for task, front in started.items():
        assert front.stop() == 0, front.log.read_text()
        assert KEY not in front.log.read_text()          # a key in a header is never logged


def sdk(front: Front) -> CustomVisionPredictionClient:
    return CustomVisionPredictionClient(f"http://{front.url}", ApiKeyCredentials(in_headers={"Prediction-key": KEY}))


def client_side(triton_url: str, repository: Path, model: str, data: bytes) -> list:
    info = read_model_info(repository / model)
    with TritonHttpClient(triton_url) as client:
        outputs = client.infer(model, info.input.name, prepare(data, info), [o.name for o in info.outputs])
    return predictions(outputs, info)


def assert_same(served, expected) -> None:
    assert [p.label for p in served] == [p.label for p in expected]
    for a, b in zip(served, expected):
        assert abs(a.probability - b.probability) <= TOLERANCE
        assert (a.box is None) == (b.box is None)
        if a.box is not None:
            np.testing.assert_allclose([a.box.left, a.box.top, a.box.width, a.box.height],
                                       [b.box.left, b.box.top, b.box.width, b.box.height], atol=TOLERANCE)


def sdk_predictions(result) -> list:
    from cvtriton_triton.model_info import Box, Prediction

    return [Prediction(p.tag_name, p.probability, Box(p.bounding_box.left, p.bounding_box.top, p.bounding_box.width,
                                                      p.bounding_box.height) if p.bounding_box else None)
            for p in result.predictions]


# ---- answers ------------------------------------------------------------------------------------
async def test_sdk_classify_image_and_no_store(fronts, triton, repository):
    image = _scene()
    client = sdk(fronts["classify"])
    expected = client_side(triton.url, repository, MODELS["classify"], image)
    tags = find_ensemble(repository, MODELS["classify"]).ids.tags
    for call in (client.classify_image, client.classify_image_with_no_store):
        result = call(PROJECTS["classify"], PUBLISHED["classify"], image)
        assert result.project == PROJECTS["classify"] and result.iteration == ITERATIONS["classify"]
        uuid.UUID(result.id)
        assert result.created.tzinfo is not None
        assert result.predictions and all(p.bounding_box is None for p in result.predictions)
        assert all(p.tag_id == tags[p.tag_name] for p in result.predictions)
        assert all(p.tag_type == "Regular" for p in result.predictions)       # the SDK speaks v3.1
        assert_same(sdk_predictions(result), expected)


async def test_sdk_detect_image(fronts, triton, repository):
    image = _scene(480, 360, 5)
    client = sdk(fronts["detect"])
    result = client.detect_image(PROJECTS["detect"], PUBLISHED["detect"], image)
    assert result.project == PROJECTS["detect"] and result.iteration == ITERATIONS["detect"]
    assert all(p.bounding_box is not None for p in result.predictions)
    assert_same(sdk_predictions(result), client_side(triton.url, repository, MODELS["detect"], image))
    for box in (p.bounding_box for p in result.predictions):
        assert 0 <= box.left <= 1 and 0 <= box.top <= 1 and 0 < box.width <= 1 and 0 < box.height <= 1
    assert client.detect_image_with_no_store(PROJECTS["detect"], PUBLISHED["detect"], image).predictions is not None


async def test_documented_path_casing_octet_stream_and_v30_shape(fronts, triton, repository):
    """The path as the documentation writes it (``/Prediction/``, v3.0) with a raw body: the v3.0 shape
    (no tagType), the same predictions as the ensemble called directly."""
    front, image = fronts["classify"], _scene(seed=8)
    path = f"/customvision/v3.0/Prediction/{PROJECTS['classify'].upper()}/Classify/Iterations/shapes-prod/image"
    status, headers, body = front.post(path, image, **{"Prediction-Key": KEY})
    assert status == 200 and headers["Content-Type"].startswith("application/json")
    assert set(body) == {"id", "project", "iteration", "created", "predictions"}
    assert all(set(p) == {"probability", "tagId", "tagName"} for p in body["predictions"])
    assert_same(parse_predictions(body), client_side(triton.url, repository, MODELS["classify"], image))
    status, _, nostore = front.post(path.lower() + "/nostore", image)
    assert status == 200 and parse_predictions(nostore) == parse_predictions(body)


async def test_keep_alive_many_requests_on_one_connection(fronts):
    front, image = fronts["classify"], _scene(seed=4)
    path = fronts["classify"].banner.split("POST ", 1)[1].split(" ", 1)[0]
    conn = front.connection()
    try:
        ids = set()
        for _ in range(5):
            status, headers, body = front.post(path, image, conn=conn)
            assert status == 200 and headers.get("Connection", "").lower() != "close"
            ids.add(body["id"])
        assert len(ids) == 5                           # each prediction has its own id
        sock = conn.sock
        status, _, _ = front.post(path, b"not an image", conn=conn)     # an error keeps the connection too
        assert status == 400 and conn.sock is sock
    finally:
        conn.close()


async def test_chunked_body_is_read(fronts):
    front, image = fronts["classify"], _scene(seed=6)
    conn = front.connection()
    try:
        conn.putrequest("POST", Target_route(front))
        conn.putheader("Content-Type", "application/octet-stream")
        conn.putheader("Transfer-Encoding", "chunked")
        conn.endheaders()
        for start in range(0, len(image), 1000):
            piece = image[start:start + 1000]
            conn.send(b"%x\r\n%s\r\n" % (len(piece), piece))
        conn.send(b"0\r\n\r\n")
        response = conn.getresponse()
        assert response.status == 200 and json.loads(response.read())["predictions"]
    finally:
        conn.close()


def Target_route(front: Front) -> str:
    return front.banner.split("POST ", 1)[1].split(" ", 1)[0]


# ---- errors, as the service answers them ----------------------------------------------------------
def sdk_error(call, *args) -> CustomVisionErrorException:
    with pytest.raises(CustomVisionErrorException) as caught:
        call(*args)
    return caught.value


async def test_sdk_errors_have_the_service_codes(fronts):
    client, image = sdk(fronts["classify"]), _scene()
    project, name = PROJECTS["classify"], PUBLISHED["classify"]
    cases = [
        ((client.classify_image, project, name, b"<html>not an image</html>"), 400, "BadRequestImageFormat"),
        ((client.classify_image, project, name, image[:300]), 400, "BadRequestImageFormat"),     # truncated
        ((client.classify_image, project, name, b"\xff" * (front_module.MAX_IMAGE_BYTES + 1)), 400,
         "BadRequestImageSizeBytes"),
        ((client.classify_image, str(uuid.uuid4()), name, image), 404, "NotFoundProject"),
        ((client.classify_image, "not-a-guid", name, image), 404, "NotFoundProject"),
        ((client.classify_image, project, "Iteration1", image), 404, "NotFoundIteration"),
        ((client.detect_image, project, name, image), 400, "BadRequest"),                        # wrong task
    ]
    for (call, *args), status, code in cases:
        error = sdk_error(call, *args)
        assert error.response.status_code == status, (code, error.response.text)
        assert error.error.code == code and error.error.message, error.response.text
        assert set(error.response.json()) == {"code", "message"}
    assert "Invalid project type for operation" in sdk_error(client.detect_image, project, name, image).error.message
    assert sdk_error(client.classify_image, project, "Iteration1", image).error.message == "Invalid iteration"
    # and the front keeps serving
    assert client.classify_image(project, name, image).predictions


async def test_detection_project_refuses_classify(fronts):
    client, image = sdk(fronts["detect"]), _scene()
    error = sdk_error(client.classify_image, PROJECTS["detect"], PUBLISHED["detect"], image)
    assert error.response.status_code == 400 and error.error.code == "BadRequest"


async def test_exactly_4_mb_is_accepted_and_a_bigger_multipart_part_is_refused(fronts):
    """The limit is on the image: a 4 MB picture (padded JPEG) passes, a part over it is refused."""
    front = fronts["classify"]
    image = _scene(seed=2)
    padded = image + b"\0" * (front_module.MAX_IMAGE_BYTES - len(image))        # bytes after EOI are ignored
    assert len(padded) == front_module.MAX_IMAGE_BYTES
    status, _, body = front.post(Target_route(front), padded)
    assert status == 200, body
    boundary = "cvtriton-test-boundary"
    part = padded + b"\0"
    multipart = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"imageData\"; filename=\"x.jpg\"\r\n\r\n"
                 .encode() + part + f"\r\n--{boundary}--\r\n".encode())
    status, _, body = front.post(Target_route(front), multipart, f"multipart/form-data; boundary={boundary}")
    assert status == 400 and body["code"] == "BadRequestImageSizeBytes"


async def test_oversized_body_is_refused_without_reading_it_all(fronts):
    front = fronts["classify"]
    conn = front.connection()
    try:
        conn.putrequest("POST", Target_route(front))
        conn.putheader("Content-Type", "application/octet-stream")
        conn.putheader("Content-Length", str(front_module.MAX_DRAIN_BYTES + 1))
        conn.endheaders()
        response = conn.getresponse()                 # answered before the body is sent
        assert response.status == 400 and json.loads(response.read())["code"] == "BadRequestImageSizeBytes"
        assert response.getheader("Connection") == "close"
    finally:
        conn.close()


async def test_unknown_routes_and_methods_get_the_gateway_404(fronts):
    front = fronts["classify"]
    for method, path in [("POST", "/customvision/v3.0/Prediction/x/classify/image"),
                         ("GET", Target_route(front)), ("POST", "/customvision/v2.0/Prediction/x")]:
        conn = front.connection()
        try:
            conn.request(method, path)
            response = conn.getresponse()
            assert response.status == 404 and json.loads(response.read())["error"]["code"] == "404"
        finally:
            conn.close()
    url_route = Target_route(front).rsplit("/", 1)[0] + "/url"
    status, _, body = front.post(url_route, json.dumps({"url": "http://x/y.jpg"}).encode(), "application/json")
    assert status == 400 and body["code"] == "BadRequestNotSupported"


# ---- Triton's own API on the same port ------------------------------------------------------------
async def test_v2_is_reachable_through_the_front(fronts, triton, repository):
    front = fronts["classify"]
    image = _scene(seed=9)
    info = read_model_info(repository / MODELS["classify"])
    with TritonHttpClient(front.url) as client:       # tritonclient pointed at the front's port
        assert client.is_server_ready() and client.is_model_ready(MODELS["classify"])
        outputs = client.infer(MODELS["classify"], info.input.name, prepare(image, info),
                               [o.name for o in info.outputs])
    assert_same(predictions(outputs, info), client_side(triton.url, repository, MODELS["classify"], image))
    conn = front.connection()
    try:
        conn.request("GET", f"/v2/models/{MODELS['classify']}")
        response = conn.getresponse()
        assert response.status == 200 and json.loads(response.read())["name"] == MODELS["classify"]
        conn.request("GET", "/v2/models/no-such-model")
        response = conn.getresponse()
        assert response.status == 400 or response.status == 404
        assert "error" in json.loads(response.read())
    finally:
        conn.close()


async def test_ensemble_errors_map_to_the_front_codes():
    """The front reads the steps' errors as the ensemble runtime writes them."""
    text = f"in ensemble 'm_image', {BadRequest('BadRequestImageFormat', 'cannot read it')}"
    assert front_module.coded_error(text) == parse_error(text) == ("BadRequestImageFormat", "cannot read it")


async def test_triton_down_gives_503(repository, tmp_path):
    front = Front(repository / f"{MODELS['classify']}_image" / IDS_FILENAME, "127.0.0.1:9", tmp_path / "log")
    try:
        status, _, body = front.post(Target_route(front), _scene())
        assert status == 503 and body["code"] == "ErrorPredictionServiceUnavailable"
        conn = front.connection()
        conn.request("GET", "/v2/health/ready")
        response = conn.getresponse()
        assert response.status == 503 and "error" in json.loads(response.read())
        conn.close()
    finally:
        assert front.stop() == 0


async def test_bad_document_is_one_line(tmp_path):
    bad = tmp_path / IDS_FILENAME
    bad.write_text("{}")
    done = subprocess.run([sys.executable, "-m", "cvtriton_triton.customvision_front", "--document", str(bad),
                           "--port", "0"], capture_output=True, text=True, timeout=30)
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1
    assert "not an image-ensemble ids document" in done.stderr


async def test_the_published_name_defaults_to_the_model_name(tmp_path):
    document = {"model": "m", "ensemble": "m_image", "task": "classify", "input": "image", "output": "prediction",
                "max_batch_size": 0, "ids": {"project": PROJECTS["classify"], "iteration": ITERATIONS["classify"],
                                             "publishName": "", "tags": {}}}
    target = front_module.Target(document)
    assert target.published_name == "m"
    assert target.route() == f"/customvision/v3.0/Prediction/{PROJECTS['classify']}/classify/iterations/m/image"


# ---- HTTP details ---------------------------------------------------------------------------------
def raw_exchange(front: Front, data: bytes, *, read_until: bytes = b"\r\n\r\n") -> bytes:
    import socket

    with socket.create_connection((front.host, front.port), timeout=30) as sock:
        sock.sendall(data)
        received = b""
        while read_until not in received:
            chunk = sock.recv(65536)
            if not chunk:
                break
            received += chunk
        return received


async def test_expect_100_continue_then_the_answer(fronts):
    import socket

    front, image = fronts["classify"], _scene(seed=12)
    head = (f"POST {Target_route(front)} HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\n"
            f"Content-Length: {len(image)}\r\nExpect: 100-continue\r\n\r\n").encode()
    with socket.create_connection((front.host, front.port), timeout=30) as sock:
        sock.sendall(head)
        assert sock.recv(64).startswith(b"HTTP/1.1 100 Continue\r\n\r\n")
        sock.sendall(image)
        answer = b""
        while b"\r\n\r\n" not in answer:
            answer += sock.recv(65536)
        assert answer.startswith(b"HTTP/1.1 200 OK\r\n")


async def test_malformed_requests_are_refused_and_closed(fronts):
    front = fronts["classify"]
    for request in (b"NONSENSE\r\n\r\n", b"GET / HTTP/2.0\r\n\r\n",
                    b"GET /v2 HTTP/1.1\r\nno colon here\r\n\r\n",
                    b"GET /v2 HTTP/1.1\r\n" + b"X-A: b\r\n" * 101 + b"\r\n"):
        answer = raw_exchange(front, request)
        assert answer.startswith(b"HTTP/1.1 400 "), (request[:40], answer[:200])
        assert b"Connection: close" in answer


async def test_http10_and_other_methods_are_proxied_as_triton_answers(fronts, triton):
    import http.client as client

    front = fronts["classify"]
    answer = raw_exchange(front, b"GET /v2/health/ready HTTP/1.0\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 200 ") and b"Connection: close" in answer
    host, port = triton.url.rsplit(":", 1)
    for method in ("HEAD", "DELETE", "PUT"):
        direct = client.HTTPConnection(host, int(port), timeout=30)
        direct.request(method, "/v2/health/ready")
        expected = direct.getresponse()
        expected_body = expected.read()
        direct.close()
        conn = front.connection()
        conn.request(method, "/v2/health/ready")
        proxied = conn.getresponse()
        assert (proxied.status, proxied.read()) == (expected.status, expected_body), method
        conn.close()
