"""Verification of JWT access tokens (RFC 9068) against the authorization server's JWKS.

PyJWT does the cryptography and the claim checks; this module adds what PyJWT leaves to
the caller: a JWKS cache refreshed on an unknown ``kid`` (rate-limited), the ``typ``
check, and a bounded cache of already-validated tokens that expires with each token's
``exp`` (RS256 verification costs ~0.2 ms, paid once per token instead of per request).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import httpx
import jwt
from jwt import PyJWK

from charter.config import AuthSettings

log = logging.getLogger(__name__)

REQUIRED_CLAIMS = ["iss", "aud", "sub", "exp", "iat", "jti"]


class InvalidToken(Exception):
    """The token is missing, malformed, expired, wrongly signed or not for us."""


JWKSFetcher = Callable[[], dict[str, Any]]


def http_jwks_fetcher(url: str, timeout: float = 3.0) -> JWKSFetcher:
    """A fetcher that downloads a JWKS document over HTTP(S)."""

    def fetch() -> dict[str, Any]:
        response = httpx.get(url, timeout=timeout)
        response.raise_for_status()
        document: dict[str, Any] = response.json()
        return document

    return fetch


class JWKSCache:
    """Keys by ``kid``, refreshed when an unknown ``kid`` shows up (at most every few s)."""

    def __init__(self, fetch: JWKSFetcher, min_refresh_interval: float = 5.0) -> None:
        self._fetch = fetch
        self._keys: dict[str, PyJWK] = {}
        self._lock = threading.Lock()
        self._last_refresh = 0.0
        self._min_interval = min_refresh_interval

    def refresh(self) -> None:
        """Download the key set now; keeps the old keys if the download fails."""
        with self._lock:
            self._last_refresh = time.monotonic()
            try:
                document = self._fetch()
            except Exception as exc:  # network, HTTP or JSON error
                log.warning("jwks refresh failed: %s", type(exc).__name__)
                return
            keys: dict[str, PyJWK] = {}
            for jwk in document.get("keys", []):
                kid = jwk.get("kid")
                if not kid or jwk.get("use", "sig") != "sig":
                    continue
                try:
                    keys[kid] = PyJWK(jwk)
                except jwt.PyJWTError:
                    log.warning("jwks key %s unusable", kid)
            self._keys = keys

    def get(self, kid: str) -> PyJWK | None:
        """The key for ``kid``, refreshing once if it is unknown and refresh is allowed."""
        key = self._keys.get(kid)
        if key is None and time.monotonic() - self._last_refresh >= self._min_interval:
            self.refresh()
            key = self._keys.get(kid)
        return key

    @property
    def kids(self) -> list[str]:
        """The key ids currently known."""
        return list(self._keys)


class TokenVerifier:
    """Checks signature, algorithm, ``typ``, issuer, audience, expiry and required claims."""

    def __init__(
        self,
        settings: AuthSettings,
        jwks: JWKSCache,
        cache_size: int = 10_000,
    ) -> None:
        self.settings = settings
        self.jwks = jwks
        self._cache: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self._cache_size = cache_size
        self._cache_lock = threading.Lock()

    def verify(self, token: str) -> dict[str, Any]:
        """Return the token's claims or raise :class:`InvalidToken`."""
        cached = self._cached(token)
        if cached is not None:
            return cached
        claims = self._verify(token)
        self._remember(token, claims)
        return claims

    def _verify(self, token: str) -> dict[str, Any]:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise InvalidToken("malformed token") from exc
        alg = header.get("alg")
        if alg not in self.settings.algorithms:
            raise InvalidToken("algorithm not allowed")
        if str(header.get("typ", "")).lower() not in ("at+jwt", "application/at+jwt"):
            raise InvalidToken("not an access token (typ)")
        kid = header.get("kid")
        key = self.jwks.get(kid) if isinstance(kid, str) else None
        if key is None:
            raise InvalidToken("unknown signing key")
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key=key.key,
                algorithms=[alg],
                audience=self.settings.audience,
                issuer=self.settings.issuer,
                leeway=self.settings.leeway,
                options={"require": REQUIRED_CLAIMS},
            )
        except jwt.ExpiredSignatureError as exc:
            raise InvalidToken("token expired") from exc
        except jwt.PyJWTError as exc:
            raise InvalidToken(type(exc).__name__) from exc
        return claims

    def _cached(self, token: str) -> dict[str, Any] | None:
        with self._cache_lock:
            claims = self._cache.get(token)
            if claims is None:
                return None
            if claims["exp"] + self.settings.leeway <= time.time():
                del self._cache[token]
                return None
            self._cache.move_to_end(token)
            return claims

    def _remember(self, token: str, claims: dict[str, Any]) -> None:
        with self._cache_lock:
            self._cache[token] = claims
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)


def scopes_of(claims: dict[str, Any]) -> set[str]:
    """The token's scopes (``scope`` is a space-separated string in RFC 9068)."""
    scope = claims.get("scope", "")
    if isinstance(scope, list):
        return {str(s) for s in scope}
    return set(str(scope).split())
