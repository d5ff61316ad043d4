"""Write the image ensemble beside a model in a Triton model repository: raw image bytes in, Custom Vision
``ImagePrediction`` JSON out.

For a model ``<m>`` already written by ``model_repository.write_repository``, three entries are added:

* ``<m>_preprocess`` (python backend): input ``image`` (TYPE_STRING, one encoded picture per batch
  item) -> ``preprocessed`` (the model's input type and dims);
* ``<m>_postprocess`` (python backend): the model's outputs -> ``prediction`` (TYPE_STRING: the JSON);
* ``<m>_image`` (``platform: "ensemble"``): ``image`` -> preprocess -> ``<m>`` -> postprocess -> ``prediction``.

The plain model stays as it is, so clients that send tensors keep working. Request parameters
(``threshold``, ``top_k``) given to the ensemble reach the postprocess step (Triton forwards an
ensemble request's parameters to its steps).

How the steps share the client-side code (never a fork): each step's version folder receives its
``model.py`` (from ``backends/ensemble``), the model's ``cvtriton.json`` and a verbatim copy of the
package modules the step runs (``RUNTIME_MODULES``) as the package ``cvtriton_runtime``, which
``model.py`` puts first on ``sys.path``. A repository is thus self-contained: the local Triton (whose
stub runs this venv's python) and the official Triton image (its system python3, which needs numpy
and Pillow installed) run the same files, whatever version of cvtriton is installed where the server
runs — and the files are rewritten whenever the repository is written again.

Batching follows the model: when Triton may batch the model (``max_batch_size > 0``) the ensemble and
both steps get the same ``max_batch_size`` and the steps ``dynamic_batching``; a model whose batch is
fixed at 1 gets ``max_batch_size: 0`` throughout (Triton requires an ensemble's batch size to fit every
step's). The python steps run on CPU (``KIND_CPU``) on every target; decoding is spread over
``preprocess_instances`` stub processes.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import (cv_response, ensemble_runtime, errors, image_formats, model_info, model_repository, naming, postprocess,
               preprocess, yolo_decode)
from .backends import BACKENDS_DIR
from .cv_response import SourceIds, source_ids
from .ensemble_runtime import IDS_FILENAME, IDS_FORMAT, IMAGE_INPUT, PREDICTION_OUTPUT, PREPROCESSED
from .errors import UserError
from .model_info import ModelInfo, TensorSpec
from .model_repository import (DATA_TYPES, SIDECAR_NAME, _quote, _staging_parent, _tensor_block, check_model_name,
                               read_model_info, replace_entry)

ENSEMBLE_SUFFIX = "_image"
PREPROCESS_SUFFIX = "_preprocess"
POSTPROCESS_SUFFIX = "_postprocess"
STEP_VERSION = "1"
RUNTIME_PACKAGE = "cvtriton_runtime"
#: The package modules copied next to each step's model.py (everything ensemble_runtime imports).
RUNTIME_MODULES = (cv_response, ensemble_runtime, errors, image_formats, model_info, model_repository, naming,
                   postprocess, preprocess, yolo_decode)
STEP_MODELS = BACKENDS_DIR / "ensemble"           # preprocess/model.py, postprocess/model.py
DEFAULT_PREPROCESS_INSTANCES = 2
DEFAULT_POSTPROCESS_INSTANCES = 1
MAX_INSTANCES = 16
MANIFEST_NAME = "cvexport.manifest"               # in Custom Vision export zips: IterationId, DomainType...


@dataclass(frozen=True)
class EnsembleNames:
    model: str
    ensemble: str
    preprocess: str
    postprocess: str

    @property
    def entries(self) -> tuple[str, str, str]:
        """In writing order: the steps before the ensemble that needs them."""
        return self.preprocess, self.postprocess, self.ensemble


def ensemble_names(model_name: str) -> EnsembleNames:
    check_model_name(model_name)
    names = EnsembleNames(model_name, model_name + ENSEMBLE_SUFFIX, model_name + PREPROCESS_SUFFIX,
                          model_name + POSTPROCESS_SUFFIX)
    for name in names.entries:
        if len(name) > 100:
            raise UserError(f"the model name '{model_name}' is too long to add the image ensemble ('{name}')",
                            "use a model name of at most 88 characters")
    return names


@dataclass(frozen=True)
class EnsembleInfo:
    """What a client needs to call the ensemble (read back from the repository by ``find_ensemble``)."""

    names: EnsembleNames
    task: str                 # "classify" | "detect": the Custom Vision route's word for the project type
    max_batch_size: int
    ids: SourceIds

    @property
    def request_shape(self) -> list[int]:
        """Shape of the ``image`` input for one picture."""
        return [1, 1] if self.max_batch_size > 0 else [1]


def _route_task(info: ModelInfo) -> str:
    return "detect" if info.task == "detection" else "classify"


def _step_outputs(info: ModelInfo) -> tuple[TensorSpec, ...]:
    """The model outputs the postprocess step takes: every numeric tensor (it picks what it needs)."""
    return tuple(o for o in info.outputs if o.dtype != "object")


def _instances(count: int, what: str) -> int:
    if not isinstance(count, int) or not 1 <= count <= MAX_INSTANCES:
        raise UserError(f"{what} instance count must be a whole number from 1 to {MAX_INSTANCES}, not {count!r}",
                        "use 1-16 (about one per CPU core the server may use)")
    return count


def _string_block(name: str, batched: bool) -> str:
    return _tensor_block(TensorSpec(name, "object", (-1, 1) if batched else (1,)), batched)


def _python_config(name: str, inputs: list[str], outputs: list[str], mbs: int, instances: int) -> str:
    parts = [f"name: {_quote(name)}", 'backend: "python"', f"max_batch_size: {mbs}",
             "input [\n" + ",\n".join(inputs) + "\n]", "output [\n" + ",\n".join(outputs) + "\n]"]
    if mbs > 0:
        parts.append("dynamic_batching { }")
    parts.append(f"instance_group [\n  {{\n    count: {instances}\n    kind: KIND_CPU\n  }}\n]")
    return "\n".join(parts) + "\n"


def render_preprocess_config(info: ModelInfo, names: EnsembleNames, mbs: int, instances: int) -> str:
    batched = mbs > 0
    output = TensorSpec(PREPROCESSED, info.input.dtype, info.input.shape)
    return _python_config(names.preprocess, [_string_block(IMAGE_INPUT, batched)],
                          [_tensor_block(output, batched)], mbs, instances)


def render_postprocess_config(info: ModelInfo, names: EnsembleNames, mbs: int, instances: int) -> str:
    batched = mbs > 0
    return _python_config(names.postprocess, [_tensor_block(o, batched) for o in _step_outputs(info)],
                          [_string_block(PREDICTION_OUTPUT, batched)], mbs, instances)


def _step(model: str, input_map: dict[str, str], output_map: dict[str, str]) -> str:
    maps = [f"      input_map {{ key: {_quote(k)} value: {_quote(v)} }}" for k, v in input_map.items()]
    maps += [f"      output_map {{ key: {_quote(k)} value: {_quote(v)} }}" for k, v in output_map.items()]
    return "    {\n" + f"      model_name: {_quote(model)}\n      model_version: -1\n" + "\n".join(maps) + "\n    }"


def render_ensemble_config(info: ModelInfo, names: EnsembleNames, mbs: int) -> str:
    batched = mbs > 0
    outputs = {o.name: f"model_{o.name}" for o in _step_outputs(info)}
    steps = [
        _step(names.preprocess, {IMAGE_INPUT: IMAGE_INPUT}, {PREPROCESSED: PREPROCESSED}),
        _step(names.model, {info.input.name: PREPROCESSED}, outputs),
        _step(names.postprocess, {name: tensor for name, tensor in outputs.items()},
              {PREDICTION_OUTPUT: PREDICTION_OUTPUT}),
    ]
    parts = [f"name: {_quote(names.ensemble)}", 'platform: "ensemble"', f"max_batch_size: {mbs}",
             "input [\n" + _string_block(IMAGE_INPUT, batched) + "\n]",
             "output [\n" + _string_block(PREDICTION_OUTPUT, batched) + "\n]",
             "ensemble_scheduling {\n  step [\n" + ",\n".join(steps) + "\n  ]\n}"]
    return "\n".join(parts) + "\n"


def _runtime_files() -> dict[str, bytes]:
    """``cvtriton_runtime/<module>.py``: the package's own files, byte for byte."""
    files = {f"{RUNTIME_PACKAGE}/__init__.py": b'"""cvtriton_triton modules copied for the ensemble steps."""\n'}
    for module in RUNTIME_MODULES:
        path = Path(module.__file__)
        files[f"{RUNTIME_PACKAGE}/{path.name}"] = path.read_bytes()
    return files


