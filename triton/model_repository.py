"""Write a Triton model repository entry that the official Triton image serves as is.

Layout: ``<repo>/<name>/config.pbtxt``, ``<repo>/<name>/<version>/model.onnx``,
``<repo>/<name>/labels.txt`` and ``<repo>/<name>/cvtriton.json`` (what the client needs to pre- and
post-process without the ONNX file: contract, labels, size, pixel format and range, tensor specs).

The config is explicit — every input and output with type and dims — because Triton skips
auto-complete when a config lists them, and because the Python stand-in backend cannot
auto-complete at all (it would load a config without them and then fail every request). We use
``platform: "onnxruntime_onnx"``: it is what Triton's own ONNX examples and the Azure ML Triton examples
use, and every Triton release from 21.08 to today maps it to the onnxruntime backend (``backend: "onnxruntime"`` only became the documented
spelling later). Batch handling follows Triton's rules: a batch dimension fixed at 1 means
``max_batch_size: 0`` and full dims; a free one means ``max_batch_size: N`` with dims *without* the
batch dimension, plus ``dynamic_batching { }`` so concurrent requests are joined.

The entry is built in a staging folder beside the repository (never inside it: Triton treats every
sub-folder of a repository, hidden or not, as a model) and renamed into place.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import uuid
from pathlib import Path
from typing import Any, Callable, Protocol

from .errors import UserError
from .model_info import Contract, ModelInfo, TensorSpec
from .naming import MODEL_VERSION_RULE, model_name_problem, model_version_problem

PLATFORM = "onnxruntime_onnx"
DEFAULT_MAX_BATCH_SIZE = 8
SIDECAR_NAME = "cvtriton.json"
SIDECAR_FORMAT = "cvtriton-model/1"
INSTANCE_KINDS = ("KIND_GPU", "KIND_CPU")
DATA_TYPES = {"float32": "TYPE_FP32", "float16": "TYPE_FP16", "float64": "TYPE_FP64", "int64": "TYPE_INT64",
              "int32": "TYPE_INT32", "int16": "TYPE_INT16", "int8": "TYPE_INT8", "uint8": "TYPE_UINT8",
              "bool": "TYPE_BOOL", "object": "TYPE_STRING"}


class _Imported(Protocol):        # model_import.ImportedModel, without importing onnxruntime here
    onnx_path: Path
    labels: tuple[str, ...]
    info: ModelInfo


def check_model_name(name: str) -> str:
    problem = model_name_problem(name)
    if problem:
        raise UserError(f"'{name}' is not a usable model name", f"use {problem}")
    return name


def batchable(info: ModelInfo) -> bool:
    """Triton may batch only when the input and every output have a free leading dimension."""
    return info.batch_dynamic and all(len(o.shape) >= 1 and o.shape[0] == -1 for o in info.outputs)


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _tensor_block(spec: TensorSpec, batched: bool, extra: str = "") -> str:
    if spec.dtype not in DATA_TYPES:
        raise UserError(f"tensor '{spec.name}' has type {spec.dtype}, which Triton cannot serve",
                        "import the model first so sequence/map outputs are rewritten to tensors")
    dims = list(spec.shape[1:] if batched else spec.shape)
    if not dims:
        raise UserError(f"tensor '{spec.name}' has no dimensions to declare", "re-export the model")
    lines = [f"    name: {_quote(spec.name)}", f"    data_type: {DATA_TYPES[spec.dtype]}",
             f"    dims: [ {', '.join(str(d) for d in dims)} ]"]
    if extra:
        lines.append(f"    {extra}")
    return "  {\n" + "\n".join(lines) + "\n  }"


def resolve_max_batch_size(info: ModelInfo, max_batch_size: int | None) -> int:
    can_batch = batchable(info)
    if max_batch_size is None:
        return DEFAULT_MAX_BATCH_SIZE if can_batch else 0
    if not isinstance(max_batch_size, int) or max_batch_size < 0:
        raise UserError(f"max_batch_size must be a whole number >= 0, not {max_batch_size!r}", "use 0 or 1-64")
    if max_batch_size > 0 and not can_batch:
        raise UserError("this model's batch dimension is fixed at 1, so Triton cannot batch it",
                        "leave max_batch_size at 0 (or re-export with a free batch dimension)")
    return max_batch_size


def render_config(info: ModelInfo, model_name: str, *, max_batch_size: int | None = None,
                  instance_kind: str | None = None) -> str:
    """config.pbtxt text for ``info`` (see the module docstring for the rules it follows)."""
    check_model_name(model_name)
    if instance_kind is not None and instance_kind not in INSTANCE_KINDS:
        raise UserError(f"instance kind '{instance_kind}' is not one of {', '.join(INSTANCE_KINDS)}",
                        "use KIND_GPU for a GPU target, KIND_CPU for a CPU one, or leave it unset")
    mbs = resolve_max_batch_size(info, max_batch_size)
    batched = mbs > 0
    outputs = []
    for spec in info.outputs:
        is_scores = info.contract is Contract.CLASSIFICATION and spec.dtype in ("float32", "float16") \
            and len(spec.shape) == 2
        outputs.append(_tensor_block(spec, batched, 'label_filename: "labels.txt"' if is_scores else ""))
    parts = [
        f"name: {_quote(model_name)}",
        f"platform: {_quote(PLATFORM)}",
        f"max_batch_size: {mbs}",
        "input [\n" + _tensor_block(info.input, batched) + "\n]",
        "output [\n" + ",\n".join(outputs) + "\n]",
    ]
    if batched:
        parts.append("dynamic_batching { }")
    if instance_kind is not None:
        parts.append(f"instance_group [\n  {{\n    count: 1\n    kind: {instance_kind}\n  }}\n]")
    return "\n".join(parts) + "\n"


def file_sha256(path: Path) -> str:
    """The file's sha256 (hex), read in 1 MiB blocks: a model file can be larger than memory wants to hold."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _spec_dict(spec: TensorSpec) -> dict[str, Any]:
    return {"name": spec.name, "dtype": spec.dtype, "shape": list(spec.shape)}


