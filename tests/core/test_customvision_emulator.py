"""The emulator speaks the wire format the real SDK expects: these drive it with the SDK itself, raw."""

from __future__ import annotations

import io
import subprocess
import sys
import time
import urllib.request
import zipfile

import numpy as np
import onnxruntime as ort
import pytest
from azure.cognitiveservices.vision.customvision.training import CustomVisionTrainingClient
from azure.cognitiveservices.vision.customvision.training.models import (CustomVisionErrorException,
                                                                         ImageFileCreateBatch, ImageFileCreateEntry,
                                                                         Region)
from msrest.authentication import ApiKeyCredentials

from .conftest import CV_KEY, PREDICTION_RESOURCE, write_image

COMPACT = "0732100f-1a38-4e49-a514-c9b44c697ab5"


def client(url: str, key: str = CV_KEY) -> CustomVisionTrainingClient:
    return CustomVisionTrainingClient(url, ApiKeyCredentials(in_headers={"Training-key": key}))


def jpeg(i: int, tmp_path) -> bytes:
    return write_image(tmp_path / f"{i}.jpg", ((i * 3) % 256, (i * 7) % 256, 30)).read_bytes()


def test_wrong_key_gives_401_body_the_sdk_cannot_parse(cv_emulator):
    with pytest.raises(CustomVisionErrorException) as err:
        client(cv_emulator.url, "f" * 32).get_projects()
    assert err.value.response.status_code == 401
    assert str(err.value) == "Operation returned an invalid status code 'Access Denied'"
    assert err.value.error.code is None


def test_unknown_project_is_404_with_service_code(cv_emulator):
    with pytest.raises(CustomVisionErrorException) as err:
        client(cv_emulator.url).get_project("00000000-0000-0000-0000-000000000000")
    assert err.value.response.status_code == 404 and err.value.error.code == "NotFoundProject"


def test_upload_limits_duplicates_and_training_rules(cv_emulator, tmp_path):
    c = client(cv_emulator.url)
    project = c.create_project("wire", domain_id=COMPACT)
    red, blue = c.create_tag(project.id, "red"), c.create_tag(project.id, "blue")
    too_many = [ImageFileCreateEntry(name=f"{i}.jpg", contents=jpeg(i, tmp_path), tag_ids=[red.id]) for i in range(65)]
    with pytest.raises(CustomVisionErrorException) as err:
        c.create_images_from_files(project.id, ImageFileCreateBatch(images=too_many))
    assert err.value.response.status_code == 400 and err.value.error.code == "BadRequestImageBatch"

    first = c.create_images_from_files(project.id, ImageFileCreateBatch(images=too_many[:5]))
    assert first.is_batch_successful and {i.status for i in first.images} == {"OK"}
    again = c.create_images_from_files(project.id, ImageFileCreateBatch(images=too_many[:2] + [
        ImageFileCreateEntry(name="bad.jpg", contents=b"not an image", tag_ids=[blue.id])]))
    assert again.is_batch_successful is False
    assert [i.status for i in again.images] == ["OKDuplicate", "OKDuplicate", "ErrorImageFormat"]
    assert again.images[0].image.id == first.images[0].image.id
    assert cv_emulator.counters["images_created"] == 5

    c.create_images_from_files(project.id, ImageFileCreateBatch(images=[
        ImageFileCreateEntry(name=f"b{i}.jpg", contents=jpeg(100 + i, tmp_path), tag_ids=[blue.id]) for i in range(3)]))
    with pytest.raises(CustomVisionErrorException) as err:
        c.train_project(project.id)
    assert err.value.error.code == "BadRequestClassificationTrainingValidationFailed"
    assert "at least 5 images" in err.value.error.message and "blue" in err.value.error.message


