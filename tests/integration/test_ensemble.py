"""The image ensemble through the real Triton binary: for every export contract, raw image bytes through
``<m>_image`` answer as the client-side path does (prepare -> tensor to ``<m>`` -> predictions) on the same
image; bad bytes get a clear 400 and the server keeps serving; a 4000x3000 photo works; the JSON parses
with the Custom Vision prediction SDK's models; request parameters filter; the load generator drives it."""

from __future__ import annotations

import asyncio
import io
import json
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import pytest_asyncio
from PIL import Image

from cvtriton_triton.cv_response import parse_predictions
from cvtriton_triton.ensemble import find_ensemble, write_ensemble
from cvtriton_triton.ensemble_runtime import BAD_IMAGE, BAD_PARAMETERS, parse_error
from cvtriton_triton.errors import ServerError
from cvtriton_triton.infer_client import TritonHttpClient
from cvtriton_triton.load_test import LoadSpec, infer_request, run_load
from cvtriton_triton.local_server import LocalTritonServer
from cvtriton_triton.model_import import import_model
from cvtriton_triton.model_repository import read_model_info, write_repository
from cvtriton_triton.postprocess import predictions
from cvtriton_triton.preprocess import prepare
from cvtriton_triton.sample_models import SAMPLE_IMAGES_DIRNAME, build_all_contracts, build_sample_export

pytestmark = pytest.mark.asyncio(loop_scope="module")

SERVABLE = ["classification", "classification_dynamic", "classification_zipmap", "classification_mixed",
            "classification_fp16", "classification_rgb01", "colour_classifier", "detection_s1",
            "detection_compact"]
TOLERANCE = 1e-5          # same code, same bytes: only float noise between processes may differ


def _encode(pixels: np.ndarray, fmt: str, **save) -> bytes:
    buffer = io.BytesIO()
    image = Image.fromarray(pixels.astype(np.uint8), "RGB")
    if fmt == "GIF":
        image = image.convert("P", palette=Image.Palette.ADAPTIVE)
    image.save(buffer, format=fmt, **save)
    return buffer.getvalue()


