"""inspect_onnx: contract detection, input/metadata reading, and the refusals (one line each)."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

from cvtriton_triton.errors import ModelImportError
from cvtriton_triton.model_info import Contract
from cvtriton_triton.onnx_inspect import inspect_onnx
from cvtriton_triton.sample_models import classifier_model, detector_compact_model


def _one_line(excinfo) -> str:
    message = str(excinfo.value)
    assert "\n" not in message and " — " in message, message
    return message


@pytest.mark.parametrize("key, contract, input_name, shape, dynamic", [
    ("classification", Contract.CLASSIFICATION, "data", (1, 3, 224, 224), False),
    ("classification_dynamic", Contract.CLASSIFICATION, "data", (-1, 3, 224, 224), True),
    ("classification_zipmap", Contract.CLASSIFICATION_ZIPMAP, "data", (1, 3, 224, 224), False),
    ("classification_mixed", Contract.CLASSIFICATION, "data", (1, 3, 224, 224), False),
    ("classification_fp16", Contract.CLASSIFICATION, "data", (1, 3, 224, 224), False),
    ("detection_s1", Contract.DETECTION_S1, "image_tensor", (1, 3, 320, 320), False),
    ("detection_compact", Contract.DETECTION_COMPACT, "data", (1, 3, 416, 416), False),
])
def test_contracts_and_inputs_are_read_from_the_graph(sample_models, key, contract, input_name, shape, dynamic):
    info = inspect_onnx(sample_models[key])
    assert info.contract is contract
    assert (info.input.name, info.input.shape) == (input_name, shape)
    assert (info.height, info.width) == shape[2:]
    assert info.batch_dynamic is dynamic
    assert info.opset == 12
    session = ort.InferenceSession(str(sample_models[key]), providers=["CPUExecutionProvider"])
    assert [o.name for o in info.outputs] == [o.name for o in session.get_outputs()]


def test_fp16_flavour_is_recognised(sample_models):
    info = inspect_onnx(sample_models["classification_fp16"])
    assert info.input_is_fp16 and info.input.dtype == "float16"
    assert info.outputs[0].dtype == "float16"


def test_pixel_metadata_flags(sample_models):
    bgr = inspect_onnx(sample_models["classification"])
    assert (bgr.channels_bgr, bgr.range_0_255) == (True, True)
    assert bgr.metadata["Image.BitmapPixelFormat"] == "Bgr8"
    rgb01 = inspect_onnx(sample_models["classification_rgb01"])
    assert (rgb01.channels_bgr, rgb01.range_0_255) == (False, False)
    s1 = inspect_onnx(sample_models["detection_s1"])
    assert (s1.channels_bgr, s1.range_0_255) == (False, True)


def test_missing_metadata_follows_the_official_sample_and_export_json_fills_in():
    model = classifier_model("float")
    del model.metadata_props[:]
    bare = inspect_onnx(model)
    assert (bare.channels_bgr, bare.range_0_255) == (False, False)      # the sample's defaults
    filled = inspect_onnx(model, extra_metadata={"Image.BitmapPixelFormat": "Bgr8",
                                                 "Image.NominalPixelRange": "NominalRange_0_255"})
    assert (filled.channels_bgr, filled.range_0_255) == (True, True)


def test_model_metadata_wins_over_export_json(sample_models):
    info = inspect_onnx(sample_models["classification_rgb01"],
                        extra_metadata={"Image.BitmapPixelFormat": "Bgr8"})
    assert info.channels_bgr is False


@pytest.mark.parametrize("key, value", [("Image.BitmapPixelFormat", "Gray8"),
                                        ("Image.NominalPixelRange", "Normalized_1_1")])
def test_unsupported_pixel_metadata_is_refused(key, value):
    model = classifier_model("float")
    helper.set_model_props(model, {key: value})
    with pytest.raises(ModelImportError) as excinfo:
        inspect_onnx(model)
    assert value in _one_line(excinfo)


def test_labels_from_zipmap_generated_or_given(sample_models):
    assert inspect_onnx(sample_models["classification_zipmap"]).labels == ("apple", "banana", "cherry")
    assert inspect_onnx(sample_models["classification"]).labels == ("class_0", "class_1", "class_2")
    assert inspect_onnx(sample_models["classification"], ["x", "y", "z"]).labels == ("x", "y", "z")
    assert inspect_onnx(sample_models["detection_compact"]).labels == ("class_0", "class_1")
    assert inspect_onnx(sample_models["detection_s1"]).labels == ()      # S1 does not say how many


@pytest.mark.parametrize("key, labels", [("classification", ["a", "b"]),
                                         ("classification_zipmap", ["a", "b", "c", "d"]),
                                         ("detection_compact", ["a", "b", "c"])])
def test_label_count_must_agree_with_the_graph(sample_models, key, labels):
    with pytest.raises(ModelImportError) as excinfo:
        inspect_onnx(sample_models[key], labels)
    assert f"{len(labels)} labels" in _one_line(excinfo)


def test_legacy_winml_export_is_refused_with_reexport_advice(sample_models):
    with pytest.raises(ModelImportError) as excinfo:
        inspect_onnx(sample_models["legacy_winml"])
    message = _one_line(excinfo)
    assert "opset 1" in message and "re-export" in message
    with pytest.raises(Exception):          # and onnxruntime really refuses it
        ort.InferenceSession(str(sample_models["legacy_winml"]), providers=["CPUExecutionProvider"])


def test_non_image_model_is_refused(sample_models):
    with pytest.raises(ModelImportError) as excinfo:
        inspect_onnx(sample_models["non_image"])
    assert "not an image tensor" in _one_line(excinfo)


def _graph_model(inputs, outputs, nodes):
    graph = helper.make_graph(nodes, "g", inputs, outputs)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 12)], ir_version=7)


def test_unknown_output_layout_is_refused():
    model = _graph_model([helper.make_tensor_value_info("data", TensorProto.FLOAT, [1, 3, 64, 64])],
                         [helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 3, 64, 64])],
                         [helper.make_node("Relu", ["data"], ["out"])])
    with pytest.raises(ModelImportError) as excinfo:
        inspect_onnx(model)
    assert "unknown output layout" in _one_line(excinfo)


@pytest.mark.parametrize("shape, expected", [([2, 3, 64, 64], "fixed batch of 2"),
                                             ([1, 3, "h", "w"], "no fixed height/width"),
                                             ([1, 1, 64, 64], "not an image tensor")])
def test_unservable_inputs_are_refused(shape, expected):
    model = _graph_model([helper.make_tensor_value_info("data", TensorProto.FLOAT, shape)],
                         [helper.make_tensor_value_info("p", TensorProto.FLOAT, [1, 3])],
                         [helper.make_node("Identity", ["data"], ["p"])])
    with pytest.raises(ModelImportError) as excinfo:
        inspect_onnx(model)
    assert expected in _one_line(excinfo)


def test_two_inputs_are_refused():
    model = _graph_model([helper.make_tensor_value_info("a", TensorProto.FLOAT, [1, 3, 8, 8]),
                          helper.make_tensor_value_info("b", TensorProto.FLOAT, [1, 3, 8, 8])],
                         [helper.make_tensor_value_info("c", TensorProto.FLOAT, [1, 3, 8, 8])],
                         [helper.make_node("Add", ["a", "b"], ["c"])])
    with pytest.raises(ModelImportError) as excinfo:
        inspect_onnx(model)
    assert "2 inputs" in _one_line(excinfo)


def test_corrupt_file_is_a_user_error(tmp_path):
    path = tmp_path / "model.onnx"
    path.write_bytes(b"\x08\x07this is not protobuf\xff\xff\xff")
    with pytest.raises(ModelImportError) as excinfo:
        inspect_onnx(path)
    assert "not a readable ONNX model" in _one_line(excinfo)


def test_compact_class_count_comes_from_channels():
    model = detector_compact_model(("a", "b", "c", "d"))
    info = inspect_onnx(model)
    assert info.outputs[0].shape == (1, 5 * 9, 13, 13) and len(info.labels) == 4


def test_sample_outputs_depend_on_the_pixels(sample_models):
    """Guards the fixtures themselves: Triton-vs-onnxruntime comparisons are meaningless on constants."""
    rng = np.random.default_rng(0)
    for key in ("classification", "detection_s1", "detection_compact", "classification_fp16"):
        session = ort.InferenceSession(str(sample_models[key]), providers=["CPUExecutionProvider"])
        spec = session.get_inputs()[0]
        dtype = np.float16 if spec.type == "tensor(float16)" else np.float32
        a, b = (session.run(None, {spec.name: (rng.random(spec.shape) * 255 * k).astype(dtype)})
                for k in (0.2, 1.0))
        assert any(not np.array_equal(x, y) for x, y in zip(a, b)), key


def test_models_pass_the_onnx_checker(sample_models):
    for key, path in sample_models.items():
        onnx.checker.check_model(onnx.load(str(path)), full_check=key != "legacy_winml")
