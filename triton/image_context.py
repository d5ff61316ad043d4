"""The Docker build context for a Triton image serving one model: a Dockerfile and the model repository.

Deterministic: the same model and settings give a byte-identical ``context.tar`` (sorted entries, fixed
owner, mode and time), so Docker's layer cache hits and the image tag — derived from the context's
digest — names the content. Layers are ordered so that a model-only change rebuilds only the last one:

    FROM <base>            the pinned official image (or TRITON_BASE_IMAGE / --base-image)
    EXPOSE, CMD            metadata, the same for every model
    COPY model_repository  the one layer that holds the model
    LABEL ...              metadata about the model (no filesystem layer)

When the repository holds the model's image ensemble (``<m>_image``, see ``ensemble``), the image also
serves the Custom Vision prediction route and needs Pillow for the ensemble's python steps:

    FROM <base>
    COPY pillow            the Pillow installer, + IMAGE_PIP_WHEELS' Pillow wheels (then no network needed)
    RUN install-pillow.sh  kept when the base has Pillow, else ``pip install pillow==<this tool's Pillow>``
    COPY cvtriton          the front (``customvision_front``) and ``image_supervisor``, standard library only
    EXPOSE, CMD            + the front's port; CMD = the supervisor running tritonserver and the front
    COPY model_repository  the model and its three ensemble entries
    LABEL ...              + the scoring port and the route the front answers

The Pillow layer comes before anything model-specific, so it is built once per base image. Pillow is pinned
to the version this tool decodes with, so the ensemble in the image answers as the client-side path does.
Where the build has no network, the wheels come from the context; a build behind a proxy gets the proxy
Docker's client is configured with (``~/.docker/config.json`` ``proxies``, which the docker SDK passes to
the build as ``HTTP_PROXY``/``HTTPS_PROXY``/``NO_PROXY`` build arguments, honoured by pip).

The context is also kept as a folder (``Dockerfile`` + ``model_repository/``) so any tool can build it:
``docker build -t NAME <workdir>/image/context``.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
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
from .model_repository import file_sha256

#: The official Triton image this tool builds on: release 26.10 (CUDA 13.4, GPUs of compute capability
#: 7.5 and later, e.g. T4; it also runs without a GPU). Release notes:
#: https://docs.nvidia.com/deeplearning/triton-inference-server/release-notes/rel-26-10.html
DEFAULT_BASE_IMAGE = "nvcr.io/nvidia/tritonserver:26.10-py3"

MODELS_DIR = "/models"
CONTEXT_REPOSITORY = "model_repository"      # the folder in the context copied to MODELS_DIR
HTTP_PORT, GRPC_PORT, METRICS_PORT = 8000, 8001, 8002
EXPOSED_PORTS = (HTTP_PORT, GRPC_PORT, METRICS_PORT)
#: The Custom Vision route's port (``customvision_front``), in images that serve it. It also proxies Triton's
#: /v2 API, so a deployment's liveness, readiness and scoring routes all point here (one scoring port).
CUSTOMVISION_PORT = 8080
#: The server command. Explicit configs only (``--disable-auto-complete-config``; the older
#: ``--strict-model-config`` is deprecated); readiness means every model is loaded, which is what Azure ML's
#: readiness probe on /v2/health/ready needs; a model that fails to load stops the container.
SERVER_COMMAND = ("tritonserver", f"--model-repository={MODELS_DIR}", "--disable-auto-complete-config",
                  "--strict-readiness=true", "--exit-on-error=true",
                  f"--http-port={HTTP_PORT}", f"--grpc-port={GRPC_PORT}", f"--metrics-port={METRICS_PORT}")
LOCAL_REPOSITORY = "cvtriton"                # local image name: cvtriton/<model>
LABEL_PREFIX = "io.cvtriton."
#: Image labels a deployment reads: the port its liveness, readiness and scoring routes point at (the
#: front's when the image serves the Custom Vision route, else Triton's HTTP port), and that route.
SCORING_PORT_LABEL = f"{LABEL_PREFIX}scoring.port"
ROUTE_LABEL = f"{LABEL_PREFIX}customvision.route"
ENSEMBLE_LABEL = f"{LABEL_PREFIX}customvision.ensemble"
FRONT_DIR = "/opt/cvtriton"                  # the front and the supervisor in the image
CONTEXT_FRONT = "cvtriton"                   # the folder in the context copied to FRONT_DIR
FRONT_MODULES = ("customvision_front", "image_supervisor")   # standard library only: the image's python3 runs them
CONTEXT_PILLOW = "pillow"                    # the Pillow installer (+ IMAGE_PIP_WHEELS' wheels), copied to PILLOW_DIR
PILLOW_DIR = f"{FRONT_DIR}/pillow"
PILLOW_SCRIPT = "install-pillow.sh"


@functools.lru_cache(maxsize=None)
def pillow_version() -> str:
    """The Pillow this tool decodes with: the image installs the same one (looked up on first use)."""
    return importlib.metadata.version("pillow")


def pillow_requirement() -> str:
    return f"pillow=={pillow_version()}"
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
    pip_wheels: Path | None = None      # a folder with Pillow wheels: installed from the context, no network


@dataclass(frozen=True)
class FrontSpec:
    """The Custom Vision route an image serves (present when the repository has the image ensemble)."""

    ensemble: str                       # <model>_image
    document: str                       # the ids document in the image (/models/<m>_image/customvision.json)
    route: str                          # POST path, as the Custom Vision documentation writes it
    project: str
    published_name: str
    task: str
    wheels: tuple[Path, ...] = ()       # Pillow wheels copied into the context (IMAGE_PIP_WHEELS)


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
    front: FrontSpec | None = None     # the Custom Vision route, when the image serves it
    scoring_port: int = HTTP_PORT      # where a deployment's liveness/readiness/scoring routes point

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


def scoring_port(front: FrontSpec | None) -> int:
    """The one port a deployment routes to: the front's (it proxies /v2 too) when there is one."""
    return CUSTOMVISION_PORT if front is not None else HTTP_PORT


