"""The image ensemble's repository entries, its steps' code run in-process, and the Custom Vision JSON
(parsed with the real prediction SDK's models). The same code through the real Triton is in
tests/integration/test_ensemble.py."""

from __future__ import annotations

import ast
import io
import json
import sys
import uuid
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cvtriton_triton import ensemble as ens
from cvtriton_triton.cv_response import GENERATED_NAMESPACE, SourceIds, image_prediction, parse_predictions, source_ids
from cvtriton_triton.ensemble_runtime import (BAD_IMAGE, BAD_PARAMETERS, BadRequest, load_ids, load_info, parse_error,
                                              postprocess, preprocess, request_options)
from cvtriton_triton.errors import UserError
from cvtriton_triton.model_import import import_model
from cvtriton_standins.triton_config import parse_config
from cvtriton_triton.model_repository import read_model_info, write_repository
from cvtriton_triton.postprocess import predictions
from cvtriton_triton.preprocess import prepare

CONTRACTS = ["classification", "classification_dynamic", "classification_zipmap", "classification_fp16",
             "classification_rgb01", "detection_s1", "detection_compact"]


@pytest.fixture(scope="module")
def repository(tmp_path_factory):
    from cvtriton_triton.sample_models import build_all_contracts

    models = build_all_contracts(tmp_path_factory.mktemp("models"))
    repo = tmp_path_factory.mktemp("repo") / "models"
    for key in CONTRACTS:
        imported = import_model(models[key].parent, tmp_path_factory.mktemp(f"import-{key}"))
        write_repository(imported, repo, key)
        ens.write_ensemble(repo, key)
    return repo


