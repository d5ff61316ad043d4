"""Azure Container Registry stand-in: Debian's real ``docker-registry`` (distribution 2.8) behind the token
service ACR runs, so a push really needs the credential that ``az acr login`` would obtain.

* The registry speaks HTTPS on 127.0.0.1 with a certificate from the test CA and ``auth: token``: ``GET /v2/``
  answers 401 with ``WWW-Authenticate: Bearer realm="https://127.0.0.1:T/oauth2/token",service="<loginServer>"``.
* ``POST /oauth2/exchange`` (form ``grant_type=access_token``, ``service``, ``tenant``, ``access_token``) takes an
  Entra access token for Resource Manager from :class:`~cvtriton_standins.entra_identity.TokenIssuer` and gives
  ``{"refresh_token"}``, as ACR does.
* ``/oauth2/token`` gives the registry's short-lived JWT for a ``scope``: ``POST`` form
  ``grant_type=refresh_token`` (or ``password`` with user ``00000000-0000-0000-0000-000000000000`` and the
  refresh token as password), or ``GET`` with HTTP Basic — the ways the Docker Engine and ACR clients ask.
  The JWT is signed with a key whose certificate is the registry's ``rootcertbundle``, so the registry itself
  checks every push and pull.

Docker treats registries on 127.0.0.0/8 as insecure, so the Docker Engine pushes to it without trusting the
test CA; every Python client trusts it through ``REQUESTS_CA_BUNDLE``.
"""

from __future__ import annotations

import base64
import datetime
import json
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import jwt
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import NameOID

from cvtriton_standins.entra_identity import TokenIssuer, TokenRejected
from cvtriton_standins.jwt_signer import JwtSigner
from cvtriton_standins.test_ca import TestCA

REGISTRY_BINARY = "docker-registry"
NULL_USER = "00000000-0000-0000-0000-000000000000"
ISSUER = "cvtriton-standin-acr"
REFRESH_LIFETIME_S = 3 * 3600
ACCESS_LIFETIME_S = 300
SYSTEM_IDENTITY = "standin-endpoint-identity"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class _Signer(JwtSigner):
    """The token service's signing key and its self-signed certificate (the registry's trust root, sent as
    ``x5c``)."""

    def __init__(self, folder: Path) -> None:
        super().__init__()
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, ISSUER)])
        now = datetime.datetime.now(datetime.timezone.utc)
        self.cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
                     .public_key(self.key.public_key()).serial_number(x509.random_serial_number())
                     .not_valid_before(now - datetime.timedelta(minutes=5))
                     .not_valid_after(now + datetime.timedelta(days=7))
                     .sign(self.key, hashes.SHA256()))
        self.bundle = folder / "token-signer.pem"
        self.bundle.write_bytes(self.cert.public_bytes(serialization.Encoding.PEM))
        self.headers = {"x5c": [base64.b64encode(self.cert.public_bytes(serialization.Encoding.DER)).decode()]}