def _scene(width: int, height: int, seed: int) -> np.ndarray:
    """A plain background with two contrasting rectangles (detectors fire on them) and some noise."""
    rng = np.random.default_rng(seed)
    pixels = np.empty((height, width, 3), np.float64)
    pixels[:] = rng.integers(40, 215, 3)
    for _ in range(2):
        x, y = rng.integers(0, width // 2), rng.integers(0, height // 2)
        pixels[y:y + height // 3, x:x + width // 4] = rng.integers(0, 255, 3)
    pixels += rng.normal(0, 6, pixels.shape)
    return np.clip(pixels, 0, 255)


def _rotated_jpeg(pixels: np.ndarray) -> bytes:
    image = Image.fromarray(pixels.astype(np.uint8), "RGB")
    exif = image.getexif()
    exif[0x0112] = 6                         # "rotate 90 CW to display"
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", exif=exif.tobytes(), quality=92)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> dict[str, bytes]:
    sample = tmp_path_factory.mktemp("sample")
    build_sample_export(sample)
    scene = _scene(480, 360, 5)
    return {"sample-jpeg": (sample / SAMPLE_IMAGES_DIRNAME / "green.jpg").read_bytes(),
            "scene-png": _encode(scene, "PNG"), "scene-bmp": _encode(scene, "BMP"),
            "scene-gif": _encode(scene, "GIF"), "exif-rotated-jpeg": _rotated_jpeg(_scene(400, 300, 9))}


@pytest.fixture(scope="module")
def repository(tmp_path_factory) -> Path:
    contracts = build_all_contracts(tmp_path_factory.mktemp("contracts"))
    repo = tmp_path_factory.mktemp("repo")
    for key in SERVABLE:
        imported = import_model(contracts[key].parent, tmp_path_factory.mktemp(f"import-{key}"))
        write_repository(imported, repo, key)
        write_ensemble(repo, key)
    return repo


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def server(repository, tmp_path_factory):
    async with LocalTritonServer(repository, log=lambda line: None, workdir=tmp_path_factory.mktemp("triton")) as srv:
        for key in SERVABLE:
            await srv.wait_ready(f"{key}_image")
        yield srv


def _client_side(client: TritonHttpClient, key: str, info, data: bytes, **kwargs):
    tensor = prepare(data, info)
    outputs = client.infer(key, info.input.name, tensor, [o.name for o in info.outputs])
    return predictions(outputs, info, **kwargs)


def _through_ensemble(client: TritonHttpClient, repository: Path, key: str, data: bytes,
                      parameters: dict | None = None) -> dict:
    """Bytes in, JSON out; parameters go in the request (tritonclient directly: our client has no parameters)."""
    import tritonclient.http as triton_http

    shape = find_ensemble(repository, key).request_shape
    request_input = triton_http.InferInput("image", shape, "BYTES")
    request_input.set_data_from_numpy(np.array([data], dtype=object).reshape(shape), binary_data=True)
    result = client._call("ensemble inference", lambda: client._client.infer(
        f"{key}_image", [request_input], parameters=parameters))
    return json.loads(result.as_numpy("prediction").reshape(-1)[0])


def _assert_same(served, local) -> None:
    assert [p.label for p in served] == [p.label for p in local]
    for a, b in zip(served, local):
        assert abs(a.probability - b.probability) <= TOLERANCE
        assert (a.box is None) == (b.box is None)
        if a.box is not None:
            np.testing.assert_allclose([a.box.left, a.box.top, a.box.width, a.box.height],
                                       [b.box.left, b.box.top, b.box.width, b.box.height], atol=TOLERANCE)


def _sdk(document: dict):
    from msrest import Deserializer

    from azure.cognitiveservices.vision.customvision.prediction import models

    return Deserializer({k: v for k, v in vars(models).items() if isinstance(v, type)})("ImagePrediction", document)


@pytest.mark.parametrize("key", SERVABLE)
async def test_ensemble_answers_as_the_client_side_path(key, server, repository, images):
    info = read_model_info(repository / key)
    detection = info.task == "detection"
    with TritonHttpClient(server.url) as client:
        for name, data in images.items():
            document = _through_ensemble(client, repository, key, data)
            _assert_same(parse_predictions(document), _client_side(client, key, info, data))
            # the full lists agree too, not only what clears the default threshold
            everything = _through_ensemble(client, repository, key, data, {"threshold": 0.0})
            _assert_same(parse_predictions(everything), _client_side(client, key, info, data, threshold=0.0))
            if detection:
                assert everything["predictions"], f"{key} found nothing in {name}"
            parsed = _sdk(document)
            ids = find_ensemble(repository, key).ids
            assert parsed.project == ids.project and parsed.iteration == ids.iteration
            assert [p.tag_name for p in parsed.predictions] == [p["tagName"] for p in document["predictions"]]
            assert all(p.tag_id == ids.tag_id(p.tag_name) for p in parsed.predictions)
            assert all((p.bounding_box is not None) == detection for p in parsed.predictions)


async def test_a_4000x3000_photo(server, repository):
    photo = _encode(_scene(4000, 3000, 11), "JPEG", quality=90)
    assert len(photo) > 1_000_000
    with TritonHttpClient(server.url) as client:
        for key in ("detection_compact", "classification_fp16"):
            info = read_model_info(repository / key)
            document = _through_ensemble(client, repository, key, photo, {"threshold": 0.0})
            _assert_same(parse_predictions(document), _client_side(client, key, info, photo, threshold=0.0))


@pytest.mark.parametrize("data, message", [
    (b"", "the image is empty"), (b"<html>not an image</html>", "not an image Pillow can read"),
    (_encode(_scene(64, 64, 1), "JPEG")[:400], "could not be decoded"),         # a truncated JPEG
])
async def test_bad_image_bytes_get_a_clear_400_and_the_server_keeps_serving(data, message, server, repository,
                                                                            images):
    with TritonHttpClient(server.url) as client:
        for key in ("classification", "classification_dynamic"):
            with pytest.raises(ServerError) as caught:
                _through_ensemble(client, repository, key, data)
            text = str(caught.value)
            assert "HTTP 400" in text and message in text, text
            assert parse_error(text)[0] == BAD_IMAGE
            assert client.is_model_ready(f"{key}_image") and client.is_server_ready()
            assert _through_ensemble(client, repository, key, images["sample-jpeg"])["predictions"]


async def test_one_bad_request_does_not_fail_its_batch_neighbours(server, repository, images):
    """Concurrent good and bad requests to a batching ensemble: only the bad ones fail."""
    def one(data: bytes):
        with TritonHttpClient(server.url) as client:
            try:
                return _through_ensemble(client, repository, "classification_dynamic", data)
            except ServerError as exc:
                return str(exc)

    inputs = [images["sample-jpeg"] if i % 4 else b"garbage" for i in range(24)]
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(one, inputs))
    for data, answer in zip(inputs, answers):
        if data == b"garbage":
            assert isinstance(answer, str) and "HTTP 400" in answer
        else:
            assert isinstance(answer, dict) and answer["predictions"][0]["tagName"]


async def test_several_images_in_one_request(server, repository, images):
    import tritonclient.http as triton_http

    batch = [images["sample-jpeg"], images["scene-png"], images["exif-rotated-jpeg"]]
    info = read_model_info(repository / "classification_dynamic")
    with TritonHttpClient(server.url) as client:
        request_input = triton_http.InferInput("image", [3, 1], "BYTES")
        request_input.set_data_from_numpy(np.array(batch, dtype=object).reshape(3, 1), binary_data=True)
        result = client._client.infer("classification_dynamic_image", [request_input])
        documents = [json.loads(d) for d in result.as_numpy("prediction").reshape(-1)]
        assert len(documents) == 3 and len({d["id"] for d in documents}) == 3
        for data, document in zip(batch, documents):
            _assert_same(parse_predictions(document), _client_side(client, "classification_dynamic", info, data))


async def test_threshold_and_top_k_request_parameters(server, repository, images):
    with TritonHttpClient(server.url) as client:
        full = _through_ensemble(client, repository, "colour_classifier", images["sample-jpeg"])["predictions"]
        assert len(full) == 6
        top2 = _through_ensemble(client, repository, "colour_classifier", images["sample-jpeg"], {"top_k": 2})
        assert top2["predictions"] == full[:2]
        cut = full[1]["probability"]
        above = _through_ensemble(client, repository, "colour_classifier", images["sample-jpeg"], {"threshold": cut})
        assert above["predictions"] == full[:1]
        boxes = _through_ensemble(client, repository, "detection_compact", images["scene-png"],
                                  {"threshold": 0.0, "top_k": 3})["predictions"]
        assert len(boxes) == 3
        with pytest.raises(ServerError) as caught:
            _through_ensemble(client, repository, "colour_classifier", images["sample-jpeg"], {"threshold": 7})
        assert "HTTP 400" in str(caught.value) and parse_error(str(caught.value))[0] == BAD_PARAMETERS


async def test_plain_model_still_serves_tensors(server, repository, images):
    info = read_model_info(repository / "detection_s1")
    with TritonHttpClient(server.url) as client:
        assert client.is_model_ready("detection_s1")
        assert _client_side(client, "detection_s1", info, images["scene-png"], threshold=0.0)


async def test_load_generator_on_both_paths(server, repository, images):
    info = read_model_info(repository / "classification_dynamic")
    ensemble = find_ensemble(repository, "classification_dynamic")
    tensor_request = infer_request("classification_dynamic", [("data", prepare(images["sample-jpeg"], info))],
                                   ["model_output"])
    image_request = infer_request("classification_dynamic_image", [
        ("image", np.array([images["sample-jpeg"]], dtype=object).reshape(ensemble.request_shape))], ["prediction"])
    spec = LoadSpec(requests=60, concurrency=4)
    tensor = await asyncio.to_thread(run_load, server.url, tensor_request, spec)
    image = await asyncio.to_thread(run_load, server.url, image_request, spec)
    assert (tensor.ok, image.ok) == (60, 60) and not tensor.errors and not image.errors
    assert image.request_bytes * 10 < tensor.request_bytes            # the point of sending the JPEG
    with TritonHttpClient(server.url) as client:
        stats = client.inference_statistics("classification_dynamic_preprocess")["model_stats"][0]
    assert int(stats["inference_stats"]["success"]["count"]) >= 64
    bad = infer_request("classification_dynamic_image", [
        ("image", np.array([b"nope"], dtype=object).reshape(ensemble.request_shape))], ["prediction"])
    report = await asyncio.to_thread(run_load, server.url, bad, LoadSpec(requests=8, concurrency=2, warmup=False))
    assert report.errors == {"400": 8} and BAD_IMAGE in report.first_error


async def test_cancelling_a_load_test_stops_sending(server, repository, images):
    info = read_model_info(repository / "classification")
    request = infer_request("classification", [("data", prepare(images["sample-jpeg"], info))], ["model_output"])
    stop = threading.Event()
    threading.Timer(0.5, stop.set).start()
    report = await asyncio.to_thread(run_load, server.url, request, LoadSpec(requests=100_000, concurrency=2),
                                    stop=stop)
    assert report.stopped == "cancelled" and 0 < report.ok < 100_000
