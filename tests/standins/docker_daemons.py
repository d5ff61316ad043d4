"""Docker daemons for the fault tests: a private ``dockerd`` on a small tmpfs (a disk that fills up) and an
old Docker Engine's API (only what a client sees first: ``/_ping`` and ``/version``).

``PrivateDockerd`` is the real daemon (Debian's docker.io): its own socket, data root and exec root, its own
bridge interface and ``--iptables=false``; with ``disk_mb`` the data root is a tmpfs of that size, so a
build that writes more fails with the kernel's ENOSPC as it would on a full disk. Needs root. (Never
``--bridge=none``: a daemon started so deletes the host's ``docker0``, which another daemon may be using.)

``OldDockerEngine`` answers on a unix socket like Docker Engine 17.03 (API 1.26) does, so a client that
negotiates the API version sees a daemon too old for it.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socketserver
import subprocess
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import docker


BRIDGE_CIDR = "172.29.214.1/24"     # the private daemon's bridge (no container of it needs to reach anything)


class PrivateDockerd:
    def __init__(self, *, disk_mb: int | None = None) -> None:
        self.disk_mb = disk_mb
        self.dir = Path(tempfile.mkdtemp(prefix="cvt-dkd-", dir="/tmp"))   # short: socket paths <= 108 bytes
        self.data_root = self.dir / "data"
        self.host = f"unix://{self.dir / 'docker.sock'}"
        self._proc: subprocess.Popen | None = None
        self._mounted = False
        self.bridge = f"cvt{secrets.token_hex(4)}"        # interface names are at most 15 characters
        self._bridge_made = False

    def start(self, timeout: float = 30.0) -> "PrivateDockerd":
        if os.geteuid() != 0 or shutil.which("dockerd") is None:
            raise RuntimeError("a private dockerd needs root and Debian's docker.io")
        self.data_root.mkdir()
        if self.disk_mb:
            subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={self.disk_mb}m", "tmpfs", str(self.data_root)],
                           check=True)
            self._mounted = True
        subprocess.run(["ip", "link", "add", self.bridge, "type", "bridge"], check=True)
        self._bridge_made = True
        subprocess.run(["ip", "addr", "add", BRIDGE_CIDR, "dev", self.bridge], check=True)
        log = open(self.dir / "dockerd.log", "wb")
        self._proc = subprocess.Popen(
            ["dockerd", "--data-root", str(self.data_root), "--exec-root", str(self.dir / "exec"),
             "--pidfile", str(self.dir / "docker.pid"), "-H", self.host, "--iptables=false", "--ip6tables=false",
             f"--bridge={self.bridge}"], stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                text = (self.dir / "dockerd.log").read_text(errors="replace")[-2000:]
                self.stop()
                raise RuntimeError("private dockerd exited:\n" + text)
            try:
                with docker.APIClient(base_url=self.host, version="auto", timeout=2) as api:
                    api.ping()
                return self
            except Exception:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError("private dockerd did not answer in time")

    def api(self) -> docker.APIClient:
        return docker.APIClient(base_url=self.host, version="auto")

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        if self._mounted:
            subprocess.run(["umount", "-l", str(self.data_root)], check=False)
            self._mounted = False
        if self._bridge_made:
            subprocess.run(["ip", "link", "delete", self.bridge], check=False)
            self._bridge_made = False
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> "PrivateDockerd":
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()


class _UnixHTTPServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


class OldDockerEngine:
    """``/version`` and ``/_ping`` as Docker Engine 17.03.2-ce answers them; every other route 404."""

    VERSION = {"Version": "17.03.2-ce", "ApiVersion": "1.26", "MinAPIVersion": "1.12", "Os": "linux",
               "Arch": "amd64", "GoVersion": "go1.7.5", "KernelVersion": "4.9.0"}

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="cvt-old-", dir="/tmp"))
        self.path = self.dir / "docker.sock"
        self.host = f"unix://{self.path}"
        version = self.VERSION

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
                route = self.path.split("?")[0]
                route = route.split("/", 2)[-1] if route.startswith("/v1.") else route.lstrip("/")
                if route == "version":
                    self._answer(200, json.dumps(version).encode(), "application/json")
                elif route == "_ping":
                    self._answer(200, b"OK", "text/plain")
                else:
                    self._answer(404, b'{"message":"page not found"}', "application/json")

            do_HEAD = do_GET

            def _answer(self, status: int, body: bytes, kind: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Api-Version", version["ApiVersion"])
                self.end_headers()
                self.wfile.write(body)

            def address_string(self) -> str:
                return "unix"

            def log_message(self, *args) -> None:
                pass

        self._server = _UnixHTTPServer(str(self.path), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> "OldDockerEngine":
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._server.shutdown()
        self._server.server_close()
        shutil.rmtree(self.dir, ignore_errors=True)
