"""Container registry login without the Azure CLI, and the registry reads the deploy pre-checks need.

Login is what ``az acr login`` does (https://github.com/Azure/acr/blob/main/docs/AAD-OAuth.md):
``GET https://<loginServer>/v2/`` answers 401 with ``WWW-Authenticate: Bearer realm="…/oauth2/token",
service="<loginServer>"``; the Entra access token for Resource Manager is exchanged at the realm host's
``POST /oauth2/exchange`` (``grant_type=access_token``) for a registry refresh token, which Docker takes as the
password of user ``00000000-0000-0000-0000-000000000000``. A registry whose ``/v2/`` answers 200 needs no
credential and is used as it is. Reads (manifest, image config) use a pull-scoped access token from the same
realm's ``/oauth2/token``. HTTPS throughout; trust follows ``requests`` (``REQUESTS_CA_BUNDLE``). A registry on
this machine (127.0.0.0/8, ``localhost``) may answer plain HTTP, as Docker allows for those.
"""

from __future__ import annotations

import base64
import ipaddress
import json
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from cvtriton_core.errors import UserError
from cvtriton_core.redact import register_secret

NULL_USER = "00000000-0000-0000-0000-000000000000"
MANIFEST_TYPES = ("application/vnd.docker.distribution.manifest.v2+json",
                  "application/vnd.oci.image.manifest.v1+json",
                  "application/vnd.docker.distribution.manifest.list.v2+json",
                  "application/vnd.oci.image.index.v1+json")
CUDA_ENV = ("CUDA_VERSION=", "NVIDIA_REQUIRE_CUDA=")
TIMEOUT_S = 30
_CHALLENGE = re.compile(r'(\w+)="([^"]*)"')


@dataclass(frozen=True)
class ImageRef:
    registry: str
    repository: str
    reference: str          # tag or sha256:... digest

    @classmethod
    def parse(cls, image: str) -> "ImageRef":
        text = image.strip()
        first, _, rest = text.partition("/")
        if not rest or not ("." in first or ":" in first or first == "localhost"):
            raise UserError(f"image {image!r} names no registry", "use REGISTRY/REPOSITORY:TAG, e.g. "
                            "myacr.azurecr.io/cvtriton/model:1")
        if "@" in rest:
            repository, _, reference = rest.partition("@")
        else:
            repository, sep, reference = rest.rpartition(":")
            if not sep or "/" in reference:
                repository, reference = rest, "latest"
        return cls(first, repository, reference)

    def __str__(self) -> str:
        sep = "@" if self.reference.startswith("sha256:") else ":"
        return f"{self.registry}/{self.repository}{sep}{self.reference}"


@dataclass(frozen=True, repr=False)
class RegistryAuth:
    """How to authenticate to one registry: a refresh token as Docker password, or nothing (anonymous)."""

    login_server: str
    scheme: str                         # "https" (or "http" for a local registry)
    password: str | None = None         # the registry refresh token
    realm: str | None = None
    service: str | None = None

    @property
    def username(self) -> str | None:
        return NULL_USER if self.password else None

    def docker_auth(self) -> dict[str, str] | None:
        """``{"username", "password"}`` for docker push/pull, or None when the registry needs none."""
        return {"username": NULL_USER, "password": self.password} if self.password else None

    def __repr__(self) -> str:
        return f"RegistryAuth({self.login_server}, {'token' if self.password else 'anonymous'})"


def _is_local(host: str) -> bool:
    name = host.rsplit(":", 1)[0].strip("[]") if not host.startswith("[") or "]:" in host else host.strip("[]")
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def _session() -> Any:
    import requests

    session = requests.Session()
    session.headers["User-Agent"] = "cvtriton-tui"
    return session


def _ping(session: Any, login_server: str) -> tuple[str, Any]:
    import requests

    try:
        return "https", session.get(f"https://{login_server}/v2/", timeout=TIMEOUT_S)
    except requests.exceptions.SSLError as exc:
        if not _is_local(login_server):
            raise UserError(f"the TLS certificate of registry {login_server} is not trusted ({_short(exc)})",
                            "put the CA that signed it in REQUESTS_CA_BUNDLE") from None
    except requests.RequestException as exc:
        if not _is_local(login_server):
            raise UserError(f"cannot reach registry {login_server} ({_short(exc)})",
                            "check the registry name, the network and proxy settings") from None
    try:
        return "http", session.get(f"http://{login_server}/v2/", timeout=TIMEOUT_S)
    except requests.RequestException as exc:
        raise UserError(f"cannot reach registry {login_server} over https or http ({_short(exc)})",
                        "start the registry or check its address") from None


def _short(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:200]


def _tenant_of(token: str) -> str | None:
    try:
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        return str(claims.get("tid")) if claims.get("tid") else None
    except (IndexError, ValueError):
        return None


