"""The Docker build context for a Triton image serving one model: a Dockerfile and the model repository.

Deterministic: the same model and settings give a byte-identical ``context.tar`` (sorted entries, fixed
owner, mode and time), so Docker's layer cache hits and the image tag — derived from the context's
digest — names the content. Layers are ordered so that a model-only change rebuilds only the last one:

    FROM <base>            the pinned official image (or TRITON_BASE_IMAGE / --base-image)
    EXPOSE, CMD            metadata, the same for every model
    COPY model_repository  the one layer that holds the model
    LABEL ...              metadata about the model (no filesystem layer)

The context is also kept as a folder (``Dockerfile`` + ``model_repository/``) so any tool can build it:
``docker build -t NAME <workdir>/image/context``.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import shutil
import tarfile
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

from .errors import UserError

#: The official Triton image this tool builds on: release 26.10 (CUDA 13.4, GPUs of compute capability
#: 7.5 and later, e.g. T4; it also runs without a GPU). Release notes:
#: https://docs.nvidia.com/deeplearning/triton-inference-server/release-notes/rel-26-10.html
DEFAULT_BASE_IMAGE = "nvcr.io/nvidia/tritonserver:26.10-py3"

MODELS_DIR = "/models"
CONTEXT_REPOSITORY = "model_repository"      # the folder in the context copied to MODELS_DIR
HTTP_PORT, GRPC_PORT, METRICS_PORT = 8000, 8001, 8002
EXPOSED_PORTS = (HTTP_PORT, GRPC_PORT, METRICS_PORT)
#: The server command. Explicit configs only (``--disable-auto-complete-config``; the older
#: ``--strict-model-config`` is deprecated); readiness means every model is loaded, which is what Azure ML's
#: readiness probe on /v2/health/ready needs; a model that fails to load stops the container.
SERVER_COMMAND = ("tritonserver", f"--model-repository={MODELS_DIR}", "--disable-auto-complete-config",
                  "--strict-readiness=true", "--exit-on-error=true",
                  f"--http-port={HTTP_PORT}", f"--grpc-port={GRPC_PORT}", f"--metrics-port={METRICS_PORT}")
LOCAL_REPOSITORY = "cvtriton"                # local image name: cvtriton/<model>
LABEL_PREFIX = "io.cvtriton."
_EPOCH = 946684800                           # 2000-01-01: the fixed mtime of every context entry

# Docker image references, as github.com/distribution/reference parses them: the first component is a
# registry host only when it has a "." or ":" or is "localhost"; everything after it is lower case.
_DOMAIN_PART = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN = re.compile(rf"^(?:{_DOMAIN_PART}(?:\.{_DOMAIN_PART})*|\[[0-9a-fA-F:]+\])(?::[0-9]+)?$")
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_PATH = re.compile(rf"^{_COMPONENT}(?:/{_COMPONENT})*$")
_NAME_TAG_DIGEST = re.compile(rf"^{_COMPONENT}(?:/{_COMPONENT})*(?::[\w][\w.-]{{0,127}})?"
                              r"(?:@[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,})?$")


def _split_domain(value: str) -> tuple[str | None, str]:
    first, sep, rest = value.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost"):
        return first, rest
    return None, value


def check_image_reference(value: str) -> str | None:
    """None when ``value`` is a valid image reference, else what it should look like."""
    domain, rest = _split_domain(value)
    if len(value) <= 255 and (domain is None or _DOMAIN.match(domain)) and _NAME_TAG_DIGEST.match(rest):
        return None
    return "an image reference like nvcr.io/nvidia/tritonserver:26.10-py3 (lower-case repository, optional :tag)"


def check_registry(value: str) -> str | None:
    """None when ``value`` names a registry (``host[:port][/namespace]``), else what it should look like."""
    if "://" in value:
        return "a registry host without a scheme, like myregistry.azurecr.io or 127.0.0.1:5000/team"
    domain, rest = _split_domain(value + "/")        # a bare "host:port" is a host too
    rest = rest.rstrip("/")
    if domain is not None and _DOMAIN.match(domain) and (rest == "" or _PATH.match(rest)) and len(value) <= 200:
        return None
    if domain is None and value and _PATH.match(value) and len(value) <= 200:
        return None          # a Docker Hub namespace ("myteam" pushes to docker.io/myteam/...)
    return "a registry host, optionally with a port and namespace: myregistry.azurecr.io or 127.0.0.1:5000/team"


def repository_component(model_name: str) -> str:
    """A model name as a Docker repository path component (lower case; runs of . _ - collapsed)."""
    text = re.sub(r"[^a-z0-9]+", "-", model_name.lower()).strip("-")
    return text or "model"


@dataclass(frozen=True)
class ImageSpec:
    base_image: str
    model_name: str
    model_version: str
    tool_version: str
    labels: Mapping[str, str] = field(default_factory=dict)   # extra labels (source project, iteration...)


@dataclass(frozen=True)
class BuildContext:
    folder: Path              # <dest>/context: Dockerfile + model_repository/ (build it with any tool)
    tar_path: Path            # <dest>/context.tar: the same, as sent to the daemon
    digest: str               # sha256 of context.tar
    dockerfile: str
    labels: Mapping[str, str]
    files: tuple[str, ...]    # the context's files, relative
    size: int                 # bytes in context.tar
    repository: str           # cvtriton/<model>
    tag: str                  # <version>-<12 hex of the digest>

    @property
    def image_ref(self) -> str:
        return f"{self.repository}:{self.tag}"


def image_labels(spec: ImageSpec, model_sha256: str) -> dict[str, str]:
    labels = {
        "org.opencontainers.image.title": spec.model_name,
        "org.opencontainers.image.version": spec.model_version,
        "org.opencontainers.image.description": f"NVIDIA Triton Inference Server serving model '{spec.model_name}' "
                                                f"version {spec.model_version}",
        "org.opencontainers.image.base.name": spec.base_image,
        f"{LABEL_PREFIX}model.name": spec.model_name,
        f"{LABEL_PREFIX}model.version": spec.model_version,
        f"{LABEL_PREFIX}model.sha256": model_sha256,
        f"{LABEL_PREFIX}tool.version": spec.tool_version,
    }
    labels.update({k: v for k, v in spec.labels.items() if v})
    return dict(sorted(labels.items()))


def render_dockerfile(spec: ImageSpec, labels: Mapping[str, str]) -> str:
    command = json.dumps(list(SERVER_COMMAND))
    label_lines = " \\\n      ".join(f"{key}={_quoted(value)}" for key, value in labels.items())
    return (
        f"# Triton Inference Server image for model '{spec.model_name}' version {spec.model_version},\n"
        f"# generated by cvtriton-tui {spec.tool_version}. Build it with any tool from this folder, e.g.\n"
        f"#   docker build -t {LOCAL_REPOSITORY}/{repository_component(spec.model_name)} .\n"
        "# The model repository is copied last: a model-only change rebuilds only that layer.\n"
        f"FROM {spec.base_image}\n"
        f"EXPOSE {' '.join(str(p) for p in EXPOSED_PORTS)}\n"
        f"CMD {command}\n"
        f"COPY {CONTEXT_REPOSITORY}/ {MODELS_DIR}/\n"
        f"LABEL {label_lines}\n"
    )


def _quoted(value: str) -> str:
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", " ").replace("$", "\\$") + '"'


def write_build_context(model_dir: Path, dest: Path, spec: ImageSpec) -> BuildContext:
    """Write ``<dest>/context/`` and ``<dest>/context.tar`` for the model folder ``model_dir``.

    ``model_dir`` is ``<repository>/<model name>`` (config.pbtxt + version folders); only that model goes
    into the image, so a stale model elsewhere in the repository cannot stop the server.
    """
    model_dir = Path(model_dir)
    if not (model_dir / "config.pbtxt").is_file():
        raise UserError(f"no model at {model_dir} (config.pbtxt missing)", "run the repository step first")
    onnx = model_dir / spec.model_version / "model.onnx"
    if not onnx.is_file():
        raise UserError(f"model version {spec.model_version} not found in {model_dir}",
                        "run the repository step again with this MODEL_VERSION")
    problem = check_image_reference(spec.base_image)
    if problem:
        raise UserError(f"base image '{spec.base_image}' is not a valid image reference", f"use {problem}")
    labels = image_labels(spec, _sha256_file(onnx))
    dockerfile = render_dockerfile(spec, labels)
    members = _members(model_dir, spec.model_name)
    data = _tar_bytes(dockerfile, members)
    digest = hashlib.sha256(data).hexdigest()
    dest = Path(dest)
    try:
        dest.mkdir(parents=True, exist_ok=True)
        _replace_folder(dest / "context", dockerfile, members)
        _atomic_bytes(dest / "context.tar", data)
    except OSError as exc:
        raise UserError(f"could not write the build context in {dest}: {exc.strerror or exc}",
                        "check that the work folder is writable and the disk not full", exit_code=1) from None
    return BuildContext(folder=dest / "context", tar_path=dest / "context.tar", digest=f"sha256:{digest}",
                        dockerfile=dockerfile, labels=labels, files=("Dockerfile", *(m[0] for m in members)),
                        size=len(data), repository=f"{LOCAL_REPOSITORY}/{repository_component(spec.model_name)}",
                        tag=f"{spec.model_version}-{digest[:12]}")


def _members(model_dir: Path, model_name: str) -> list[tuple[str, Path]]:
    """(arcname, source) for every file of the model, sorted; hidden and temporary files left out."""
    found = []
    for path in sorted(model_dir.rglob("*")):
        rel = path.relative_to(model_dir)
        if any(part.startswith(".") for part in rel.parts) or path.is_symlink():
            continue
        if path.is_file():
            found.append((f"{CONTEXT_REPOSITORY}/{model_name}/{rel.as_posix()}", path))
    return found


def _tar_bytes(dockerfile: str, members: list[tuple[str, Path]]) -> bytes:
    buffer = io.BytesIO()
    dirs: set[str] = set()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.GNU_FORMAT) as tar:
        _add(tar, "Dockerfile", dockerfile.encode("utf-8"))
        for arcname, source in members:
            parts = arcname.split("/")[:-1]
            for i in range(1, len(parts) + 1):
                folder = "/".join(parts[:i])
                if folder not in dirs:
                    dirs.add(folder)
                    _add(tar, folder, None)
            _add(tar, arcname, source.read_bytes())
    return buffer.getvalue()


def _add(tar: tarfile.TarFile, name: str, data: bytes | None) -> None:
    info = tarfile.TarInfo(name)
    info.mtime = _EPOCH
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    if data is None:
        info.type = tarfile.DIRTYPE
        info.mode = 0o755
        tar.addfile(info)
    else:
        info.mode = 0o644
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))


def _replace_folder(target: Path, dockerfile: str, members: list[tuple[str, Path]]) -> None:
    """Write the context folder beside ``target``, then swap it in (readers never see half of it)."""
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        os.chmod(staging, 0o755)
        (staging / "Dockerfile").write_text(dockerfile, encoding="utf-8")
        for arcname, source in members:
            copy = staging / arcname
            copy.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, copy)
        retired = None
        if target.exists():
            retired = target.with_name(f".{target.name}.retired-{os.getpid()}")
            shutil.rmtree(retired, ignore_errors=True)
            os.replace(target, retired)
        os.replace(staging, target)
        if retired is not None:
            shutil.rmtree(retired, ignore_errors=True)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _atomic_bytes(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