def test_training_export_states_and_real_zip(cv_emulator, tmp_path):
    project_id = cv_emulator.add_project("seeded", trained=False, tags=("apple", "pear"), images_per_tag=5)
    c = client(cv_emulator.url)
    iteration = c.train_project(project_id)
    assert iteration.status == "Training" and iteration.trained_at is None
    time.sleep(0.1)
    iteration = c.get_iteration(project_id, iteration.id)
    assert iteration.status == "Completed" and iteration.exportable and "ONNX" in iteration.exportable_to
    with pytest.raises(CustomVisionErrorException) as err:
        c.train_project(project_id)
    assert err.value.error.code == "BadRequestTrainingNotNeeded"

    export = c.export_iteration(project_id, iteration.id, "ONNX", "ONNX12")
    assert export.status == "Exporting" and export.download_uri == ""
    with pytest.raises(CustomVisionErrorException) as err:
        c.export_iteration(project_id, iteration.id, "ONNX", "ONNX12")
    assert err.value.error.code == "BadRequestExportAlreadyInProgress" and "already queued" in str(err.value)
    time.sleep(0.1)
    (done,) = c.get_exports(project_id, iteration.id)
    assert done.status == "Done" and done.flavor == "ONNX12" and "sig=" in done.download_uri
    data = urllib.request.urlopen(done.download_uri).read()
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        assert archive.read("labels.txt").decode().split() == ["apple", "pear"]
        session = ort.InferenceSession(archive.read("model.onnx"), providers=["CPUExecutionProvider"])
    inp = session.get_inputs()[0]
    out = session.run(None, {inp.name: np.zeros([d if isinstance(d, int) else 1 for d in inp.shape], np.float32)})
    assert out[0].shape[-1] == 2


def test_non_exportable_domain_and_publish_rules(cv_emulator):
    project_id = cv_emulator.add_project("general", exportable=False)
    c = client(cv_emulator.url)
    (iteration,) = c.get_iterations(project_id)
    assert iteration.exportable is False
    with pytest.raises(CustomVisionErrorException) as err:
        c.export_iteration(project_id, iteration.id, "ONNX")
    assert err.value.response.status_code == 400 and "not exportable" in str(err.value)
    with pytest.raises(Exception, match="prediction_id"):
        c.publish_iteration(project_id, iteration.id, "p", None)      # the SDK refuses before sending
    with pytest.raises(CustomVisionErrorException) as err:
        c.publish_iteration(project_id, iteration.id, "p", "/not/a/resource")
    assert err.value.error.code == "BadRequestInvalidPublishTarget"
    assert c.publish_iteration(project_id, iteration.id, "p", PREDICTION_RESOURCE) is True
    assert c.get_iteration(project_id, iteration.id).publish_name == "p"


def test_429_has_retry_after_posts_raise_gets_are_retried_by_the_sdk(cv_emulator):
    c = client(cv_emulator.url)
    cv_emulator.inject_429(1, retry_after=0, ops=("create_project",))
    with pytest.raises(CustomVisionErrorException) as err:
        c.create_project("limited")
    assert err.value.response.status_code == 429 and err.value.response.headers["Retry-After"] == "0"
    cv_emulator.inject_429(1, retry_after=0, ops=("get_projects",))
    assert c.get_projects() == []                                        # urllib3 honoured Retry-After
    assert cv_emulator.counters["get_projects"] == 2


def test_lost_response_fault_does_the_work(cv_emulator):
    c = client(cv_emulator.url)
    cv_emulator.inject_error(503, ops=("create_project",), after=True)
    with pytest.raises(CustomVisionErrorException) as err:
        c.create_project("ghost")
    assert err.value.response.status_code == 503
    assert [p.name for p in c.get_projects()] == ["ghost"]


def test_detection_regions_round_trip(cv_emulator, tmp_path):
    c = client(cv_emulator.url)
    project = c.create_project("od", domain_id="a27d5ca5-bb19-49d8-a70a-fec086c47f5b")
    assert project.settings.classification_type is None
    can = c.create_tag(project.id, "can")
    result = c.create_images_from_files(project.id, ImageFileCreateBatch(images=[ImageFileCreateEntry(
        name="a.jpg", contents=jpeg(1, tmp_path), regions=[Region(tag_id=can.id, left=0.1, top=0.2, width=0.3,
                                                                  height=0.4)])]))
    (image,) = result.images
    assert image.status == "OK" and image.image.regions[0].tag_name == "can"
    assert image.image.regions[0].width == pytest.approx(0.3)


def test_runs_at_a_shell():
    proc = subprocess.Popen([sys.executable, "-m", "cvtriton_standins.customvision_emulator", "--port", "0", "--key",
                             CV_KEY, "--seed", "demo"], stdout=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        url = line.split(" at ", 1)[1].split()[0]
        projects = client(url).get_projects()
        assert [p.name for p in projects] == ["demo"]
    finally:
        proc.terminate()
        proc.wait(timeout=10)