def exposed_ports(front: FrontSpec | None) -> tuple[int, ...]:
    return EXPOSED_PORTS + ((CUSTOMVISION_PORT,) if front is not None else ())


def image_command(front: FrontSpec | None) -> list[str]:
    """The container's command: tritonserver alone, or the supervisor running tritonserver and the front."""
    if front is None:
        return list(SERVER_COMMAND)
    from .image_supervisor import SEPARATOR

    supervisor, server = (f"{FRONT_DIR}/{name}.py" for name in ("image_supervisor", "customvision_front"))
    return ["python3", supervisor, *SERVER_COMMAND, SEPARATOR,
            "python3", server, f"--document={front.document}", f"--triton=127.0.0.1:{HTTP_PORT}",
            f"--port={CUSTOMVISION_PORT}"]


#: Run by the Pillow layer as ``sh install-pillow.sh pillow==X``: keeps the base's Pillow, else installs the pinned
#: one — from the wheels beside it when there are any (no index: no network needed), else from the package
#: index (through the proxy Docker's client passes to builds). A failure's first line of output names the fix
#: (a failed build quotes the step's last lines); its messages go to stdout, which the build log shows plain.
PILLOW_INSTALLER = """\
#!/bin/sh
# Written by cvtriton-tui: adds Pillow, which the image ensemble's python steps need, unless the base has it.
set -u
requirement="$1"
here=$(dirname "$0")
if python3 -c "import PIL" 2>/dev/null; then
    python3 -c "import PIL, sys; print('Pillow', PIL.__version__, 'in the base image, Python', sys.version.split()[0])"
    exit 0
fi
if ls "$here"/*.whl >/dev/null 2>&1; then
    source="--no-index --find-links $here"
    fix="IMAGE_PIP_WHEELS must hold its wheel for this image's Python and platform"
else
    source=""
    fix="set IMAGE_PIP_WHEELS to a folder with its wheel, or let the build reach a package index"
fi
# shellcheck disable=SC2086
if ! PIP_BREAK_SYSTEM_PACKAGES=1 PIP_ROOT_USER_ACTION=ignore python3 -m pip install --no-cache-dir \\
        --disable-pip-version-check $source "$requirement" >/tmp/cvtriton-pip.log 2>&1; then
    echo "cvtriton: cannot install $requirement (the image ensemble needs it): $fix"
    tail -n 3 /tmp/cvtriton-pip.log
    exit 1
fi
rm -f /tmp/cvtriton-pip.log
python3 -c "import PIL, sys; print('Pillow', PIL.__version__, 'installed for Python', sys.version.split()[0])"
"""


