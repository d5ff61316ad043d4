"""The offline Azure for the Azure ML target: a test CA, the Entra managed-identity endpoint, the container
registry (``docker-registry`` + ACR's token service), the workspace's blob storage (Azurite behind the blob
proxy) and the Resource Manager emulator with real Docker-backed deployments — started together, pointed at by
the standard environment variables only:

``ARM_CLOUD_METADATA_URL`` (cloud metadata → the emulator), ``REQUESTS_CA_BUNDLE`` (the test CA),
``IDENTITY_ENDPOINT`` + ``IDENTITY_HEADER`` (managed identity, which ``DefaultAzureCredential`` tries before
any other credential that needs no environment), ``HTTPS_PROXY`` + ``NO_PROXY`` (the blob proxy for
``*.blob.<storage suffix>``, every 127.0.0.1 stand-in direct), plus the ``.env`` values naming the
subscription, resource group, workspace and region (``settings()``).

At a shell: ``python -m cvtriton_standins.azure_world --folder /tmp/azworld`` prints ``export`` lines and runs
until Ctrl-C.
"""

from __future__ import annotations

import argparse
import os
import signal
import tempfile
import threading
from pathlib import Path

from cvtriton_standins.acr_registry import ContainerRegistryStandIn
from cvtriton_standins.arm_assets import STORAGE_CONTAINER
from cvtriton_standins.arm_emulator import ResourceManagerEmulator
from cvtriton_standins.azurite import Azurite
from cvtriton_standins.blob_proxy import BlobProxy
from cvtriton_standins.entra_identity import IdentityServer, TokenIssuer
from cvtriton_standins.test_ca import TestCA


class AzureWorld:
    def __init__(self, folder: Path | None = None, *, time_scale: float = 1.0, poll_ms: int = 50) -> None:
        self._tmp = None
        if folder is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="cvtriton-azure-")
            folder = Path(self._tmp.name)
        self.folder = Path(folder)
        self.ca = TestCA(self.folder / "ca")
        self.issuer = TokenIssuer()
        self.identity = IdentityServer(self.issuer)
        self.time_scale = time_scale
        self.poll_ms = poll_ms
        self.registry: ContainerRegistryStandIn | None = None
        self.arm: ResourceManagerEmulator | None = None
        self.storage: Azurite | None = None
        self.proxy: BlobProxy | None = None

    def start(self) -> "AzureWorld":
        try:
            self.identity.start()
            self.arm = ResourceManagerEmulator(self.folder / "arm", self.ca, self.issuer, registry_login_server=None,
                                               time_scale=self.time_scale, poll_ms=self.poll_ms)
            self.arm.start()
            self.storage = Azurite(self.folder / "azurite").start()
            self.storage.client().create_container(STORAGE_CONTAINER)
            self.proxy = BlobProxy(self.ca, self.arm.storage_suffix, self.storage.address).start()
            self.arm.storage = self.storage
            self.registry = ContainerRegistryStandIn(self.folder / "registry", self.ca, self.issuer,
                                                     arm_audiences=self.arm.audiences).start()
            self.arm.attach_registry(self.registry.login_server, self.registry.system_pull_auth_for)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        for part in (self.arm, self.proxy, self.storage, self.registry, self.identity):
            if part is not None:
                try:
                    part.stop()
                except Exception:   # noqa: BLE001 - stop the others anyway
                    pass
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> "AzureWorld":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def env(self) -> dict[str, str]:
        """The standard variables that point the real SDKs here."""
        assert self.arm is not None
        assert self.proxy is not None
        return {"ARM_CLOUD_METADATA_URL": self.arm.metadata_url, "REQUESTS_CA_BUNDLE": str(self.ca.ca_pem),
                **self.identity.env(), **self.proxy.env()}

    def empty_storage(self) -> None:
        """Delete every blob of the workspace's storage container (between tests)."""
        assert self.storage is not None
        container = self.storage.client().get_container_client(STORAGE_CONTAINER)
        for blob in container.list_blobs():
            container.delete_blob(blob.name)

    def settings(self) -> dict[str, str]:
        """``.env`` values for the emulated workspace."""
        assert self.arm is not None
        return {"AZURE_SUBSCRIPTION_ID": self.arm.subscription, "AZUREML_RESOURCE_GROUP": self.arm.resource_group,
                "AZUREML_WORKSPACE": self.arm.workspace, "AZURE_LOCATION": self.arm.location}


def main() -> int:
    parser = argparse.ArgumentParser(description="Run the offline Azure ML stand-ins until Ctrl-C.")
    parser.add_argument("--folder", type=Path, default=None)
    parser.add_argument("--time-scale", type=float, default=1.0, help="multiplies probe and back-off durations")
    parser.add_argument("--triton-image", default="",
                        help="the image no-code deployments run as Azure ML's own Triton (e.g. the stand-in base image "
                             "`python -m cvtriton_standins.triton_base_image` prints); without it they fail as "
                             "the emulator reports")
    args = parser.parse_args()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with AzureWorld(args.folder, time_scale=args.time_scale) as world:
        world.arm.triton_image = args.triton_image
        for name, value in {**world.env(), **world.settings()}.items():
            print(f"export {name}={value}")
        print(f"# registry login server: {world.registry.login_server}", flush=True)
        try:
            stop.wait()
        except KeyboardInterrupt:
            pass
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    raise SystemExit(main())
