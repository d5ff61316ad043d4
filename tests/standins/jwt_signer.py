"""One RS256 signing key for the stand-ins that issue JWTs (the Entra token issuer, the registry's token
service): ``sign(claims)`` with the given JOSE headers, ``verify(token, issuer)`` raising PyJWT's errors
(the audience is each caller's to check, as the services do)."""

from __future__ import annotations

from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa

ALGORITHM = "RS256"


class JwtSigner:
    def __init__(self, headers: dict[str, Any] | None = None) -> None:
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.headers = dict(headers or {})

    def sign(self, claims: dict[str, Any]) -> str:
        return jwt.encode(claims, self.key, algorithm=ALGORITHM, headers=self.headers)

    def verify(self, token: str, issuer: str) -> dict[str, Any]:
        return jwt.decode(token, self.key.public_key(), algorithms=[ALGORITHM], issuer=issuer,
                          options={"verify_aud": False})