class ContainerRegistryStandIn:
    """``start()`` runs the registry and its token service; ``login_server`` is ``127.0.0.1:PORT``.

    ``arm_audiences`` are the Resource Manager resource ids whose Entra tokens ``/oauth2/exchange`` accepts.
    """

    def __init__(self, folder: Path, ca: TestCA, issuer: TokenIssuer, *, arm_audiences: tuple[str, ...]) -> None:
        self.folder = Path(folder)
        self.ca = ca
        self.issuer = issuer
        self.arm_audiences = arm_audiences
        self.counters: dict[str, int] = {"exchanges": 0, "tokens": 0, "refused": 0}
        self.scopes: list[str] = []         # scopes tokens were issued for, in order
        self._lock = threading.Lock()
        self._proc: subprocess.Popen | None = None
        self._token_server: ThreadingHTTPServer | None = None
        self.port = 0

    # lifecycle --------------------------------------------------------------------------------
    @property
    def login_server(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def token_url(self) -> str:
        assert self._token_server is not None
        return f"https://127.0.0.1:{self._token_server.server_address[1]}"

    def start(self) -> "ContainerRegistryStandIn":
        if shutil.which(REGISTRY_BINARY) is None:
            raise RuntimeError("docker-registry is not installed: apt-get install docker-registry")
        self.folder.mkdir(parents=True, exist_ok=True)
        self._signer = _Signer(self.folder)
        cert = self.ca.server_cert("registry")
        handler = type("Handler", (_TokenHandler,), {"owner": self})
        self._token_server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._token_server.daemon_threads = True
        self._token_server.socket = cert.server_context().wrap_socket(self._token_server.socket, server_side=True)
        threading.Thread(target=self._token_server.serve_forever, kwargs={"poll_interval": 0.05},
                         name="acr-token-standin", daemon=True).start()
        for _attempt in range(5):
            self.port = free_port()
            config = self.folder / "config.yml"
            config.write_text(json.dumps({   # YAML is a superset of JSON
                "version": 0.1,
                "log": {"level": "warn", "accesslog": {"disabled": True}},
                "storage": {"filesystem": {"rootdirectory": str(self.folder / "data")},
                            "delete": {"enabled": True}},
                "http": {"addr": f"127.0.0.1:{self.port}", "secret": uuid.uuid4().hex,
                         "tls": {"certificate": str(cert.cert), "key": str(cert.key)}},
                "auth": {"token": {"realm": f"{self.token_url}/oauth2/token", "service": self.login_server,
                                   "issuer": ISSUER, "rootcertbundle": str(self._signer.bundle)}},
            }), encoding="utf-8")
            log = open(self.folder / "registry.log", "ab")
            self._proc = subprocess.Popen([REGISTRY_BINARY, "serve", str(config)], stdout=log,
                                          stderr=subprocess.STDOUT, start_new_session=True)
            log.close()
            if self._wait_listening():
                return self
            self._stop_process()
        raise RuntimeError(f"docker-registry did not start; see {self.folder / 'registry.log'}")

    def _wait_listening(self, timeout_s: float = 15.0) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._proc is not None and self._proc.poll() is not None:
                return False
            try:
                requests.get(f"https://{self.login_server}/v2/", verify=str(self.ca.ca_pem), timeout=2)
                return True
            except requests.RequestException:
                time.sleep(0.1)
        return False

    def _stop_process(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            os.killpg(self._proc.pid, signal.SIGTERM)
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self._proc.pid, signal.SIGKILL)
                self._proc.wait(timeout=5)
        self._proc = None

    def stop(self) -> None:
        self._stop_process()
        if self._token_server is not None:
            self._token_server.shutdown()
            self._token_server.server_close()
            self._token_server = None

    def __enter__(self) -> "ContainerRegistryStandIn":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # tokens -------------------------------------------------------------------------------------
    def refresh_token_for(self, subject: str) -> str:
        now = int(time.time())
        return self._signer.sign({"iss": ISSUER, "sub": subject, "aud": self.login_server, "iat": now,
                                  "nbf": now, "exp": now + REFRESH_LIFETIME_S, "jti": uuid.uuid4().hex,
                                  "grant_type": "refresh_token"})

    def exchange(self, entra_token: str, service: str) -> str:
        if service != self.login_server:
            raise TokenRejected("UNAUTHORIZED", f"service {service!r} is not this registry")
        claims = self.issuer.verify(entra_token, self.arm_audiences)
        with self._lock:
            self.counters["exchanges"] += 1
        return self.refresh_token_for(claims.object_id)

    def access_token(self, refresh_token: str, service: str, scopes: list[str]) -> str:
        try:
            claims = self._signer.verify(refresh_token, ISSUER)
        except jwt.PyJWTError:
            raise TokenRejected("UNAUTHORIZED", "authentication required") from None
        if claims.get("grant_type") != "refresh_token" or service != self.login_server:
            raise TokenRejected("UNAUTHORIZED", "authentication required")
        access = []
        for scope in scopes:
            parts = scope.split(":")
            if len(parts) >= 3 and parts[0] == "repository":
                access.append({"type": "repository", "name": ":".join(parts[1:-1]),
                               "actions": [a for a in parts[-1].split(",") if a in ("pull", "push", "delete")]})
            elif scope == "registry:catalog:*":
                access.append({"type": "registry", "name": "catalog", "actions": ["*"]})
        now = int(time.time())
        with self._lock:
            self.counters["tokens"] += 1
            self.scopes.extend(scopes)
        return self._signer.sign({"iss": ISSUER, "sub": claims["sub"], "aud": service, "iat": now, "nbf": now,
                                  "exp": now + ACCESS_LIFETIME_S, "jti": uuid.uuid4().hex, "access": access})

    def system_pull_auth(self) -> dict[str, str]:
        """Docker auth config for pulls as an endpoint's identity (what AcrPull gives the endpoint)."""
        return {"username": NULL_USER, "password": self.refresh_token_for(SYSTEM_IDENTITY)}

    def system_pull_auth_for(self, image: str) -> dict[str, str] | None:
        """``system_pull_auth`` for an image on this registry; None for any other registry."""
        return self.system_pull_auth() if image.startswith(self.login_server + "/") else None

    # inspection ---------------------------------------------------------------------------------
    def _api(self, method: str, path: str, scope: str, **kwargs) -> requests.Response:
        token = self.access_token(self.refresh_token_for(SYSTEM_IDENTITY), self.login_server, [scope])
        headers = {"Authorization": f"Bearer {token}", **kwargs.pop("headers", {})}
        return requests.request(method, f"https://{self.login_server}{path}", headers=headers,
                                verify=str(self.ca.ca_pem), timeout=30, **kwargs)

    def tags(self, repository: str) -> list[str]:
        response = self._api("GET", f"/v2/{repository}/tags/list", f"repository:{repository}:pull")
        if response.status_code == 404:
            return []
        response.raise_for_status()
        return sorted(response.json().get("tags") or [])

    def delete_tag(self, repository: str, tag: str) -> None:
        accept = ("application/vnd.docker.distribution.manifest.v2+json,"
                  "application/vnd.oci.image.manifest.v1+json")
        scope = f"repository:{repository}:pull,delete"
        head = self._api("HEAD", f"/v2/{repository}/manifests/{tag}", scope, headers={"Accept": accept})
        head.raise_for_status()
        digest = head.headers["Docker-Content-Digest"]
        self._api("DELETE", f"/v2/{repository}/manifests/{digest}", scope).raise_for_status()


class _TokenHandler(BaseHTTPRequestHandler):
    owner: ContainerRegistryStandIn
    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:
        pass

    def _answer(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _refuse(self, status: int, message: str) -> None:
        with self.owner._lock:
            self.owner.counters["refused"] += 1
        self._answer(status, {"errors": [{"code": "UNAUTHORIZED", "message": message}]})

    def _form(self) -> dict[str, list[str]]:
        length = int(self.headers.get("Content-Length") or 0)
        return parse_qs(self.rfile.read(length).decode("utf-8")) if length else {}

    def do_POST(self) -> None:  # noqa: N802
        path = urlsplit(self.path).path
        form = self._form()
        one = lambda name: (form.get(name) or [""])[0]  # noqa: E731
        try:
            if path == "/oauth2/exchange":
                if one("grant_type") != "access_token" or not one("access_token"):
                    return self._refuse(400, "grant_type=access_token and access_token are required")
                refresh = self.owner.exchange(one("access_token"), one("service"))
                return self._answer(200, {"refresh_token": refresh})
            if path == "/oauth2/token":
                grant = one("grant_type")
                if grant == "refresh_token":
                    secret = one("refresh_token")
                elif grant == "password" and one("username") == NULL_USER:
                    secret = one("password")
                else:
                    return self._refuse(401, "unsupported grant or user")
                token = self.owner.access_token(secret, one("service"), form.get("scope") or [])
                return self._answer(200, {"access_token": token, "refresh_token": secret})
        except TokenRejected as exc:
            return self._refuse(401, exc.message)
        self._answer(404, {"errors": [{"code": "NOT_FOUND", "message": "not found"}]})

    def do_GET(self) -> None:  # noqa: N802
        parts = urlsplit(self.path)
        if parts.path != "/oauth2/token":
            return self._answer(404, {"errors": [{"code": "NOT_FOUND", "message": "not found"}]})
        query = parse_qs(parts.query)
        auth = self.headers.get("Authorization", "")
        if not auth.startswith("Basic "):
            return self._refuse(401, "authentication required")
        try:
            user, _, secret = base64.b64decode(auth[6:]).decode("utf-8").partition(":")
        except ValueError:
            return self._refuse(401, "authentication required")
        if user != NULL_USER:
            return self._refuse(401, "authentication required")
        try:
            token = self.owner.access_token(secret, (query.get("service") or [""])[0], query.get("scope") or [])
        except TokenRejected as exc:
            return self._refuse(401, exc.message)
        self._answer(200, {"token": token, "access_token": token})
