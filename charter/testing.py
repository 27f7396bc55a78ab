"""Test helpers: a throw-away signing key, token minting, and a verifier that trusts it.

Used by service tests to build the token matrix (valid, expired, wrong audience, wrong
issuer, bad signature, ``alg: none``, algorithm confusion, unknown ``kid``, missing claims,
``nbf`` in the future, missing scope) without running the authorization server, and to
enumerate the operations of a bundled spec that the matrix runs on. The runner that checks
every row on every operation is ``tests/support/token_matrix.py`` (docs/testing.md).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from charter import specs
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
        kid: str | None = None,
        omit: Iterable[str] = (),
        **claims: Any,
    ) -> str:
        """A signed access token; the keyword switches produce each kind of bad token.

        ``omit`` drops registered claims (e.g. ``("sub",)``); ``kid`` overrides the key id
        in the header; extra keyword arguments become claims (``nbf=…``).
        """
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
        for name in omit:
            payload.pop(name, None)
        key = self.other_key if sign_with_other_key else self.key
        headers = {"kid": kid or self.kid, "typ": typ}
        return jwt.encode(payload, key, algorithm="RS256", headers=headers)

    def _claims(self, scope: str) -> dict[str, Any]:
        return jwt.decode(self.token(scope=scope), options={"verify_signature": False})

    def unsigned_token(self, scope: str) -> str:
        """``alg: none`` with a valid-looking payload (must never be accepted)."""
        return _compact({"alg": "none", "typ": "at+jwt", "kid": self.kid},
                        self._claims(scope), b"")

    def hs256_with_public_key(self, scope: str) -> str:
        """Algorithm confusion: HS256 keyed with the RSA public key's PEM bytes."""
        secret = self.key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        header = {"alg": "HS256", "typ": "at+jwt", "kid": self.kid}
        signing_input = _signing_input(header, self._claims(scope))
        signature = hmac.new(secret, signing_input, hashlib.sha256).digest()
        return _compact(header, self._claims(scope), signature, signing_input)

    def bad_tokens(self, scope: str) -> dict[str, str]:
        """Tokens that must each be refused with 401, by name."""
        return {
            "malformed": "not-a-jwt",
            "bad_signature": self.token(scope=scope, sign_with_other_key=True),
            "expired": self.token(scope=scope, expires_in=-3600),
            "wrong_audience": self.token(scope=scope, audience="someone-else"),
            "wrong_issuer": self.token(scope=scope, issuer="http://evil.test"),
            "not_access_token": self.token(scope=scope, typ="JWT"),
            "alg_none": self.unsigned_token(scope),
            "hs256_with_public_key": self.hs256_with_public_key(scope),
            "unknown_kid": self.token(scope=scope, kid="no-such-key"),
            "missing_sub": self.token(scope=scope, omit=("sub",)),
            "missing_jti": self.token(scope=scope, omit=("jti",)),
            "not_yet_valid": self.token(scope=scope, nbf=int(time.time()) + 3600),
            "other_audience_same_issuer": self.token(scope=scope, audience="charter-admin"),
        }


def _b64(data: bytes) -> bytes:
    return base64.urlsafe_b64encode(data).rstrip(b"=")


def _signing_input(header: dict[str, Any], payload: dict[str, Any]) -> bytes:
    return (_b64(json.dumps(header, separators=(",", ":")).encode()) + b"."
            + _b64(json.dumps(payload, separators=(",", ":")).encode()))


def _compact(header: dict[str, Any], payload: dict[str, Any], signature: bytes,
             signing_input: bytes | None = None) -> str:
    """A compact JWS built by hand (PyJWT refuses to make the malicious ones)."""
    head = signing_input or _signing_input(header, payload)
    return (head + b"." + _b64(signature)).decode()


HTTP_METHODS = frozenset({"get", "put", "post", "delete", "options", "head", "patch", "trace"})

BAD_AUTHORIZATION_HEADERS = ("Basic dXNlcjpwYXNz", "Bearer", "Bearer  ", "token-without-scheme")
"""``Authorization`` headers that carry no usable bearer token at all."""


@dataclass(frozen=True)
class SpecOperation:
    """One operation of a bundled spec, as the security tests need it."""

    operation_id: str
    method: str  # upper case: "GET", "POST", …
    path: str  # the spec's path template, without the version prefix
    scopes: frozenset[str]  # every scope its security requirements name
    internal_callers: tuple[str, ...] = ()  # its ``x-internal-callers``, if any
    # path-level then operation-level parameters, local ``#/…`` references resolved
    parameters: tuple[dict[str, Any], ...] = field(default=(), compare=False, repr=False)
    spec: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    def __str__(self) -> str:
        return self.operation_id


def _resolve(doc: dict[str, Any], node: Any) -> Any:
    while isinstance(node, dict) and isinstance(node.get("$ref"), str):
        node = specs._pointer(doc, node["$ref"].partition("#")[2])
    return node


def spec_operations(
    api: str, version: str = "v1", spec_dir: Path | None = None
) -> list[SpecOperation]:
    """Every operation of ``openapi/<api>/<version>.yaml``, in spec order.

    Fails (``AssertionError``) if an operation does not declare its own ``security``
    or a requirement of it names no scope: every Charter operation needs a token.
    """
    doc = specs.load(api, version, spec_dir)
    found = []
    for path, item in doc.get("paths", {}).items():
        for method, op in item.items():
            if method not in HTTP_METHODS:
                continue
            security = op.get("security")
            assert security, f"{op['operationId']} has no security requirement"
            assert all(names for req in security for names in req.values()), (
                f"{op['operationId']} has a security requirement without scopes"
            )
            scopes = frozenset(s for req in security for names in req.values() for s in names)
            params = item.get("parameters", []) + op.get("parameters", [])
            found.append(SpecOperation(
                operation_id=op["operationId"],
                method=method.upper(),
                path=path,
                scopes=scopes,
                internal_callers=tuple(op.get("x-internal-callers") or ()),
                parameters=tuple(_resolve(doc, p) for p in params),
                spec=op,
            ))
    return found
