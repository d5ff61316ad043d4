"""Turn whatever the user has (export zip, export folder, bare .onnx) into one servable model folder.

The export zip comes from a download and is treated as hostile: no path traversal, no symlinks or
device entries, no encryption, a cap on the unpacked size (declared *and* actually streamed), and
only the few files we need are written. All work happens in a hidden staging folder inside
``workdir``; only a fully checked result (inspected, rewritten for Triton, loaded and run once by
onnxruntime on CPU) is renamed into place, so a failure leaves ``workdir`` as it was.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import stat
import tempfile
import uuid
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np
import onnx

from cvtriton_triton.errors import ModelImportError
from cvtriton_triton.graph_rewrite import make_servable
from cvtriton_triton.model_info import ModelInfo
from cvtriton_triton.onnx_inspect import REEXPORT_FIX, inspect_onnx, load_model, zipmap_labels

MAX_UNPACKED_BYTES = 1 << 30          # compact Custom Vision models are a few MB; 1 GiB is generous
MAX_ZIP_MEMBERS = 2000
IMPORT_DIRNAME = "model"              # <workdir>/model/{model.onnx,labels.txt}
WANTED = ("model.onnx", "labels.txt", "metadata_properties.json")
EXPORT_FIX = "download the export again from Custom Vision (Export -> ONNX) and give that .zip"


@dataclass(frozen=True)
class ImportedModel:
    onnx_path: Path                   # <workdir>/model/model.onnx, rewritten for Triton when needed
    labels: tuple[str, ...]
    info: ModelInfo                   # describes onnx_path (after the rewrite)
    source: Path                      # what the user gave
    warnings: tuple[str, ...] = ()    # e.g. labels generated because there was no labels.txt
    changes: tuple[str, ...] = ()     # what graph_rewrite changed, in words


def read_labels(path: Path) -> tuple[str, ...]:
    """labels.txt: one label per line, UTF-8 (a BOM is fine), LF or CRLF, trailing blank lines ignored."""
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ModelImportError(f"{path.name} is not UTF-8 text", EXPORT_FIX) from None
    lines = [line.strip() for line in text.splitlines()]
    while lines and not lines[-1]:
        lines.pop()
    if any(not line for line in lines):
        raise ModelImportError(f"{path.name} has an empty label line", "remove blank lines from labels.txt")
    return tuple(lines)


def _read_metadata(path: Path | None, warnings: list[str]) -> dict[str, str]:
    if path is None or not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8-sig"))
    except (ValueError, UnicodeDecodeError):
        warnings.append(f"{path.name} is not valid JSON and was ignored")
        return {}
    return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}


def _member_path(info: zipfile.ZipInfo) -> PurePosixPath:
    """The member's path, refusing anything that could land outside the extraction folder."""
    name = info.filename.replace("\\", "/")
    path = PurePosixPath(name)
    if name.startswith("/") or re.match(r"^[A-Za-z]:", name) or ".." in path.parts:
        raise ModelImportError(f"the zip contains an unsafe path '{info.filename}' (absolute or with '..')",
                               EXPORT_FIX)
    mode = info.external_attr >> 16
    if stat.S_ISLNK(mode):
        raise ModelImportError(f"the zip contains a symbolic link '{info.filename}'", EXPORT_FIX)
    if stat.S_IFMT(mode) and not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
        raise ModelImportError(f"the zip contains a special file '{info.filename}'", EXPORT_FIX)
    if info.flag_bits & 0x1:
        raise ModelImportError(f"the zip member '{info.filename}' is encrypted", EXPORT_FIX)
    return path


def _choose_model(paths: dict[PurePosixPath, zipfile.ZipInfo]) -> PurePosixPath:
    onnx_files = [p for p, i in paths.items() if not i.is_dir() and p.name.lower().endswith(".onnx")]
    named = [p for p in onnx_files if p.name == "model.onnx"] or onnx_files
    if not named:
        raise ModelImportError("the zip has no model.onnx (is it an ONNX export? TensorFlow, CoreML and "
                               "Docker exports cannot be served by Triton's onnxruntime backend)",
                               "export the iteration from Custom Vision with platform ONNX")
    shallowest = min(len(p.parts) for p in named)
    top = [p for p in named if len(p.parts) == shallowest]
    if len(top) > 1:
        raise ModelImportError(f"the zip holds several models ({', '.join(map(str, top))})",
                               "give a zip with a single Custom Vision export")
    return top[0]


