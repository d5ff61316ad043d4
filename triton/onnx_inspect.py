"""Read an ONNX file and say which Custom Vision export contract it follows (see ``Contract``).

Everything is read from the graph: input name/shape/type, output names/types/shapes, opset, the
image metadata Custom Vision writes (``Image.BitmapPixelFormat``, ``Image.NominalPixelRange``) and,
for ZipMap graphs, the labels. Names are only used to *recognise* a contract (the S1 detector's
``detected_*`` outputs), never assumed. Anything we could not serve correctly is a
``ModelImportError`` with one line of cause and fix, so the wizard never guesses.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import onnx

from cvtriton_triton.errors import ModelImportError
from cvtriton_triton.model_info import Contract, ModelInfo, TensorSpec

MIN_OPSET = 7                      # onnxruntime only supports ai.onnx opset 7 and above
S1_OUTPUTS = ("detected_boxes", "detected_classes", "detected_scores")
YOLO_ANCHORS = 5                   # Custom Vision compact detectors: 5 anchors per grid cell
PIXEL_FORMATS = {"Bgr8": True, "Rgb8": False}
PIXEL_RANGES = {"NominalRange_0_255": True, "Normalized_0_1": False}
REEXPORT_FIX = ("re-export the iteration from Custom Vision with a current ONNX flavour "
                "(a compact domain, platform ONNX)")


def load_model(path: Path | str) -> onnx.ModelProto:
    """Load without pulling external data files (Custom Vision never writes them; we only read the
    graph here). A corrupt or non-ONNX file becomes a ``ModelImportError``."""
    path = Path(path)
    try:
        if path.stat().st_size == 0:
            raise ModelImportError(f"{path.name} is empty (0 bytes)", "export the model again from Custom Vision "
                                   "(platform ONNX); the file was probably cut off while copying or downloading")
        return onnx.load(str(path), load_external_data=False)
    except ModelImportError:
        raise
    except FileNotFoundError:
        raise ModelImportError(f"model file not found: {path}", "check the path") from None
    except Exception as exc:  # protobuf DecodeError and friends
        raise ModelImportError(f"{path.name} is not a readable ONNX model ({type(exc).__name__})",
                               "export the model again from Custom Vision (platform ONNX)") from None


def dtype_name(elem_type: int) -> str:
    """ONNX element type -> numpy dtype name ("float32", "int64", "object" for strings)."""
    try:
        return np.dtype(onnx.helper.tensor_dtype_to_np_dtype(elem_type)).name
    except Exception:
        return onnx.TensorProto.DataType.Name(elem_type).lower()


def type_spec(name: str, type_proto: onnx.TypeProto) -> TensorSpec:
    """A TensorSpec for any value; non-tensor types get a descriptive dtype like
    "seq(map(string,float32))" and an empty shape, so callers can refuse them by dtype."""
    kind = type_proto.WhichOneof("value")
    if kind == "tensor_type":
        tensor = type_proto.tensor_type
        shape = tuple(d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else -1
                      for d in tensor.shape.dim)
        return TensorSpec(name, dtype_name(tensor.elem_type), shape)
    return TensorSpec(name, _describe(type_proto), ())


def _describe(type_proto: onnx.TypeProto) -> str:
    kind = type_proto.WhichOneof("value")
    if kind == "tensor_type":
        return dtype_name(type_proto.tensor_type.elem_type)
    if kind == "sequence_type":
        return f"seq({_describe(type_proto.sequence_type.elem_type)})"
    if kind == "map_type":
        key = dtype_name(type_proto.map_type.key_type)
        return f"map({'string' if key == 'object' else key},{_describe(type_proto.map_type.value_type)})"
    return str(kind)


def is_tensor(spec: TensorSpec) -> bool:
    return not spec.dtype.startswith(("seq(", "map(", "optional", "sparse"))


def default_opset(model: onnx.ModelProto) -> int:
    for entry in model.opset_import:
        if entry.domain in ("", "ai.onnx"):
            return int(entry.version)
    return 0


def zipmap_labels(model: onnx.ModelProto) -> tuple[str, ...] | None:
    """Labels baked into a ZipMap node (``classlabels_strings`` or ``classlabels_int64s``)."""
    for node in model.graph.node:
        if node.op_type == "ZipMap":
            for attr in node.attribute:
                if attr.name == "classlabels_strings" and attr.strings:
                    return tuple(s.decode("utf-8") for s in attr.strings)
                if attr.name == "classlabels_int64s" and attr.ints:
                    return tuple(str(i) for i in attr.ints)
    return None


def image_input(model: onnx.ModelProto) -> TensorSpec:
    """The single NCHW image input (initializers listed as inputs, as IR<4 models do, are skipped)."""
    weights = {init.name for init in model.graph.initializer}
    inputs = [type_spec(v.name, v.type) for v in model.graph.input if v.name not in weights]
    fix = "give the ONNX export of a Custom Vision image model (classification or object detection)"
    if len(inputs) != 1:
        raise ModelImportError(f"the model has {len(inputs)} inputs; a Custom Vision image model has one", fix)
    spec = inputs[0]
    if len(spec.shape) != 4 or spec.shape[1] != 3:
        raise ModelImportError(f"input '{spec.name}' has shape {list(spec.shape)}, not an image "
                               "tensor [batch, 3, height, width]", fix)
    if spec.shape[2] <= 0 or spec.shape[3] <= 0:
        raise ModelImportError(f"input '{spec.name}' has no fixed height/width ({list(spec.shape)})", fix)
    if spec.dtype not in ("float32", "float16"):
        raise ModelImportError(f"input '{spec.name}' is {spec.dtype}; Custom Vision models take float32 "
                               "or float16 pixels", fix)
    if spec.shape[0] not in (-1, 1):
        raise ModelImportError(f"input '{spec.name}' has a fixed batch of {spec.shape[0]}; only 1 or a free "
                               "batch dimension can be served image by image", fix)
    return spec


def detect_contract(outputs: Sequence[TensorSpec]) -> Contract:
    """Which export contract the outputs follow; ``ModelImportError`` for anything else."""
    names = {o.name for o in outputs}
    tensors = [o for o in outputs if is_tensor(o)]
    floats = [o for o in tensors if o.dtype in ("float32", "float16")]
    if set(S1_OUTPUTS) <= names:
        by_name = {o.name: o for o in outputs}
        boxes, classes, scores = (by_name[n] for n in S1_OUTPUTS)
        if (len(boxes.shape) == 3 and boxes.shape[2] in (4, -1) and boxes.dtype in ("float32", "float16")
                and len(classes.shape) == 2 and classes.dtype.startswith("int")
                and len(scores.shape) == 2 and scores.dtype in ("float32", "float16")):
            return Contract.DETECTION_S1
    elif len(tensors) == 1 and len(outputs) == 1 and floats and len(floats[0].shape) == 4:
        channels = floats[0].shape[1]
        if channels > 0 and channels % YOLO_ANCHORS == 0 and channels // YOLO_ANCHORS > 5:
            return Contract.DETECTION_COMPACT
    elif any(len(o.shape) == 2 for o in floats):
        return Contract.CLASSIFICATION
    elif any(o.dtype.startswith("seq(map(") for o in outputs):
        return Contract.CLASSIFICATION_ZIPMAP
    listed = ", ".join(f"{o.name} {o.dtype}{list(o.shape)}" for o in outputs)
    raise ModelImportError(f"unknown output layout ({listed}): not a Custom Vision classification or "
                           "detection export", "export the iteration from Custom Vision with platform ONNX")


def class_count(contract: Contract, outputs: Sequence[TensorSpec], model: onnx.ModelProto) -> int | None:
    """How many classes the graph itself says it has (None when it does not say)."""
    if contract is Contract.CLASSIFICATION:
        scores = next(o for o in outputs if o.dtype in ("float32", "float16") and len(o.shape) == 2)
        return scores.shape[1] if scores.shape[1] > 0 else None
    if contract is Contract.CLASSIFICATION_ZIPMAP:
        labels = zipmap_labels(model)
        return len(labels) if labels else None
    if contract is Contract.DETECTION_COMPACT:
        return outputs[0].shape[1] // YOLO_ANCHORS - 5
    return None


def pixel_flags(metadata: Mapping[str, str]) -> tuple[bool, bool]:
    """(channels_bgr, range_0_255) as the official export samples decide them: BGR only for "Bgr8",
    0-255 only for "NominalRange_0_255". Values they do not handle are refused, not guessed."""
    fmt = metadata.get("Image.BitmapPixelFormat")
    rng = metadata.get("Image.NominalPixelRange")
    if fmt is not None and fmt not in PIXEL_FORMATS:
        raise ModelImportError(f"unsupported Image.BitmapPixelFormat '{fmt}' (expected Bgr8 or Rgb8)", REEXPORT_FIX)
    if rng is not None and rng not in PIXEL_RANGES:
        raise ModelImportError(f"unsupported Image.NominalPixelRange '{rng}' (expected NominalRange_0_255 or "
                               "Normalized_0_1)", REEXPORT_FIX)
    return PIXEL_FORMATS.get(fmt or "", False), PIXEL_RANGES.get(rng or "", False)


def inspect_onnx(source: Path | str | onnx.ModelProto, labels: Sequence[str] | None = None, *,
                 extra_metadata: Mapping[str, str] | None = None) -> ModelInfo:
    """Describe a Custom Vision ONNX export.

    ``labels``: from labels.txt when there is one; otherwise ZipMap labels, else ``class_<i>``.
    ``extra_metadata``: metadata_properties.json of the export, used where the model has no
    ``metadata_props`` of its own. Raises ``ModelImportError`` for legacy (opset < 7) exports,
    non-image inputs, unknown output layouts and label counts that disagree with the graph.
    """
    model = source if isinstance(source, onnx.ModelProto) else load_model(source)
    if not model.opset_import and not model.graph.node:    # protobuf parses many non-ONNX files as an empty model
        raise ModelImportError("the file holds no ONNX graph (it is not an ONNX model, or it is damaged)",
                               "export the model again from Custom Vision (platform ONNX)")
    opset = default_opset(model)
    if opset < MIN_OPSET:
        raise ModelImportError(f"this is a legacy WinML-era export (ai.onnx opset {opset}) that onnxruntime "
                               "and Triton cannot load", REEXPORT_FIX)
    spec = image_input(model)
    outputs = tuple(type_spec(v.name, v.type) for v in model.graph.output)
    contract = detect_contract(outputs)
    count = class_count(contract, outputs, model)
    if labels is not None:
        labels = tuple(labels)
        if not labels:
            raise ModelImportError("labels.txt is empty", "use the labels.txt from the same Custom Vision export")
        if count is not None and len(labels) != count:
            raise ModelImportError(f"labels.txt has {len(labels)} labels but the model outputs {count} classes",
                                   "use the labels.txt from the same Custom Vision export as the model")
    else:
        labels = zipmap_labels(model) or (tuple(f"class_{i}" for i in range(count)) if count else ())
        if count is not None and labels and len(labels) != count:
            raise ModelImportError(f"the model's ZipMap names {len(labels)} labels but it outputs {count} "
                                   "classes", REEXPORT_FIX)
    metadata = dict(extra_metadata or {})
    metadata.update({p.key: p.value for p in model.metadata_props})
    bgr, range_255 = pixel_flags(metadata)
    return ModelInfo(contract=contract, input=spec, outputs=outputs, labels=labels,
                     height=spec.shape[2], width=spec.shape[3], channels_bgr=bgr, range_0_255=range_255,
                     batch_dynamic=spec.shape[0] == -1, opset=opset, metadata=metadata)
