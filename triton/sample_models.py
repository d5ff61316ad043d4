"""Small, deterministic ONNX models in the exact shapes Custom Vision exports (see ``model_info.Contract``).

Nothing is downloaded: every graph is built with ``onnx.helper`` from fixed seeds, so tests, the
Custom Vision emulator and the local Triton tests all exercise the real export formats offline. The
outputs depend on the input pixels (convolutions / pooled colours, never constants), so comparing
Triton against onnxruntime means something. ``build_all_contracts`` is the one-call fixture other
test suites reuse; ``build_sample_export`` makes the README's dominant-colour classifier export.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

DEFAULT_LABELS = ("apple", "banana", "cherry")
DETECTION_LABELS = ("box", "can")
BGR_0_255 = {"Image.BitmapPixelFormat": "Bgr8", "Image.ColorSpaceGamma": "SRGB",
             "Image.NominalPixelRange": "NominalRange_0_255"}
RGB_0_1 = {"Image.BitmapPixelFormat": "Rgb8", "Image.ColorSpaceGamma": "SRGB",
           "Image.NominalPixelRange": "Normalized_0_1"}
RGB_0_255 = {**RGB_0_1, "Image.NominalPixelRange": "NominalRange_0_255"}
CLASSIFIER_KINDS = ("float", "float_dynamic", "zipmap", "mixed", "fp16", "rgb01")
OPSET = 12          # a current export: onnxruntime and Triton's native backend both take it
ML_OPSET = 2        # ai.onnx.ml (ZipMap, LabelEncoder with keys_int64s/values_strings)
IR_VERSION = 7


def _init(name: str, array: np.ndarray) -> TensorProto:
    return numpy_helper.from_array(np.ascontiguousarray(array), name)


def _finish(graph: onnx.GraphProto, metadata: dict[str, str], *, opset: int = OPSET,
            ml: bool = False, ir_version: int = IR_VERSION) -> onnx.ModelProto:
    imports = [helper.make_opsetid("", opset)]
    if ml:
        imports.append(helper.make_opsetid("ai.onnx.ml", ML_OPSET if opset >= 7 else 1))
    model = helper.make_model(graph, opset_imports=imports, ir_version=ir_version,
                              producer_name="cvtriton-sample", producer_version="1")
    helper.set_model_props(model, dict(metadata))
    return model


def _atomic_write(path: Path, data: bytes) -> Path:
    """Write to a temp file in the same folder, then rename: readers never see half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)     # never leave a half-written temp file beside the target
        raise
    return path


def _save(model: onnx.ModelProto, path: Path, labels: tuple[str, ...] | None) -> Path:
    """Write model.onnx (and labels.txt beside it, when given)."""
    if labels is not None:
        _atomic_write(Path(path).with_name("labels.txt"), "".join(f"{label}\n" for label in labels).encode())
    return _atomic_write(path, model.SerializeToString())


def _zipmap_nodes(prob: str, labels: tuple[str, ...]) -> list[onnx.NodeProto]:
    """classLabel (string via ArgMax + LabelEncoder) and loss (ZipMap), as ONNX12-era exports have."""
    return [
        helper.make_node("ArgMax", [prob], ["label_index"], axis=1, keepdims=1),
        helper.make_node("LabelEncoder", ["label_index"], ["classLabel"], domain="ai.onnx.ml",
                         keys_int64s=list(range(len(labels))), values_strings=list(labels)),
        helper.make_node("ZipMap", [prob], ["loss"], domain="ai.onnx.ml",
                         classlabels_strings=list(labels)),
    ]


def _zipmap_outputs(batch: str | int) -> list[onnx.ValueInfoProto]:
    seq_map = helper.make_sequence_type_proto(
        helper.make_map_type_proto(TensorProto.STRING, helper.make_tensor_type_proto(TensorProto.FLOAT, [])))
    return [helper.make_tensor_value_info("classLabel", TensorProto.STRING, [batch, 1]),
            helper.make_value_info("loss", seq_map)]