def _ids_document(names: EnsembleNames, info: ModelInfo, mbs: int, ids: SourceIds) -> bytes:
    document = {"format": IDS_FORMAT, "model": names.model, "ensemble": names.ensemble, "task": _route_task(info),
                "max_batch_size": mbs, "input": IMAGE_INPUT, "output": PREDICTION_OUTPUT, "ids": ids.to_dict()}
    return (json.dumps(document, indent=2, sort_keys=True) + "\n").encode("utf-8")


def render_entries(repo_dir: Path, model_name: str, ids: SourceIds | None = None, *,
                   preprocess_instances: int = DEFAULT_PREPROCESS_INSTANCES,
                   postprocess_instances: int = DEFAULT_POSTPROCESS_INSTANCES) -> dict[str, dict[str, bytes]]:
    """entry name -> {relative path: content} for the three entries (an empty version folder is ``"1/"``)."""
    names = ensemble_names(model_name)
    model_dir = Path(repo_dir) / model_name
    info = read_model_info(model_dir)
    sidecar = json.loads((model_dir / SIDECAR_NAME).read_text(encoding="utf-8"))
    mbs = int(sidecar.get("max_batch_size", 0))
    if ids is None:
        ids = source_ids(info.labels, str(sidecar.get("onnx_sha256", "")))
    for spec in (info.input, *_step_outputs(info)):
        if spec.dtype not in DATA_TYPES:
            raise UserError(f"tensor '{spec.name}' has type {spec.dtype}, which Triton cannot serve",
                            "import the model first")
    v = STEP_VERSION
    runtime = {f"{v}/{path}": data for path, data in _runtime_files().items()}
    facts = {f"{v}/{SIDECAR_NAME}": (model_dir / SIDECAR_NAME).read_bytes()}
    ids_doc = _ids_document(names, info, mbs, ids)
    pre = {"config.pbtxt": render_preprocess_config(
               info, names, mbs, _instances(preprocess_instances, "preprocess")).encode("utf-8"),
           f"{v}/model.py": (STEP_MODELS / "preprocess" / "model.py").read_bytes(), **facts, **runtime}
    post = {"config.pbtxt": render_postprocess_config(
                info, names, mbs, _instances(postprocess_instances, "postprocess")).encode("utf-8"),
            f"{v}/model.py": (STEP_MODELS / "postprocess" / "model.py").read_bytes(),
            f"{v}/{IDS_FILENAME}": ids_doc, **facts, **runtime}
    ensemble = {"config.pbtxt": render_ensemble_config(info, names, mbs).encode("utf-8"), f"{v}/": b"",
                IDS_FILENAME: ids_doc}
    return {names.preprocess: pre, names.postprocess: post, names.ensemble: ensemble}


