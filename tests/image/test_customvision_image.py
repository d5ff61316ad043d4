"""The Custom Vision route in a real container built FROM the stand-in Triton base (which, like the official
image, has no Pillow: the build installs it from IMAGE_PIP_WHEELS with no network): the real Custom
Vision prediction SDK pointed at the container's port, for a classifier and a detector; the service's error
codes; Triton's /v2 on the same port; the test step's third answer; SIGTERM stops the container cleanly
and a crashed front takes the container down."""

from __future__ import annotations

import io
import json
import time
import uuid
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest
from PIL import Image

from azure.cognitiveservices.vision.customvision.prediction import CustomVisionPredictionClient
from azure.cognitiveservices.vision.customvision.prediction.models import CustomVisionErrorException
from msrest.authentication import ApiKeyCredentials

from cvtriton_core.events import LogLine
from cvtriton_core.steps import local_target   # (TestModel imported by name would be collected by pytest)
from cvtriton_core.steps.image_steps import CONTAINER_LABEL, WORKDIR_LABEL, BuildImage, PackageImage, RunImage
from cvtriton_triton.image_context import CUSTOMVISION_PORT, HTTP_PORT, pillow_version
from cvtriton_triton.infer_client import TritonHttpClient
from cvtriton_triton.model_repository import read_model_info
from cvtriton_triton.postprocess import predictions
from cvtriton_triton.preprocess import prepare
from cvtriton_triton.sample_models import build_classifier, build_detector

PROJECT = "0f1e2d3c-4b5a-4968-8776-a5b4c3d2e1f0"
ITERATION = "aaaaaaaa-1111-4222-8333-444444444444"
PUBLISHED = {"classification": "shapes-prod", "detection": "shelf v2"}
MODELS = {"classification": lambda path: build_classifier("float_dynamic", path),
          "detection": lambda path: build_detector("compact", path)}
KEY = "container-prediction-key-0123456789"