def classifier_model(kind: str = "float", labels: tuple[str, ...] = DEFAULT_LABELS, *,
                     size: int = 224, seed: int = 0) -> onnx.ModelProto:
    """A classification export: Conv -> Relu -> GlobalAveragePool -> Gemm -> Softmax.

    kind: "float" (data [1,3,S,S] -> model_output [1,N]), "float_dynamic" (free batch dim),
    "zipmap" (ONLY classLabel + ZipMap loss), "mixed" (model_output + classLabel + loss),
    "fp16" (float16 input/output, the Float16 flavour), "rgb01" (Rgb8 / Normalized_0_1 metadata).
    """
    if kind not in CLASSIFIER_KINDS:
        raise ValueError(f"unknown classifier kind {kind!r}; expected one of {CLASSIFIER_KINDS}")
    rng = np.random.default_rng(seed)
    n, features = len(labels), 8
    scale = 1.0 if kind == "rgb01" else 1.0 / 255.0          # the net sees 0-1 either way
    conv_w = rng.normal(0.0, 0.5, (features, 3, 8, 8)).astype(np.float32) * scale / 8.0
    conv_b = rng.normal(0.0, 0.1, features).astype(np.float32)
    gemm_w = rng.normal(0.0, 3.0, (features, n)).astype(np.float32)
    gemm_b = rng.normal(0.0, 0.5, n).astype(np.float32)
    batch: str | int = "batch" if kind == "float_dynamic" else 1
    in_type = TensorProto.FLOAT16 if kind == "fp16" else TensorProto.FLOAT
    src = "data"
    nodes: list[onnx.NodeProto] = []
    if kind == "fp16":    # the Float16 flavour: fp16 at the edges, like a converted fp32 graph
        nodes.append(helper.make_node("Cast", ["data"], ["data_fp32"], to=TensorProto.FLOAT))
        src = "data_fp32"
    prob = "model_output" if kind not in ("fp16",) else "prob_fp32"
    nodes += [
        helper.make_node("Conv", [src, "conv_w", "conv_b"], ["conv"], kernel_shape=[8, 8], strides=[8, 8]),
        helper.make_node("Relu", ["conv"], ["relu"]),
        helper.make_node("GlobalAveragePool", ["relu"], ["pooled"]),
        helper.make_node("Flatten", ["pooled"], ["features"], axis=1),
        helper.make_node("Gemm", ["features", "gemm_w", "gemm_b"], ["logits"]),
        helper.make_node("Softmax", ["logits"], [prob], axis=1),
    ]
    outputs = []
    if kind == "fp16":
        nodes.append(helper.make_node("Cast", [prob], ["model_output"], to=TensorProto.FLOAT16))
        outputs.append(helper.make_tensor_value_info("model_output", TensorProto.FLOAT16, [1, n]))
    elif kind != "zipmap":
        outputs.append(helper.make_tensor_value_info("model_output", TensorProto.FLOAT, [batch, n]))
    if kind in ("zipmap", "mixed"):
        nodes += _zipmap_nodes(prob, labels)
        outputs += _zipmap_outputs(batch)
    graph = helper.make_graph(
        nodes, f"classifier_{kind}", [helper.make_tensor_value_info("data", in_type, [batch, 3, size, size])],
        outputs, initializer=[_init("conv_w", conv_w), _init("conv_b", conv_b),
                              _init("gemm_w", gemm_w), _init("gemm_b", gemm_b)])
    meta = RGB_0_1 if kind == "rgb01" else BGR_0_255
    meta = {**meta, "CustomVision.Postprocess.Method": "ClassificationMultiClass",
            "CustomVision.Preprocess.TargetWidth": str(size), "CustomVision.Preprocess.TargetHeight": str(size)}
    return _finish(graph, meta, ml=kind in ("zipmap", "mixed"))