def sidecar(info: ModelInfo, model_name: str, model_version: str, max_batch_size: int, onnx_sha256: str) -> dict:
    """What the client reads instead of the ONNX file (``read_model_info`` turns it back)."""
    return {
        "format": SIDECAR_FORMAT, "model_name": model_name, "model_version": model_version,
        "contract": info.contract.value, "task": info.task, "labels": list(info.labels),
        "height": info.height, "width": info.width,
        "pixel_format": "Bgr8" if info.channels_bgr else "Rgb8",
        "pixel_range": "NominalRange_0_255" if info.range_0_255 else "Normalized_0_1",
        "batch_dynamic": info.batch_dynamic, "max_batch_size": max_batch_size, "opset": info.opset,
        "input": _spec_dict(info.input), "outputs": [_spec_dict(o) for o in info.outputs],
        "onnx_sha256": onnx_sha256, "metadata": dict(sorted(info.metadata.items())),
    }


def read_model_info(path: Path) -> ModelInfo:
    """ModelInfo from a model folder's cvtriton.json (or the file itself)."""
    path = Path(path)
    file = path / SIDECAR_NAME if path.is_dir() else path
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
        if data.get("format") != SIDECAR_FORMAT:
            raise ValueError(f"unknown format {data.get('format')!r}")
        spec = lambda d: TensorSpec(d["name"], d["dtype"], tuple(d["shape"]))  # noqa: E731
        return ModelInfo(contract=Contract(data["contract"]), input=spec(data["input"]),
                         outputs=tuple(spec(o) for o in data["outputs"]), labels=tuple(data["labels"]),
                         height=int(data["height"]), width=int(data["width"]),
                         channels_bgr=data["pixel_format"] == "Bgr8",
                         range_0_255=data["pixel_range"] == "NominalRange_0_255",
                         batch_dynamic=bool(data["batch_dynamic"]), opset=int(data["opset"]),
                         metadata=dict(data.get("metadata", {})))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise UserError(f"cannot read {file}: {exc}", "write the model repository again") from None