def _picture(width=320, height=240, seed=0, fmt="JPEG", **save) -> bytes:
    rng = np.random.default_rng(seed)
    pixels = np.zeros((height, width, 3), np.uint8)
    pixels[:] = rng.integers(0, 255, 3)
    pixels[height // 4: height // 2, width // 3: width // 2] = rng.integers(0, 255, 3)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format=fmt, **save)
    return buffer.getvalue()


# ---------------------------------------------------------------- the entries written

@pytest.mark.parametrize("key", CONTRACTS)
def test_configs_parse_with_tritons_schema_and_wire_the_model(repository, key):
    info = read_model_info(repository / key)
    names = ens.ensemble_names(key)
    model_mbs = parse_config((repository / key / "config.pbtxt").read_text())["max_batch_size"]
    pre = parse_config((repository / names.preprocess / "config.pbtxt").read_text())
    post = parse_config((repository / names.postprocess / "config.pbtxt").read_text())
    top = parse_config((repository / names.ensemble / "config.pbtxt").read_text())
    assert pre["backend"] == post["backend"] == "python" and top["platform"] == "ensemble"
    assert pre["max_batch_size"] == post["max_batch_size"] == top["max_batch_size"] == model_mbs
    assert ("dynamic_batching" in pre) == ("dynamic_batching" in post) == (model_mbs > 0)
    assert pre["input"] == top["input"] == [{"name": "image", "data_type": "TYPE_STRING", "dims": [1]}]
    assert post["output"] == top["output"] == [{"name": "prediction", "data_type": "TYPE_STRING", "dims": [1]}]
    assert pre["output"][0]["dims"] == list(info.input.shape[1:] if model_mbs else info.input.shape)
    assert pre["instance_group"][0]["kind"] == "KIND_CPU"
    steps = top["ensemble_scheduling"]["step"]
    assert [s["model_name"] for s in steps] == [names.preprocess, key, names.postprocess]
    assert steps[1]["input_map"] == {info.input.name: "preprocessed"}
    assert set(steps[1]["output_map"]) == {o.name for o in info.outputs} == {i["name"] for i in post["input"]}
    assert (repository / names.ensemble / "1").is_dir()


def test_steps_carry_the_package_modules_byte_for_byte(repository):
    names = ens.ensemble_names("classification")
    for step in (names.preprocess, names.postprocess):
        copied = repository / step / "1" / ens.RUNTIME_PACKAGE
        for module in ens.RUNTIME_MODULES:
            assert (copied / Path(module.__file__).name).read_bytes() == Path(module.__file__).read_bytes()
        assert (repository / step / "1" / "cvtriton.json").read_bytes() == \
            (repository / "classification" / "cvtriton.json").read_bytes()


def test_copied_modules_need_only_stdlib_numpy_and_pillow():
    """The official image's python has numpy (+ Pillow once installed): a copied module importing anything
    else (an absolute cvtriton import, onnx, tritonclient...) at load time would fail there."""
    allowed = set(sys.stdlib_module_names) | {"numpy", "PIL"}
    for module in ens.RUNTIME_MODULES:
        tree = ast.parse(Path(module.__file__).read_text())
        for node in tree.body:           # top level only: function-level imports run on demand
            if isinstance(node, ast.Import):
                roots = [alias.name.split(".")[0] for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                roots = [] if node.level else [node.module.split(".")[0]]
            else:
                continue
            assert set(roots) <= allowed, f"{module.__name__} imports {roots}"


def test_writing_again_is_a_no_op_and_a_change_rewrites(repository, tmp_path):
    names = ens.ensemble_names("classification")
    config = repository / names.preprocess / "config.pbtxt"
    before = config.stat().st_mtime_ns
    ens.write_ensemble(repository, "classification")
    assert config.stat().st_mtime_ns == before
    ens.write_ensemble(repository, "classification", preprocess_instances=3)
    assert "count: 3" in config.read_text()
    ens.write_ensemble(repository, "classification")
    assert "count: 2" in config.read_text()
    assert not [p for p in repository.parent.iterdir() if p.name.startswith(".")], "staging left behind"


def test_remove_takes_only_what_cvtriton_wrote(repository, tmp_path):
    import shutil

    repo = tmp_path / "repo"
    shutil.copytree(repository, repo)
    names = ens.ensemble_names("detection_s1")
    assert ens.remove_ensemble(repo, "detection_s1") == [names.ensemble, names.postprocess, names.preprocess]
    assert not any((repo / n).exists() for n in names.entries) and (repo / "detection_s1").is_dir()
    assert ens.remove_ensemble(repo, "detection_s1") == []
    (repo / names.ensemble).mkdir()
    (repo / names.ensemble / "config.pbtxt").write_text('name: "detection_s1_image"\n')
    assert ens.remove_ensemble(repo, "detection_s1") == []           # someone else's model: kept
    with pytest.raises(UserError, match="did not write"):
        ens.write_ensemble(repo, "detection_s1")


def test_names_and_instances_are_checked():
    with pytest.raises(UserError, match="too long"):
        ens.ensemble_names("m" * 95)
    with pytest.raises(UserError, match="not a usable model name"):
        ens.ensemble_names("bad name")
    with pytest.raises(UserError, match="instance count"):
        ens._instances(0, "preprocess")


def test_find_ensemble_reads_back_ids_and_shape(repository):
    found = ens.find_ensemble(repository, "classification_dynamic")
    assert found.max_batch_size == 8 and found.request_shape == [1, 1] and found.task == "classify"
    assert ens.find_ensemble(repository, "detection_compact").request_shape == [1]
    assert ens.find_ensemble(repository, "detection_compact").task == "detect"
    assert ens.find_ensemble(repository.parent, "classification") is None


def test_export_manifest_from_zip_and_folder(tmp_path):
    manifest = {"IterationId": "2f3c9a3e-6f7b-4a4e-9d1e-5b8c0e7d6a21", "DomainType": "Classification"}
    path = tmp_path / "export.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("cvexport.manifest", json.dumps(manifest))
        archive.writestr("model.onnx", b"x")
    assert ens.read_export_manifest(path) == manifest
    (tmp_path / "folder").mkdir()
    (tmp_path / "folder" / "cvexport.manifest").write_text(json.dumps(manifest))
    assert ens.read_export_manifest(tmp_path / "folder") == manifest
    assert ens.read_export_manifest(tmp_path / "folder" / "model.onnx") == manifest
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "cvexport.manifest").write_text("{not json")
    assert ens.read_export_manifest(tmp_path / "bad") == {}
    assert ens.read_export_manifest(tmp_path / "missing") == {}


# ------------------------------------------------------------- the steps' code in-process

def _step_folder(repository, key, step):
    names = ens.ensemble_names(key)
    return repository / getattr(names, step) / "1"


@pytest.mark.parametrize("key", CONTRACTS)
def test_steps_answer_as_the_client_side_path(repository, key):
    """preprocess -> model (onnxruntime) -> postprocess equals prepare -> model -> predictions."""
    import onnxruntime as ort

    info = load_info(_step_folder(repository, key, "preprocess"))
    ids = load_ids(_step_folder(repository, key, "postprocess"))
    batched = ens.find_ensemble(repository, key).max_batch_size > 0
    session = ort.InferenceSession(str(repository / key / "1" / "model.onnx"), providers=["CPUExecutionProvider"])
    names = [o.name for o in info.outputs]
    data = _picture(seed=3)
    images = np.array([data], dtype=object).reshape([1, 1] if batched else [1])
    tensor = preprocess(images, info)
    assert tensor.dtype == prepare(data, info).dtype
    np.testing.assert_array_equal(tensor, prepare(data, info))
    outputs = dict(zip(names, session.run(names, {info.input.name: tensor})))
    document = json.loads(postprocess(outputs, info, ids, batched=batched).reshape(-1)[0])
    assert parse_predictions(document) == predictions(outputs, info)


def test_a_batch_of_two_gives_two_documents(repository):
    info = load_info(_step_folder(repository, "classification_dynamic", "preprocess"))
    ids = load_ids(_step_folder(repository, "classification_dynamic", "postprocess"))
    images = np.array([[_picture(seed=1)], [_picture(seed=2, fmt="PNG")]], dtype=object)
    tensor = preprocess(images, info)
    assert tensor.shape == (2, 3, 224, 224)
    scores = {"model_output": np.array([[0.7, 0.2, 0.1], [0.1, 0.3, 0.6]], np.float32)}
    documents = postprocess(scores, info, ids, batched=True)
    assert documents.shape == (2, 1)
    assert [parse_predictions(d[0])[0].label for d in documents] == ["apple", "cherry"]


@pytest.mark.parametrize("data, expected", [
    (b"", "empty"), (b"not an image at all", "not an image"), (_picture()[:200], "could not be decoded"),
])
def test_bad_image_bytes_are_a_coded_bad_request(repository, data, expected):
    info = load_info(_step_folder(repository, "classification", "preprocess"))
    with pytest.raises(BadRequest, match=expected) as caught:
        preprocess(np.array([data], dtype=object), info)
    assert caught.value.code == BAD_IMAGE
    assert parse_error(f"in ensemble 'x_image', {caught.value}") == (BAD_IMAGE, caught.value.message)
    assert parse_error("some other failure") is None


def test_every_supported_format_and_a_4000x3000_photo(repository):
    info = load_info(_step_folder(repository, "detection_s1", "preprocess"))
    for fmt in ("JPEG", "PNG", "BMP", "GIF"):
        data = _picture(fmt=fmt)
        np.testing.assert_array_equal(preprocess(np.array([data], dtype=object), info), prepare(data, info))
    photo = _picture(4000, 3000, quality=90)
    tensor = preprocess(np.array([photo], dtype=object), info)
    assert tensor.shape == (1, 3, 320, 320)
    np.testing.assert_array_equal(tensor, prepare(photo, info))


def test_exif_orientation_is_applied(repository):
    info = load_info(_step_folder(repository, "classification_rgb01", "preprocess"))
    pixels = np.zeros((100, 200, 3), np.uint8)
    pixels[:, :100] = (255, 0, 0)
    image = Image.fromarray(pixels)
    exif = image.getexif()
    exif[0x0112] = 6                    # rotate 90 CW to display
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", exif=exif.tobytes(), quality=95)
    tensor = preprocess(np.array([buffer.getvalue()], dtype=object), info)
    # upright, the red half is on top: rows of the top half are red (channel 0 high, RGB model)
    assert tensor[0, 0, :50].mean() > 0.8 and tensor[0, 0, -50:].mean() < 0.2


@pytest.mark.parametrize("parameters, expected", [
    ('{"threshold": 0.5, "top_k": 3}', (0.5, 3)), ({"threshold": "0.25", "top_k": "2"}, (0.25, 2)),
    ("", (None, None)), ('{"other": 1}', (None, None)), ({"threshold": 0, "top_k": 1.0}, (0.0, 1)),
])
def test_request_options(parameters, expected):
    assert request_options(parameters) == expected


@pytest.mark.parametrize("parameters", [{"threshold": 1.5}, {"threshold": "high"}, {"threshold": True},
                                        {"top_k": 0}, {"top_k": 2.5}, {"top_k": "x"}, {"threshold": "nan"}])
def test_bad_request_options(parameters):
    with pytest.raises(BadRequest) as caught:
        request_options(parameters)
    assert caught.value.code == BAD_PARAMETERS


def test_threshold_and_top_k_filter(repository):
    info = load_info(_step_folder(repository, "classification", "preprocess"))
    ids = load_ids(_step_folder(repository, "classification", "postprocess"))
    scores = {"model_output": np.array([[0.2, 0.5, 0.3]], np.float32)}
    labels = lambda **kw: [p.label for p in parse_predictions(postprocess(scores, info, ids, batched=False, **kw)[0])]  # noqa: E731
    assert labels() == ["banana", "cherry", "apple"]
    assert labels(threshold=0.25) == ["banana", "cherry"]
    assert labels(top_k=1) == ["banana"]


# ---------------------------------------------------------------- Custom Vision JSON

def _sdk_image_prediction(document: dict):
    from msrest import Deserializer

    from azure.cognitiveservices.vision.customvision.prediction import models

    classes = {k: v for k, v in vars(models).items() if isinstance(v, type)}
    return Deserializer(classes)("ImagePrediction", document)


def test_response_parses_with_the_prediction_sdk(repository):
    from cvtriton_triton.model_info import Box, Prediction

    ids = source_ids(("box", "can"), "digest", project="9b2a7c10-3d4e-4f5a-8b6c-7d8e9f0a1b2c",
                     iteration="0c1d2e3f-4a5b-4c6d-8e7f-9a0b1c2d3e4f", tags={"can": "11111111-2222-4333-8444-555555555555"})
    document = image_prediction([Prediction("can", 0.9, Box(0.1, 0.2, 0.3, 0.4)), Prediction("box", 0.5)], ids)
    parsed = _sdk_image_prediction(json.loads(json.dumps(document)))
    assert parsed.project == ids.project and parsed.iteration == ids.iteration
    assert uuid.UUID(parsed.id) and parsed.created.tzinfo is not None
    first, second = parsed.predictions
    assert (first.tag_name, first.tag_id, first.probability) == ("can", "11111111-2222-4333-8444-555555555555", 0.9)
    assert (first.bounding_box.left, first.bounding_box.top, first.bounding_box.width,
            first.bounding_box.height) == (0.1, 0.2, 0.3, 0.4)
    assert second.bounding_box is None and second.tag_id == ids.tag_id("box")
    assert set(document["predictions"][0]) == {"probability", "tagId", "tagName", "boundingBox"}
    assert set(document) == {"id", "project", "iteration", "created", "predictions"}


def test_generated_ids_are_stable_and_given_ones_win():
    a, b = source_ids(("x", "y"), "sha-1"), source_ids(("x", "y"), "sha-1")
    assert a == b and not a.known
    assert a.project == str(uuid.uuid5(GENERATED_NAMESPACE, "project:sha-1"))
    assert source_ids(("x",), "sha-2").project != a.project
    assert len({a.tag_id("x"), a.tag_id("y"), a.project, a.iteration}) == 4
    given = source_ids(("x",), "sha-1", project=str(uuid.UUID(int=1)), iteration=str(uuid.UUID(int=2)))
    assert given.known and given.project == str(uuid.UUID(int=1))
    assert SourceIds.from_dict(given.to_dict()) == given
    with pytest.raises(ValueError):
        source_ids(("x",), "sha", project="not-a-guid", iteration=str(uuid.UUID(int=2)))
