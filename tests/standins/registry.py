"""A real image registry on 127.0.0.1: Debian's ``docker-registry`` (the CNCF Distribution registry 2.8).

The Docker daemon treats registries on 127.0.0.0/8 as insecure by default, so it pushes to this one over
plain HTTP with no daemon configuration. With ``users`` the registry asks for HTTP basic auth checked
against an htpasswd file (bcrypt, the only hash the registry accepts; made here through libcrypt), which
is how the "push refused" case is tested.

```python
with LocalRegistry(tmp_path / "registry") as registry:                 # no auth
    ...  # IMAGE_REGISTRY=registry.host
with LocalRegistry(tmp_path / "secure", users={"ci": "pw"}) as registry:
    registry.tags("colours")                                            # what a client would see
```

At a shell: ``python -m cvtriton_standins.registry --root DIR [--port 5000] [--user U --password-env VAR]``.
"""

from __future__ import annotations

import argparse
import base64
import ctypes
import ctypes.util
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Mapping

BINARY = "docker-registry"
REALM = "cvtriton-test-registry"


def bcrypt_hash(password: str) -> str:
    """A ``$2b$`` bcrypt hash from the system's libcrypt (libxcrypt), as ``htpasswd -B`` writes."""
    name = ctypes.util.find_library("crypt") or "libcrypt.so.1"
    lib = ctypes.CDLL(name)
    lib.crypt_gensalt.restype = ctypes.c_char_p
    lib.crypt_gensalt.argtypes = [ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p, ctypes.c_int]
    lib.crypt.restype = ctypes.c_char_p
    lib.crypt.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
    salt = lib.crypt_gensalt(b"$2b$", 5, None, 0)
    hashed = lib.crypt(password.encode(), salt) if salt else None
    if not hashed or not hashed.startswith(b"$2"):
        raise RuntimeError("libcrypt cannot make bcrypt hashes here")
    return hashed.decode()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class LocalRegistry:
    """One ``docker-registry`` process; its storage under ``root`` (removed on stop unless ``keep``)."""

    def __init__(self, root: Path, *, port: int | None = None, users: Mapping[str, str] | None = None,
                 keep: bool = False) -> None:
        self.root = Path(root)
        self.port = port or _free_port()
        self.users = dict(users or {})
        self.keep = keep
        self._proc: subprocess.Popen | None = None

    @property
    def host(self) -> str:
        """``127.0.0.1:PORT``: what IMAGE_REGISTRY is set to."""
        return f"127.0.0.1:{self.port}"

    def start(self, timeout: float = 20.0) -> "LocalRegistry":
        if shutil.which(BINARY) is None:
            raise RuntimeError(f"{BINARY} is not installed (Debian package docker-registry)")
        self.root.mkdir(parents=True, exist_ok=True)
        config = {
            "version": 0.1,
            "log": {"level": "warn", "accesslog": {"disabled": True}},
            "storage": {"filesystem": {"rootdirectory": str(self.root / "data")}, "delete": {"enabled": True}},
            "http": {"addr": self.host, "secret": secrets.token_hex(16)},
        }
        if self.users:
            htpasswd = self.root / "htpasswd"
            htpasswd.write_text("".join(f"{user}:{bcrypt_hash(pw)}\n" for user, pw in self.users.items()))
            config["auth"] = {"htpasswd": {"realm": REALM, "path": str(htpasswd)}}
        config_path = self.root / "config.yml"
        config_path.write_text(json.dumps(config, indent=2))     # YAML is a superset of JSON
        self._log = open(self.root / "registry.log", "ab")
        self._proc = subprocess.Popen([BINARY, "serve", str(config_path)], stdin=subprocess.DEVNULL,
                                      stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"{BINARY} exited: " + (self.root / "registry.log").read_text()[-2000:])
            if self._status("/v2/", auth=False) in (200, 401):
                return self
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"{BINARY} did not answer on {self.host} within {timeout:.0f} s")

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if getattr(self, "_log", None) is not None:
            self._log.close()
        if not self.keep:
            shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> "LocalRegistry":
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    # ---- what a registry client sees ------------------------------------------------------------------
    def _request(self, path: str, *, auth: bool = True, method: str = "GET",
                 accept: str = "") -> tuple[int, bytes, dict[str, str]]:
        request = urllib.request.Request(f"http://{self.host}{path}", method=method)
        if auth and self.users:
            user, password = next(iter(self.users.items()))
            request.add_header("Authorization", "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode())
        if accept:
            request.add_header("Accept", accept)
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                return response.status, response.read(), dict(response.headers)
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read(), dict(exc.headers)
        except OSError:
            return 0, b"", {}

    def _status(self, path: str, *, auth: bool = True) -> int:
        return self._request(path, auth=auth)[0]

    def tags(self, repository: str) -> list[str]:
        status, body, _ = self._request(f"/v2/{repository}/tags/list")
        return list(json.loads(body).get("tags") or []) if status == 200 else []

    def manifest_digest(self, repository: str, reference: str) -> str | None:
        accept = ("application/vnd.docker.distribution.manifest.v2+json,"
                  "application/vnd.oci.image.manifest.v1+json")
        status, _, headers = self._request(f"/v2/{repository}/manifests/{reference}", method="HEAD", accept=accept)
        return headers.get("Docker-Content-Digest") if status == 200 else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="run Debian's docker-registry on 127.0.0.1 (Ctrl-C stops it)")
    parser.add_argument("--root", type=Path, default=None, help="storage folder (default: a temporary one)")
    parser.add_argument("--port", type=int, default=5000)
    parser.add_argument("--user", help="require basic auth with this user")
    parser.add_argument("--password", help="the user's password (visible to ps: prefer --password-env)")
    parser.add_argument("--password-env", metavar="VAR", help="read the password from this environment variable")
    args = parser.parse_args(argv)
    if args.password_env:
        args.password = os.environ.get(args.password_env, "")
    if bool(args.user) != bool(args.password):
        parser.error("--user and a password go together")
    root = args.root or Path(tempfile.mkdtemp(prefix="cvtriton-registry-"))
    users = {args.user: args.password} if args.user else None
    registry = LocalRegistry(root, port=args.port, users=users, keep=args.root is not None).start()
    print(f"registry on {registry.host} (storage {root}); Ctrl-C stops it", flush=True)
    try:
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
        signal.sigwait({signal.SIGINT, signal.SIGTERM})
    finally:
        registry.stop()
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    raise SystemExit(main())
