"""One keep-alive connection pool (``httpx.AsyncHTTPTransport``) per upstream service.

Base URLs come from an explicit map (tests) or ``charter.config.service_url(api)``; an
``https://`` URL means the service runs with mutual TLS, and the gateway then presents
its own client certificate (``charter.security.mtls.client_ssl_context("gateway")``).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import logging
import sys
from collections.abc import Iterable, Mapping
from typing import Any

import httpx

from charter import config

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

    def _new_pool(self, url: str) -> httpx.AsyncBaseTransport:
        if self.transport is not None:
            return self.transport
        s = self.settings
        verify: Any = tls_context() if url.startswith("https://") else True
        return httpx.AsyncHTTPTransport(
            verify=verify,
            limits=httpx.Limits(max_connections=s.max_connections,
                                max_keepalive_connections=s.max_keepalive,
                                keepalive_expiry=30.0),
            trust_env=False,
            retries=0,
        )

    async def send(self, api: str, request: httpx.Request) -> httpx.Response:
        """Send ``request`` to ``api``'s pool; the response body is not read yet."""
        pool = self.pool(api)
        request.extensions["timeout"] = self.timeout
        response = await pool.handle_async_request(request)
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
        for pool in {id(p): p for p in self._pools.values()}.values():
            await pool.aclose()
        self._pools.clear()