def scene(width: int = 320, height: int = 240, seed: int = 3) -> bytes:
    rng = np.random.default_rng(seed)
    pixels = np.empty((height, width, 3), np.float64)
    pixels[:] = rng.integers(40, 215, 3)
    pixels[height // 4: height // 2, width // 5: width // 2] = rng.integers(0, 255, 3)
    pixels += rng.normal(0, 6, pixels.shape)
    buffer = io.BytesIO()
    Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB").save(buffer, format="JPEG", quality=92)
    return buffer.getvalue()


class Probe:
    """A pipeline step that runs ``probe(ctx)`` in a thread while the container of ``run-local`` is up (not named
    ``check``: that is the preflight hook every step may have)."""

    title = "probe the running container"

    def __init__(self, probe: Callable[[Any], Any], name: str = "probe") -> None:
        self.probe = probe
        self.name = name

    async def run(self, ctx: Any) -> Any:
        return await ctx.blocking(self.probe, ctx)


async def exported_workspace(kind: str, tmp_path: Path, workspace, standin_base: str):
    """A model that is a Custom Vision export of a known iteration (cvexport.manifest), with the project and
    published name in the settings: the ensemble answers with those ids."""
    model = MODELS[kind](tmp_path / f"export-{kind}" / "model.onnx")
    (model.parent / "cvexport.manifest").write_text(json.dumps({"IterationId": ITERATION, "DomainType": kind}))
    return await workspace(model.parent, standin_base, key=f"cv{kind[:3]}", VISION_PROJECT_ID=PROJECT,
                           VISION_ITERATION_ID=ITERATION, VISION_PUBLISH_ITERATION_NAME=PUBLISHED[kind])


def expected(work, image: bytes) -> list:
    model_dir = work.workdir / "model_repository" / work.model_name
    info = read_model_info(model_dir)
    import onnxruntime as ort

    session = ort.InferenceSession(str(model_dir / "1" / "model.onnx"), providers=["CPUExecutionProvider"])
    names = [o.name for o in info.outputs]
    return predictions(dict(zip(names, session.run(names, {info.input.name: prepare(image, info)}))), info)


def same(served, wanted) -> None:
    assert [p.tag_name for p in served] == [p.label for p in wanted]
    np.testing.assert_allclose([p.probability for p in served], [p.probability for p in wanted], atol=1e-4)
    for p, q in zip(served, wanted):
        assert (p.bounding_box is None) == (q.box is None)
        if q.box is not None:
            np.testing.assert_allclose([p.bounding_box.left, p.bounding_box.top, p.bounding_box.width,
                                        p.bounding_box.height], [q.box.left, q.box.top, q.box.width, q.box.height],
                                       atol=1e-4)


def python_in(docker_api, image: str, code: str) -> int:
    """Exit status of ``python3 -c code`` in a throw-away container of ``image``."""
    container = docker_api.create_container(image, ["python3", "-c", code], labels={CONTAINER_LABEL: "probe"})
    try:
        docker_api.start(container)
        return docker_api.wait(container, timeout=60)["StatusCode"]
    finally:
        docker_api.remove_container(container, force=True)


def sdk(url: str) -> CustomVisionPredictionClient:
    return CustomVisionPredictionClient(f"http://{url}", ApiKeyCredentials(in_headers={"Prediction-key": KEY}))


def error_of(call, *args) -> CustomVisionErrorException:
    with pytest.raises(CustomVisionErrorException) as caught:
        call(*args)
    return caught.value


@pytest.mark.parametrize("kind", list(MODELS))
async def test_sdk_against_the_container(kind, tmp_path, standin_base, workspace, kit, docker_api):
    work = await exported_workspace(kind, tmp_path, workspace, standin_base)
    events = await kit.collect([PackageImage(), BuildImage()], work.run())
    assert not kit.failures(events), [e.message for e in kit.failures(events)]
    build = kit.result_of(events, "build")
    # Pillow comes from the wheel in the context (the build has no network), into an image whose base has none
    pillow_step = next(s for s in build.steps if s.instruction.startswith("RUN sh /opt/cvtriton/pillow/"))
    build_lines = [e.line for e in events if isinstance(e, LogLine) and e.step == "build"]
    assert pillow_step.cached or f"Pillow {pillow_version()} installed for Python 3.11.2" in build_lines
    assert python_in(docker_api, standin_base, "import PIL") != 0
    assert python_in(docker_api, build.image_id, "import PIL; assert PIL.__version__ == %r" % pillow_version()) == 0
    config = docker_api.inspect_image(build.image_id)["Config"]
    assert f"{CUSTOMVISION_PORT}/tcp" in config["ExposedPorts"]
    assert config["Labels"]["io.cvtriton.scoring.port"] == str(CUSTOMVISION_PORT)
    task = "classify" if kind == "classification" else "detect"
    image, logs = scene(seed=11), []

    def check(ctx) -> dict:
        url = ctx.run.shared["customvision_url"]
        client = sdk(url)
        call = client.classify_image if task == "classify" else client.detect_image
        no_store = client.classify_image_with_no_store if task == "classify" else client.detect_image_with_no_store
        for method in (call, no_store):
            result = method(PROJECT, PUBLISHED[kind], image)
            assert result.project == PROJECT and result.iteration == ITERATION
            uuid.UUID(result.id)
            same(result.predictions, expected(work, image))
        # the service's errors, as the SDK raises them
        other = client.detect_image if task == "classify" else client.classify_image
        for args, status, code in [
            ((call, PROJECT, PUBLISHED[kind], b"GIF89a but not really"), 400, "BadRequestImageFormat"),
            ((call, PROJECT, PUBLISHED[kind], b"\0" * (4 * 1024 * 1024 + 1)), 400, "BadRequestImageSizeBytes"),
            ((call, str(uuid.uuid4()), PUBLISHED[kind], image), 404, "NotFoundProject"),
            ((call, PROJECT, "Iteration1", image), 404, "NotFoundIteration"),
            ((other, PROJECT, PUBLISHED[kind], image), 400, "BadRequest"),
        ]:
            error = error_of(*args)
            assert (error.response.status_code, error.error.code) == (status, code), error.response.text
        # Triton's own API on the same port: tensor clients keep working through it
        info = read_model_info(work.workdir / "model_repository" / work.model_name)
        with TritonHttpClient(url) as triton:
            assert triton.is_server_ready() and triton.is_model_ready(work.model_name)
            assert triton.is_model_ready(f"{work.model_name}_image")
            outputs = triton.infer(work.model_name, info.input.name, prepare(image, info),
                                   [o.name for o in info.outputs])
        served = predictions(outputs, info)
        assert [p.label for p in served] == [p.label for p in expected(work, image)]
        return {"url": url}

    events = await kit.collect([RunImage(), Probe(check)], work.run())
    assert not kit.failures(events), [e.message for e in kit.failures(events)]
    started = kit.result_of(events, "run-local")
    assert started.customvision_url and started.ports[CUSTOMVISION_PORT] != started.ports[HTTP_PORT]
    container_log = "\n".join(e.line for e in events if isinstance(e, LogLine) and e.source == "container")
    assert "customvision-front: listening on 0.0.0.0:8080" in container_log
    assert KEY not in container_log
    assert not docker_api.containers(all=True, filters={"label": f"{WORKDIR_LABEL}={work.workdir}"})


async def test_the_test_step_answers_three_ways(tmp_path, standin_base, workspace, kit):
    work = await exported_workspace("classification", tmp_path, workspace, standin_base)
    picture = tmp_path / "test.jpg"
    picture.write_bytes(scene(seed=5))
    events = await kit.collect([PackageImage(), BuildImage(), RunImage(), local_target.TestModel(picture, requests=2)],
                               work.run())
    assert not kit.failures(events), [e.message for e in kit.failures(events)]
    tested = kit.result_of(events, "test")
    assert [a.path for a in tested.answers] == ["tensor", "image", "customvision"]
    assert not tested.disagreements
    routed = tested.answers[2]
    assert routed.response["project"] == PROJECT and routed.response["iteration"] == ITERATION
    assert routed.request_bytes == len(picture.read_bytes())
    assert tested.to_json()["answers"][2]["path"] == "customvision"


async def test_sigterm_stops_both_and_a_dead_front_stops_the_container(tmp_path, standin_base, workspace, kit,
                                                                       docker_api):
    work = await exported_workspace("classification", tmp_path, workspace, standin_base)
    assert not kit.failures(await kit.collect([PackageImage(), BuildImage()], work.run()))

    def stop_cleanly(ctx) -> None:
        container = ctx.run.shared["container_id"]
        start = time.monotonic()
        docker_api.stop(container, timeout=60)          # SIGTERM; SIGKILL only after 60 s
        took = time.monotonic() - start
        state = docker_api.inspect_container(container)["State"]
        assert state["ExitCode"] == 0 and took < 30, (state, took)

    def kill_the_front(ctx) -> None:
        container = ctx.run.shared["container_id"]
        script = ("import os, signal\n"
                  "for pid in filter(str.isdigit, os.listdir('/proc')):\n"
                  "    try:\n"
                  "        cmd = open(f'/proc/{pid}/cmdline', 'rb').read()\n"
                  "    except OSError:\n"
                  "        continue\n"
                  "    if b'customvision_front.py' in cmd and b'image_supervisor' not in cmd:\n"
                  "        os.kill(int(pid), signal.SIGKILL)\n")
        exec_id = docker_api.exec_create(container, ["python3", "-c", script])["Id"]
        docker_api.exec_start(exec_id)
        deadline = time.monotonic() + 60
        while docker_api.inspect_container(container)["State"]["Running"]:
            assert time.monotonic() < deadline, "the container kept running without its front"
            time.sleep(0.2)
        assert docker_api.inspect_container(container)["State"]["ExitCode"] == 137     # 128 + SIGKILL

    for check in (stop_cleanly, kill_the_front):
        events = await kit.collect([RunImage(), Probe(check)], work.run())
        assert not kit.failures(events), [e.message for e in kit.failures(events)]
        lines = [e.line for e in events if isinstance(e, LogLine) and e.source == "container"]
        if check is kill_the_front:
            assert any("customvision_front.py (pid" in line and "exited with status -9: stopping the others"
                       in line for line in lines), lines[-10:]
    assert not docker_api.containers(all=True, filters={"label": f"{WORKDIR_LABEL}={work.workdir}"})


async def test_without_wheels_pip_goes_through_dockers_proxy_settings(tmp_path, standin_base, workspace, kit,
                                                                       docker_api, monkeypatch):
    """A user behind a proxy configures Docker's client (``~/.docker/config.json`` ``proxies``), as any
    ``docker build`` needs; the build step passes it on and pip in the Pillow layer uses it. Here the
    "proxy" records what it is asked and refuses: the build fails with the Pillow fix, and the proxy saw pip
    asking for the package index."""
    import socketserver
    import threading

    seen: list[bytes] = []

    class Refusing(socketserver.StreamRequestHandler):
        def handle(self) -> None:
            seen.append(self.rfile.readline(4096))
            self.wfile.write(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")

    proxy = socketserver.ThreadingTCPServer(("0.0.0.0", 0), Refusing)
    proxy.daemon_threads = True
    threading.Thread(target=proxy.serve_forever, daemon=True).start()
    try:
        gateway = container_gateway(docker_api, standin_base)
        config = tmp_path / "docker-config"
        config.mkdir()
        address = f"http://{gateway}:{proxy.server_address[1]}"
        (config / "config.json").write_text(json.dumps({"proxies": {"default": {"httpProxy": address,
                                                                              "httpsProxy": address}}}))
        monkeypatch.setenv("DOCKER_CONFIG", str(config))
        work = await exported_workspace("classification", tmp_path, workspace, standin_base)
        events = await kit.collect([PackageImage(), BuildImage()], work.run(IMAGE_PIP_WHEELS=""))
        failed = kit.failures(events)
        assert len(failed) == 1 and "cvtriton: cannot install pillow==" in failed[0].message, failed
        assert any(line.startswith(b"CONNECT pypi.org:443 ") for line in seen), seen
    finally:
        proxy.shutdown()
        proxy.server_close()


def container_gateway(docker_api, image: str) -> str:
    """The address a container on the default bridge reaches this machine at (its default route)."""
    code = ("import socket, struct\n"
            "for line in open('/proc/net/route').read().splitlines()[1:]:\n"
            "    f = line.split()\n"
            "    if f[1] == '00000000':\n"
            "        print(socket.inet_ntoa(struct.pack('<L', int(f[2], 16))))\n")
    container = docker_api.create_container(image, ["python3", "-c", code], labels={CONTAINER_LABEL: "probe"})
    try:
        docker_api.start(container)
        docker_api.wait(container, timeout=60)
        return docker_api.logs(container).decode().split()[0]
    finally:
        docker_api.remove_container(container, force=True)