def render_dockerfile(spec: ImageSpec, labels: Mapping[str, str], front: FrontSpec | None = None) -> str:
    command = json.dumps(image_command(front))
    label_lines = " \\\n      ".join(f"{key}={_quoted(value)}" for key, value in labels.items())
    lines = [
        f"# Triton Inference Server image for model '{spec.model_name}' version {spec.model_version},",
        f"# generated by cvtriton-tui {spec.tool_version}. Build it with any tool from this folder, e.g.",
        f"#   docker build -t {LOCAL_REPOSITORY}/{repository_component(spec.model_name)} .",
        "# The model repository is copied last: a model-only change rebuilds only that layer.",
        f"FROM {spec.base_image}",
    ]
    if front is not None:
        lines += [f"# Port {CUSTOMVISION_PORT} serves the Custom Vision prediction route (POST {front.route})",
                  "# and proxies Triton's /v2 API: point a deployment's routes at it. Pillow is for the ensemble."]
        lines += [f"COPY {CONTEXT_PILLOW}/ {PILLOW_DIR}/", f'RUN sh {PILLOW_DIR}/{PILLOW_SCRIPT} '
                  f'"{pillow_requirement()}"', f"COPY {CONTEXT_FRONT}/ {FRONT_DIR}/"]
    lines += [f"EXPOSE {' '.join(str(p) for p in exposed_ports(front))}", f"CMD {command}",
              f"COPY {CONTEXT_REPOSITORY}/ {MODELS_DIR}/", f"LABEL {label_lines}"]
    return "\n".join(lines) + "\n"


def _quoted(value: str) -> str:
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", " ").replace("$", "\\$") + '"'


def write_build_context(model_dir: Path, dest: Path, spec: ImageSpec) -> BuildContext:
    """Write ``<dest>/context/`` and ``<dest>/context.tar`` for the model folder ``model_dir``.

    ``model_dir`` is ``<repository>/<model name>`` (config.pbtxt + version folders); only that model (and
    its image ensemble, when the repository has one) goes into the image, so a stale model elsewhere in
    the repository cannot stop the server.
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
    front, entries = _front(model_dir, spec)
    labels = image_labels(spec, file_sha256(onnx))
    if front is not None:
        labels = dict(sorted({**labels, SCORING_PORT_LABEL: str(CUSTOMVISION_PORT), ROUTE_LABEL: front.route,
                              ENSEMBLE_LABEL: front.ensemble}.items()))
    dockerfile = render_dockerfile(spec, labels, front)
    members = []
    for entry in (model_dir, *entries):
        members += _members(entry, f"{CONTEXT_REPOSITORY}/{entry.name}")
    if front is not None:
        members += _front_members(front)
    members.sort(key=lambda member: member[0])
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
                        dockerfile=dockerfile, labels=labels,
                        files=("Dockerfile", *(name for name, source in members if source is not None)),
                        size=len(data), repository=f"{LOCAL_REPOSITORY}/{repository_component(spec.model_name)}",
                        tag=f"{spec.model_version}-{digest[:12]}", front=front, scoring_port=scoring_port(front))


def _front(model_dir: Path, spec: ImageSpec) -> tuple[FrontSpec | None, tuple[Path, ...]]:
    """The Custom Vision route and the ensemble's entry folders, when the repository has the ensemble."""
    from .ensemble import find_ensemble
    from .ensemble_runtime import IDS_FILENAME

    ensemble = find_ensemble(model_dir.parent, model_dir.name)
    if ensemble is None:
        return None, ()
    names = ensemble.names
    entries = tuple(model_dir.parent / name for name in names.entries)
    for entry in entries:
        if not (entry / "config.pbtxt").is_file():
            raise UserError(f"the image ensemble of '{names.model}' is incomplete ({entry.name} is missing)",
                            "run the repository step again")
    from .customvision_front import route_path, served_name

    published = served_name(ensemble.ids.publish_name, names.model)
    route = route_path(ensemble.ids.project, ensemble.task, published)
    return FrontSpec(ensemble=names.ensemble, document=f"{MODELS_DIR}/{names.ensemble}/{IDS_FILENAME}", route=route,
                     project=ensemble.ids.project, published_name=published, task=ensemble.task,
                     wheels=pillow_wheels(spec.pip_wheels) if spec.pip_wheels else ()), entries


