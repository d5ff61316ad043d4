"""What we know about an ONNX model after inspecting it: the shared vocabulary of cvtriton_triton."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum


class Contract(str, Enum):
    """The ONNX output contracts Custom Vision exports use: a probability tensor (compact / S1
    classifiers), only ``classLabel`` + a ZipMap ``loss`` (older classifiers), the S1 detector's
    ``detected_boxes/classes/scores``, or the compact detector's YOLOv2-style grid ``model_outputs0``."""

    CLASSIFICATION = "classification"            # a float probability tensor output
    CLASSIFICATION_ZIPMAP = "classification_zipmap"  # classLabel + ZipMap 'loss' only; rewritten on import
    DETECTION_S1 = "detection_s1"                # detected_boxes / detected_classes / detected_scores
    DETECTION_COMPACT = "detection_compact"      # model_outputs0 YOLOv2-style grid, decoded client-side

    @property
    def task(self) -> str:
        return "detection" if self.value.startswith("detection") else "classification"


@dataclass(frozen=True)
class TensorSpec:
    """One graph input or output. ``dtype`` is a numpy dtype name ("float32", "float16", "int64",
    "object" for strings); ``shape`` uses -1 for a free dimension."""

    name: str
    dtype: str
    shape: tuple[int, ...]


@dataclass(frozen=True)
class ModelInfo:
    contract: Contract
    input: TensorSpec
    outputs: tuple[TensorSpec, ...]
    labels: tuple[str, ...]
    height: int
    width: int
    channels_bgr: bool = True       # metadata Image.BitmapPixelFormat == "Bgr8"
    range_0_255: bool = True        # metadata Image.NominalPixelRange == "NominalRange_0_255"
    batch_dynamic: bool = False     # first input dimension free (-1/None) -> Triton batching allowed
    opset: int = 0
    metadata: dict[str, str] = field(default_factory=dict, compare=False, hash=False)

    @property
    def task(self) -> str:
        return self.contract.task

    @property
    def input_is_fp16(self) -> bool:
        return self.input.dtype == "float16"


@dataclass(frozen=True)
class Box:
    """Normalised to the image (0-1), origin top-left."""

    left: float
    top: float
    width: float
    height: float


@dataclass(frozen=True)
class Prediction:
    label: str
    probability: float
    box: Box | None = None