def _copy_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, dest: Path, budget: int) -> int:
    """Stream one member to ``dest``; returns bytes written, stopping at the declared size or budget."""
    limit = min(info.file_size, budget)
    written = 0
    with archive.open(info) as src, open(dest, "wb") as out:
        while chunk := src.read(1 << 20):
            written += len(chunk)
            if written > limit:
                raise ModelImportError("the zip unpacks to more than it declares or than allowed "
                                       f"({budget // (1 << 20)} MiB): refusing a possible zip bomb", EXPORT_FIX)
            out.write(chunk)
    return written


def unpack_export(zip_path: Path, dest: Path, *, max_unpacked_bytes: int = MAX_UNPACKED_BYTES) -> dict[str, Path]:
    """Check every member of an export zip, then extract model.onnx (+ labels.txt and
    metadata_properties.json from the same folder) into ``dest``. Returns name -> extracted path."""
    try:
        archive = zipfile.ZipFile(zip_path)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError):
        raise ModelImportError(f"{zip_path.name} is not a readable zip file (corrupt or truncated)",
                               EXPORT_FIX) from None
    with archive:
        infos = archive.infolist()
        if not infos:
            raise ModelImportError(f"{zip_path.name} is empty", EXPORT_FIX)
        if len(infos) > MAX_ZIP_MEMBERS:
            raise ModelImportError(f"{zip_path.name} has {len(infos)} entries, far more than an export",
                                   EXPORT_FIX)
        paths = {_member_path(info): info for info in infos}
        declared = sum(info.file_size for info in infos)
        if declared > max_unpacked_bytes:
            raise ModelImportError(f"{zip_path.name} would unpack to {declared // (1 << 20)} MiB, over the "
                                   f"{max_unpacked_bytes // (1 << 20)} MiB limit: refusing a possible zip bomb",
                                   EXPORT_FIX)
        model_member = _choose_model(paths)
        dest.mkdir(parents=True, exist_ok=True)
        extracted: dict[str, Path] = {}
        budget = max_unpacked_bytes
        for wanted in WANTED:
            member = model_member if wanted == "model.onnx" else model_member.parent / wanted
            info = paths.get(member)
            if info is None or info.is_dir():
                continue
            try:
                budget -= _copy_member(archive, info, dest / wanted, budget)
            except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, RuntimeError):
                raise ModelImportError(f"{zip_path.name} is corrupt ('{info.filename}' cannot be read)",
                                       EXPORT_FIX) from None
            extracted[wanted] = dest / wanted
    return extracted


def _locate(source: Path, staging: Path, max_unpacked_bytes: int) -> dict[str, Path]:
    """Where model.onnx / labels.txt / metadata_properties.json are for each kind of source."""
    if source.is_file() and source.stat().st_size == 0:
        raise ModelImportError(f"{source.name} is empty (0 bytes)", EXPORT_FIX)
    if source.is_dir():
        models = [source / "model.onnx"] if (source / "model.onnx").is_file() else sorted(source.glob("*.onnx"))
        if len(models) != 1:
            raise ModelImportError(f"{source} holds {len(models)} .onnx files, expected one model.onnx",
                                   "point at the unzipped Custom Vision export folder")
        found = {"model.onnx": models[0]}
        base = source
    elif zipfile.is_zipfile(source) or source.suffix.lower() == ".zip":
        return unpack_export(source, staging / "export", max_unpacked_bytes=max_unpacked_bytes)
    elif source.suffix.lower() == ".onnx":
        found, base = {"model.onnx": source}, source.parent
    else:
        raise ModelImportError(f"{source.name} is not a .zip export, an export folder or an .onnx file",
                               "give the Custom Vision ONNX export (.zip), its folder or model.onnx")
    for name in WANTED[1:]:
        if (base / name).is_file():
            found[name] = base / name
    return found


