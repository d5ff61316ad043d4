"""A stand-in for the official Triton image (``nvcr.io/nvidia/tritonserver:<yy.mm>-py3``), built offline.

The official image cannot be pulled here, so this recipe builds one from local parts, laid out as the NGC
image is (``/opt/tritonserver/{bin,lib,backends}``), so the Dockerfile the product generates builds ``FROM``
it with only the base name changed and serves the same model repository:

1. a Debian rootfs from ``debootstrap --variant=minbase`` (with Debian's ``python3`` and ``libpython3.11``,
   which the python backend's stub links), imported with ``docker import``;
2. numpy and onnxruntime installed on the host from wheels downloaded on the host (``pip download`` into the
   cache, then ``pip install --target`` for CPython 3.11, the rootfs's Python) and copied in;
3. the real ``tritonserver`` 2.51 binary, its libraries and the python backend from the ``nvidia-pytriton``
   wheel installed in this environment, and the project's Python-based ``onnxruntime`` backend.

Everything is cached: the ``.deb`` files and wheels in ``cache_dir``, the images in the Docker daemon under
tags carrying the recipe's hash (``cvtriton-standin/tritonserver:<hash>``), so a second call is one
``inspect``. The image holds no secret: only Debian packages, public wheels and this repository's backend.

At a shell: ``python -m cvtriton_standins.triton_base_image [--cache DIR]`` prints the image name.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import importlib.metadata
import importlib.util
import io
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path
from typing import Callable

import docker
import docker.errors

from cvtriton_triton.backends import ONNXRUNTIME_BACKEND_MODEL

RECIPE_VERSION = "2"
SUITE = "bookworm"
MIRROR = os.environ.get("CVTRITON_DEBIAN_MIRROR", "http://deb.debian.org/debian")
DEB_PACKAGES = ("python3", "libpython3.11", "libstdc++6", "zlib1g")
PYTHON_MINOR = "3.11"                      # bookworm's python3: the stub and the wheels must match it
WHEEL_PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_17_x86_64",
                   "manylinux2014_x86_64")
IMAGE_REPOSITORY = "cvtriton-standin/tritonserver"
ROOTFS_REPOSITORY = "cvtriton-standin/rootfs"
LABEL = "io.cvtriton.standin"             # every image this recipe makes carries it (for cleanup)
_UNUSED_LIB = re.compile(r"/libpython3-[0-9a-f]+\.13\.so")   # only the Python 3.13 stub links it (31 MB)


def default_cache_dir() -> Path:
    """``$CVTRITON_STANDIN_CACHE``, else ``.pytest_cache/d/cvtriton-standin`` in this checkout (pytest's)."""
    env = os.environ.get("CVTRITON_STANDIN_CACHE")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[2] / ".pytest_cache" / "d" / "cvtriton-standin"


def _wheel_pins() -> tuple[str, ...]:
    """The host's numpy and onnxruntime versions, so the container computes what the host does."""
    return tuple(f"{name}=={importlib.metadata.version(name)}" for name in ("numpy", "onnxruntime"))


def _pytriton_root() -> Path:
    spec = importlib.util.find_spec("pytriton")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("nvidia-pytriton is not installed in this environment")
    return Path(list(spec.submodule_search_locations)[0])


def _pytriton_record() -> bytes:
    """The wheel's RECORD: a sha256 of every file it installed (cheap to hash, exact)."""
    dist = importlib.metadata.distribution("nvidia-pytriton")
    return (dist.read_text("RECORD") or "").encode()


_DOCKERFILE = """\
FROM {rootfs}
COPY site-packages/ /usr/local/lib/python{minor}/dist-packages/
COPY tritonserver/ /opt/tritonserver/
ENV PATH=/opt/tritonserver/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \\
    LD_LIBRARY_PATH=/opt/tritonserver/lib
WORKDIR /opt/tritonserver
COPY backends/ /opt/tritonserver/backends/
LABEL {label}="{digest}"
"""


def rootfs_hash() -> str:
    text = "\n".join([RECIPE_VERSION, SUITE, *DEB_PACKAGES])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def recipe_hash() -> str:
    """Changes when anything that goes into the image changes (packages, wheels, binary, backend)."""
    h = hashlib.sha256()
    for part in (RECIPE_VERSION, rootfs_hash(), PYTHON_MINOR, *_wheel_pins(), _DOCKERFILE):
        h.update(part.encode() + b"\0")
    h.update(_pytriton_record())
    h.update(ONNXRUNTIME_BACKEND_MODEL.read_bytes())
    return h.hexdigest()[:16]


def image_name() -> str:
    return f"{IMAGE_REPOSITORY}:{recipe_hash()}"


def _has_image(api: docker.APIClient, name: str) -> bool:
    try:
        api.inspect_image(name)
        return True
    except docker.errors.ImageNotFound:
        return False


def _run(cmd: list[str], log: Callable[[str], None]) -> None:
    log("$ " + " ".join(cmd))
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if proc.returncode:
        tail = "\n".join(proc.stdout.splitlines()[-30:])
        raise RuntimeError(f"{cmd[0]} failed (exit {proc.returncode}):\n{tail}")


def _ensure_rootfs(api: docker.APIClient, cache: Path, log: Callable[[str], None]) -> str:
    name = f"{ROOTFS_REPOSITORY}:{rootfs_hash()}"
    if _has_image(api, name):
        return name
    if os.geteuid() != 0:
        raise RuntimeError("building the stand-in rootfs needs root (debootstrap); run the tests as root "
                           "or load the image cvtriton-standin/rootfs built elsewhere")
    debs = cache / "debs"
    debs.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="cvtriton-rootfs-", dir=cache) as tmp:
        rootfs = Path(tmp) / "rootfs"
        _run(["debootstrap", "--variant=minbase", "--include=" + ",".join(DEB_PACKAGES),
              f"--cache-dir={debs}", SUITE, str(rootfs), MIRROR], log)
        for leftover in ("var/cache/apt/archives", "var/lib/apt/lists"):
            for entry in (rootfs / leftover).glob("*"):
                if entry.is_file():
                    entry.unlink()
        for docs in ("usr/share/doc", "usr/share/man", "usr/share/info", "usr/share/locale"):
            shutil.rmtree(rootfs / docs, ignore_errors=True)
        tar_path = Path(tmp) / "rootfs.tar"
        _run(["tar", "-C", str(rootfs), "--numeric-owner", "-cf", str(tar_path), "."], log)
        log(f"docker import {name}")
        repo, tag = name.split(":")
        api.import_image_from_file(str(tar_path), repository=repo, tag=tag,
                                   changes=[f'LABEL {LABEL}="rootfs"', 'CMD ["/bin/bash"]'])
    return name


