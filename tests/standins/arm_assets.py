"""The workspace's default blob datastore and its model assets, for the Resource Manager emulator
(mixed into :class:`~cvtriton_standins.arm_emulator.ResourceManagerEmulator`).

Wire format from the SDK's generated models (``azure/ai/ml/_restclient/arm_ml_service/models/_models.py``):
``datastores`` list (``isDefault``) and ``GET`` answer ``workspaceblobstore`` as an ``AzureBlob`` datastore with
``AccountKey`` credentials on Azurite's account; ``POST datastores/{n}/listSecrets`` answers
``{"secretsType": "AccountKey", "key"}``. ``models/{name}`` (container: ``latestVersion``, ``nextVersion``) and
``models/{name}/versions/{version}`` ``PUT``/``GET``/list (``$orderBy``, ``$top``). Versions are immutable as
the service keeps them: a ``PUT`` that changes an existing version's ``modelUri`` is refused with the service's
message ("Asset paths cannot be updated."), and one that repeats it is answered with the version as stored.

Faults: ``refuse_storage_key(True)`` makes ``listSecrets`` hand out a key Azurite does not accept (a rotated
account key); ``lose_model_files(name, version)`` makes the storage initializer of the next no-code
deployment find nothing at the version's path.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from cvtriton_standins.arm_records import PROVIDER, ArmError, system_data
from cvtriton_standins.azurite import ACCOUNT, ACCOUNT_KEY

DATASTORE = "workspaceblobstore"
STORAGE_CONTAINER = "azureml-blobstore-5eed0000-0000-0000-0000-000000000000"
ROTATED_KEY = "cm90YXRlZC1rZXktbm90LWFjY2VwdGVkLWJ5LWF6dXJpdGUtc3RhbmQtaW4tMDAwMDAwMDAwMDAwMDAwMA=="
ASSET_PATH_MESSAGE = "Asset paths cannot be updated."   # the service's answer (code UserError)
MODEL_URI = re.compile(r"^azureml://subscriptions/[^/]+/resourcegroups/[^/]+/workspaces/[^/]+/datastores/"
                       r"(?P<datastore>[^/]+)/paths/(?P<path>.+)$", re.IGNORECASE)


@dataclass
class ModelVersion:
    name: str
    version: str
    arm_id: str
    properties: dict[str, Any]
    tags: dict[str, str] = field(default_factory=dict)
    system: dict[str, str] = field(default_factory=system_data)

    @property
    def model_uri(self) -> str:
        return str(self.properties.get("modelUri") or "")

    def blob_prefix(self) -> str | None:
        """The folder in the default datastore's container the version's files are under (None: not there)."""
        match = MODEL_URI.match(self.model_uri)
        return match.group("path").rstrip("/") if match and match.group("datastore") == DATASTORE else None

    def to_json(self) -> dict[str, Any]:
        return {"id": self.arm_id, "name": self.version, "type": f"{PROVIDER}/workspaces/models/versions",
                "systemData": dict(self.system),
                "properties": {"flavors": {}, "properties": {}, "isAnonymous": False, "isArchived": False,
                               "description": None, **self.properties, "tags": dict(self.tags),
                               "provisioningState": "Succeeded"}}


class AssetRoutes:
    """The datastore and model routes (uses the emulator's ``_lock``, ``_ws_id``, ``models``)."""

    def _datastore_json(self) -> dict[str, Any]:
        return {"id": f"{self._ws_id()}/datastores/{DATASTORE}", "name": DATASTORE,
                "type": f"{PROVIDER}/workspaces/datastores", "systemData": system_data(),
                "properties": {"datastoreType": "AzureBlob", "accountName": ACCOUNT,
                               "containerName": STORAGE_CONTAINER, "endpoint": self.storage_suffix,
                               "protocol": "https", "isDefault": True, "description": None, "tags": {},
                               "properties": {}, "serviceDataAccessAuthIdentity": "None",
                               "credentials": {"credentialsType": "AccountKey"}}}

    def list_datastores(self, params, body, query):
        return 200, {"value": [self._datastore_json()], "nextLink": None}, {}

    def get_datastore(self, params, body, query):
        if params["name"] != DATASTORE:
            raise ArmError(404, "UserError", f"Could not find datastore: {params['name']}")
        return 200, self._datastore_json(), {}

    def list_datastore_secrets(self, params, body, query):
        if params["name"] != DATASTORE:
            raise ArmError(404, "UserError", f"Could not find datastore: {params['name']}")
        with self._lock:
            self.secrets_handed_out += 1
            key = ROTATED_KEY if self.storage_key_refused else ACCOUNT_KEY
        return 200, {"secretsType": "AccountKey", "key": key}, {}

    def refuse_storage_key(self, refused: bool = True) -> None:
        with self._lock:
            self.storage_key_refused = refused

    def lose_model_files(self, name: str, version: str) -> None:
        with self._lock:
            self.lost_models.add((name, version))

    # models -------------------------------------------------------------------------------------
    def _versions(self, name: str) -> list[ModelVersion]:
        return [v for (n, _), v in self.models.items() if n == name]

    def get_model_container(self, params, body, query):
        with self._lock:
            versions = self._versions(params["name"])
            if not versions:
                raise ArmError(404, "UserError", f"Could not find asset with name: {params['name']}")
            latest = versions[-1].version
            numbers = [int(v.version) for v in versions if v.version.isdigit()]
        return 200, {"id": f"{self._ws_id()}/models/{params['name']}", "name": params["name"],
                     "type": f"{PROVIDER}/workspaces/models", "systemData": system_data(),
                     "properties": {"latestVersion": latest, "nextVersion": str(max(numbers, default=0) + 1),
                                    "isArchived": False, "tags": {}, "properties": {},
                                    "provisioningState": "Succeeded"}}, {}

    def list_model_versions(self, params, body, query):
        with self._lock:
            versions = list(reversed(self._versions(params["name"])))   # newest first ($orderBy createdtime desc)
        top = int(query.get("$top") or 0)
        items = [v.to_json() for v in (versions[:top] if top else versions)]
        return 200, {"value": items, "nextLink": None}, {}

    def get_model_version(self, params, body, query):
        with self._lock:
            version = self.models.get((params["name"], params["version"]))
            if version is None:
                raise ArmError(404, "UserError", f"Could not find asset with ID: {self._ws_id()}/models/"
                               f"{params['name']}/versions/{params['version']}")
            return 200, version.to_json(), {}

    def put_model_version(self, params, body, query):
        name, number = params["name"], params["version"]
        props = dict(body.get("properties") or {})
        tags = dict(props.pop("tags", None) or {})
        if not props.get("modelUri"):
            raise ArmError(400, "UserError", "A model version needs a modelUri.")
        with self._lock:
            existing = self.models.get((name, number))
            if existing is not None:
                if existing.model_uri.rstrip("/") != str(props["modelUri"]).rstrip("/"):
                    raise ArmError(400, "UserError", ASSET_PATH_MESSAGE)
                existing.tags.update(tags)
                return 200, existing.to_json(), {}
            version = ModelVersion(name, number, f"{self._ws_id()}/models/{name}/versions/{number}", props, tags)
            self.models[(name, number)] = version
            return 201, version.to_json(), {}
