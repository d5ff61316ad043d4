"""Download an export zip, check it is whole and what it should be, and unpack it without trusting it.

The download URI is a pre-signed blob URL (its ``sig=`` is a secret), so it is never logged; only its host is.
The zip comes from a remote service, so unpacking refuses absolute paths, ``..`` parts, links and archives
that would grow past a size cap, and it never leaves a half-written folder: files go to a temporary folder
beside the target, which then replaces the target in one rename.
"""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
import zipfile
from pathlib import Path, PurePosixPath
from typing import Callable
from urllib.parse import urlsplit

from cvtriton_core.errors import StepFailed

REQUIRED_MEMBERS = ("model.onnx", "labels.txt")
MAX_UNPACKED_BYTES = 2 * 1024 ** 3
MAX_MEMBERS = 1000
CHUNK = 1 << 16


def uri_host(uri: str) -> str:
    """What may be shown of a pre-signed URL: its scheme and host."""
    parts = urlsplit(uri)
    return f"{parts.scheme}://{parts.hostname or '?'}"


PART_SUFFIX = ".part"


def remove_partial_downloads(folder: Path, name: str = "*") -> list[Path]:
    """Delete ``.<name>.*.part`` files a killed run left in ``folder`` (a crash or SIGKILL skips the cleanup
    below). Only safe while this run holds the work folder's lock, which every run takes first."""
    removed = []
    if Path(folder).is_dir():
        for part in Path(folder).glob(f".{name}.*{PART_SUFFIX}"):
            part.unlink(missing_ok=True)
            removed.append(part)
    return removed


def download_file(uri: str, dest: Path, *, on_progress: Callable[[int, int | None], None] | None = None,
                  timeout_s: float = 60.0) -> Path:
    """Stream ``uri`` into ``dest`` (atomically). Raises urllib errors for the caller's retry policy, and
    StepFailed when the body is shorter than its Content-Length."""
    import urllib.request

    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    remove_partial_downloads(dest.parent, dest.name)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=PART_SUFFIX, dir=dest.parent)
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(uri, timeout=timeout_s) as response:
            total_header = response.headers.get("Content-Length")
            total = int(total_header) if total_header and total_header.isdigit() else None
            done = 0
            while True:
                chunk = response.read(CHUNK)
                if not chunk:
                    break
                out.write(chunk)
                done += len(chunk)
                if on_progress:
                    on_progress(done, total)
            out.flush()
            os.fsync(out.fileno())
        if total is not None and done != total:
            raise StepFailed(f"the export download from {uri_host(uri)} stopped at {done} of {total} bytes",
                             "run the export step again")
        os.replace(tmp, dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return dest


def verify_export_zip(path: Path) -> list[str]:
    """The member names of a whole, readable export zip holding model.onnx and labels.txt."""
    if not zipfile.is_zipfile(path):
        raise StepFailed(f"the downloaded export {path.name} is not a zip file", "run the export step again; if it "
                         "keeps failing, export the iteration from the Custom Vision portal and use --model")
    try:
        with zipfile.ZipFile(path) as archive:
            broken = archive.testzip()
            names = archive.namelist()
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise StepFailed(f"the downloaded export {path.name} is damaged ({exc})", "run the export step again") from None
    if broken is not None:
        raise StepFailed(f"the downloaded export {path.name} is damaged ({broken} fails its CRC check)",
                         "run the export step again")
    missing = [m for m in REQUIRED_MEMBERS if m not in names]
    if missing:
        raise StepFailed(f"the export {path.name} has no {' or '.join(missing)} (it holds {', '.join(names[:6])})",
                         "export the iteration with platform ONNX")
    return names


def safe_extract(zip_path: Path, dest_dir: Path, *, max_bytes: int = MAX_UNPACKED_BYTES) -> Path:
    """Unpack ``zip_path`` into ``dest_dir`` (replacing it) after checking every member."""
    dest_dir = Path(dest_dir)
    dest_dir.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(zip_path) as archive:
        members = archive.infolist()
        if len(members) > MAX_MEMBERS:
            raise StepFailed(f"the export zip has {len(members)} entries", "it is not a Custom Vision export")
        declared = sum(m.file_size for m in members)
        if declared > max_bytes:
            raise StepFailed(f"the export zip would unpack to {declared / 1024 ** 2:.0f} MB",
                             "it is not a Custom Vision export")
        for member in members:
            _check_member(member)
        staging = Path(tempfile.mkdtemp(prefix=f".{dest_dir.name}.", dir=dest_dir.parent))
        try:
            written = 0
            for member in members:
                target = staging.joinpath(*PurePosixPath(member.filename).parts)
                if member.is_dir():
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                with archive.open(member) as src, open(target, "wb") as out:
                    while chunk := src.read(CHUNK):
                        written += len(chunk)
                        if written > max_bytes:
                            raise StepFailed("the export zip unpacks to more than it declares",
                                             "it is damaged or not a Custom Vision export")
                        out.write(chunk)
            _swap_in(staging, dest_dir)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
    return dest_dir


def _check_member(member: zipfile.ZipInfo) -> None:
    name = member.filename
    path = PurePosixPath(name.replace("\\", "/"))
    mode = member.external_attr >> 16
    if (not name or path.is_absolute() or ".." in path.parts or (len(name) > 1 and name[1] == ":")
            or "\\" in name):
        raise StepFailed(f"the export zip holds an unsafe path {name!r}", "it is not a Custom Vision export; "
                         "do not unpack it")
    if stat.S_ISLNK(mode):
        raise StepFailed(f"the export zip holds a link {name!r}", "it is not a Custom Vision export")


def _swap_in(staging: Path, dest_dir: Path) -> None:
    """Replace ``dest_dir`` with ``staging`` so readers see the old folder or the new one, never a mix."""
    old = None
    if dest_dir.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{dest_dir.name}.old.", dir=dest_dir.parent))
        os.replace(dest_dir, old / "previous")
    os.replace(staging, dest_dir)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