def _same_entry(target: Path, config: str, labels: str, onnx_sha256: str, version: str) -> bool:
    try:
        return ((target / "config.pbtxt").read_text(encoding="utf-8") == config
                and (target / "labels.txt").read_text(encoding="utf-8") == labels
                and json.loads((target / SIDECAR_NAME).read_text(encoding="utf-8")).get("onnx_sha256") == onnx_sha256
                and (target / version / "model.onnx").is_file())
    except (OSError, ValueError):
        return False


def _staging_parent(repo_dir: Path) -> Path:
    parent = repo_dir.parent
    return parent if os.access(parent, os.W_OK) else repo_dir


def replace_entry(repo_dir: Path, name: str, fill: Callable[[Path], None]) -> Path:
    """Write the repository entry ``<repo_dir>/<name>`` whole and return it: ``fill`` writes the entry's files
    into a fresh staging folder beside the repository, which then takes the entry's place in one rename (a
    server polling the repository never sees half an entry; an old entry is put back if the rename fails).
    Folders get mode 0755 (``mkdtemp`` makes 0700; Triton in a container may run as another user). The
    staging folder and the retired old entry are removed whatever happens. ``OSError`` goes to the caller."""
    parent = _staging_parent(repo_dir)
    target = repo_dir / name
    staging = Path(tempfile.mkdtemp(prefix=f".{repo_dir.name}.{name}.", dir=parent))
    retired = parent / f".{repo_dir.name}.{name}.retired-{uuid.uuid4().hex}"
    try:
        fill(staging)
        for folder in [staging, *(p for p in staging.rglob("*") if p.is_dir())]:
            os.chmod(folder, 0o755)
        if target.exists():
            os.replace(target, retired)
        try:
            os.replace(staging, target)
        except OSError:
            if retired.exists():
                os.replace(retired, target)
            raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        shutil.rmtree(retired, ignore_errors=True)
    return target


def write_repository(imported: _Imported, repo_dir: Path, model_name: str, model_version: str = "1", *,
                     max_batch_size: int | None = None, instance_kind: str | None = None,
                     replace: bool = False) -> Path:
    """Write ``<repo_dir>/<model_name>/`` atomically and return it.

    Writing the same model and config again is a no-op. A different existing entry of that name is
    only replaced with ``replace=True`` (the old one is removed after the new one is in place);
    otherwise ``UserError``.
    """
    check_model_name(model_name)
    if model_version_problem(str(model_version)):
        raise UserError(f"model version '{model_version}' is not usable", f"use {MODEL_VERSION_RULE}")
    version = str(model_version)
    info = imported.info
    mbs = resolve_max_batch_size(info, max_batch_size)
    config = render_config(info, model_name, max_batch_size=mbs, instance_kind=instance_kind)
    labels = "".join(f"{label}\n" for label in info.labels)
    repo_dir = Path(repo_dir)
    target = repo_dir / model_name
    try:
        digest = file_sha256(Path(imported.onnx_path))
        if target.exists():
            if _same_entry(target, config, labels, digest, version):
                return target
            if not replace:
                raise UserError(f"a different model named '{model_name}' already exists in {repo_dir}",
                                "choose another model name, or replace it explicitly")
        repo_dir.mkdir(parents=True, exist_ok=True)

        def fill(staging: Path) -> None:
            (staging / version).mkdir()
            shutil.copyfile(imported.onnx_path, staging / version / "model.onnx")
            (staging / "config.pbtxt").write_text(config, encoding="utf-8")
            (staging / "labels.txt").write_text(labels, encoding="utf-8")
            (staging / SIDECAR_NAME).write_text(
                json.dumps(sidecar(info, model_name, version, mbs, digest), indent=2) + "\n", encoding="utf-8")

        replace_entry(repo_dir, model_name, fill)
    except OSError as exc:
        raise UserError(f"could not write the model repository in {repo_dir}: {exc.strerror or exc}",
                        "check that the folder is writable and the disk is not full", exit_code=1) from None
    return target
