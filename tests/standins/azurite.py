"""Azurite, the official Azure Storage emulator (npm package ``azurite``), as the workspace's blob storage.

``scripts/bootstrap.sh`` installs it under ``.tools/azurite`` (gitignored); :func:`azurite_blob_command` finds
it there (or ``AZURITE_BLOB`` names the ``azurite-blob`` executable). :class:`Azurite` runs ``azurite-blob`` on
127.0.0.1 with a free port, plain HTTP (the blob proxy, :mod:`cvtriton_standins.blob_proxy`, terminates the
clients' TLS), ``--loose --skipApiVersionCheck`` (the SDK's API versions may be newer than Azurite's), its data
in a folder of its own. The account is Azurite's documented development account (public, not a secret).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

from azure.storage.blob import BlobServiceClient

ACCOUNT = "devstoreaccount1"
ACCOUNT_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
INSTALL_DIR = Path(__file__).resolve().parents[2] / ".tools" / "azurite"


def azurite_blob_command() -> str:
    given = os.environ.get("AZURITE_BLOB")
    if given:
        return given
    local = INSTALL_DIR / "node_modules" / ".bin" / "azurite-blob"
    if local.exists():
        return str(local)
    found = shutil.which("azurite-blob")
    if found:
        return found
    raise FileNotFoundError("azurite-blob not found: run scripts/bootstrap.sh (it runs npm install azurite into "
                            ".tools/azurite), or set AZURITE_BLOB")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Azurite:
    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self.port = 0
        self._proc: subprocess.Popen | None = None

    @property
    def address(self) -> tuple[str, int]:
        return "127.0.0.1", self.port

    def start(self, timeout_s: float = 30.0) -> "Azurite":
        self.folder.mkdir(parents=True, exist_ok=True)
        self.port = _free_port()
        log = open(self.folder / "azurite.log", "ab")
        self._proc = subprocess.Popen(
            [azurite_blob_command(), "--blobHost", "127.0.0.1", "--blobPort", str(self.port), "--location",
             str(self.folder / "data"), "--loose", "--skipApiVersionCheck", "--silent"],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        log.close()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"azurite-blob exited with {self._proc.returncode}: "
                                   f"{(self.folder / 'azurite.log').read_text(errors='replace')[-800:]}")
            try:
                socket.create_connection(self.address, timeout=0.5).close()
                return self
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"azurite-blob did not listen on port {self.port} within {timeout_s:.0f} s")

    def stop(self) -> None:
        if self._proc is None:
            return
        try:
            os.killpg(self._proc.pid, signal.SIGTERM)
            self._proc.wait(timeout=10)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            os.killpg(self._proc.pid, signal.SIGKILL)
            self._proc.wait(timeout=10)
        self._proc = None

    def client(self) -> BlobServiceClient:
        """A direct client (path-style, no proxy): for the emulator's own reads and for tests."""
        return BlobServiceClient(f"http://127.0.0.1:{self.port}/{ACCOUNT}", credential=ACCOUNT_KEY)

    def __enter__(self) -> "Azurite":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