def detector_s1_model(labels: tuple[str, ...] = DETECTION_LABELS, *, seed: int = 1) -> onnx.ModelProto:
    """Detection [S1]: image_tensor [1,3,320,320] -> detected_boxes [1,16,4] (x1,y1,x2,y2, normalised,
    may stray slightly outside 0-1 as real ones do), detected_classes int64 [1,16], detected_scores [1,16].

    One candidate per 80x80 cell: its score grows with how far the cell's mean colour is from the
    whole image's (a plain picture scores ~0.05, a cell holding a contrasting object ~0.95), its
    class comes from that colour, and the colour nudges its box.
    """
    rng = np.random.default_rng(seed)
    n_cls, cells = len(labels), 16
    w_cls = rng.normal(0.0, 3.0, (3, n_cls)).astype(np.float32) / 255.0
    w_box = rng.normal(0.0, 2.0, (3, 4)).astype(np.float32) / 255.0
    idx = np.arange(cells)
    base = np.stack([(idx % 4) / 4, (idx // 4) / 4, (idx % 4 + 1) / 4, (idx // 4 + 1) / 4], axis=1)
    base = base.astype(np.float32)[np.newaxis]
    nodes = [
        helper.make_node("AveragePool", ["image_tensor"], ["cell_mean"], kernel_shape=[80, 80], strides=[80, 80]),
        helper.make_node("GlobalAveragePool", ["image_tensor"], ["image_mean"]),
        helper.make_node("Sub", ["cell_mean", "image_mean"], ["contrast"]),
        helper.make_node("Mul", ["contrast", "contrast"], ["contrast_sq"]),
        helper.make_node("ReduceSum", ["contrast_sq"], ["contrast_sum"], axes=[1], keepdims=0),  # [1,4,4]
        helper.make_node("Reshape", ["contrast_sum", "shape_scores"], ["contrast_flat"]),
        helper.make_node("Mul", ["contrast_flat", "score_gain"], ["score_scaled"]),
        helper.make_node("Add", ["score_scaled", "score_bias"], ["score_logits"]),
        helper.make_node("Sigmoid", ["score_logits"], ["detected_scores"]),
        helper.make_node("Reshape", ["cell_mean", "shape_cells"], ["cells3"]),
        helper.make_node("Transpose", ["cells3"], ["cells"], perm=[0, 2, 1]),          # [1,16,3]
        helper.make_node("MatMul", ["cells", "w_cls"], ["cls_logits"]),
        helper.make_node("ArgMax", ["cls_logits"], ["detected_classes"], axis=2, keepdims=0),
        helper.make_node("MatMul", ["cells", "w_box"], ["box_mm"]),
        helper.make_node("Tanh", ["box_mm"], ["box_tanh"]),
        helper.make_node("Mul", ["box_tanh", "box_scale"], ["box_delta"]),
        helper.make_node("Add", ["base_boxes", "box_delta"], ["detected_boxes"]),
    ]
    inits = [_init("shape_cells", np.array([1, 3, cells], np.int64)), _init("w_cls", w_cls),
             _init("shape_scores", np.array([1, cells], np.int64)),
             _init("score_gain", np.array(6.0 / 10000.0, np.float32)), _init("score_bias", np.array(-3.0, np.float32)),
             _init("w_box", w_box), _init("box_scale", np.array(0.06, np.float32)), _init("base_boxes", base)]
    graph = helper.make_graph(
        nodes, "detector_s1", [helper.make_tensor_value_info("image_tensor", TensorProto.FLOAT, [1, 3, 320, 320])],
        [helper.make_tensor_value_info("detected_boxes", TensorProto.FLOAT, [1, cells, 4]),
         helper.make_tensor_value_info("detected_classes", TensorProto.INT64, [1, cells]),
         helper.make_tensor_value_info("detected_scores", TensorProto.FLOAT, [1, cells])], initializer=inits)
    return _finish(graph, {**RGB_0_255, "CustomVision.Postprocess.Method": "OD"})


def detector_compact_model(labels: tuple[str, ...] = DETECTION_LABELS, *, seed: int = 2) -> onnx.ModelProto:
    """Detection General (compact): data [1,3,416,416] -> model_outputs0 [1, 5*(5+C), 13, 13].

    An 8x8 average pool then a 4x4/stride-4 convolution give one raw YOLOv2 vector per 32x32 cell
    and anchor. Objectness kernels sum to zero and their bias is negative, so plain areas stay under
    the usual 0.1 threshold and edges of contrasting objects rise above it, as with a trained model.
    """
    rng = np.random.default_rng(seed)
    channels = 5 * (5 + len(labels))
    w = rng.normal(0.0, 1.0, (channels, 3, 4, 4)).astype(np.float32) * (0.25 / 255.0)
    objectness = slice(4, None, 5 + len(labels))
    w[objectness] -= w[objectness].mean(axis=(2, 3), keepdims=True)    # zero-sum: plain areas score low
    w[objectness] *= 8.0
    b = rng.normal(0.0, 0.5, channels).astype(np.float32)
    b[objectness] = -2.5
    graph = helper.make_graph(
        [helper.make_node("AveragePool", ["data"], ["pooled"], kernel_shape=[8, 8], strides=[8, 8]),
         helper.make_node("Conv", ["pooled", "w", "b"], ["model_outputs0"], kernel_shape=[4, 4], strides=[4, 4])],
        "detector_compact", [helper.make_tensor_value_info("data", TensorProto.FLOAT, [1, 3, 416, 416])],
        [helper.make_tensor_value_info("model_outputs0", TensorProto.FLOAT, [1, channels, 13, 13])],
        initializer=[_init("w", w), _init("b", b)])
    return _finish(graph, {**BGR_0_255, "CustomVision.Postprocess.Method": "Yolo"})


def legacy_winml_model(labels: tuple[str, ...] = DEFAULT_LABELS) -> onnx.ModelProto:
    """A WinML-era classifier: opset 1, IR 3, data [None,3,227,227] -> classLabel + loss (ZipMap).

    onnxruntime refuses it (it only supports ai.onnx opset 7+): the import error path.
    """
    rng = np.random.default_rng(3)
    w = _init("W", rng.normal(0, 1, (3, len(labels))).astype(np.float32) / 255.0)
    b = _init("B", np.zeros(len(labels), np.float32))
    nodes = [helper.make_node("GlobalAveragePool", ["data"], ["pooled"]),
             helper.make_node("Flatten", ["pooled"], ["features"]),
             helper.make_node("Gemm", ["features", "W", "B"], ["logits"], broadcast=1),
             helper.make_node("Softmax", ["logits"], ["prob"]),
             helper.make_node("ArgMax", ["prob"], ["label_index"], axis=1, keepdims=1),
             helper.make_node("LabelEncoder", ["label_index"], ["classLabel"], domain="ai.onnx.ml",
                              classes_strings=list(labels), default_string="unknown"),
             helper.make_node("ZipMap", ["prob"], ["loss"], domain="ai.onnx.ml", classlabels_strings=list(labels))]
    inputs = [helper.make_tensor_value_info("data", TensorProto.FLOAT, ["None", 3, 227, 227]),
              helper.make_tensor_value_info("W", TensorProto.FLOAT, [3, len(labels)]),   # IR 3 lists
              helper.make_tensor_value_info("B", TensorProto.FLOAT, [len(labels)])]      # weights as inputs
    graph = helper.make_graph(nodes, "winml_classifier", inputs, _zipmap_outputs("None"), initializer=[w, b])
    return _finish(graph, BGR_0_255, opset=1, ml=True, ir_version=3)


def non_image_model() -> onnx.ModelProto:
    """A tabular model (input [1,10] -> [1,3]): not something Custom Vision makes; must be refused."""
    w = np.random.default_rng(4).normal(0, 1, (10, 3)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["features", "w"], ["scores"])], "tabular",
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, [1, 10])],
        [helper.make_tensor_value_info("scores", TensorProto.FLOAT, [1, 3])], initializer=[_init("w", w)])
    return _finish(graph, {})


