"""Verification of JWT access tokens (RFC 9068) against the authorization server's JWKS.

PyJWT does the cryptography and the claim checks; this module adds what PyJWT leaves to
the caller: a JWKS cache refreshed on an unknown ``kid`` (rate-limited), the ``typ``
check, a bounded cache of already-validated tokens that expires with each token's
``exp`` (RS256 verification costs ~0.2 ms, paid once per token instead of per request),
the revocation check (:mod:`charter.security.revocation`) and the one mapping from a
token failure to the problem the gateway and every service answer (:func:`token_problem`
for a 401, :func:`scope_problem` for the 403 of a token lacking the operation's scope).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import httpx
import jwt
from jwt import PyJWK

from charter.config import AuthSettings
from charter.observability.families import CACHE_REQUESTS, count_cache, process_service
from charter.problems import type_uri
from charter.security.revocation import DenySet, RevocationPoller, http_feed_fetcher

log = logging.getLogger(__name__)

REQUIRED_CLAIMS = ["iss", "aud", "sub", "exp", "iat", "jti"]


class InvalidToken(Exception):
    """The token is missing, malformed, expired, wrongly signed, revoked or not for us.

    ``reason`` is one of :data:`REASONS` and decides the problem answered (see
    :func:`token_problem`); the message is for logs only, never for the client.
    """

    def __init__(self, message: str, reason: str = "invalid") -> None:
        super().__init__(message)
        self.reason = reason if reason in REASONS else "invalid"


REASONS = ("missing", "invalid", "expired", "revoked")


@dataclass(frozen=True)
class TokenProblem:
    """The one RFC 9457 problem (plus RFC 6750 challenge) for a token failure."""

    status: int
    title: str
    detail: str
    challenge: str
    kind: str = "unauthorized"  # a slug of charter.problem_types

    @property
    def type(self) -> str:
        """The problem ``type`` URI of :attr:`kind`."""
        return type_uri(self.kind)

    def body(self) -> dict[str, Any]:
        """The problem document."""
        return {"type": self.type, "title": self.title, "status": self.status,
                "detail": self.detail}

    @property
    def headers(self) -> dict[str, str]:
        """``WWW-Authenticate`` (RFC 6750 §3)."""
        return {"WWW-Authenticate": self.challenge}


_INVALID_TOKEN = 'Bearer realm="charter", error="invalid_token"'
_TOKEN_PROBLEMS = {
    "missing": TokenProblem(401, "Unauthorized", "A bearer access token is required.",
                            'Bearer realm="charter"'),
    "invalid": TokenProblem(401, "Unauthorized", "The access token is invalid.",
                            _INVALID_TOKEN),
    "expired": TokenProblem(401, "Unauthorized", "The access token has expired.",
                            _INVALID_TOKEN),
    "revoked": TokenProblem(401, "Unauthorized", "The access token has been revoked.",
                            _INVALID_TOKEN),
}


def token_problem(reason: str) -> TokenProblem:
    """The problem the gateway and every service answer for a token failure ``reason``.

    Bad signature, wrong audience or issuer, unknown key, malformed: all ``invalid``
    (the verifier's own reason is logged, never echoed to the client).
    """
    return _TOKEN_PROBLEMS.get(reason, _TOKEN_PROBLEMS["invalid"])


def scope_problem(required: Iterable[str]) -> TokenProblem:
    """The 403 the gateway and every service answer for a valid token lacking ``required``.

    RFC 6750 §3.1 ``insufficient_scope`` with the operation's required ``scope`` (sorted,
    space-separated) in the challenge and the detail; the token's own scopes are never
    echoed.
    """
    needed = " ".join(sorted(set(required)))
    return TokenProblem(
        403, "Forbidden", f"The access token lacks the scope this operation requires: "
        f"{needed}.",
        f'Bearer realm="charter", error="insufficient_scope", scope="{needed}"',
        kind="insufficient-scope")


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
        count_cache(process_service(), "jwks", hit=key is not None)
        if key is None and time.monotonic() - self._last_refresh >= self._min_interval:
            self.refresh()
            key = self._keys.get(kid)
        return key

    @property
    def kids(self) -> list[str]:
        """The key ids currently known."""
        return list(self._keys)


class TokenVerifier:
    """Checks signature, algorithm, ``typ``, issuer, audience, expiry, required claims and
    revocation (the :class:`~charter.security.revocation.DenySet`, after the signature
    check, for cached tokens too).

    One verifier belongs to one app (the service app factory or the gateway factory
    creates it); ``poller``, when set, keeps ``revocations`` current and is the app's
    readiness check for revocation freshness.
    """

    def __init__(
        self,
        settings: AuthSettings,
        jwks: JWKSCache,
        cache_size: int = 10_000,
        *,
        revocations: DenySet | None = None,
        poller: RevocationPoller | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.jwks = jwks
        self.revocations = revocations if revocations is not None else DenySet(
            leeway=settings.leeway)
        self.poller = poller
        self._clock = clock
        self._cache: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self._cache_size = cache_size
        self._cache_lock = threading.Lock()
        # charter_cache_requests_total{cache="tokens"}: a hit in verify_cached, a miss
        # when a token is validated and remembered (verify_cached may be asked twice
        # for one token, by the gateway then by verify; a miss is counted once).
        service = process_service()
        self._hit = CACHE_REQUESTS.labels(service, "tokens", "hit")
        self._miss = CACHE_REQUESTS.labels(service, "tokens", "miss")

    def verify(self, token: str) -> dict[str, Any]:
        """Return the token's claims or raise :class:`InvalidToken`.

        May fetch the JWKS (an unknown ``kid``): call it off the event loop, after
        :meth:`verify_cached` returned ``None``.
        """
        claims = self.verify_cached(token)
        if claims is not None:
            return claims
        claims = self._verify(token)
        self._remember(token, claims)
        self._check_revoked(claims)
        return claims

    def verify_cached(self, token: str) -> dict[str, Any] | None:
        """Claims of an already validated, unexpired token; ``None`` if not in the cache.

        Never blocks (safe on the event loop). Raises :class:`InvalidToken` (``revoked``)
        if the cached token has been revoked since.
        """
        with self._cache_lock:
            claims = self._cache.get(token)
            if claims is None:
                return None
            if claims["exp"] + self.settings.leeway <= self._clock():
                del self._cache[token]
                return None
            self._cache.move_to_end(token)
        self._hit.inc()
        self._check_revoked(claims)
        return claims

    @property
    def cache_size(self) -> int:
        """How many validated tokens are cached."""
        return len(self._cache)

    def check_ready(self) -> None:
        """Readiness: raises when the revocation feed has not been read for too long."""
        if self.poller is not None:
            self.poller.check()

    def _check_revoked(self, claims: dict[str, Any]) -> None:
        kind = self.revocations.revoked(claims)
        if kind is not None:
            raise InvalidToken(f"revoked ({kind})", "revoked")

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
            raise InvalidToken("token expired", "expired") from exc
        except jwt.PyJWTError as exc:
            raise InvalidToken(type(exc).__name__) from exc
        return claims

    def _remember(self, token: str, claims: dict[str, Any]) -> None:
        self._miss.inc()
        with self._cache_lock:
            self._cache[token] = claims
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)


def build_verifier(settings: AuthSettings, *, start: bool = True) -> TokenVerifier:
    """A verifier fed by auth's JWKS (prefetched) and revocation feed (polled).

    With ``start`` the revocation poller runs in a daemon thread of this process (and is
    restarted in a forked child). Every app factory builds its own with this.
    """
    jwks = JWKSCache(http_jwks_fetcher(settings.jwks_url))
    jwks.refresh()
    deny = DenySet(leeway=settings.leeway)
    poller = None
    if settings.revocation_url:
        poller = RevocationPoller(
            http_feed_fetcher(settings.revocation_url),
            deny,
            interval=settings.revocation_poll_interval,
            max_staleness=settings.revocation_max_staleness,
        )
        if start:
            poller.start()
    return TokenVerifier(settings, jwks, revocations=deny, poller=poller)


def scopes_of(claims: dict[str, Any]) -> set[str]:
    """The token's scopes (``scope`` is a space-separated string in RFC 9068)."""
    scope = claims.get("scope", "")
    if isinstance(scope, list):
        return {str(s) for s in scope}
    return set(str(scope).split())
