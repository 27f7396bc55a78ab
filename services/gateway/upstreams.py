"""The upstream services: their instances (:mod:`services.gateway.discovery`), one
keep-alive connection pool (``httpx.AsyncHTTPTransport`` over
:class:`~services.gateway.pool.UpstreamPool`, or aiohttp) per instance, the choice of an
instance (:mod:`services.gateway.balancer`), the one retry of an idempotent request on
another instance, and the health checker (:mod:`services.gateway.health_checks`).

Base URLs come from an explicit map (tests), ``<SERVICE>_URLS`` or
``charter.config.service_url(api)``; an ``https://`` URL means the service runs with
mutual TLS, and the gateway then presents its own client certificate
(``charter.security.mtls.client_ssl_context("gateway")``).

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
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import httpcore
import httpx

from charter import config

from .aiohttp_transport import AiohttpTransport
from .balancer import NULL_SERIES, Balancer, Instance, Policy, close_instance
from .discovery import (
    Endpoint,
    Resolver,
    configured_urls,
    discovery_mode,
    dns_host,
    env_prefix,
    resolve,
    resolved_endpoints,
    static_endpoint,
    system_resolve,
)
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


# Connection-level failures after which an idempotent request goes once to another
# instance: nothing of an answer came back (the request may or may not have run, which
# idempotency makes harmless). Timeouts are not among them: the request's time budget
# (GATEWAY_UPSTREAM_TIMEOUT) is spent.
_FAILOVER_KINDS = frozenset({"connect", "connect_timeout", "reset"})


def failure_kind(exc: BaseException) -> str:
    """How a request failed at the connection level: ``connect`` (refused, unreachable),
    ``connect_timeout``, ``timeout``, ``pool`` (the gateway's own pool was full: not the
    instance's fault), ``reset`` (closed before any answer) or ``protocol``."""
    if isinstance(exc, httpx.ConnectTimeout):
        return "connect_timeout"
    if isinstance(exc, httpx.ConnectError):
        return "connect"
    if isinstance(exc, httpx.PoolTimeout):
        return "pool"
    if isinstance(exc, (TimeoutError, httpx.TimeoutException)):
        return "timeout"
    if isinstance(exc, httpx.RemoteProtocolError):
        return "reset" if _NO_RESPONSE in str(exc) else "protocol"
    if isinstance(exc, (httpx.ReadError, httpx.WriteError)):
        return "reset"
    return "protocol"


def _idempotent(method: str, headers: Iterable[tuple[bytes, bytes]]) -> bool:
    if method in IDEMPOTENT_METHODS:
        return True
    return any(name.lower() == b"idempotency-key" for name, _ in headers)


def _policy(s: GatewaySettings) -> Policy:
    return Policy(eject_after=s.eject_after, eject_base=s.eject_base, eject_max=s.eject_max,
                  healthy_threshold=s.healthy_threshold,
                  unhealthy_threshold=s.unhealthy_threshold)


class Upstreams:
    """The instances of every API's service, their connection pools and balancing
    (:class:`~services.gateway.balancer.Balancer`, made on first use), the one retry on
    another instance, and the health checker (:meth:`start`).

    Requests go straight to an instance's pool (``httpx.AsyncHTTPTransport``), not
    through an ``httpx.AsyncClient``: the gateway wants none of the client's extras
    (cookie jar, redirects, auth flows, default headers) and measurably less CPU per
    request.
    """

    def __init__(
        self,
        apis: Iterable[str],
        settings: GatewaySettings,
        urls: Mapping[str, str | Sequence[str]] | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        resolver: Resolver | None = None,
    ) -> None:
        self.settings = settings
        self.transport = transport
        self.resolver: Resolver = resolver or system_resolve
        self.policy = _policy(settings)
        explicit = dict(urls or {})
        # The first URL of each API (None: not configured → 503), and all of them.
        self.urls: dict[str, str | None] = {}
        self.instance_urls: dict[str, tuple[str, ...]] = {}
        self.dns: dict[str, bool] = {}
        for api in apis:
            given = explicit.get(api)
            found = ((given,) if isinstance(given, str) else tuple(given)) if given \
                else configured_urls(api)
            listed = tuple(u.rstrip("/") for u in found if u)
            for url in listed:
                try:
                    static_endpoint(url)
                except config.ConfigError as exc:  # a bad URL fails at start
                    raise config.ConfigError(
                        f"{env_prefix(api)}_URLS / {env_prefix(api)}_URL: {exc}") from exc
            self.instance_urls[api] = listed
            self.urls[api] = listed[0] if listed else None
            self.dns[api] = discovery_mode(api, settings.discovery) == "dns"
        self._balancers: dict[str, Balancer] = {}
        # Called with (api, kind) for each retry of a stale kept-alive connection.
        self.on_retry: Callable[[str, str], None] | None = None
        # Bound metrics of one instance: (api, "host:port") -> series (the gateway's).
        self.series: Callable[[str, str], Any] = lambda _api, _key: NULL_SERIES
        self.on_forget: Callable[[str, str], None] = lambda _api, _key: None
        self.timeout = httpx.Timeout(
            settings.upstream_timeout,
            connect=min(settings.connect_timeout, settings.upstream_timeout),
        ).as_dict()
        self._checker: asyncio.Task[None] | None = None

    # --- instances ------------------------------------------------------------------
    def base_url(self, api: str) -> str:
        """The (first) base URL of ``api``'s service (raises :class:`UpstreamUnavailable`)."""
        url = self.urls.get(api)
        if url is None:
            raise UpstreamUnavailable(f"No upstream is configured for the {api} API.")
        return url

    def balancer(self, api: str) -> Balancer:
        """The instances of ``api``'s service (raises :class:`UpstreamUnavailable`)."""
        found = self._balancers.get(api)
        if found is not None:
            return found
        first = self.base_url(api)
        urls = self.instance_urls.get(api) or (first,)
        if urls[0] != first:  # the primary URL was replaced (tests)
            urls = (first,)
        dns = self.dns.get(api, False)
        balancer = Balancer(api, self.policy, dns_urls=urls if dns else ())
        try:
            # DNS services start on their names (resolved at connect time) until the
            # health checker's first answer replaces them with one instance per address.
            for url in urls:
                balancer.add(self._instance(api, static_endpoint(url)))
        except config.ConfigError as exc:
            log.error("cannot reach the %s service: %s", api, exc)
            raise UpstreamUnavailable(
                f"The gateway cannot connect to the {api} service (TLS set-up).") from exc
        self._balancers[api] = balancer
        return balancer

    def _instance(self, api: str, endpoint: Endpoint, healthy: bool = True) -> Instance:
        return Instance(endpoint, self._new_pool(endpoint.base), self.series(api, endpoint.key),
                        healthy=healthy)

    def pool(self, api: str) -> httpx.AsyncBaseTransport:
        """The keep-alive pool of ``api``'s first instance (raises
        :class:`UpstreamUnavailable`)."""
        return self.balancer(api).all()[0].transport

    def balancers(self) -> dict[str, Balancer]:
        """The balancers made so far, by API."""
        return dict(self._balancers)

    def prepare(self) -> None:
        """Create every balancer and pool now, logging (not raising) set-up errors."""
        for api in self.urls:
            with contextlib.suppress(UpstreamUnavailable):
                self.balancer(api)

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

    def _fresh_pool(self, api: str, instance: Instance) -> httpx.AsyncBaseTransport:
        if instance.fresh is None:
            try:
                instance.fresh = self._new_pool(instance.endpoint.base, keepalive=False)
            except config.ConfigError as exc:  # certificate gone since start-up
                raise UpstreamUnavailable(
                    f"The gateway cannot connect to the {api} service (TLS set-up).") from exc
        return instance.fresh

    # --- the request path -----------------------------------------------------------
    async def send(self, api: str, request: httpx.Request) -> httpx.Response:
        """Send ``request`` (its path and query) to an instance of ``api``'s service; the
        response body is not read yet (see :meth:`forward`)."""
        return await self.forward(api, request.method, request.url.raw_path.decode("ascii"),
                                  request.headers.raw, request.content or None)

    async def forward(self, api: str, method: str, target: str,
                      headers: list[tuple[bytes, bytes]], body: bytes | None,
                      ) -> httpx.Response:
        """Send ``method target`` to an instance of ``api``'s service (response body not
        read yet), within ``GATEWAY_UPSTREAM_TIMEOUT`` for everything.

        An idempotent request (its method is, or it carries an ``Idempotency-Key``) that
        failed to connect, or lost its connection before any byte of the answer, is sent
        once more to another instance; a request that met a stale kept-alive connection
        is sent once more on a new connection of the same instance
        (:func:`stale_connection_failure`). Raises the last failure otherwise.
        """
        balancer = self._balancers.get(api) or self.balancer(api)
        instance = balancer.pick()
        deadline = asyncio.get_running_loop().time() + self.settings.upstream_timeout
        try:
            return await self._attempt(api, balancer, instance, method, target, headers,
                                       body, deadline)
        except (httpx.TransportError, TimeoutError) as exc:
            if failure_kind(exc) not in _FAILOVER_KINDS or not _idempotent(method, headers):
                raise
            other = balancer.pick_other(instance)
            if other is None:
                raise
            instance.series.retry()
            log.info("retrying %s %s on instance %s: %s on %s", method, api, other.key,
                     type(exc).__name__, instance.key,
                     extra={"api": api, "instance": instance.key})
        return await self._attempt(api, balancer, other, method, target, headers, body,
                                   deadline)

    async def _attempt(self, api: str, balancer: Balancer, instance: Instance, method: str,
                       target: str, headers: list[tuple[bytes, bytes]], body: bytes | None,
                       deadline: float) -> httpx.Response:
        endpoint = instance.endpoint
        request = httpx.Request(
            method, endpoint.base + target, content=body,
            headers=headers if endpoint.host is None else [*headers, (b"host", endpoint.host)])
        if endpoint.sni is not None:
            request.extensions["sni_hostname"] = endpoint.sni
        request.extensions["timeout"] = self.timeout
        instance.outstanding += 1
        instance.series.requests.inc()
        try:
            async with asyncio.timeout_at(deadline):
                try:
                    response = await instance.transport.handle_async_request(request)
                except (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError) as exc:
                    kind = stale_connection_failure(request, exc)
                    if kind is None:
                        raise
                    log.info("retrying %s %s on a new connection: stale keep-alive "
                             "connection (%s)", method, api, kind)
                    if self.on_retry is not None:
                        self.on_retry(api, kind)
                    fresh = self._fresh_pool(api, instance)
                    response = await fresh.handle_async_request(request)
        except (httpx.TransportError, TimeoutError) as exc:
            kind = failure_kind(exc)
            if kind != "pool":
                balancer.failed(instance, kind)
            raise
        finally:
            instance.outstanding -= 1
        instance.failures = 0
        response.request = request
        return response

    # --- health ---------------------------------------------------------------------
    async def start(self) -> None:
        """Create the balancers and start the health checker (DNS refresh, active checks;
        one per worker process, on its event loop)."""
        from .health_checks import run_checks

        self.prepare()
        if self._checker is None:
            self._checker = asyncio.create_task(run_checks(self), name="gateway-health")

    async def refresh(self, balancer: Balancer) -> None:
        """Resolve a DNS service's names again: new addresses become instances (checked
        before they get requests), vanished ones are drained."""
        urls = balancer.dns_urls
        found: dict[str, Endpoint] = {}
        for url in urls:
            host = dns_host(url, balancer.api)
            try:
                async with asyncio.timeout(max(self.settings.health_timeout, 1.0)):
                    addresses = await resolve(self.resolver, host)
            except (OSError, TimeoutError) as exc:
                self._dns_trouble(balancer, f"cannot resolve {host}: "
                                            f"{exc or type(exc).__name__}")
                return
            for endpoint in resolved_endpoints(url, addresses):
                found[endpoint.key] = endpoint
        if not found:
            self._dns_trouble(balancer, "no address in DNS")
            return
        if not balancer.dns_ok:
            balancer.dns_ok = True
            log.info("the %s service resolves again", balancer.api,
                     extra={"api": balancer.api})
        for key in list(balancer.instances):
            if key not in found:
                balancer.drain(key)
        for key, endpoint in found.items():
            known = balancer.instances.get(key)
            if known is not None and known.draining:  # back before it was closed
                balancer.undrain(key)
            elif known is None:
                balancer.add(self._instance(balancer.api, endpoint, healthy=False))
                log.info("upstream instance %s of %s discovered", key, balancer.api,
                         extra={"api": balancer.api, "instance": key})
        await self.reap(balancer)

    @staticmethod
    def _dns_trouble(balancer: Balancer, why: str) -> None:
        if balancer.dns_ok:  # logged once per failing streak
            balancer.dns_ok = False
            log.warning("%s service: %s; keeping its %d known instances", balancer.api,
                        why, len(balancer.instances), extra={"api": balancer.api})

    async def reap(self, balancer: Balancer) -> None:
        """Close drained instances that have nothing outstanding."""
        for instance in balancer.drained():
            self.on_forget(balancer.api, instance.key)
            await close_instance(instance)

    async def health(self, timeout: float = 1.0) -> dict[str, str]:
        """``/health/live`` of every upstream (probed concurrently): ``ok``,
        ``status <n>``, ``timeout`` or ``failed`` (why is logged, never answered)."""

        async def probe(api: str) -> str:
            try:
                async with asyncio.timeout(timeout):
                    response = await self.forward(api, "GET", "/health/live", [], None)
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

    def rotation_summary(self) -> dict[str, tuple[int, int]]:
        """``{api: (instances in rotation, instances known)}`` of the balancers made."""
        return {api: (b.healthy_count(), sum(not i.draining for i in b.all()))
                for api, b in sorted(self._balancers.items())}

    async def aclose(self) -> None:
        """Stop the health checker and close every pool."""
        if self._checker is not None:
            self._checker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._checker
            self._checker = None
        for balancer in self._balancers.values():
            for instance in balancer.all():
                await close_instance(instance)
        self._balancers.clear()