def build_classifier(kind: str, path: Path, *, labels: tuple[str, ...] = DEFAULT_LABELS, size: int = 224,
                     seed: int = 0) -> Path:
    """Write a classification export of ``kind`` (see ``classifier_model``) to ``path`` + labels.txt."""
    return _save(classifier_model(kind, tuple(labels), size=size, seed=seed), path, tuple(labels))


def build_detector(kind: str, path: Path, *, labels: tuple[str, ...] = DETECTION_LABELS) -> Path:
    """Write a detection export, kind "s1" or "compact", to ``path`` + labels.txt."""
    builders = {"s1": detector_s1_model, "compact": detector_compact_model}
    if kind not in builders:
        raise ValueError(f"unknown detector kind {kind!r}; expected 's1' or 'compact'")
    return _save(builders[kind](tuple(labels)), path, tuple(labels))


def build_legacy_winml(path: Path) -> Path:
    return _save(legacy_winml_model(), path, DEFAULT_LABELS)


def build_non_image(path: Path) -> Path:
    return _save(non_image_model(), path, None)


def build_all_contracts(dest_dir: Path) -> dict[str, Path]:
    """Write one model per contract/flavour as ``<dest_dir>/<key>/model.onnx`` (+ labels.txt beside it).

    Keys: classification, classification_dynamic, classification_zipmap, classification_mixed,
    classification_fp16, classification_rgb01, colour_classifier, detection_s1, detection_compact,
    legacy_winml, non_image. Returns key -> path of model.onnx.
    """
    dest_dir = Path(dest_dir)
    kinds = {"classification": "float", "classification_dynamic": "float_dynamic",
             "classification_zipmap": "zipmap", "classification_mixed": "mixed",
             "classification_fp16": "fp16", "classification_rgb01": "rgb01"}
    paths = {key: build_classifier(kind, dest_dir / key / "model.onnx") for key, kind in kinds.items()}
    paths["colour_classifier"] = build_colour_classifier(dest_dir / "colour_classifier" / "model.onnx")
    paths["detection_s1"] = build_detector("s1", dest_dir / "detection_s1" / "model.onnx")
    paths["detection_compact"] = build_detector("compact", dest_dir / "detection_compact" / "model.onnx")
    paths["legacy_winml"] = build_legacy_winml(dest_dir / "legacy_winml" / "model.onnx")
    paths["non_image"] = build_non_image(dest_dir / "non_image" / "model.onnx")
    return paths


