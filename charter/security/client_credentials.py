"""Access tokens for service-to-service calls (OAuth 2.0 client credentials grant).

:class:`ClientCredentialsTokenProvider` asks the authorization server for a token
(``POST {auth}/oauth/token``, ``grant_type=client_credentials``, HTTP Basic client
authentication) and caches it until shortly before it expires. An instance is a
``Callable[[], str]``: pass it wherever a token source is expected
(:class:`charter.http.HttpClient`), and pass ``lambda: factory.token(...)`` in tests.
Thread-safe: concurrent callers share one fetch. The token is never logged.

Each service has its own client (:func:`service_token_provider`): client id = service
name, scopes derived from the dependency manifest (:mod:`charter.dependencies`), secret
from ``<SERVICE>_CLIENT_SECRET``. See docs/security.md, "Service identities".
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

import httpx

from charter import config, dependencies
from charter.problems import ServiceUnavailable

log = logging.getLogger(__name__)

class TokenRequestFailed(ServiceUnavailable):
    """The authorization server could not be reached or refused to issue a token."""

    kind = "upstream-unavailable"


class ClientCredentialsTokenProvider:
    """Fetches, caches and refreshes one client-credentials access token."""

    def __init__(
        self,
        token_url: str,
        client_id: str,
        client_secret: str,
        scope: str,
        *,
        timeout: float = 2.0,
        refresh_margin: float = 30.0,
        client: httpx.Client | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.token_url = token_url
        self.client_id = client_id
        self.scope = scope
        self._secret = client_secret
        self._timeout = timeout
        self._margin = refresh_margin
        self._client = client or httpx.Client(timeout=timeout)
        self._clock = clock
        self._lock = threading.Lock()
        self._token: str | None = None
        self._refresh_at = 0.0
        self.fetches = 0

    def __repr__(self) -> str:
        return (
            f"ClientCredentialsTokenProvider(token_url={self.token_url!r}, "
            f"client_id={self.client_id!r}, scope={self.scope!r})"
        )

    def __call__(self) -> str:
        """A valid access token, fetched only when none is cached or it nears expiry."""
        token = self._token
        if token is not None and self._clock() < self._refresh_at:
            return token
        with self._lock:
            if self._token is not None and self._clock() < self._refresh_at:
                return self._token
            return self._fetch()

    token = __call__

    def invalidate(self) -> None:
        """Forget the cached token (e.g. after the resource server answered 401)."""
        with self._lock:
            self._token = None
            self._refresh_at = 0.0

    def _fetch(self) -> str:
        requested = self._clock()
        try:
            response = self._client.post(
                self.token_url,
                data={"grant_type": "client_credentials", "scope": self.scope},
                auth=(self.client_id, self._secret),
                headers={"Accept": "application/json"},
                timeout=self._timeout,
            )
        except httpx.HTTPError as exc:
            log.warning("token request to %s failed: %s", self.token_url, type(exc).__name__)
            raise TokenRequestFailed("the authorization server is unavailable") from exc
        if response.status_code != 200:
            log.warning("token request refused: HTTP %s", response.status_code)
            raise TokenRequestFailed(
                f"the authorization server refused the token request ({response.status_code})"
            )
        try:
            document = response.json()
            token = str(document["access_token"])
            expires_in = float(document.get("expires_in", 300))
        except (ValueError, KeyError, TypeError) as exc:
            raise TokenRequestFailed(
                "the authorization server sent an invalid token response"
            ) from exc
        if str(document.get("token_type", "Bearer")).lower() != "bearer":
            raise TokenRequestFailed("the authorization server sent a non-bearer token")
        # Refresh `margin` seconds early, but never later than half-way for short lifetimes.
        margin = min(self._margin, expires_in / 2)
        self._token = token
        self._refresh_at = requested + expires_in - margin
        self.fetches += 1
        return token

    def close(self) -> None:
        """Close the HTTP client."""
        self._client.close()


def client_secret_variable(service: str) -> str:
    """The environment variable holding ``service``'s client secret: ``<SERVICE>_CLIENT_SECRET``."""
    return f"{service.upper().replace('-', '_')}_CLIENT_SECRET"


def token_url() -> str:
    """The token endpoint: ``AUTH_TOKEN_URL``, else ``{AUTH_URL}/oauth/token``."""
    return config.env("AUTH_TOKEN_URL") or f"{config.service_url('auth')}/oauth/token"


_providers: dict[tuple[str, str, str, str, float], ClientCredentialsTokenProvider] = {}
_providers_lock = threading.Lock()


def service_token_provider(service: str, *, timeout: float = 2.0
                           ) -> ClientCredentialsTokenProvider:
    """The token provider of ``service``'s own OAuth client (client id = service name).

    It asks for exactly the scopes the dependency manifest derives for the service
    (:meth:`charter.dependencies.Manifest.client_scopes`); the secret comes from
    ``<SERVICE>_CLIENT_SECRET`` through :func:`charter.config.secret` (in development
    mode a generated secret shared with auth's seed under the var dir). One provider
    (one cached token) per service and settings in a process. ``ManifestError`` when the
    service declares no ``calls`` (it has no client).
    """
    scope = dependencies.load().client_scope(service)
    if not scope:
        raise dependencies.ManifestError(
            f"{service} declares no calls in governance/dependencies.yaml: it has no client")
    secret = config.secret(client_secret_variable(service))
    key = (service, token_url(), scope, secret, timeout)
    with _providers_lock:
        provider = _providers.get(key)
        if provider is None:
            provider = ClientCredentialsTokenProvider(key[1], service, secret, scope,
                                                      timeout=timeout)
            _providers[key] = provider
        return provider
