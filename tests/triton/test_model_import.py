"""import_model (zip / folder / bare .onnx, hostile zips, nothing written on failure), the ZipMap
rewrite, and the sample export the README relies on."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import struct
import zipfile
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from cvtriton_triton.errors import ModelImportError
from cvtriton_triton.graph_rewrite import make_servable
from cvtriton_triton.model_import import import_model, read_labels
from cvtriton_triton.model_info import Contract
from cvtriton_triton.postprocess import predictions
from cvtriton_triton.preprocess import prepare
from cvtriton_triton.sample_models import (COLOUR_LABELS, SAMPLE_IMAGES_DIRNAME, build_export_zip,
                                           build_sample_export, classifier_model)


def _session(path: Path) -> ort.InferenceSession:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def _run(session: ort.InferenceSession, tensor: np.ndarray) -> dict:
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(names, {session.get_inputs()[0].name: tensor})))


# ---- successful imports ----------------------------------------------------------------------

def test_export_zip_imports_into_one_servable_folder(sample_export, tmp_path, listing):
    imported = import_model(sample_export, tmp_path / "work")
    assert listing(tmp_path / "work") == ["model", "model/labels.txt", "model/model.onnx"]
    assert imported.onnx_path == tmp_path / "work" / "model" / "model.onnx"
    assert imported.labels == COLOUR_LABELS and imported.info.labels == COLOUR_LABELS
    assert read_labels(tmp_path / "work" / "model" / "labels.txt") == COLOUR_LABELS
    assert imported.info.contract is Contract.CLASSIFICATION          # ZipMap rewritten away
    assert [o.name for o in imported.info.outputs] == ["model_output"]
    assert any("loss" in change for change in imported.changes) and imported.warnings == ()
    assert imported.source == sample_export


def test_sample_export_predicts_the_right_colour_for_every_sample_image(sample_export, tmp_path):
    imported = import_model(sample_export, tmp_path / "work")
    session = _session(imported.onnx_path)
    images = sorted((sample_export.parent / SAMPLE_IMAGES_DIRNAME).glob("*.jpg"))
    assert sorted(p.stem for p in images) == sorted(COLOUR_LABELS)
    for image in images:
        best = predictions(_run(session, prepare(image, imported.info)), imported.info)[0]
        assert best.label == image.stem and best.probability > 0.9, (image.name, best)


def test_sample_export_zip_is_laid_out_like_a_custom_vision_export(sample_export):
    with zipfile.ZipFile(sample_export) as archive:
        names = set(archive.namelist())
        assert {"model.onnx", "labels.txt", "metadata_properties.json", "cvexport.manifest"} <= names
        assert any(n.startswith("python/") and n.endswith(".py") for n in names)
        manifest = json.loads(archive.read("cvexport.manifest"))
        model_bytes = archive.read("model.onnx")
        metadata = json.loads(archive.read("metadata_properties.json"))
        labels = archive.read("labels.txt").decode().split()
    assert manifest["Platform"] == "ONNX" and manifest["DomainType"] == "Classification"
    assert manifest["ModelFileName"] == "model.onnx" and manifest["LabelFileName"] == "labels.txt"
    assert manifest["ModelFileSHA1"] == hashlib.sha1(model_bytes).hexdigest()
    assert metadata["Image.BitmapPixelFormat"] == "Bgr8"
    assert metadata["Image.NominalPixelRange"] == "NominalRange_0_255"
    assert tuple(labels) == COLOUR_LABELS


def test_sample_export_is_deterministic(sample_export, tmp_path):
    again = build_sample_export(tmp_path)
    assert again.read_bytes() == sample_export.read_bytes()
    first = sample_export.parent / SAMPLE_IMAGES_DIRNAME
    for image in (tmp_path / SAMPLE_IMAGES_DIRNAME).iterdir():
        assert image.read_bytes() == (first / image.name).read_bytes()


def test_export_zip_for_a_detector_says_object_detection(sample_models, tmp_path):
    path = build_export_zip(sample_models["detection_compact"], ("box", "can"), tmp_path / "od.zip")
    with zipfile.ZipFile(path) as archive:
        assert json.loads(archive.read("cvexport.manifest"))["DomainType"] == "ObjectDetection"
    assert import_model(path, tmp_path / "w").info.contract is Contract.DETECTION_COMPACT


def test_folder_with_model_and_labels_imports(sample_models, tmp_path):
    folder = tmp_path / "export"
    shutil.copytree(sample_models["detection_s1"].parent, folder)
    (folder / "labels.txt").write_bytes("\ufeffbottle\r\ncan\r\n\r\n".encode("utf-8"))   # BOM + CRLF
    imported = import_model(folder, tmp_path / "work")
    assert imported.labels == ("bottle", "can") and imported.info.contract is Contract.DETECTION_S1


def test_bare_onnx_without_labels_gets_generated_labels_and_a_warning(sample_models, tmp_path):
    bare = tmp_path / "given" / "classifier.onnx"
    bare.parent.mkdir()
    shutil.copy(sample_models["classification"], bare)
    imported = import_model(bare, tmp_path / "work")
    assert imported.labels == ("class_0", "class_1", "class_2")
    assert any("no labels.txt" in w for w in imported.warnings)


def test_bare_zipmap_onnx_takes_labels_from_the_zipmap(sample_models, tmp_path):
    bare = tmp_path / "zipmap.onnx"
    shutil.copy(sample_models["classification_zipmap"], bare)
    imported = import_model(bare, tmp_path / "work")
    assert imported.labels == ("apple", "banana", "cherry")
    assert any("ZipMap" in w for w in imported.warnings)


def test_a_new_import_replaces_the_previous_one(sample_models, sample_export, tmp_path, listing):
    import_model(sample_models["detection_compact"], tmp_path / "work")
    imported = import_model(sample_export, tmp_path / "work")
    assert imported.labels == COLOUR_LABELS
    assert listing(tmp_path / "work") == ["model", "model/labels.txt", "model/model.onnx"]


def test_reimporting_an_imported_folder_changes_nothing(sample_models, tmp_path):
    bare = tmp_path / "bare" / "s1.onnx"
    bare.parent.mkdir()
    shutil.copy(sample_models["detection_s1"], bare)
    first = import_model(bare, tmp_path / "a")                                    # no labels known
    assert first.labels == () and (first.onnx_path.parent / "labels.txt").read_text() == ""
    again = import_model(first.onnx_path.parent, tmp_path / "b")
    assert again.info == first.info and again.onnx_path.read_bytes() == first.onnx_path.read_bytes()
    assert any("empty" in w for w in again.warnings)


def test_export_json_metadata_is_stored_in_the_imported_model(tmp_path, make_zip):
    model = classifier_model("float")
    del model.metadata_props[:]                           # pixel flags only in metadata_properties.json
    path = make_zip({"model.onnx": model.SerializeToString(), "labels.txt": "a\nb\nc\n",
                     "metadata_properties.json": json.dumps({"Image.BitmapPixelFormat": "Bgr8",
                                                             "Image.NominalPixelRange": "NominalRange_0_255"})})
    imported = import_model(path, tmp_path / "a")
    assert (imported.info.channels_bgr, imported.info.range_0_255) == (True, True)
    props = {p.key: p.value for p in onnx.load(str(imported.onnx_path)).metadata_props}
    assert props["Image.BitmapPixelFormat"] == "Bgr8"
    assert import_model(imported.onnx_path.parent, tmp_path / "b").info == imported.info


def test_fp16_and_dynamic_batch_models_import(sample_models, tmp_path):
    fp16 = import_model(sample_models["classification_fp16"], tmp_path / "a").info
    assert fp16.input_is_fp16 and fp16.outputs[0].dtype == "float16"
    assert import_model(sample_models["classification_dynamic"], tmp_path / "b").info.batch_dynamic


# ---- refusals: one line, nothing written ----------------------------------------------------------

def _symlink_zip(path: Path) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        info = zipfile.ZipInfo("labels.txt")
        info.create_system = 3
        info.external_attr = (0o120777 << 16)          # S_IFLNK
        archive.writestr(info, "/etc/passwd")
    return path


def _export_members(sample_models, key="classification") -> dict:
    folder = sample_models[key].parent
    return {"model.onnx": (folder / "model.onnx").read_bytes(), "labels.txt": (folder / "labels.txt").read_text()}


@pytest.mark.parametrize("case, expected", [
    ("traversal", "unsafe path"), ("absolute", "unsafe path"), ("backslash", "unsafe path"),
    ("symlink", "symbolic link"), ("random_bytes", "not a readable zip"), ("truncated", "not a readable zip"),
    ("empty", "is empty"), ("no_model", "no model.onnx"), ("two_models", "several models"),
    ("legacy", "legacy"), ("non_image", "not an image"), ("label_mismatch", "labels"),
    ("bomb", "zip bomb"), ("lying_size", "corrupt"), ("not_a_model", "not a readable ONNX"),
])
def test_bad_zips_are_refused_and_nothing_is_written(case, expected, sample_models, make_zip, tmp_path, listing):
    members = _export_members(sample_models)
    if case == "traversal":
        path = make_zip({**members, "../evil.txt": "x"})
    elif case == "absolute":
        path = make_zip({**members, "/tmp/evil.txt": "x"})
    elif case == "backslash":
        path = make_zip({**members, "..\\..\\evil.txt": "x"})
    elif case == "symlink":
        path = _symlink_zip(tmp_path / "link.zip")
    elif case == "random_bytes":
        path = tmp_path / "junk.zip"
        path.write_bytes(os.urandom(4096))
    elif case == "truncated":
        whole = make_zip(members).read_bytes()
        path = tmp_path / "cut.zip"
        path.write_bytes(whole[: len(whole) // 2])
    elif case == "empty":
        path = make_zip({})
    elif case == "no_model":
        path = make_zip({"labels.txt": "a\nb\n", "cvexport.manifest": "{}"})
    elif case == "two_models":
        path = make_zip({"a/model.onnx": members["model.onnx"], "b/model.onnx": members["model.onnx"]})
    elif case in ("legacy", "non_image"):
        key = "legacy_winml" if case == "legacy" else "non_image"
        path = make_zip({"model.onnx": sample_models[key].read_bytes()})
    elif case == "label_mismatch":
        path = make_zip({**members, "labels.txt": "only\ntwo\n"})
    elif case == "bomb":
        path = make_zip({**members, "padding.bin": b"\0" * (3 << 20)})
    elif case == "lying_size":
        path = make_zip(members)
        _shrink_declared_size(path, "model.onnx")
    else:
        path = make_zip({"model.onnx": b"\x08\x01 definitely not a graph \xff", "labels.txt": "a\n"})
    work = tmp_path / "work"
    with pytest.raises(ModelImportError) as excinfo:
        import_model(path, work, max_unpacked_bytes=2 << 20)
    message = str(excinfo.value)
    assert "\n" not in message and " — " in message and expected in message, message
    assert listing(work) == []


def _shrink_declared_size(path: Path, member: str) -> None:
    """Make the zip claim ``member`` is 100 bytes smaller than it is (local and central headers)."""
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as archive:
        info = archive.getinfo(member)
    local = info.header_offset
    struct.pack_into("<I", data, local + 22, info.file_size - 100)
    central = data.find(b"PK\x01\x02")
    while central >= 0:
        name_len = struct.unpack_from("<H", data, central + 28)[0]
        if bytes(data[central + 46: central + 46 + name_len]) == member.encode():
            struct.pack_into("<I", data, central + 24, info.file_size - 100)
            break
        central = data.find(b"PK\x01\x02", central + 4)
    path.write_bytes(bytes(data))


def test_failed_import_keeps_the_previous_one(sample_models, sample_export, tmp_path, listing):
    import_model(sample_export, tmp_path / "work")
    before = listing(tmp_path / "work")
    digest = (tmp_path / "work" / "model" / "model.onnx").read_bytes()
    with pytest.raises(ModelImportError):
        import_model(sample_models["legacy_winml"], tmp_path / "work")
    assert listing(tmp_path / "work") == before
    assert (tmp_path / "work" / "model" / "model.onnx").read_bytes() == digest


def test_missing_source_and_unknown_file_types(tmp_path, listing):
    with pytest.raises(ModelImportError, match="does not exist"):
        import_model(tmp_path / "nope.zip", tmp_path / "work")
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    with pytest.raises(ModelImportError, match="not a .zip export"):
        import_model(text, tmp_path / "work")
    assert listing(tmp_path / "work") == []


def test_graph_whose_declared_shape_lies_fails_the_onnxruntime_check(tmp_path, listing):
    model = classifier_model("float")
    model.graph.output[0].type.tensor_type.shape.dim[1].dim_value = 5     # computes 3 classes
    path = tmp_path / "model.onnx"
    path.write_bytes(model.SerializeToString())
    with pytest.raises(ModelImportError, match="shape") as excinfo:
        import_model(path, tmp_path / "work")
    assert "\n" not in str(excinfo.value)
    assert listing(tmp_path / "work") == []


# ---- the ZipMap rewrite -----------------------------------------------------------------------

@pytest.mark.parametrize("key", ["classification_zipmap", "colour_classifier", "classification_mixed"])
def test_rewrite_gives_exactly_the_zipmap_probabilities(sample_models, key, tmp_path):
    original = onnx.load(str(sample_models[key]))
    rewritten, changes = make_servable(original)
    onnx.checker.check_model(rewritten, full_check=True)
    assert changes and [o.name for o in rewritten.graph.output] == ["model_output"]
    assert all(op.domain != "ai.onnx.ml" for op in rewritten.opset_import)
    assert all(node.op_type not in ("ZipMap", "LabelEncoder") for node in rewritten.graph.node)
    before = ort.InferenceSession(original.SerializeToString(), providers=["CPUExecutionProvider"])
    after = ort.InferenceSession(rewritten.SerializeToString(), providers=["CPUExecutionProvider"])
    labels = [a.strings for n in original.graph.node if n.op_type == "ZipMap" for a in n.attribute][0]
    rng = np.random.default_rng(1)
    for _ in range(4):
        image = (rng.random((1, 3, 224, 224)) * 255).astype(np.float32) * rng.random((1, 3, 1, 1)).astype(np.float32)
        zipmap = before.run(["loss"], {"data": image})[0][0]
        probs = after.run(None, {"data": image})[0][0]
        assert [zipmap[label.decode()] for label in labels] == pytest.approx(probs.tolist(), rel=0, abs=1e-7)


def test_rewrite_leaves_servable_graphs_alone(sample_models):
    for key in ("classification", "detection_s1", "detection_compact", "classification_fp16"):
        original = onnx.load(str(sample_models[key]))
        rewritten, changes = make_servable(original)
        assert changes == [] and rewritten.SerializeToString() == original.SerializeToString()
