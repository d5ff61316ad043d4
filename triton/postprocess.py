"""Model outputs -> ``Prediction`` list, for every Custom Vision contract. Pure numpy.

Classification outputs are already probabilities (Custom Vision exports end in Softmax, or Sigmoid
for multilabel projects), so they are used as they are, never re-normalised. S1 detectors output
corner boxes; we return Custom Vision's own box convention (left, top, width, height, normalised),
clipped to the picture. Compact detectors output a YOLOv2 grid decoded in ``yolo_decode``.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from .model_info import Box, Contract, ModelInfo, Prediction
from .yolo_decode import IOU_THRESHOLD, MAX_DETECTIONS, decode_detections

DETECTION_THRESHOLD = 0.10        # the export sample's default probability threshold


def _label(info: ModelInfo, index: int) -> str:
    return info.labels[index] if 0 <= index < len(info.labels) else f"class_{index}"


def _output(outputs: Mapping[str, np.ndarray], name: str) -> np.ndarray:
    if name not in outputs:
        raise KeyError(f"model output '{name}' is missing from the response (got {sorted(outputs)})")
    return np.asarray(outputs[name])


def _clipped_box(left: float, top: float, right: float, bottom: float) -> Box | None:
    left, right = float(np.clip(left, 0.0, 1.0)), float(np.clip(right, 0.0, 1.0))
    top, bottom = float(np.clip(top, 0.0, 1.0)), float(np.clip(bottom, 0.0, 1.0))
    if right <= left or bottom <= top:
        return None
    return Box(left=left, top=top, width=right - left, height=bottom - top)


def _classification(outputs: Mapping[str, np.ndarray], info: ModelInfo) -> list[Prediction]:
    spec = next((o for o in info.outputs if o.dtype in ("float32", "float16") and len(o.shape) == 2), None)
    if spec is None:      # an un-rewritten ZipMap graph run in onnxruntime: [{label: probability}]
        maps = next(o for o in info.outputs if o.dtype.startswith("seq(map("))
        first = outputs[maps.name][0]
        return [Prediction(str(label), float(p)) for label, p in first.items()]
    scores = _output(outputs, spec.name).astype(np.float64)
    row = scores.reshape(-1) if scores.ndim == 1 else scores[0]
    return [Prediction(_label(info, i), float(p)) for i, p in enumerate(row)]


def _detection_s1(outputs: Mapping[str, np.ndarray], info: ModelInfo, threshold: float) -> list[Prediction]:
    boxes = _output(outputs, "detected_boxes").astype(np.float64).reshape(-1, 4)
    classes = _output(outputs, "detected_classes").reshape(-1).astype(np.int64)
    scores = _output(outputs, "detected_scores").astype(np.float64).reshape(-1)
    if not len(boxes) == len(classes) == len(scores):
        raise ValueError(f"S1 outputs disagree: {len(boxes)} boxes, {len(classes)} classes, {len(scores)} scores")
    found = []
    for (x1, y1, x2, y2), cls, score in zip(boxes, classes, scores):
        box = _clipped_box(x1, y1, x2, y2)
        if score > threshold and box is not None:
            found.append(Prediction(_label(info, int(cls)), float(score), box))
    return found


def _detection_compact(outputs: Mapping[str, np.ndarray], info: ModelInfo, threshold: float,
                       iou_threshold: float, max_detections: int) -> list[Prediction]:
    grid = _output(outputs, info.outputs[0].name)
    found = []
    for (left, top, width, height), cls, prob in decode_detections(
            grid, prob_threshold=threshold, iou_threshold=iou_threshold, max_detections=max_detections):
        box = _clipped_box(left, top, left + width, top + height)
        if box is not None:
            found.append(Prediction(_label(info, cls), prob, box))
    return found


def predictions(outputs: Mapping[str, np.ndarray], info: ModelInfo, *, threshold: float | None = None,
                iou_threshold: float = IOU_THRESHOLD, max_detections: int = MAX_DETECTIONS) -> list[Prediction]:
    """Predictions for the first (only) image in ``outputs`` (output name -> array), best first.

    Classification: every label with its probability (``threshold`` drops those at or below it,
    default none). Detection: boxes scoring above ``threshold`` (default 0.10).
    """
    if info.contract in (Contract.CLASSIFICATION, Contract.CLASSIFICATION_ZIPMAP):
        found = _classification(outputs, info)
        if threshold is not None:
            found = [p for p in found if p.probability > threshold]
    elif info.contract is Contract.DETECTION_S1:
        found = _detection_s1(outputs, info, DETECTION_THRESHOLD if threshold is None else threshold)
    else:
        found = _detection_compact(outputs, info, DETECTION_THRESHOLD if threshold is None else threshold,
                                   iou_threshold, max_detections)
    return sorted(found, key=lambda p: p.probability, reverse=True)
