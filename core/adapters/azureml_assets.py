"""Model assets of the Azure ML adapter (mixed into :class:`~cvtriton_core.adapters.azureml.AzureML`): a Triton
model repository registered as a ``triton_model`` asset (``Model(path=<folder>, type="triton_model")``), which
``azure-ai-ml`` uploads to the workspace's default blob datastore under a folder named by its content hash —
an upload whose files are already there (confirmed by the SDK's metadata) is skipped by the SDK itself.

Progress: the SDK's upload has no callback when its progress bars are off, so :class:`UploadWatcher` reads
azure-core's HTTP log records (``azure.core.pipeline.policies.http_logging_policy``, INFO, only while an upload
runs) and counts the bytes of each blob ``PUT`` the storage service accepted. Storage failures (a refused
account key, an unreachable storage host) are named as such, not as Resource Manager failures.
"""

from __future__ import annotations

import logging
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable
from urllib.parse import unquote

from cvtriton_core.adapters import sdk_output
from cvtriton_core.adapters.azureml_errors import AzureMLError, failure_of, user_error
from cvtriton_core.errors import UserError

MODEL_TYPE = "triton_model"
HTTP_LOG = "azure.core.pipeline.policies.http_logging_policy"
_URL = re.compile(r"^Request URL: '([^']+)'")
_METHOD = re.compile(r"Request method: '(\w+)'")
_LENGTH = re.compile(r"'Content-Length': '(\d+)'")
_STATUS = re.compile(r"^Response status: '?(\d+)")

Progress = Callable[[int, int, int, int], None]    # (bytes sent, bytes in all, files sent, files in all)


@dataclass(frozen=True)
class ModelAsset:
    name: str
    version: str
    arm_id: str
    path: str                        # azureml://…/datastores/workspaceblobstore/paths/LocalUpload/<hash>/<folder>
    model_type: str
    tags: dict[str, str]

    @property
    def reference(self) -> str:
        return f"azureml:{self.name}:{self.version}"


@dataclass(frozen=True)
class Upload:
    files_sent: int
    bytes_sent: int
    files: int
    bytes: int


class UploadWatcher(logging.Handler):
    """Counts the blob writes of one upload from azure-core's HTTP log (see the module's docstring)."""

    def __init__(self, folder: Path, on_progress: Progress | None) -> None:
        super().__init__(level=logging.INFO)
        self.sizes = {p.relative_to(folder.parent).as_posix(): p.stat().st_size
                      for p in sorted(folder.rglob("*")) if p.is_file()}
        self.total = sum(self.sizes.values())
        self._on_progress = on_progress
        self._pending: dict[int, tuple[str, int, bool]] = {}     # thread -> (url, bytes, completes a file)
        self._lock = threading.Lock()
        self.bytes_sent = self.files_sent = 0
        self._stored: set[str] = set()                          # the blob paths of the files stored so far
        self.storage_status: int | None = None                 # the last blob request's answer
        self.storage_host = ""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = record.getMessage()
        except Exception:   # noqa: BLE001 - never break the upload for a log record
            return
        url = _URL.match(text)
        if url:
            host = url.group(1).split("/")[2] if "://" in url.group(1) else ""
            if ".blob." not in host:
                return
            method = _METHOD.search(text)
            length = _LENGTH.search(text)
            query = url.group(1).partition("?")[2]
            blob = unquote(url.group(1).partition("?")[0])
            # a PUT of one of the repository's files (the SDK also writes blobs of its own, e.g. a marker)
            ours = any(blob.endswith("/" + name) for name in self.sizes)
            writes = ours and method is not None and method.group(1) == "PUT" and "comp=metadata" not in query \
                and "restype=" not in query
            commit = "comp=blocklist" in query             # a big file's blocks put together: no file bytes
            data = int(length.group(1)) if (writes and length and not commit) else 0
            completes = writes and (commit or "comp=block&" not in query + "&")    # a whole file is stored
            with self._lock:
                self.storage_host = host
                self._pending[record.thread or 0] = (url.group(1), data, completes)
            return
        status = _STATUS.match(text)
        if status is None:
            return
        with self._lock:
            pending = self._pending.pop(record.thread or 0, None)
            if pending is None:
                return
            self.storage_status = int(status.group(1))
            if not 200 <= self.storage_status < 300:
                return
            self.bytes_sent += pending[1]
            if pending[2]:                  # a file written again (the SDK may) still counts once
                self._stored.add(unquote(pending[0].partition("?")[0]))
            self.files_sent = len(self._stored)
            sent, files = min(self.bytes_sent, self.total), self.files_sent
        if self._on_progress is not None and (pending[1] or pending[2]):
            try:
                self._on_progress(sent, self.total, files, len(self.sizes))
            except RuntimeError:           # the run's event loop is gone (a cancelled step's upload goes on)
                pass

    def __enter__(self) -> "UploadWatcher":
        logger = logging.getLogger(HTTP_LOG)
        self._saved = (logger.level, logger.propagate)
        logger.setLevel(logging.INFO)
        logger.propagate = False          # INFO records stay here, never reach the SDK log bridge
        logger.addHandler(self)
        return self

    def __exit__(self, *exc: Any) -> None:
        logger = logging.getLogger(HTTP_LOG)
        logger.removeHandler(self)
        logger.setLevel(self._saved[0])
        logger.propagate = self._saved[1]