def login(login_server: str, entra_token: Any) -> RegistryAuth:
    """Log in to ``login_server``; ``entra_token()`` is called only when the registry asks for a token."""
    session = _session()
    scheme, response = _ping(session, login_server)
    if response.status_code == 200:
        return RegistryAuth(login_server, scheme)
    challenge = response.headers.get("WWW-Authenticate", "")
    if response.status_code != 401 or not challenge.lower().startswith("bearer "):
        kind = challenge.split(" ", 1)[0] or f"HTTP {response.status_code}"
        raise UserError(f"registry {login_server} asks for {kind} authentication, not Azure's token exchange",
                        "push to the workspace's Azure Container Registry (unset IMAGE_REGISTRY), or use a "
                        "registry without authentication")
    params = dict(_CHALLENGE.findall(challenge))
    realm, service = params.get("realm"), params.get("service") or login_server
    if not realm:
        raise UserError(f"registry {login_server} sent no token realm", "check the registry address")
    parts = urlsplit(realm)
    exchange_url = f"{parts.scheme}://{parts.netloc}/oauth2/exchange"
    token = entra_token()
    form = {"grant_type": "access_token", "service": service, "access_token": token}
    tenant = _tenant_of(token)
    if tenant:
        form["tenant"] = tenant
    import requests

    try:
        answer = session.post(exchange_url, data=form, timeout=TIMEOUT_S)
    except requests.RequestException as exc:
        raise UserError(f"cannot reach the token service of registry {login_server} ({_short(exc)})",
                        "check the network and proxy settings") from None
    if answer.status_code in (401, 403):
        raise UserError(f"registry {login_server} refused the Azure sign-in token (HTTP {answer.status_code})",
                        "make sure the signed-in identity has the AcrPush role on the registry") from None
    if answer.status_code in (404, 405):
        raise UserError(f"registry {login_server} has no Azure token exchange (HTTP {answer.status_code} from "
                        f"{exchange_url}): it is not an Azure Container Registry",
                        "set IMAGE_REGISTRY_USERNAME and IMAGE_REGISTRY_PASSWORD for it, or push to the "
                        "workspace's registry (unset IMAGE_REGISTRY)")
    if answer.status_code != 200:
        raise UserError(f"the token exchange of registry {login_server} failed (HTTP {answer.status_code})",
                        "retry later; if it persists, check the registry in the Azure portal")
    refresh = (answer.json() or {}).get("refresh_token")
    if not refresh:
        raise UserError(f"registry {login_server} gave no refresh token", "retry the registry-login step")
    register_secret(refresh)
    return RegistryAuth(login_server, scheme, password=refresh, realm=realm, service=service)


@dataclass(frozen=True)
class ImageFacts:
    digest: str
    gpu_capable: bool               # the image's environment sets up CUDA (CUDA_VERSION / NVIDIA_REQUIRE_CUDA)


def image_facts(auth: RegistryAuth, image: ImageRef) -> ImageFacts | None:
    """The pushed image's digest and whether it is CUDA-based; None when the registry does not have it."""
    session = _session()
    headers = {"Accept": ", ".join(MANIFEST_TYPES)}
    if auth.password:
        headers["Authorization"] = "Bearer " + _access_token(session, auth, image.repository)
    base = f"{auth.scheme}://{auth.login_server}/v2/{image.repository}"
    manifest, digest = _get_manifest(session, f"{base}/manifests/{image.reference}", headers)
    if manifest is None:
        return None
    if "manifests" in manifest:      # an index: take linux/amd64
        entry = next((m for m in manifest["manifests"]
                      if (m.get("platform") or {}).get("architecture") == "amd64"
                      and (m.get("platform") or {}).get("os") == "linux"), None)
        if entry is None:
            raise UserError(f"image {image} has no linux/amd64 variant", "build it for linux/amd64")
        manifest, _ = _get_manifest(session, f"{base}/manifests/{entry['digest']}", headers)
        if manifest is None:
            return None
    config_digest = (manifest.get("config") or {}).get("digest")
    config: dict[str, Any] = {}
    if config_digest:
        blob = session.get(f"{base}/blobs/{config_digest}", headers=headers, timeout=TIMEOUT_S)
        if blob.status_code == 200:
            config = blob.json().get("config") or {}
    env = config.get("Env") or []
    labels = config.get("Labels") or {}
    gpu = any(str(e).startswith(CUDA_ENV) for e in env) or "com.nvidia.cuda.version" in labels
    return ImageFacts(digest or "", gpu)


def _get_manifest(session: Any, url: str, headers: dict[str, str]) -> tuple[dict | None, str | None]:
    import requests

    try:
        response = session.get(url, headers=headers, timeout=TIMEOUT_S)
    except requests.RequestException as exc:
        raise UserError(f"cannot read {url} ({_short(exc)})", "check the network") from None
    if response.status_code == 404:
        return None, None
    if response.status_code in (401, 403):
        raise UserError(f"the registry refused to show {url.split('/v2/', 1)[-1]} (HTTP {response.status_code})",
                        "run the registry-login step again (its token may have expired)")
    if response.status_code != 200:
        raise UserError(f"reading {url} failed (HTTP {response.status_code})", "retry later")
    return response.json(), response.headers.get("Docker-Content-Digest")


def _access_token(session: Any, auth: RegistryAuth, repository: str) -> str:
    form = {"grant_type": "refresh_token", "service": auth.service or auth.login_server,
            "scope": f"repository:{repository}:pull", "refresh_token": auth.password}
    response = session.post(auth.realm, data=form, timeout=TIMEOUT_S)
    if response.status_code != 200:
        raise UserError(f"registry {auth.login_server} refused a pull token (HTTP {response.status_code})",
                        "run the registry-login step again")
    body = response.json()
    token = body.get("access_token") or body.get("token")
    register_secret(token)
    return str(token)
