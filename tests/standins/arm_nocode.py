"""No-code Triton deployments for the Resource Manager emulator: a deployment with a ``triton_model`` asset and
no environment runs Azure ML's own Triton image (here the stand-in Triton base image, ``triton_image``) on the
model, as the service does:

* the **storage initializer** downloads the asset's files from the workspace's blob storage (Azurite) into a
  folder of its own, logging each file — ``getLogs`` with ``containerType: StorageInitializer`` returns these
  lines — and fails the deployment (``BadArgument``, "…storage initializer…") when the path holds nothing;
* the folder is mounted read-only at ``/var/azureml-app/azureml-models/<name>/<version>`` with
  ``AZUREML_MODEL_DIR`` pointing there, and ``tritonserver`` serves ``$AZUREML_MODEL_DIR/<uploaded folder>``;
* liveness ``/v2/health/live``, readiness ``/v2/health/ready`` and scoring ``/`` on port 8000.
"""

from __future__ import annotations

import shutil
from pathlib import Path, PurePosixPath
from typing import Any

from cvtriton_standins.arm_assets import STORAGE_CONTAINER, ModelVersion
from cvtriton_standins.arm_records import TROUBLESHOOTING, ArmError, Environment

MODELS_ROOT = "/var/azureml-app/azureml-models"
TRITON_PORT = 8000
TRITON_ROUTES = {"livenessRoute": {"path": "/v2/health/live", "port": TRITON_PORT},
                 "readinessRoute": {"path": "/v2/health/ready", "port": TRITON_PORT},
                 "scoringRoute": {"path": "/", "port": TRITON_PORT}}


def triton_environment(image: str) -> Environment:
    """The environment Azure ML supplies for a no-code Triton deployment."""
    return Environment("azureml://registries/azureml/environments/triton-no-code",
                       {"properties": {"image": image, "inferenceConfig": TRITON_ROUTES}})


class StorageInitializer:
    """Called by the deployment runner before the containers start: downloads, logs, returns the containers'
    extra settings (mount, environment, command) or the deployment's error."""

    def __init__(self, storage: Any, model: ModelVersion, folder: Path, *, lost: bool = False) -> None:
        self.storage = storage
        self.model = model
        self.folder = Path(folder)
        self.lost = lost

    def __call__(self, log: list[str]) -> tuple[dict[str, Any], ArmError | None]:
        model = self.model
        log.append(f"Downloading model azureml:{model.name}:{model.version} from {model.model_uri}")
        prefix = None if self.lost else model.blob_prefix()
        target = self.folder / model.name / model.version
        shutil.rmtree(target, ignore_errors=True)
        target.mkdir(parents=True)
        count = 0
        if prefix is not None:
            container = self.storage.client().get_container_client(STORAGE_CONTAINER)
            base = PurePosixPath(prefix).parent
            for blob in container.list_blobs(name_starts_with=prefix + "/"):
                relative = PurePosixPath(blob.name).relative_to(base)
                dest = target.joinpath(*relative.parts)
                dest.parent.mkdir(parents=True, exist_ok=True)
                dest.write_bytes(container.download_blob(blob.name).readall())
                log.append(f"Downloaded {relative} ({blob.size} bytes)")
                count += 1
        if count == 0:
            where = f"{STORAGE_CONTAINER}/{prefix or model.model_uri}"
            log.append(f"Error: no files found at {where}: the model path does not exist in the datastore")
            return {}, ArmError(400, "BadArgument", f"The storage initializer could not download model "
                                f"azureml:{model.name}:{model.version}: no files found at its path "
                                f"{model.model_uri}. Check the storage-initializer logs. "
                                + TROUBLESHOOTING.format(anchor="badargument"))
        log.append(f"Model download completed: {count} files")
        mount = f"{MODELS_ROOT}/{model.name}/{model.version}"
        folder_name = PurePosixPath(prefix).name
        return {"pull": False, "volumes": {str(target): {"bind": mount, "mode": "ro"}},
                "environment": {"AZUREML_MODEL_DIR": mount},
                "command": ["tritonserver", f"--model-repository={mount}/{folder_name}",
                            f"--http-port={TRITON_PORT}", "--strict-readiness=true"]}, None
