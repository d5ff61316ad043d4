"""Microsoft Entra ID stand-in: a token issuer plus the managed-identity token endpoint that
``azure-identity``'s ``DefaultAzureCredential`` uses unchanged.

Selected by the standard variables only: ``IDENTITY_ENDPOINT=<url>/msi/token`` and ``IDENTITY_HEADER=<secret>``
(the App Service managed-identity protocol: ``GET <endpoint>?api-version=2019-08-01&resource=<resource>`` with
header ``X-IDENTITY-HEADER``, answered with ``access_token``, ``expires_on`` (epoch seconds as a string),
``resource`` and ``token_type``). Tokens are RS256 JWTs with the claims Entra puts in app tokens (``aud``,
``iss``, ``tid``, ``oid``, ``appid``, ``iat``/``nbf``/``exp``); the other stand-ins verify them with
:meth:`TokenIssuer.verify`, so a forged, foreign or expired token is refused there as Azure refuses it.

Faults: ``issue_stale(count)`` hands out tokens whose ``exp`` already passed while ``expires_on`` still says an
hour (what a skewed clock or a revoked session looks like to the client: it caches the token, the service
refuses it).
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import jwt

from cvtriton_standins.http_servers import serve_in_thread, stop_server
from cvtriton_standins.jwt_signer import JwtSigner

TENANT_ID = "72f988bf-0000-4000-8000-00000000c0de"
PRINCIPAL_ID = "5b7e2a1c-0000-4000-8000-0000000000a1"
IDENTITY_HEADER = "cvtriton-standin-identity-header"


class TokenRejected(Exception):
    """A token a service must refuse; ``code`` is Resource Manager's error code for it."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class Claims:
    audience: str
    object_id: str
    tenant_id: str
    expires: int


class TokenIssuer:
    """Signs and verifies the stand-in's Entra tokens."""

    def __init__(self, tenant_id: str = TENANT_ID, lifetime_s: int = 3600) -> None:
        self.tenant_id = tenant_id
        self.issuer = f"https://sts.windows.net/{tenant_id}/"
        self.lifetime_s = lifetime_s
        self._signer = JwtSigner({"kid": "standin"})
        self._lock = threading.Lock()
        self._stale = 0
        self.issued = 0

    def reset(self) -> None:
        with self._lock:
            self._stale = 0

    def issue_stale(self, count: int = 1) -> None:
        with self._lock:
            self._stale += count

    def issue(self, resource: str, object_id: str = PRINCIPAL_ID) -> tuple[str, int]:
        """A token for ``resource`` and the ``expires_on`` the client is told."""
        now = int(time.time())
        with self._lock:
            stale = self._stale > 0
            self._stale -= 1 if stale else 0
            self.issued += 1
        expires_on = now + self.lifetime_s
        exp = now - 120 if stale else expires_on
        claims = {"aud": resource, "iss": self.issuer, "tid": self.tenant_id, "oid": object_id,
                  "appid": object_id, "idtyp": "app", "iat": now - (300 if stale else 0),
                  "nbf": now - (300 if stale else 0), "exp": exp, "uti": uuid.uuid4().hex}
        return self._signer.sign(claims), expires_on

    def verify(self, token: str, audiences: tuple[str, ...]) -> Claims:
        """Claims of a token this issuer made for one of ``audiences``; raises :class:`TokenRejected`."""
        try:
            claims = self._signer.verify(token, self.issuer)
        except jwt.ExpiredSignatureError:
            exp = jwt.decode(token, options={"verify_signature": False}).get("exp", 0)
            raise TokenRejected(
                "ExpiredAuthenticationToken",
                f"The access token expiry UTC time '{_utc(exp)}' is earlier than current UTC time "
                f"'{_utc(time.time())}'.") from None
        except jwt.PyJWTError:
            raise TokenRejected("InvalidAuthenticationToken",
                                "The access token is invalid.") from None
        wanted = {a.rstrip("/") for a in audiences}
        if str(claims.get("aud", "")).rstrip("/") not in wanted:
            raise TokenRejected("InvalidAuthenticationTokenAudience",
                                f"The access token has been obtained for wrong audience or resource "
                                f"'{claims.get('aud')}'. It should exactly match with one of the allowed "
                                f"audiences {sorted(audiences)}.")
        return Claims(str(claims["aud"]), str(claims["oid"]), str(claims["tid"]), int(claims["exp"]))


def _utc(epoch: float) -> str:
    return time.strftime("%m/%d/%Y %H:%M:%S", time.gmtime(epoch))


class IdentityServer:
    """The managed-identity endpoint on 127.0.0.1 (plain http, as on App Service). ``env()`` gives the two
    variables that point ``DefaultAzureCredential`` at it."""

    def __init__(self, issuer: TokenIssuer | None = None, *, header: str = IDENTITY_HEADER) -> None:
        self.issuer = issuer or TokenIssuer()
        self.header = header
        self.requests: list[str] = []          # resources asked for, in order
        self._server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self._server is not None, "start() first"
        return f"http://127.0.0.1:{self._server.server_address[1]}/msi/token"

    def env(self) -> dict[str, str]:
        return {"IDENTITY_ENDPOINT": self.url, "IDENTITY_HEADER": self.header}

    def start(self) -> "IdentityServer":
        handler = type("Handler", (_IdentityHandler,), {"owner": self})
        self._server = serve_in_thread(handler, "identity-standin")
        return self

    def stop(self) -> None:
        stop_server(self._server)
        self._server = None

    def __enter__(self) -> "IdentityServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


class _IdentityHandler(BaseHTTPRequestHandler):
    owner: IdentityServer
    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:  # quiet
        pass

    def _answer(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:  # noqa: N802
        parts = urlsplit(self.path)
        query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        if parts.path != "/msi/token":
            return self._answer(404, {"error": "not_found"})
        if self.headers.get("X-IDENTITY-HEADER") != self.owner.header:
            return self._answer(401, {"error": "invalid_request", "error_description": "Unauthorized"})
        resource = query.get("resource", "")
        if query.get("api-version") != "2019-08-01" or not resource:
            return self._answer(400, {"error": "invalid_request",
                                      "error_description": "api-version 2019-08-01 and resource are required"})
        self.owner.requests.append(resource)
        token, expires_on = self.owner.issuer.issue(resource)
        self._answer(200, {"access_token": token, "expires_on": str(expires_on), "resource": resource,
                           "token_type": "Bearer", "client_id": PRINCIPAL_ID})
