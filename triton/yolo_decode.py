"""Decode the YOLOv2 grid of Custom Vision "General (compact)" detectors, as the export samples do.

This follows the ``object_detection.py`` that ships in Custom Vision export zips and Microsoft's
``customvision-tfjs`` decoder: the model output [1, A*(5+C), H, W] is read as
[H, W, A, 5+C]; per anchor, x/y are sigmoid offsets inside the cell, w/h are exp() times the
anchor (in cell units), objectness is a sigmoid and the class scores a softmax scaled by it. Then
the sample's non-maximum suppression: repeatedly take the best (box, class); boxes overlapping it by
IoU > 0.45 lose *that class's* score only and may still be picked for another class.
The later Azure-Samples/customvision-export-samples scripts differ: they add no sigmoid to x/y and
suppress overlaps across classes (threshold 0.01, 64 boxes). We keep the sigmoid because real
compact-detector output (customvision-tfjs's test data) has x/y logits well outside 0-1.
Pure numpy; independent of Triton and Azure.
"""

from __future__ import annotations

import numpy as np

ANCHORS = np.array([[0.573, 0.677], [1.87, 2.06], [3.34, 5.47], [7.88, 3.53], [9.77, 9.17]])
PROB_THRESHOLD = 0.10
IOU_THRESHOLD = 0.45
MAX_DETECTIONS = 20


def _sigmoid(x: np.ndarray) -> np.ndarray:
    """Numerically stable logistic function (no overflow warnings for large |x|)."""
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def decode_grid(grid: np.ndarray, anchors: np.ndarray = ANCHORS) -> tuple[np.ndarray, np.ndarray]:
    """Raw output ([1, A*(5+C), H, W] or [A*(5+C), H, W]) -> (boxes [N, 4] as left, top, width,
    height normalised to the image, class probabilities [N, C]) with N = H*W*A."""
    grid = np.asarray(grid, dtype=np.float64)
    if grid.ndim == 4:
        if grid.shape[0] != 1:
            raise ValueError(f"expected one image, got a batch of {grid.shape[0]}")
        grid = grid[0]
    if grid.ndim != 3:
        raise ValueError(f"expected a [channels, height, width] grid, got shape {grid.shape}")
    num_anchors = len(anchors)
    channels, height, width = grid.shape
    if channels % num_anchors or channels // num_anchors <= 5:
        raise ValueError(f"{channels} channels do not split into {num_anchors} anchors x (5 + classes)")
    num_classes = channels // num_anchors - 5
    cells = grid.transpose(1, 2, 0).reshape(height, width, num_anchors, 5 + num_classes)
    col = np.arange(width)[np.newaxis, :, np.newaxis]
    row = np.arange(height)[:, np.newaxis, np.newaxis]
    w = np.exp(cells[..., 2]) * anchors[:, 0] / width
    h = np.exp(cells[..., 3]) * anchors[:, 1] / height
    x = (_sigmoid(cells[..., 0]) + col) / width - w / 2
    y = (_sigmoid(cells[..., 1]) + row) / height - h / 2
    boxes = np.stack((x, y, w, h), axis=-1).reshape(-1, 4)
    logits = cells[..., 5:]
    probs = np.exp(logits - logits.max(axis=-1, keepdims=True))
    probs = probs / probs.sum(axis=-1, keepdims=True) * _sigmoid(cells[..., 4])[..., np.newaxis]
    return boxes, probs.reshape(-1, num_classes)


def _iou(box: np.ndarray, others: np.ndarray) -> np.ndarray:
    x1 = np.maximum(box[0], others[:, 0])
    y1 = np.maximum(box[1], others[:, 1])
    x2 = np.minimum(box[0] + box[2], others[:, 0] + others[:, 2])
    y2 = np.minimum(box[1] + box[3], others[:, 1] + others[:, 3])
    overlap = np.maximum(0.0, x2 - x1) * np.maximum(0.0, y2 - y1)
    union = box[2] * box[3] + others[:, 2] * others[:, 3] - overlap
    return np.divide(overlap, union, out=np.zeros_like(overlap), where=union > 0)


def non_max_suppression(boxes: np.ndarray, class_probs: np.ndarray, *, prob_threshold: float = PROB_THRESHOLD,
                        iou_threshold: float = IOU_THRESHOLD, max_detections: int = MAX_DETECTIONS,
                        ) -> list[tuple[np.ndarray, int, float]]:
    """The export sample's per-class-score suppression; returns [(box, class index, probability)]
    best first."""
    best = class_probs.max(axis=1)
    keep = np.flatnonzero(best > prob_threshold)
    keep = keep[np.argsort(-best[keep], kind="stable")]
    boxes, probs = boxes[keep], class_probs[keep].copy()
    max_probs, max_classes = probs.max(axis=1, initial=0.0), probs.argmax(axis=1)
    selected: list[tuple[np.ndarray, int, float]] = []
    while len(selected) < min(max_detections, len(boxes)):
        i = int(np.argmax(max_probs))
        if max_probs[i] < prob_threshold:
            break
        cls = int(max_classes[i])
        selected.append((boxes[i].copy(), cls, float(max_probs[i])))
        overlapping = np.flatnonzero(_iou(boxes[i], boxes) > iou_threshold)
        overlapping = np.union1d(overlapping, [i])
        probs[overlapping, cls] = 0.0
        max_probs[overlapping] = probs[overlapping].max(axis=1)
        max_classes[overlapping] = probs[overlapping].argmax(axis=1)
    return selected


def decode_detections(grid: np.ndarray, *, prob_threshold: float = PROB_THRESHOLD,
                      iou_threshold: float = IOU_THRESHOLD, max_detections: int = MAX_DETECTIONS,
                      anchors: np.ndarray = ANCHORS) -> list[tuple[np.ndarray, int, float]]:
    """``decode_grid`` followed by ``non_max_suppression``."""
    boxes, class_probs = decode_grid(grid, anchors)
    return non_max_suppression(boxes, class_probs, prob_threshold=prob_threshold,
                               iou_threshold=iou_threshold, max_detections=max_detections)