# ---- the README's sample: a dominant-colour classifier in a real Custom Vision export zip ----------

COLOUR_LABELS = ("red", "green", "blue", "yellow", "white", "black")
_COLOUR_PROTOTYPES_RGB = np.array([[0.90, 0.10, 0.10], [0.10, 0.70, 0.20], [0.10, 0.20, 0.90],
                                   [0.95, 0.85, 0.10], [0.95, 0.95, 0.95], [0.05, 0.05, 0.05]], np.float32)
SAMPLE_IMAGES_DIRNAME = "images"
SAMPLE_EXPORT_NAME = "colour-classifier-onnx-export.zip"
_ZIP_DATE = (2024, 1, 1, 0, 0, 0)


def colour_classifier_model(*, sharpness: float = 12.0) -> onnx.ModelProto:
    """Nearest-prototype colour classifier, exactly linear + softmax, as a ZipMap-only export.

    logit_k = s * (2 c.p_k - |p_k|^2) = -s |c - p_k|^2 + (term equal for every k), where c is the
    image's mean RGB colour in 0-1 computed by GlobalAveragePool over the BGR 0-255 input.
    """
    protos_bgr = _COLOUR_PROTOTYPES_RGB[:, ::-1]                        # input channel 0 is blue
    weight = (2.0 * sharpness * protos_bgr.T / 255.0).astype(np.float32)  # [3, K]
    bias = (-sharpness * (_COLOUR_PROTOTYPES_RGB ** 2).sum(axis=1)).astype(np.float32)
    nodes = [helper.make_node("GlobalAveragePool", ["data"], ["mean_colour"]),
             helper.make_node("Flatten", ["mean_colour"], ["colour"], axis=1),
             helper.make_node("Gemm", ["colour", "colour_w", "colour_b"], ["logits"]),
             helper.make_node("Softmax", ["logits"], ["model_output"], axis=1),
             *_zipmap_nodes("model_output", COLOUR_LABELS)]
    graph = helper.make_graph(
        nodes, "dominant_colour", [helper.make_tensor_value_info("data", TensorProto.FLOAT, [1, 3, 224, 224])],
        _zipmap_outputs(1), initializer=[_init("colour_w", weight), _init("colour_b", bias)])
    meta = {**BGR_0_255, "CustomVision.Postprocess.Method": "ClassificationMultiClass",
            "CustomVision.Preprocess.TargetWidth": "224", "CustomVision.Preprocess.TargetHeight": "224"}
    return _finish(graph, meta, ml=True)


def build_colour_classifier(path: Path) -> Path:
    return _save(colour_classifier_model(), path, COLOUR_LABELS)