class ModelAssets:
    """Uses the adapter's ``client()``, ``_call``, ``_not_found`` and ``arm_url``."""

    def model_asset(self, name: str, version: str) -> ModelAsset | None:
        client = self.client()
        try:
            model = client.models.get(name=name, version=version)
        except Exception as exc:   # noqa: BLE001
            if self._not_found(exc):
                return None
            raise user_error(exc, f"read model asset {name}:{version}", arm_url=self.arm_url) from None
        return _asset(model)

    def register_triton_model(self, name: str, version: str, folder: Path, *, tags: dict[str, str],
                              description: str, on_progress: Progress | None = None) -> tuple[ModelAsset, Upload]:
        """Upload ``folder`` (a model repository) and register it as ``name:version``; the SDK uploads only
        what its content hash does not find in the datastore."""
        from azure.ai.ml.entities import Model

        client = self.client()
        entity = Model(path=str(folder), type=MODEL_TYPE, name=name, version=version, tags=dict(tags),
                       description=description)
        what = f"register model asset {name}:{version}"
        watcher = UploadWatcher(Path(folder), on_progress)
        with watcher, sdk_output.muted_stderr():
            try:
                model = client.models.create_or_update(entity)
            except UserError:
                raise
            except Exception as exc:   # noqa: BLE001 - mapped below; anything else propagates
                raise _upload_error(exc, what, watcher, self.arm_url) from None
        upload = Upload(watcher.files_sent, watcher.bytes_sent, len(watcher.sizes), watcher.total)
        return _asset(model), upload


def _asset(model: Any) -> ModelAsset:
    return ModelAsset(str(model.name), str(model.version), str(model.id or ""), str(model.path or ""),
                      str(model.type or ""), dict(model.tags or {}))


def _upload_error(exc: BaseException, what: str, watcher: UploadWatcher, arm_url: str) -> UserError:
    """A storage failure named as one; a Resource Manager failure as ``user_error`` says."""
    failure = failure_of(exc)
    response = getattr(exc, "response", None)
    request_url = str(getattr(getattr(response, "request", None), "url", "") or "")
    from_storage = ".blob." in request_url.split("?")[0] or (failure is None or failure.status is None) \
        and watcher.storage_host != ""
    host = watcher.storage_host or (request_url.split("/")[2] if "://" in request_url else "the blob storage")
    refused = watcher.storage_status in (401, 403) or (failure is not None and failure.status in (401, 403)
                                                       and ".blob." in request_url)
    if refused:
        return AzureMLError(f"the workspace's storage account ({host}) refused the datastore's credential while "
                            f"uploading the model repository (HTTP {watcher.storage_status or failure.status}"
                            f"{': ' + failure.message if failure else ''})",
                            "the storage account key was probably rotated: update the workspaceblobstore "
                            "datastore's credential (studio > Data > Datastores, or `az ml workspace sync-keys`), "
                            "then deploy again — nothing was registered", status=403, code="StorageAuthFailed")
    if from_storage and failure is not None:
        return AzureMLError(f"the upload of the model repository to {host} failed: {failure.message}",
                            "check the network and proxy to the workspace's storage account (its firewall must "
                            "let this machine in), then deploy again: the upload starts over and nothing "
                            "was registered", status=failure.status, code=failure.code)
    if failure is None:
        raise exc
    return user_error(exc, what, arm_url=arm_url)