def _listing(folder: Path) -> dict[str, bytes] | None:
    if not folder.is_dir():
        return None
    found: dict[str, bytes] = {}
    for path in folder.rglob("*"):
        rel = path.relative_to(folder).as_posix()
        if "__pycache__" in rel.split("/"):
            continue
        if path.is_dir():
            if not any(path.iterdir()):
                found[rel + "/"] = b""
        else:
            found[rel] = path.read_bytes()
    return found


def _write_entry(repo_dir: Path, name: str, files: dict[str, bytes]) -> bool:
    """Write one entry atomically (``model_repository.replace_entry``); False when it already holds exactly
    ``files``."""
    target = repo_dir / name
    if _listing(target) == files:
        return False

    def fill(staging: Path) -> None:
        for rel, data in files.items():
            path = staging / rel
            if rel.endswith("/"):
                path.mkdir(parents=True, exist_ok=True)
                continue
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)

    replace_entry(repo_dir, name, fill)
    return True


def write_ensemble(repo_dir: Path, model_name: str, ids: SourceIds | None = None, *,
                   preprocess_instances: int = DEFAULT_PREPROCESS_INSTANCES,
                   postprocess_instances: int = DEFAULT_POSTPROCESS_INSTANCES) -> EnsembleNames:
    """Add (or refresh) the image ensemble of ``<repo_dir>/<model_name>`` and return its names.

    ``ids``: the source project/iteration/tag ids (``cv_response.source_ids``); generated ones when None.
    Writing the same thing again changes nothing. Entries of those names that cvtriton did not write
    are not replaced (``UserError``).
    """
    repo_dir = Path(repo_dir)
    names = ensemble_names(model_name)
    entries = render_entries(repo_dir, model_name, ids, preprocess_instances=preprocess_instances,
                             postprocess_instances=postprocess_instances)
    for name in names.entries:
        if (repo_dir / name).exists() and not _ours(repo_dir / name):
            raise UserError(f"the model repository {repo_dir} already has a model named '{name}' that cvtriton "
                            f"did not write", "rename that model, or choose another MODEL_NAME")
    try:
        for name in names.entries:            # steps first: the ensemble is never there without them
            _write_entry(repo_dir, name, entries[name])
    except OSError as exc:
        raise UserError(f"could not write the image ensemble in {repo_dir}: {exc.strerror or exc}",
                        "check that the folder is writable and the disk is not full", exit_code=1) from None
    return names