def write_sample_images(dest_dir: Path, *, size: tuple[int, int] = (320, 240)) -> dict[str, Path]:
    """One JPEG per colour label: noisy background of that colour plus a small grey square, so the
    dominant colour is clear but the picture is not a flat fill. Returns label -> path."""
    from PIL import Image

    dest_dir = Path(dest_dir)
    rng = np.random.default_rng(7)
    width, height = size
    paths = {}
    for label, proto in zip(COLOUR_LABELS, _COLOUR_PROTOTYPES_RGB):
        pixels = proto * 255.0 + rng.normal(0.0, 12.0, (height, width, 3))
        pixels[height // 8: height // 8 + height // 4, width // 8: width // 8 + width // 4] = 128.0
        encoded = io.BytesIO()
        Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB").save(encoded, format="JPEG", quality=90)
        paths[label] = _atomic_write(dest_dir / f"{label}.jpg", encoded.getvalue())
    return paths


_PREDICT_SCRIPT = '''"""Run the exported model on one image (written for this sample export; needs onnxruntime, pillow)."""
import sys
import numpy as np
import onnxruntime
from PIL import Image

session = onnxruntime.InferenceSession(sys.argv[1], providers=["CPUExecutionProvider"])
meta = session.get_modelmeta().custom_metadata_map
spec = session.get_inputs()[0]
height, width = spec.shape[2], spec.shape[3]
pixels = np.asarray(Image.open(sys.argv[2]).convert("RGB").resize((width, height)), np.float32)
pixels = pixels.transpose(2, 0, 1)[np.newaxis]
if meta.get("Image.BitmapPixelFormat") == "Bgr8":
    pixels = pixels[:, ::-1]
if meta.get("Image.NominalPixelRange") != "NominalRange_0_255":
    pixels = pixels / 255.0
dtype = np.float16 if spec.type == "tensor(float16)" else np.float32
for output, value in zip(session.get_outputs(), session.run(None, {spec.name: pixels.astype(dtype)})):
    print(output.name, value)
'''


def _domain_type(model: onnx.ModelProto) -> str:
    names = {o.name for o in model.graph.output}
    four_d = [o for o in model.graph.output
              if o.type.HasField("tensor_type") and len(o.type.tensor_type.shape.dim) == 4]
    return "ObjectDetection" if "detected_boxes" in names or (len(names) == 1 and four_d) else "Classification"


def build_export_zip(model: Path | onnx.ModelProto, labels: tuple[str, ...] | list[str], zip_path: Path, *,
                     domain_type: str | None = None, flavor: str | None = None,
                     iteration_id: str = "00000000-0000-0000-0000-000000000000",
                     exported_date: str = "2024-01-01T00:00:00.0000000Z") -> Path:
    """Write a zip laid out like a Custom Vision ONNX export: model.onnx, labels.txt,
    metadata_properties.json (the model's metadata_props), cvexport.manifest (DomainType, Platform,
    Flavor, ExporterVersion, ExportedDate, IterationId, ModelFileName, LabelFileName,
    MetadataPropsFileName, ModelFileSHA1, SchemaVersion) and python/onnxruntime_predict.py.
    Deterministic for the same inputs; written atomically. Returns ``zip_path``."""
    proto = model if isinstance(model, onnx.ModelProto) else onnx.load(str(model))
    model_bytes = proto.SerializeToString()
    metadata = {p.key: p.value for p in proto.metadata_props}
    manifest = {
        "DomainType": domain_type or _domain_type(proto), "Platform": "ONNX", "Flavor": flavor,
        "ExporterVersion": "2.0", "ExportedDate": exported_date, "IterationId": iteration_id,
        "ModelFileName": "model.onnx", "LabelFileName": "labels.txt",
        "MetadataPropsFileName": "metadata_properties.json",
        "ModelFileSHA1": hashlib.sha1(model_bytes).hexdigest(), "SchemaVersion": "1.0",
    }
    members = {
        "cvexport.manifest": json.dumps(manifest, indent=2).encode(),
        "labels.txt": ("\n".join(labels) + "\n").encode(),
        "metadata_properties.json": json.dumps(dict(sorted(metadata.items())), indent=4).encode(),
        "model.onnx": model_bytes,
        "python/onnxruntime_predict.py": _PREDICT_SCRIPT.encode(),
    }
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            info = zipfile.ZipInfo(name, date_time=_ZIP_DATE)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.create_system = 3
            info.external_attr = (0o100000 | 0o644) << 16     # a regular file, rw-r--r--
            archive.writestr(info, data)
    return _atomic_write(zip_path, buffer.getvalue())


def sample_images(dest_dir: Path) -> list[Path]:
    """The sample's test images written by :func:`build_sample_export` into ``dest_dir``, by name."""
    return sorted((Path(dest_dir) / SAMPLE_IMAGES_DIRNAME).glob("*.jpg"))


def build_sample_export(dest_dir: Path) -> Path:
    """The README's sample: ``<dest_dir>/colour-classifier-onnx-export.zip`` (a ZipMap-style
    classification export of the dominant-colour classifier) and one JPEG per label in
    ``<dest_dir>/images/<label>.jpg``. Returns the zip's path."""
    dest_dir = Path(dest_dir)
    write_sample_images(dest_dir / SAMPLE_IMAGES_DIRNAME)
    return build_export_zip(colour_classifier_model(), COLOUR_LABELS, dest_dir / SAMPLE_EXPORT_NAME,
                            domain_type="Classification", flavor="ONNX12")