def pillow_wheels(folder: Path) -> tuple[Path, ...]:
    """The wheels of the pinned Pillow in ``folder`` (IMAGE_PIP_WHEELS); a clear error when there are none."""
    folder = Path(folder)
    fetch = (f"download one for the base image's Python, e.g. pip download {pillow_requirement()} --only-binary=:all: "
             f"--python-version 3.12 --platform manylinux_2_28_x86_64 -d {folder}")
    if not folder.is_dir():
        raise UserError(f"IMAGE_PIP_WHEELS: {folder} is not a folder", fetch)
    prefix = f"pillow-{pillow_version()}-".lower()
    wheels = tuple(sorted(p for p in folder.iterdir() if p.is_file() and p.name.lower().startswith(prefix)
                          and p.suffix == ".whl"))
    if not wheels:
        raise UserError(f"IMAGE_PIP_WHEELS: no {pillow_requirement()} wheel in {folder} (the image installs the "
                        f"Pillow this tool decodes with, so both paths answer alike)", fetch)
    return wheels


def _front_members(front: FrontSpec) -> list[tuple[str, Path | bytes | None]]:
    here = Path(__file__).resolve().parent
    members: list[tuple[str, Path | bytes | None]] = [(f"{CONTEXT_FRONT}/{name}.py", here / f"{name}.py")
                                                      for name in FRONT_MODULES]
    members.append((f"{CONTEXT_PILLOW}/{PILLOW_SCRIPT}", PILLOW_INSTALLER.encode("utf-8")))
    members += [(f"{CONTEXT_PILLOW}/{wheel.name}", wheel) for wheel in front.wheels]
    return members


def _members(folder: Path, arc_root: str) -> list[tuple[str, Path | None]]:
    """(arcname, source) for every file of ``folder`` (source None: an empty folder, which an ensemble's
    version folder is), sorted; hidden files, byte-code caches and symlinks left out."""
    found: list[tuple[str, Path | None]] = []
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder)
        if any(part.startswith(".") or part == "__pycache__" for part in rel.parts) or path.is_symlink():
            continue
        if path.is_file():
            found.append((f"{arc_root}/{rel.as_posix()}", path))
        elif path.is_dir() and not any(child.name != "__pycache__" and not child.name.startswith(".")
                                       for child in path.iterdir()):
            found.append((f"{arc_root}/{rel.as_posix()}", None))
    return found


def _tar_bytes(dockerfile: str, members: list[tuple[str, Path | bytes | None]]) -> bytes:
    buffer = io.BytesIO()
    dirs: set[str] = set()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.GNU_FORMAT) as tar:
        _add(tar, "Dockerfile", dockerfile.encode("utf-8"))
        for arcname, source in members:
            parts = arcname.split("/") if source is None else arcname.split("/")[:-1]
            for i in range(1, len(parts) + 1):
                folder = "/".join(parts[:i])
                if folder not in dirs:
                    dirs.add(folder)
                    _add(tar, folder, None)
            if source is not None:
                _add(tar, arcname, source if isinstance(source, bytes) else source.read_bytes())
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


def _replace_folder(target: Path, dockerfile: str, members: list[tuple[str, Path | bytes | None]]) -> None:
    """Write the context folder beside ``target``, then swap it in (readers never see half of it)."""
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        os.chmod(staging, 0o755)
        (staging / "Dockerfile").write_text(dockerfile, encoding="utf-8")
        for arcname, source in members:
            copy = staging / arcname
            if source is None:
                copy.mkdir(parents=True, exist_ok=True)
                continue
            copy.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(source, bytes):
                copy.write_bytes(source)
            else:
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

