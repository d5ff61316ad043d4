"""config.pbtxt rendering (checked with Triton's own ModelConfig schema and against the ONNX graph as
onnxruntime sees it) and the atomic, non-clobbering repository writer."""

from __future__ import annotations

import json

import onnxruntime as ort
import pytest

from cvtriton_standins.triton_config import parse_config
from cvtriton_triton.errors import UserError
from cvtriton_triton.model_import import import_model
from cvtriton_triton.model_repository import DEFAULT_MAX_BATCH_SIZE, read_model_info, render_config, write_repository


ONNX_TO_TRITON = {"tensor(float)": "TYPE_FP32", "tensor(float16)": "TYPE_FP16", "tensor(int64)": "TYPE_INT64"}


@pytest.fixture(scope="module")
def imported(sample_models, tmp_path_factory):
    """key -> ImportedModel for every servable sample model."""
    work = tmp_path_factory.mktemp("imports")
    keys = [k for k in sample_models if k not in ("legacy_winml", "non_image")]
    return {key: import_model(sample_models[key], work / key) for key in keys}


def _check_against_graph(config: dict, onnx_path) -> None:
    """What Triton's native onnxruntime backend checks at load: names, types and dims (with the
    batch dimension removed when max_batch_size > 0) agree with the model."""
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    batched = config["max_batch_size"] > 0
    for declared, actual in ((config["input"], session.get_inputs()), (config["output"], session.get_outputs())):
        assert [t["name"] for t in declared] == [a.name for a in actual]
        for tensor, value in zip(declared, actual):
            assert tensor["data_type"] == ONNX_TO_TRITON[value.type]
            shape = [d if isinstance(d, int) else -1 for d in value.shape]
            if batched:
                assert shape[0] == -1
                shape = shape[1:]
            assert tensor["dims"] == shape


@pytest.mark.parametrize("key", ["classification", "classification_fp16", "classification_zipmap",
                                 "colour_classifier", "detection_s1", "detection_compact"])
def test_fixed_batch_models_get_max_batch_size_0_and_full_dims(imported, key):
    model = imported[key]
    config = parse_config(render_config(model.info, "m"))
    assert config["name"] == "m" and config["platform"] == "onnxruntime_onnx"
    assert config["max_batch_size"] == 0
    assert "dynamic_batching" not in config and "instance_group" not in config
    assert config["input"][0]["dims"][0] == 1
    _check_against_graph(config, model.onnx_path)


def test_free_batch_models_get_batching_and_dims_without_the_batch(imported):
    model = imported["classification_dynamic"]
    text = render_config(model.info, "dyn")
    config = parse_config(text)
    assert config["max_batch_size"] == DEFAULT_MAX_BATCH_SIZE
    assert config["input"][0]["dims"] == [3, 224, 224]
    assert config["output"][0]["dims"] == [3]
    assert "dynamic_batching" in config and "dynamic_batching { }" in text
    _check_against_graph(config, model.onnx_path)
    assert parse_config(render_config(model.info, "dyn", max_batch_size=32))["max_batch_size"] == 32
    unbatched = parse_config(render_config(model.info, "dyn", max_batch_size=0))
    assert unbatched["input"][0]["dims"] == [-1, 3, 224, 224] and "dynamic_batching" not in unbatched
    _check_against_graph(unbatched, model.onnx_path)


def test_classification_scores_carry_the_label_file(imported):
    config = parse_config(render_config(imported["colour_classifier"].info, "colour"))
    assert config["output"][0]["label_filename"] == "labels.txt"
    detection = parse_config(render_config(imported["detection_s1"].info, "od"))
    assert all("label_filename" not in o for o in detection["output"])


@pytest.mark.parametrize("kind", ["KIND_GPU", "KIND_CPU"])
def test_instance_kind_only_when_asked(imported, kind):
    config = parse_config(render_config(imported["classification"].info, "m", instance_kind=kind))
    assert config["instance_group"] == [{"count": 1, "kind": kind}]


@pytest.mark.parametrize("kwargs, expected", [
    ({"max_batch_size": 4}, "fixed at 1"), ({"max_batch_size": -1}, ">= 0"),
    ({"instance_kind": "KIND_TPU"}, "instance kind"),
])
def test_bad_render_options_are_user_errors(imported, kwargs, expected):
    with pytest.raises(UserError, match=expected):
        render_config(imported["classification"].info, "m", **kwargs)


@pytest.mark.parametrize("name", ["", "../up", "has space", "a/b", ".hidden", 'q"uote'])
def test_bad_model_names_are_refused(imported, name):
    with pytest.raises(UserError, match="model name"):
        render_config(imported["classification"].info, name)


def test_parse_config_rejects_what_triton_would(imported):
    with pytest.raises(UserError, match="not a valid Triton model config"):
        parse_config('name: "m"\nplatfrom: "onnxruntime_onnx"\n')


def test_unimported_zipmap_info_cannot_be_rendered(sample_models):
    from cvtriton_triton.onnx_inspect import inspect_onnx

    with pytest.raises(UserError, match="import the model first"):
        render_config(inspect_onnx(sample_models["classification_zipmap"]), "m")