def _ours(entry: Path) -> bool:
    return (entry / IDS_FILENAME).is_file() or (entry / STEP_VERSION / RUNTIME_PACKAGE).is_dir()


def remove_ensemble(repo_dir: Path, model_name: str) -> list[str]:
    """Remove the image ensemble of ``model_name`` (ensemble first, then its steps) if cvtriton wrote
    it; returns the names removed. A repository without one is left as it is."""
    repo_dir = Path(repo_dir)
    names = ensemble_names(model_name)
    removed = []
    try:
        for name in reversed(names.entries):
            entry = repo_dir / name
            if entry.exists() and _ours(entry):
                parent = _staging_parent(repo_dir)
                retired = parent / f".{repo_dir.name}.{name}.retired-{uuid.uuid4().hex}"
                os.replace(entry, retired)        # gone from the repository in one step
                shutil.rmtree(retired, ignore_errors=True)
                removed.append(name)
    except OSError as exc:
        raise UserError(f"could not remove the image ensemble from {repo_dir}: {exc.strerror or exc}",
                        "check that the folder is writable", exit_code=1) from None
    return removed


def find_ensemble(repo_dir: Path, model_name: str) -> EnsembleInfo | None:
    """The ensemble written for ``model_name`` in ``repo_dir``, or None when there is none."""
    names = ensemble_names(model_name)
    path = Path(repo_dir) / names.ensemble / IDS_FILENAME
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if data.get("format") != IDS_FORMAT:
            raise ValueError(f"unknown format {data.get('format')!r}")
        return EnsembleInfo(names=names, task=str(data["task"]), max_batch_size=int(data["max_batch_size"]),
                            ids=SourceIds.from_dict(data["ids"]))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise UserError(f"cannot read {path}: {exc}", "write the model repository again") from None


def read_export_manifest(source: Path) -> dict[str, Any]:
    """``cvexport.manifest`` of a Custom Vision export (zip or unpacked folder; {} when absent or unreadable).
    It names the exported iteration (``IterationId``)."""
    source = Path(source)
    try:
        if source.is_file() and zipfile.is_zipfile(source):
            with zipfile.ZipFile(source) as archive:
                member = next((n for n in archive.namelist() if n.rsplit("/", 1)[-1] == MANIFEST_NAME), None)
                if member is None or archive.getinfo(member).file_size > 1 << 20:
                    return {}
                data = json.loads(archive.read(member).decode("utf-8-sig"))
        else:
            folder = source if source.is_dir() else source.parent
            path = folder / MANIFEST_NAME
            if not path.is_file() or path.stat().st_size > 1 << 20:
                return {}
            data = json.loads(path.read_text(encoding="utf-8-sig"))
    except (OSError, ValueError, zipfile.BadZipFile):
        return {}
    return data if isinstance(data, dict) else {}