def _site_packages(cache: Path, log: Callable[[str], None]) -> Path:
    """numpy + onnxruntime (and their dependencies) installed for CPython 3.11, from downloaded wheels."""
    pins = _wheel_pins()
    key = hashlib.sha256("\n".join((PYTHON_MINOR, *pins)).encode()).hexdigest()[:16]
    wheels = cache / f"wheels-{key}"
    site = cache / f"site-{key}"
    if site.is_dir():
        return site
    platform_args = [arg for p in WHEEL_PLATFORMS for arg in ("--platform", p)]
    common = ["--only-binary=:all:", "--python-version", PYTHON_MINOR, "--implementation", "cp", *platform_args]
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check"]
    if not (wheels / ".complete").exists():
        wheels.mkdir(parents=True, exist_ok=True)
        _run([*pip, "download", "-q", "-d", str(wheels), *common, *pins], log)
        (wheels / ".complete").touch()
    partial = Path(tempfile.mkdtemp(prefix=f".site-{key}-", dir=cache))
    try:
        _run([*pip, "install", "-q", "--no-index", "--find-links", str(wheels), "--target", str(partial),
              "--no-compile", *common, *pins], log)
        shutil.rmtree(partial / "bin", ignore_errors=True)     # console scripts with the host's shebang
        os.replace(partial, site)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return site


def _context(rootfs: str, site: Path, digest: str) -> io.BytesIO:
    """The build context as a tar in memory: site-packages, the Triton tree, the backends, the Dockerfile."""
    root = _pytriton_root()
    server = root / "tritonserver"
    libs = root.parent / "nvidia_pytriton.libs"
    buffer = io.BytesIO()

    def add_tree(tar: tarfile.TarFile, src: Path, arcname: str) -> None:
        tar.add(str(src), arcname=arcname, filter=_normalise)

    with tarfile.open(fileobj=buffer, mode="w") as tar:
        dockerfile = _DOCKERFILE.format(rootfs=rootfs, minor=PYTHON_MINOR, label=LABEL, digest=digest).encode()
        info = tarfile.TarInfo("Dockerfile")
        info.size = len(dockerfile)
        tar.addfile(info, io.BytesIO(dockerfile))
        add_tree(tar, site, "site-packages")
        add_tree(tar, server / "bin", "tritonserver/bin")
        add_tree(tar, server / "caches", "tritonserver/caches")
        add_tree(tar, libs, "tritonserver/lib")
        python = server / "backends" / "python"
        for name in ("libtriton_python.so", "triton_python_backend_utils.py"):
            tar.add(str(python / name), arcname=f"backends/python/{name}", filter=_normalise)
        tar.add(str(server / "python_backend_stubs" / PYTHON_MINOR / "triton_python_backend_stub"),
                arcname="backends/python/triton_python_backend_stub", filter=_normalise)
        tar.add(str(ONNXRUNTIME_BACKEND_MODEL), arcname="backends/onnxruntime/model.py", filter=_normalise)
    buffer.seek(0)
    return buffer


def _normalise(info: tarfile.TarInfo) -> tarfile.TarInfo | None:
    if "__pycache__" in info.name or _UNUSED_LIB.search(info.name):
        return None
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    info.mode = 0o755 if (info.isdir() or info.mode & 0o111) else 0o644
    return info


def ensure_base_image(cache_dir: Path | None = None, *, api: docker.APIClient | None = None,
                      log: Callable[[str], None] = lambda line: print(line, file=sys.stderr)) -> str:
    """Return the stand-in image's name, building (and caching) whatever part is missing."""
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    own = api is None
    api = api or docker.APIClient(**docker.utils.kwargs_from_env(), version="auto")
    try:
        name = image_name()
        if _has_image(api, name):
            return name
        rootfs = _ensure_rootfs(api, cache, log)
        site = _site_packages(cache, log)
        repo, tag = name.split(":")
        log(f"building {name} FROM {rootfs}")
        lines: list[str] = []
        for chunk in api.build(fileobj=_context(rootfs, site, tag), custom_context=True, tag=name, rm=True,
                               forcerm=True, decode=True, labels={LABEL: "tritonserver"}):
            if "stream" in chunk:
                lines.extend(chunk["stream"].splitlines())
            if "error" in chunk:
                raise RuntimeError("stand-in image build failed: " + chunk["error"] + "\n" + "\n".join(lines[-20:]))
        return name
    finally:
        if own:
            with contextlib.suppress(Exception):
                api.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", type=Path, default=None, help="where .debs and wheels are kept")
    args = parser.parse_args(argv)
    print(ensure_base_image(args.cache))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
