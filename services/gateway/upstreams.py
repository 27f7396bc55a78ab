"""One keep-alive connection pool (``httpx.AsyncHTTPTransport`` over
:class:`~services.gateway.pool.UpstreamPool`) per upstream service.

Base URLs come from an explicit map (tests) or ``charter.config.service_url(api)``; an
``https://`` URL means the service runs with mutual TLS, and the gateway then presents
its own client certificate (``charter.security.mtls.client_ssl_context("gateway")``).

Idle pooled connections expire after ``GATEWAY_UPSTREAM_KEEPALIVE_EXPIRY`` (below the
services' keep-alive), and an idempotent request that still meets a connection the
service closed as it was reused is sent once more on a new one (docs/gateway.md,
*Kept-alive upstream connections*).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import logging
import ssl
import sys
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import httpcore
import httpx

from charter import config

from .aiohttp_transport import AiohttpTransport
from .network import AsyncioBackend
from .pool import REUSED, UpstreamPool
from .settings import GatewaySettings

log = logging.getLogger(__name__)

IDENTITY = "gateway"


def remember_missing_sniffio() -> None:
    """Make httpcore's per-request ``import sniffio`` attempt free when sniffio is absent.

    httpcore 1.0.9 runs ``import sniffio`` inside ``current_async_library()`` several
    times per pooled request; anyio 4 no longer installs sniffio, and Python does not
    cache a failed import, so each attempt searched all of ``sys.path`` (measured here:
    0.15-0.3 ms CPU per proxied request). Recording the absence in ``sys.modules`` makes
    the attempt fail at once; httpcore then assumes asyncio, which is what runs us.
    """
    if "sniffio" not in sys.modules and importlib.util.find_spec("sniffio") is None:
        sys.modules["sniffio"] = None  # type: ignore[assignment]


remember_missing_sniffio()


def default_url(api: str) -> str | None:
    """``service_url(api)`` for known services, else ``<API>_URL`` if set."""
    try:
        return config.service_url(api)
    except KeyError:  # not a platform service (no default port)
        url = config.env(f"{api.upper().replace('-', '_')}_URL")
        return url.rstrip("/") if url else None


class UpstreamUnavailable(Exception):
    """No usable client for an API: no URL configured, or its TLS set-up failed."""


# Methods safe to send twice (RFC 9110 9.2.2); any request with an Idempotency-Key too.
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})
# httpcore's words when the server closed the connection before any byte of a response.
_NO_RESPONSE = "without sending a response"


def stale_connection_failure(request: httpx.Request, exc: Exception) -> str | None:
    """Why ``request`` may be sent again, or None.

    A kind (``protocol``, ``read``, ``write``) when ``exc`` broke a **reused** connection
    before any byte of the response came back (an idle keep-alive connection the service
    closed just as it was reused) and the request is idempotent: its method is, or it
    carries an ``Idempotency-Key``. Checked only after a failure (nothing on the hot path).
    """
    if not request.extensions.get(REUSED):
        return None
    if isinstance(exc, httpx.RemoteProtocolError):
        if _NO_RESPONSE not in str(exc):
            return None  # a malformed answer: something came back
        kind = "protocol"
    elif isinstance(exc, httpx.ReadError):
        kind = "read"
    elif isinstance(exc, httpx.WriteError):
        kind = "write"
    else:
        return None
    if request.method in IDEMPOTENT_METHODS or "idempotency-key" in request.headers:
        return kind
    return None


class ReuseAwareTransport(httpx.AsyncHTTPTransport):
    """``httpx.AsyncHTTPTransport`` (HTTP/1.1, no proxy, no env) over an
    :class:`~services.gateway.pool.UpstreamPool` for ``url``'s origin: O(1) pool work per
    request, and a failed request tells whether its connection was reused.

    httpx builds its httpcore pool itself and offers no hook for it; ``_pool`` is the one
    attribute its request path uses (httpx 0.28, pinned; the keep-alive and pool tests
    fail if that changes). httpx still converts requests, responses and errors.
    """

    def __init__(self, url: str, verify: Any, limits: httpx.Limits) -> None:
        # Not super().__init__(): it would build a second pool (and TLS context) unused.
        ssl_context = httpx.create_ssl_context(verify=verify, trust_env=False)
        parsed = httpx.URL(url)
        origin = httpcore.Origin(parsed.raw_scheme, parsed.raw_host,
                                 parsed.port or (443 if parsed.scheme == "https" else 80))
        most = limits.max_connections or 100  # None (unbounded) is not offered here
        keep = limits.max_keepalive_connections
        self._pool = UpstreamPool(  # type: ignore[assignment]
            origin, ssl_context=ssl_context, max_connections=most,
            max_keepalive=most if keep is None else keep,
            keepalive_expiry=limits.keepalive_expiry, network_backend=AsyncioBackend())

    @property
    def pool(self) -> UpstreamPool:
        """The connection pool (``stats()`` for tests)."""
        assert isinstance(self._pool, UpstreamPool)
        return self._pool


def tls_context() -> Any:
    """The gateway's client TLS context for mTLS upstreams (``True`` if mTLS is absent).

    Raises :class:`charter.config.ConfigError` when the gateway's certificate is missing.
    """
    try:
        from charter.security.mtls import client_ssl_context
    except ImportError:
        log.warning("https upstream but charter.security.mtls is missing; no client cert")
        return True
    return client_ssl_context(IDENTITY)


class Upstreams:
    """Base URL and connection pool of every API's service (pools made on first use).

    Requests go straight to the pool (``httpx.AsyncHTTPTransport``), not through an
    ``httpx.AsyncClient``: the gateway wants none of the client's extras (cookie jar,
    redirects, auth flows, default headers) and measurably less CPU per request.
    """

    def __init__(
        self,
        apis: Iterable[str],
        settings: GatewaySettings,
        urls: Mapping[str, str] | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.settings = settings
        self.transport = transport
        explicit = dict(urls or {})
        self.urls: dict[str, str | None] = {}
        for api in apis:
            url = explicit.get(api) or default_url(api)
            self.urls[api] = url.rstrip("/") if url else None
        self._pools: dict[str, httpx.AsyncBaseTransport] = {}
        # Pools without keep-alive, for the one retry of a request that met a stale
        # connection (made on first need): the retry always gets a fresh connection.
        self._fresh: dict[str, httpx.AsyncBaseTransport] = {}
        # Called with (api, kind) for each such retry (the gateway counts them).
        self.on_retry: Callable[[str, str], None] | None = None
        self.timeout = httpx.Timeout(
            settings.upstream_timeout,
            connect=min(settings.connect_timeout, settings.upstream_timeout),
        ).as_dict()

    def base_url(self, api: str) -> str:
        """The base URL of ``api``'s service (raises :class:`UpstreamUnavailable`)."""
        url = self.urls.get(api)
        if url is None:
            raise UpstreamUnavailable(f"No upstream is configured for the {api} API.")
        return url

    def pool(self, api: str) -> httpx.AsyncBaseTransport:
        """The keep-alive pool of ``api``'s service (raises :class:`UpstreamUnavailable`)."""
        pool = self._pools.get(api)
        if pool is None:
            url = self.base_url(api)
            try:
                pool = self._new_pool(url)
            except config.ConfigError as exc:
                log.error("cannot reach the %s service: %s", api, exc)
                raise UpstreamUnavailable(
                    f"The gateway cannot connect to the {api} service (TLS set-up).") from exc
            self._pools[api] = pool
        return pool

    def prepare(self) -> None:
        """Create every pool now, logging (not raising) set-up errors (at start-up)."""
        for api in self.urls:
            with contextlib.suppress(UpstreamUnavailable):
                self.pool(api)

    def _new_pool(self, url: str, keepalive: bool = True) -> httpx.AsyncBaseTransport:
        if self.transport is not None:
            return self.transport
        s = self.settings
        verify: Any = tls_context() if url.startswith("https://") else True
        # Idle connections expire before the service's own keep-alive closes them
        # (GATEWAY_UPSTREAM_KEEPALIVE_EXPIRY < uvicorn's --timeout-keep-alive).
        limits = httpx.Limits(max_connections=s.max_connections,
                              max_keepalive_connections=s.max_keepalive if keepalive else 0,
                              keepalive_expiry=s.upstream_keepalive_expiry)
        if s.upstream_client == "aiohttp":
            context = (verify if isinstance(verify, ssl.SSLContext)
                       else ssl.create_default_context() if url.startswith("https://")
                       else None)
            return AiohttpTransport(url, context, limits)
        return ReuseAwareTransport(url, verify, limits)

    def _fresh_pool(self, api: str) -> httpx.AsyncBaseTransport:
        pool = self._fresh.get(api)
        if pool is None:
            try:
                pool = self._new_pool(self.base_url(api), keepalive=False)
            except config.ConfigError as exc:  # certificate gone since start-up
                raise UpstreamUnavailable(
                    f"The gateway cannot connect to the {api} service (TLS set-up).") from exc
            self._fresh[api] = pool
        return pool

    async def send(self, api: str, request: httpx.Request) -> httpx.Response:
        """Send ``request`` to ``api``'s pool; the response body is not read yet.

        An idempotent request that failed on a reused connection before any byte of the
        answer came back (:func:`stale_connection_failure`) is sent once more, on a new
        connection; anything else propagates.
        """
        pool = self.pool(api)
        request.extensions["timeout"] = self.timeout
        try:
            response = await pool.handle_async_request(request)
        except (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError) as exc:
            kind = stale_connection_failure(request, exc)
            if kind is None:
                raise
            log.info("retrying %s %s on a new connection: stale keep-alive connection (%s)",
                     request.method, api, kind)
            if self.on_retry is not None:
                self.on_retry(api, kind)
            response = await self._fresh_pool(api).handle_async_request(request)
        response.request = request
        return response

    async def health(self, timeout: float = 1.0) -> dict[str, str]:
        """``/health/live`` of every upstream (probed concurrently): ``ok``,
        ``status <n>``, ``timeout`` or ``failed`` (why is logged, never answered)."""

        async def probe(api: str) -> str:
            try:
                request = httpx.Request("GET", f"{self.base_url(api)}/health/live")
                async with asyncio.timeout(timeout):
                    response = await self.send(api, request)
                    await response.aclose()
            except TimeoutError:
                return "timeout"
            except (UpstreamUnavailable, httpx.HTTPError) as exc:
                log.warning("upstream %s health probe failed: %s: %s", api,
                            type(exc).__name__, exc)
                return "failed"
            return "ok" if response.status_code == 200 else f"status {response.status_code}"

        apis = sorted(self.urls)
        return dict(zip(apis, await asyncio.gather(*(probe(a) for a in apis)), strict=True))

    async def aclose(self) -> None:
        """Close every pool."""
        pools = [*self._pools.values(), *self._fresh.values()]
        for pool in {id(p): p for p in pools}.values():
            await pool.aclose()
        self._pools.clear()
        self._fresh.clear()