def verify_with_onnxruntime(path: Path, info: ModelInfo) -> None:
    """Load on CPU and run one blank image: what Triton's onnxruntime backend will do at load time,
    so legacy or broken graphs fail here, with a clear message, not later inside a container."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3            # keep onnxruntime's own warnings off the user's terminal
    try:
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        feed = np.zeros([1 if d < 0 else d for d in info.input.shape], dtype=info.input.dtype)
        results = session.run([o.name for o in info.outputs], {info.input.name: feed})
    except Exception as exc:
        detail = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:240]
        raise ModelImportError(f"onnxruntime cannot run the model: {detail}", REEXPORT_FIX) from None
    for spec, value in zip(info.outputs, results):
        value = np.asarray(value)
        if value.ndim != len(spec.shape) or any(d > 0 and d != v for d, v in zip(spec.shape, value.shape)):
            raise ModelImportError(f"output '{spec.name}' came back with shape {list(value.shape)}, but the graph "
                                   f"declares {list(spec.shape)}", REEXPORT_FIX)


def _check_no_external_data(model: onnx.ModelProto) -> None:
    if any(t.data_location == onnx.TensorProto.EXTERNAL for t in model.graph.initializer):
        raise ModelImportError("the model keeps its weights in external data files",
                               "use the single-file model.onnx that Custom Vision exports")


def _inspect_found(found: dict[str, Path], warnings: list[str]):
    """Labels, metadata, the graph and what it is, for the files ``_locate`` found."""
    labels = read_labels(found["labels.txt"]) if "labels.txt" in found else None
    if labels == ():
        labels = None
        warnings.append("labels.txt is empty and was ignored")
    metadata = _read_metadata(found.get("metadata_properties.json"), warnings)
    original = load_model(found["model.onnx"])
    _check_no_external_data(original)
    return labels, metadata, original, inspect_onnx(original, labels, extra_metadata=metadata)


def check_source(source: Path, *, max_unpacked_bytes: int = MAX_UNPACKED_BYTES) -> ModelInfo:
    """What ``import_model`` checks before it runs the model: the kind of source, a whole and safe zip, a
    readable ONNX graph following a Custom Vision contract, labels that fit it. Quick (no onnxruntime
    session), and nothing is written where the user looks: a zip is unpacked into a temporary folder that is
    removed again. Every problem is a one-line ``ModelImportError``."""
    source = Path(source)
    if not source.exists():
        raise ModelImportError(f"{source} does not exist", "check the path to the exported model")
    try:
        with tempfile.TemporaryDirectory(prefix="cvtriton-check-") as tmp:
            found = _locate(source, Path(tmp), max_unpacked_bytes)
            return _inspect_found(found, [])[3]
    except OSError as exc:
        raise ModelImportError(f"cannot read {source}: {exc.strerror or exc}",
                               "check that the model file is readable") from None


def _build(source: Path, staging: Path, max_unpacked_bytes: int) -> ImportedModel:
    found = _locate(source, staging, max_unpacked_bytes)
    warnings: list[str] = []
    labels, metadata, original, info = _inspect_found(found, warnings)
    if labels is None:
        if zipmap_labels(original):
            warnings.append("no labels.txt: labels taken from the model's ZipMap")
        else:
            warnings.append("no labels.txt: predictions will be named class_0, class_1, ... "
                            "(put the export's labels.txt next to the model to name them)")
    servable, changes = make_servable(original)
    missing = {k: v for k, v in metadata.items() if k not in {p.key for p in servable.metadata_props}}
    if missing:       # keep the imported model self-describing: a re-import needs no export folder
        servable.metadata_props.extend(onnx.StringStringEntryProto(key=k, value=v) for k, v in sorted(missing.items()))
        changes.append(f"metadata from metadata_properties.json stored in the model ({', '.join(sorted(missing))})")
    (staging / "model.onnx").write_bytes(servable.SerializeToString())
    final = inspect_onnx(servable, info.labels or None)
    verify_with_onnxruntime(staging / "model.onnx", final)
    (staging / "labels.txt").write_text("".join(f"{label}\n" for label in final.labels), encoding="utf-8")
    shutil.rmtree(staging / "export", ignore_errors=True)
    return ImportedModel(staging / "model.onnx", final.labels, final, source, tuple(warnings), tuple(changes))


def import_model(source: Path, workdir: Path, *, max_unpacked_bytes: int = MAX_UNPACKED_BYTES) -> ImportedModel:
    """Import ``source`` (export .zip, export folder or .onnx) into ``<workdir>/model/``, replacing an
    earlier import only on success. Every problem is a one-line ``ModelImportError``."""
    source, workdir = Path(source), Path(workdir)
    if not source.exists():
        raise ModelImportError(f"{source} does not exist", "check the path to the exported model")
    created = not workdir.exists()
    staging: Path | None = None
    try:
        workdir.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".import-", dir=workdir))
        staged = _build(source, staging, max_unpacked_bytes)
        target = workdir / IMPORT_DIRNAME
        retired = workdir / f".retired-{uuid.uuid4().hex}"
        if target.exists():
            os.replace(target, retired)
        os.replace(staging, target)
        staging = None
        shutil.rmtree(retired, ignore_errors=True)
    except OSError as exc:
        raise ModelImportError(f"could not import {source.name} into {workdir}: {exc.strerror or exc}",
                               "check that the model is readable, the work folder writable and the disk "
                               "not full") from None
    finally:
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)
            if created and workdir.is_dir() and not any(workdir.iterdir()):
                workdir.rmdir()
    return dataclasses.replace(staged, onnx_path=target / "model.onnx")
