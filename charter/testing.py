"""Test helpers: a throw-away signing key, token minting, and a verifier that trusts it.

Used by service tests to build the token matrix (valid, expired, wrong audience, wrong
issuer, bad signature, missing scope) without running the authorization server.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from charter.config import AuthSettings
from charter.security.tokens import JWKSCache, TokenVerifier

ISSUER = "http://auth.test"
AUDIENCE = "charter-api"


def _new_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@dataclass
class TokenFactory:
    """Mints RS256 access tokens in RFC 9068 shape with a key the verifier trusts."""

    kid: str = "test-key"
    issuer: str = ISSUER
    audience: str = AUDIENCE
    key: rsa.RSAPrivateKey = field(default_factory=_new_key)
    other_key: rsa.RSAPrivateKey = field(default_factory=_new_key)

    def jwks(self) -> dict[str, Any]:
        """The public key set containing only the trusted key."""
        jwk = json.loads(RSAAlgorithm.to_jwk(self.key.public_key()))
        jwk.update({"kid": self.kid, "use": "sig", "alg": "RS256"})
        return {"keys": [jwk]}

    def verifier(self) -> TokenVerifier:
        """A verifier that trusts this factory's key, issuer and audience."""
        settings = AuthSettings(issuer=self.issuer, audience=self.audience, jwks_url="")
        cache = JWKSCache(self.jwks)
        cache.refresh()
        return TokenVerifier(settings, cache)

    def token(
        self,
        sub: str = "user-1",
        scope: str = "",
        *,
        expires_in: int = 300,
        audience: str | None = None,
        issuer: str | None = None,
        sign_with_other_key: bool = False,
        typ: str = "at+jwt",
        **claims: Any,
    ) -> str:
        """A signed access token; the keyword switches produce each kind of bad token."""
        now = int(time.time())
        payload: dict[str, Any] = {
            "iss": issuer or self.issuer,
            "aud": audience or self.audience,
            "sub": sub,
            "client_id": claims.pop("client_id", "test-client"),
            "iat": now,
            "exp": now + expires_in,
            "jti": uuid.uuid4().hex,
            "scope": scope,
        }
        payload.update(claims)
        key = self.other_key if sign_with_other_key else self.key
        return jwt.encode(payload, key, algorithm="RS256", headers={"kid": self.kid, "typ": typ})

    def bad_tokens(self, scope: str) -> dict[str, str]:
        """Tokens that must each be refused with 401, by name."""
        return {
            "malformed": "not-a-jwt",
            "bad_signature": self.token(scope=scope, sign_with_other_key=True),
            "expired": self.token(scope=scope, expires_in=-3600),
            "wrong_audience": self.token(scope=scope, audience="someone-else"),
            "wrong_issuer": self.token(scope=scope, issuer="http://evil.test"),
            "not_access_token": self.token(scope=scope, typ="JWT"),
        }
