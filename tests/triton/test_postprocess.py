"""Outputs -> predictions for classification, S1 and compact (YOLOv2 grid) detectors."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest

from cvtriton_triton.model_info import Box, Contract, ModelInfo, TensorSpec
from cvtriton_triton.onnx_inspect import inspect_onnx
from cvtriton_triton.postprocess import predictions
from cvtriton_triton.preprocess import to_tensor
from cvtriton_triton.yolo_decode import ANCHORS, decode_grid, non_max_suppression

LABELS = ("cat", "dog")


def _info(contract: Contract, outputs: tuple[TensorSpec, ...], labels=LABELS) -> ModelInfo:
    return ModelInfo(contract, TensorSpec("data", "float32", (1, 3, 416, 416)), outputs, labels, 416, 416)


def test_classification_is_sorted_and_not_renormalised():
    info = _info(Contract.CLASSIFICATION, (TensorSpec("model_output", "float32", (1, 3)),), ("a", "b", "c"))
    scores = np.array([[0.2, 0.5, 0.3]], np.float32)
    found = predictions({"model_output": scores}, info)
    assert [p.label for p in found] == ["b", "c", "a"]
    assert [p.probability for p in found] == [float(v) for v in np.float32([0.5, 0.3, 0.2])]
    assert all(p.box is None for p in found)
    multilabel = predictions({"model_output": np.array([[0.9, 0.8, 0.01]], np.float32)}, info)
    assert sum(p.probability for p in multilabel) == pytest.approx(1.71)    # sigmoid outputs kept as is
    assert [p.label for p in predictions({"model_output": scores}, info, threshold=0.25)] == ["b", "c"]


def test_fp16_scores_and_unknown_label_indexes():
    info = _info(Contract.CLASSIFICATION, (TensorSpec("p", "float16", (1, 3)),), ("only",))
    found = predictions({"p": np.array([[0.1, 0.7, 0.2]], np.float16)}, info)
    assert [p.label for p in found] == ["class_1", "class_2", "only"]


def test_zipmap_outputs_from_onnxruntime(sample_models):
    info = inspect_onnx(sample_models["classification_zipmap"])
    session = ort.InferenceSession(str(sample_models["classification_zipmap"]), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    image = np.random.default_rng(0).random((1, 3, 224, 224)).astype(np.float32) * 255
    outputs = dict(zip(names, session.run(names, {"data": image})))
    found = predictions(outputs, info)
    assert found[0].label == outputs["classLabel"][0][0]
    assert sum(p.probability for p in found) == pytest.approx(1.0, abs=1e-5)


S1_OUTPUTS = (TensorSpec("detected_boxes", "float32", (1, -1, 4)), TensorSpec("detected_classes", "int64", (1, -1)),
              TensorSpec("detected_scores", "float32", (1, -1)))


def test_s1_boxes_become_left_top_width_height_clipped_and_thresholded():
    info = _info(Contract.DETECTION_S1, S1_OUTPUTS)
    outputs = {
        "detected_boxes": np.array([[[0.1, 0.2, 0.5, 0.6], [-0.1, 0.9, 0.3, 1.2], [0.4, 0.4, 0.6, 0.6],
                                     [0.7, 0.7, 0.7, 0.9]]], np.float32),
        "detected_classes": np.array([[1, 0, 5, 0]], np.int64),
        "detected_scores": np.array([[0.6, 0.9, 0.05, 0.95]], np.float32),
    }
    found = predictions(outputs, info)
    assert [(p.label, round(p.probability, 2)) for p in found] == [("cat", 0.9), ("dog", 0.6)]  # zero-width dropped
    first, second = found[0].box, found[1].box
    assert (first.left, first.top) == (0.0, pytest.approx(0.9))
    assert (first.width, first.height) == (pytest.approx(0.3), pytest.approx(0.1))
    assert second == Box(pytest.approx(0.1), pytest.approx(0.2), pytest.approx(0.4), pytest.approx(0.4))
    low = predictions(outputs, info, threshold=0.01)
    assert "class_5" in [p.label for p in low]


def _grid(num_classes: int = 2, height: int = 13, width: int = 13) -> np.ndarray:
    """A raw grid where nothing is detected (objectness logit -10 everywhere)."""
    grid = np.zeros((1, 5 * (5 + num_classes), height, width), np.float32)
    grid[0, 4::5 + num_classes] = -10.0
    return grid


def _put(grid: np.ndarray, row: int, col: int, anchor: int, *, tx=0.0, ty=0.0, tw=0.0, th=0.0, obj=10.0,
         classes=(8.0, -8.0)) -> None:
    stride = 5 + len(classes)
    grid[0, anchor * stride: (anchor + 1) * stride, row, col] = [tx, ty, tw, th, obj, *classes]


def test_compact_grid_with_one_known_object_gives_the_expected_box():
    grid = _grid()
    _put(grid, row=6, col=4, anchor=2, classes=(-8.0, 8.0))
    info = _info(Contract.DETECTION_COMPACT, (TensorSpec("model_outputs0", "float32", (1, 35, 13, 13)),))
    found = predictions({"model_outputs0": grid}, info)
    assert len(found) == 1
    (found_box,) = [p.box for p in found]
    width, height = 3.34 / 13, 5.47 / 13            # anchor 2, exp(0) = 1, in cell units / grid size
    cx, cy = (0.5 + 4) / 13, (0.5 + 6) / 13         # sigmoid(0) = 0.5 inside cell (row 6, col 4)
    assert found[0].label == "dog" and found[0].probability == pytest.approx(1.0, abs=1e-4)
    assert found_box.left == pytest.approx(cx - width / 2)
    assert found_box.top == pytest.approx(cy - height / 2)
    assert found_box.width == pytest.approx(width) and found_box.height == pytest.approx(height)


def test_compact_offsets_and_clipping():
    grid = _grid()
    _put(grid, row=0, col=12, anchor=4, tx=2.0, ty=-1.0, tw=0.5, th=0.25)
    boxes, probs = decode_grid(grid)
    index = (0 * 13 + 12) * 5 + 4
    sig = lambda v: 1 / (1 + np.exp(-v))   # noqa: E731
    w, h = np.exp(0.5) * ANCHORS[4, 0] / 13, np.exp(0.25) * ANCHORS[4, 1] / 13
    expected = [(sig(2.0) + 12) / 13 - w / 2, (sig(-1.0) + 0) / 13 - h / 2, w, h]
    assert boxes[index] == pytest.approx(expected)
    assert probs[index] == pytest.approx([sig(10.0) * sig(16.0), sig(10.0) * (1 - sig(16.0))], rel=1e-6)
    info = _info(Contract.DETECTION_COMPACT, (TensorSpec("model_outputs0", "float32", (1, 35, 13, 13)),))
    (found,) = predictions({"model_outputs0": grid}, info)
    box = found.box
    assert box.left + box.width == pytest.approx(1.0) and box.top == 0.0     # clipped to the picture


def test_nms_suppresses_same_class_overlaps_but_keeps_other_classes():
    grid = _grid()
    _put(grid, row=6, col=6, anchor=2, obj=10.0)                 # cat, prob ~1
    _put(grid, row=7, col=6, anchor=2, obj=2.0)                  # cat one cell lower: IoU 0.69, dropped
    _put(grid, row=6, col=7, anchor=2, obj=3.0, classes=(-8.0, 8.0))   # dog, IoU 0.54 with the cat: kept
    _put(grid, row=1, col=1, anchor=0, obj=1.0)                  # cat, far away
    info = _info(Contract.DETECTION_COMPACT, (TensorSpec("model_outputs0", "float32", (1, 35, 13, 13)),))
    found = predictions({"model_outputs0": grid}, info)
    assert [p.label for p in found] == ["cat", "dog", "cat"]
    assert [round(p.probability, 3) for p in found] == [1.0, round(1 / (1 + np.exp(-3.0)), 3),
                                                        round(1 / (1 + np.exp(-1.0)), 3)]


def test_nms_respects_threshold_and_max_detections():
    boxes = np.array([[i / 30, 0.0, 0.01, 0.01] for i in range(30)])
    probs = np.column_stack([np.linspace(0.9, 0.05, 30), np.zeros(30)])
    kept = non_max_suppression(boxes, probs, max_detections=20)
    assert len(kept) == 20 and [k[2] for k in kept] == sorted((k[2] for k in kept), reverse=True)
    assert all(k[2] > 0.1 for k in non_max_suppression(boxes, probs, max_detections=50))


def test_compact_sample_model_through_onnxruntime(sample_models):
    from PIL import Image

    path = sample_models["detection_compact"]
    info = inspect_onnx(path, ["box", "can"])
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    pixels = np.full((416, 416, 3), 30, np.uint8)
    pixels[100:260, 150:330] = (250, 220, 40)                    # a bright object on a dark background
    tensor = to_tensor(Image.fromarray(pixels), info)
    found = predictions({"model_outputs0": session.run(None, {"data": tensor})[0]}, info)
    assert 0 < len(found) <= 20
    assert all(0 <= p.box.left and p.box.left + p.box.width <= 1 + 1e-9 for p in found)
    assert all(p.label in ("box", "can") and p.probability > 0.1 for p in found)
    blank = to_tensor(Image.fromarray(np.full((416, 416, 3), 30, np.uint8)), info)
    assert len(predictions({"model_outputs0": session.run(None, {"data": blank})[0]}, info)) < len(found)