def test_write_repository_layout_and_sidecar(imported, tmp_path, listing):
    model = imported["colour_classifier"]
    target = write_repository(model, tmp_path / "repo", "colour")
    assert target == tmp_path / "repo" / "colour"
    assert listing(tmp_path / "repo") == ["colour", "colour/1", "colour/1/model.onnx", "colour/config.pbtxt",
                                          "colour/cvtriton.json", "colour/labels.txt"]
    assert listing(tmp_path) == ["repo"] + [f"repo/{p}" for p in listing(tmp_path / "repo")]   # no leftovers
    assert (target / "1" / "model.onnx").read_bytes() == model.onnx_path.read_bytes()
    assert (target / "labels.txt").read_text().splitlines() == list(model.labels)
    config = parse_config((target / "config.pbtxt").read_text())
    _check_against_graph(config, target / "1" / "model.onnx")
    sidecar = json.loads((target / "cvtriton.json").read_text())
    assert sidecar["pixel_format"] == "Bgr8" and sidecar["pixel_range"] == "NominalRange_0_255"
    assert (sidecar["height"], sidecar["width"], sidecar["contract"]) == (224, 224, "classification")
    assert read_model_info(target) == model.info


def test_write_repository_other_version_and_rgb_sidecar(imported, tmp_path):
    target = write_repository(imported["classification_rgb01"], tmp_path / "repo", "rgb", model_version="3")
    assert (target / "3" / "model.onnx").is_file()
    info = read_model_info(target / "cvtriton.json")
    assert (info.channels_bgr, info.range_0_255) == (False, False)
    for version in ("v1", "01", "0", "-1", "1.0"):   # Triton ignores version folders like 01: they would serve nothing
        with pytest.raises(UserError, match="version .* is not usable"):
            write_repository(imported["classification_rgb01"], tmp_path / "repo", "rgb", model_version=version)


NAMES = ["colours", "my.model", "_x", "a-b_c.1", "x" * 255, "x" * 256, "", "has space", ".hidden", "-flag", "a/b",
         "Ünï", "a%b", "x:y"]
VERSIONS = ["1", "7", "123456789012345678", "1234567890123456789", "01", "0", "v1", "1.0"]


@pytest.mark.parametrize("name", NAMES)
def test_settings_accept_exactly_the_model_names_the_writer_accepts(imported, name):
    from cvtriton_core.settings import Settings

    accepted_by_settings = not Settings({"MODEL_NAME": name}).problems("local", ["MODEL_NAME"]) if name else False
    try:
        render_config(imported["classification"].info, name)
        accepted_by_writer = True
    except UserError:
        accepted_by_writer = False
    assert accepted_by_settings == accepted_by_writer


@pytest.mark.parametrize("version", VERSIONS)
def test_settings_accept_exactly_the_versions_the_writer_accepts(imported, version, tmp_path):
    from cvtriton_core.settings import Settings

    accepted_by_settings = not Settings({"MODEL_VERSION": version}).problems("local", ["MODEL_VERSION"])
    try:
        write_repository(imported["classification"], tmp_path / "repo", "m", model_version=version)
        accepted_by_writer = True
    except UserError:
        accepted_by_writer = False
    assert accepted_by_settings == accepted_by_writer


def test_rewriting_the_same_model_is_a_no_op(imported, tmp_path):
    target = write_repository(imported["detection_s1"], tmp_path / "repo", "od")
    stamp = (target / "config.pbtxt").stat().st_mtime_ns
    assert write_repository(imported["detection_s1"], tmp_path / "repo", "od") == target
    assert (target / "config.pbtxt").stat().st_mtime_ns == stamp


def test_a_different_model_is_not_overwritten_silently(imported, tmp_path, listing):
    target = write_repository(imported["detection_s1"], tmp_path / "repo", "m")
    before = {p: (target.parent / p).read_bytes() for p in listing(tmp_path / "repo") if (target.parent / p).is_file()}
    with pytest.raises(UserError, match="already exists"):
        write_repository(imported["colour_classifier"], tmp_path / "repo", "m")
    after = {p: (target.parent / p).read_bytes() for p in listing(tmp_path / "repo") if (target.parent / p).is_file()}
    assert after == before


def test_replace_swaps_in_the_new_model_cleanly(imported, tmp_path, listing):
    write_repository(imported["detection_s1"], tmp_path / "repo", "m", model_version="2")
    target = write_repository(imported["colour_classifier"], tmp_path / "repo", "m", replace=True)
    assert read_model_info(target).labels == imported["colour_classifier"].labels
    assert not (target / "2").exists() and (target / "1" / "model.onnx").is_file()
    assert [p for p in listing(tmp_path) if p.startswith(".")] == []


def test_a_different_config_for_the_same_model_also_needs_replace(imported, tmp_path):
    model = imported["classification_dynamic"]
    write_repository(model, tmp_path / "repo", "dyn")
    with pytest.raises(UserError, match="already exists"):
        write_repository(model, tmp_path / "repo", "dyn", max_batch_size=16)
    target = write_repository(model, tmp_path / "repo", "dyn", max_batch_size=16, replace=True)
    assert parse_config((target / "config.pbtxt").read_text())["max_batch_size"] == 16
