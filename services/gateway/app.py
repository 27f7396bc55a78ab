"""The gateway's ASGI app (``uvicorn --factory services.gateway.app:create_asgi``).

A plain ASGI callable (no framework on the hot path). Per request: route by the table
generated from ``openapi/`` → verify the bearer token and the operation's scopes → take
from the client's rate-limit bucket → read the body up to the size limit → forward to
the API's service over a pooled keep-alive connection with correlation id, traceparent
and forwarding headers → stream the answer back without hop-by-hop headers. Anything
the gateway refuses is RFC 9457 problem+json. Besides the routed APIs it serves the
portal (``/``), each API's Swagger UI and ``openapi.json``, ``/health/*`` and ``/metrics``.

The client of a request without a valid token (its rate-limit key) is the TCP peer, or,
when the peer is in ``GATEWAY_TRUSTED_PROXIES``, the address the forwarding headers give
(:mod:`charter.security.client_ip`); an incoming forwarding chain is passed on only from
such a proxy. uvicorn's own proxy-header handling is off (``charter.serve``).

The gateway has no database.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import httpx
from prometheus_client import CollectorRegistry
from starlette.types import Message, Receive, Scope, Send

from charter import config
from charter.observability import families, logs, metrics_exposition, tracing
from charter.problem_types import for_status
from charter.problems import PROBLEM_JSON, type_uri
from charter.security.client_ip import TrustedProxies
from charter.security.tokens import (
    InvalidToken,
    TokenProblem,
    TokenVerifier,
    build_verifier,
    scope_problem,
    scopes_of,
    token_problem,
)
from charter.serve import fails_fast

from . import headers as hdr
from . import tracing as gw_tracing
from .compression import Compression
from .cors import Cors
from .deprecations import POLICY_CONTENT_TYPE, Retiring
from .discovery import Resolver
from .metrics import SERVICE, GatewayMetrics
from .portal import REDIRECT_PAGE, Portal
from .problem_pages import CACHE_CONTROL, ProblemPages
from .ratelimit import Decision, Limiter, make_limiter
from .routes import ApiVersion, Match, NoMatch, Operation, RouteTable
from .settings import GatewayConfig, GatewaySettings, load_config
from .upstreams import Upstreams, UpstreamUnavailable

NAME = "gateway"
log = logging.getLogger("charter.access")
errors_log = logging.getLogger(__name__)

# Incoming headers the gateway replaces rather than forwards as they are.
# (``Expect: 100-continue`` is answered by the gateway's server: the body is read first.)
_REPLACED = frozenset({
    b"host", b"content-length", b"expect", hdr.CORRELATION, hdr.TRACEPARENT,
    b"x-forwarded-for", b"x-forwarded-proto", b"x-forwarded-host", b"forwarded",
})
# Methods whose request may carry a body even without Content-Length/Transfer-Encoding
# (HTTP/2 servers); reading costs one ``receive`` when it is empty.
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# Upstream response headers never passed back (uvicorn adds its own date/server).
_RESPONSE_DROPPED = frozenset({b"date", b"server", hdr.CORRELATION})


class _Exchange:
    """What the access log and the metrics need to know about one request."""

    __slots__ = ("api", "operation", "responded", "status", "trace_id")

    def __init__(self) -> None:
        self.api = "-"
        self.operation = "unrouted"
        self.status = 500
        self.trace_id = ""
        self.responded = False  # the response has started: nothing else can be sent


class Gateway:
    """The gateway ASGI application."""

    def __init__(
        self,
        routes: RouteTable,
        verifier: TokenVerifier,
        upstreams: Upstreams,
        settings: GatewaySettings,
        registry: CollectorRegistry | None = None,
        access_log: bool = True,
    ) -> None:
        self.routes = routes
        self.verifier = verifier
        self.upstreams = upstreams
        self.settings = settings
        self.registry = registry or CollectorRegistry()
        self.metrics = GatewayMetrics(self.registry)
        # one process: the token and JWKS cache reads (charter_cache_requests_total) too
        self.registry.register(families.ProcessFamilies())
        upstreams.on_retry = self.metrics.count_retry  # stale keep-alive retries
        upstreams.series = self.metrics.instances.series  # per upstream instance
        upstreams.on_forget = self.metrics.instances.forget
        self.limiter: Limiter | None = make_limiter(
            settings.rate_limit, settings.rate_burst, settings.redis_url, settings.workers,
            on_error=self.metrics.count_rate_limit_backend_error,
        )
        self.portal = Portal(routes, client_id=settings.swagger_client_id,
                             dashboard_url=settings.dashboard_url)
        self.problem_pages = ProblemPages()
        # Deprecated versions: headers, 410 after the sunset, the policy page.
        self.retiring = Retiring.configured(settings.public_url)
        # Parsed once; None (no work per request) when no proxy is trusted.
        self.proxies = (TrustedProxies(settings.trusted_proxies)
                        if settings.trusted_proxies else None)
        self.access_log = access_log
        # The HTTP pipeline: CORS (outermost: preflights never reach the rest), then
        # compression, then the gateway itself; each layer only when configured.
        entry: Any = self._http
        if settings.compression:
            entry = Compression(entry, settings.compression_min_bytes)
        if settings.cors_origins:
            methods = sorted({op.method for a in routes.apis for op in a.operations})
            entry = Cors(entry, settings.cors_origins, methods=methods,
                         allow_credentials=settings.cors_allow_credentials,
                         max_age=settings.cors_max_age)
        self._entry = entry

    # --- ASGI entry ---------------------------------------------------------------
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self._entry(scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)
        elif kind == "websocket":
            await send({"type": "websocket.close", "code": 1003})

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                if not self.verifier.jwks.kids:  # auth may have started after us
                    await asyncio.to_thread(self.verifier.jwks.refresh)
                # pools (and mTLS contexts) made on this loop; health checks, DNS
                await self.upstreams.start()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.upstreams.aclose()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        cid_in: bytes | None = None
        header_bytes = 0  # as sent: "name: value" CRLF per field (GATEWAY_MAX_HEADER_BYTES)
        for name, value in scope["headers"]:
            header_bytes += len(name) + len(value) + 4
            if name == hdr.CORRELATION and cid_in is None:
                cid_in = value
        cid = hdr.correlation_id(cid_in)
        cid_token = logs.correlation_id.set(cid.decode())
        ex = _Exchange()
        traced = gw_tracing.start(scope)  # None unless tracing is on
        method: str = scope["method"]
        raw = scope.get("raw_path")
        path = raw.decode("latin-1") if raw else scope["path"]
        try:
            if header_bytes > self.settings.max_header_bytes:  # before routing and tokens
                await self._problem(
                    send, ex, cid, 431, "Request Header Fields Too Large",
                    f"The request's header fields take {header_bytes} bytes; the limit is "
                    f"{self.settings.max_header_bytes}.",
                    kind="request-header-fields-too-large")
                return
            match = self.routes.match(method, path)
            if isinstance(match, Match):
                await self._proxy(scope, receive, send, match, cid, ex)
            else:
                await self._local(scope, send, method, path, match, cid, ex)
        except Exception:
            if ex.responded:
                raise  # mid-response: only a broken connection can say so
            errors_log.exception("unexpected error", extra={"api": ex.api})
            await self._problem(send, ex, cid, 500, "Internal Server Error",
                                "The gateway failed to handle this request.")
        finally:
            elapsed = time.perf_counter() - started
            if ex.operation != "internal":
                self.metrics.observe(ex.api, ex.operation, method, ex.status, elapsed)
                if self.access_log:
                    log.info(
                        "%s %s %s", method, path, ex.status,
                        extra={"api": ex.api, "operation": ex.operation,
                               "status": ex.status, "duration_ms": round(elapsed * 1000, 2),
                               "trace_id": ex.trace_id or None},
                    )
            if traced is not None:
                gw_tracing.finish(traced, method, ex.api, ex.operation, ex.status)
            logs.correlation_id.reset(cid_token)

    # --- responses the gateway makes itself ---------------------------------------
    async def _respond(
        self, send: Send, ex: _Exchange, status: int, body: bytes, content_type: str,
        cid: bytes, extra: list[tuple[bytes, bytes]] | None = None, head: bool = False,
    ) -> None:
        ex.status = status
        headers = [
            (b"content-type", content_type.encode()),
            (b"content-length", str(len(body)).encode()),
            (hdr.CORRELATION, cid),
        ]
        if extra:
            headers += extra
        ex.responded = True
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": b"" if head else body})

    async def _problem(
        self, send: Send, ex: _Exchange, cid: bytes, status: int, title: str,
        detail: str, extra: list[tuple[bytes, bytes]] | None = None,
        kind: str | None = None,
    ) -> None:
        """Answer a problem; ``kind`` is its registered slug (default: the status's)."""
        doc = {"type": type_uri(kind or for_status(status).slug), "title": title,
               "status": status, "detail": detail}
        if status >= 500:  # what went wrong is in the log under this id (charter.problems)
            doc["correlation_id"] = cid.decode("latin-1")
        await self._respond(send, ex, status, json.dumps(doc).encode(), PROBLEM_JSON,
                            cid, extra)

    # --- gateway-served paths: portal, UI, specs, health, metrics --------------------
    async def _local(
        self, scope: Scope, send: Send, method: str, path: str, match: NoMatch,
        cid: bytes, ex: _Exchange,
    ) -> None:
        if match.status == 405:
            ex.api = match.api.api if match.api else "-"
            allow = ", ".join(match.allow).encode()
            await self._problem(send, ex, cid, 405, "Method Not Allowed",
                                f"{method} is not an operation of this path.",
                                [(b"allow", allow)])
            return
        target = self._local_target(path, match.api)
        if target is None:
            await self._problem(send, ex, cid, 404, "Not Found",
                                "No API operation is served at this path.")
            return
        if method not in ("GET", "HEAD"):
            await self._problem(send, ex, cid, 405, "Method Not Allowed",
                                f"{method} is not supported here.", [(b"allow", b"GET, HEAD")])
            return
        head = method == "HEAD"
        kind, entry, name = target
        ex.operation = kind
        if kind in ("health", "metrics"):
            ex.operation = "internal"  # probes and scrapes: neither counted nor logged
            if kind == "metrics":
                await self._respond(send, ex, 200, *metrics_exposition.exposition(self.registry),
                                    cid, head=head)
            else:
                status, doc = await self._health(name, scope)
                await self._respond(send, ex, status, json.dumps(doc).encode(),
                                    "application/json", cid, head=head)
            return
        if entry is not None:
            ex.api = entry.api
        if kind == "portal":
            await self._respond(send, ex, 200, self.portal.index(),
                                "text/html; charset=utf-8", cid, head=head)
        elif kind == "problems":  # problem type pages: public, cacheable
            page = self.problem_pages.get(name)
            if page is None:
                await self._problem(send, ex, cid, 404, "Not Found", "No such problem type.")
                return
            await self._respond(send, ex, 200, page, "text/html; charset=utf-8", cid,
                                [(b"cache-control", CACHE_CONTROL)], head=head)
        elif kind == "policy":  # the deprecation policy (Link: rel="deprecation")
            await self._respond(send, ex, 200, self.retiring.policy_page or b"",
                                POLICY_CONTENT_TYPE, cid, head=head)
        elif kind == "openapi" and entry is not None:
            body = self.portal.spec_json(entry.api, entry.version) or b"{}"
            await self._respond(send, ex, 200, body, "application/json", cid, head=head)
        elif kind == "ui_redirect" and entry is not None:
            await self._respond(send, ex, 308, b"", "text/plain", cid,
                                [(b"location", f"{entry.prefix}/ui/".encode())], head=head)
        elif kind == "ui" and entry is not None and name in ("", "index.html"):
            page = self.portal.ui_page(entry, self._origin(scope))
            await self._respond(send, ex, 200, page, "text/html; charset=utf-8", cid,
                                [(b"cache-control", b"no-cache")], head=head)
        else:  # a static Swagger UI file (also /ui/oauth2-redirect.html at the root)
            found = self.portal.ui_file(name)
            if found is None:
                await self._problem(send, ex, cid, 404, "Not Found", "No such file.")
                return
            body, content_type = found
            await self._respond(send, ex, 200, body, content_type, cid,
                                [(b"cache-control", b"public, max-age=3600")], head=head)

    def _local_target(
        self, path: str, entry: ApiVersion | None
    ) -> tuple[str, ApiVersion | None, str] | None:
        if path == "/":
            return "portal", None, ""
        if path in ("/health/live", "/health/ready"):
            return "health", None, path.rsplit("/", 1)[1]
        if path == "/metrics":
            return "metrics", None, ""
        if path == f"/ui/{REDIRECT_PAGE}":
            return "ui", None, REDIRECT_PAGE
        if path == "/problems" or path.startswith("/problems/"):
            return "problems", None, path
        if path == self.retiring.policy_path and self.retiring.policy_page is not None:
            return "policy", None, ""
        if entry is None:
            return None
        rest = path[len(entry.prefix):]
        if rest == "/openapi.json":
            return "openapi", entry, ""
        if rest == "/ui":
            return "ui_redirect", entry, ""
        if rest.startswith("/ui/") and "/" not in rest[4:]:
            return "ui", entry, rest[4:]
        return None

    def _origin(self, scope: Scope) -> str:
        if self.settings.public_url:
            return self.settings.public_url
        host = next((v for k, v in scope["headers"] if k == b"host"), None)
        if host is None:
            server = scope.get("server") or ("127.0.0.1", config.port(NAME))
            return f"{scope.get('scheme', 'http')}://{server[0]}:{server[1]}"
        return f"{scope.get('scheme', 'http')}://{host.decode('latin-1')}"

    async def _health(self, which: str, scope: Scope) -> tuple[int, dict[str, Any]]:
        if which == "live":
            return 200, {"status": "ok", "service": NAME}
        checks: dict[str, Any] = {}
        operations = len(self.routes)
        checks["routes"] = (f"ok ({operations} operations)" if operations
                            else "failed: no operations loaded")
        if not self.verifier.jwks.kids:
            await asyncio.to_thread(self.verifier.jwks.get, "")  # rate-limited refresh
        kids = self.verifier.jwks.kids
        checks["jwks"] = f"ok ({len(kids)} keys)" if kids else "failed: no signing keys"
        ok = bool(operations and kids)
        if self.verifier.poller is not None:
            try:
                self.verifier.check_ready()
                checks["revocations"] = "ok"
            except Exception as exc:  # the body names the dependency; the reason is logged
                errors_log.warning("not ready: revocation feed: %s", exc)
                checks["revocations"] = "failed"
                ok = False
        summary = self.upstreams.rotation_summary()  # the health checker's view
        empty = [api for api, (healthy, known) in summary.items() if known and not healthy]
        checks["upstreams"] = (f"ok ({len(summary)} services)" if not empty
                               else "degraded: no instance in rotation for "
                               + ", ".join(empty))
        if empty and self.settings.ready_requires_upstreams:
            ok = False
        doc: dict[str, Any] = {"status": "ok" if ok else "unavailable", "service": NAME,
                               "checks": checks}
        if b"upstreams=1" in scope.get("query_string", b""):
            doc["upstreams"] = await self.upstreams.health()  # informational only
        return (200 if ok else 503), doc

    # --- the proxied path -----------------------------------------------------------
    async def _authorize(
        self, op: Operation, authorization: bytes | None
    ) -> tuple[dict[str, Any] | None, tuple[int, str, str, bytes] | None]:
        """``(claims, None)`` or ``(claims or None, (status, title, detail, challenge))``."""
        if op.security is None:
            return None, None
        token = None
        if authorization is not None:
            scheme, _, credentials = authorization.partition(b" ")
            if scheme.lower() == b"bearer" and credentials.strip():
                token = credentials.strip().decode("latin-1")
        if token is None:
            return None, _refusal(token_problem("missing"))
        try:
            claims = self.verifier.verify_cached(token)
            if claims is None:
                claims = await asyncio.to_thread(self.verifier.verify, token)
        except InvalidToken as exc:
            errors_log.info("access token refused: %s", exc)
            return None, _refusal(token_problem(exc.reason))
        if not op.allows(scopes_of(claims)):
            return claims, _refusal(scope_problem(op.required_scopes))
        return claims, None

    async def _proxy(
        self, scope: Scope, receive: Receive, send: Send, match: Match, cid: bytes,
        ex: _Exchange,
    ) -> None:
        op = match.operation
        ex.api, ex.operation = op.api, op.operation_id
        settings = self.settings
        retiring = self.retiring.headers(op.api, op.version)  # () unless deprecated
        if retiring:
            gone = self.retiring.gone(op.api, op.version)
            if gone is not None:  # past its sunset: 410, the service is not asked
                await self._respond(send, ex, 410, gone, PROBLEM_JSON, cid, list(retiring))
                return
        if op.internal_callers and not settings.expose_internal:
            await self._problem(
                send, ex, cid, 403, "Forbidden",
                "This operation is internal (service-to-service only) and is not "
                "available through the gateway.")
            return

        # One pass over the request headers.
        authorization = traceparent = content_length = host = None
        xff: list[bytes] = []
        forwarded: list[bytes] = []
        chunked = False
        named: set[bytes] = set()
        for name, value in scope["headers"]:
            if name == b"authorization":
                authorization = value
            elif name == b"host":
                host = value
            elif name == b"content-length":
                content_length = value
            elif name == hdr.TRACEPARENT:
                traceparent = value
            elif name == b"transfer-encoding":
                chunked = True
            elif name == b"connection":
                named = hdr.connection_named(scope["headers"])
            elif name == b"x-forwarded-for":
                xff.append(value)
            elif name == b"forwarded":
                forwarded.append(value)

        # The TCP peer; forwarding headers count only when it is a trusted proxy.
        peer: str = (scope.get("client") or ("unknown", 0))[0]
        proxies = self.proxies
        via_proxy = proxies is not None and proxies.trusts_peer(peer)

        # Token and scopes, then the client's rate-limit bucket (bad tokens count too).
        claims, refusal = await self._authorize(op, authorization)
        decision: Decision | None = None
        if self.limiter is not None:
            if claims is not None:
                key = f"t:{claims.get('client_id', '')}:{claims.get('sub', '')}"
            elif via_proxy and proxies is not None:
                key = "ip:" + proxies.client(peer, b", ".join(xff).decode("latin-1"),
                                             b", ".join(forwarded).decode("latin-1"))
            else:
                key = f"ip:{peer}"
            decision = await self.limiter.acquire(key)
            if not decision.allowed:
                self.metrics.rate_limited.labels(SERVICE, op.api).inc()
                await self._problem(
                    send, ex, cid, 429, "Too Many Requests",
                    f"Rate limit of {settings.rate_limit:g} requests/s "
                    f"(burst {settings.rate_burst}) exceeded; retry later.",
                    [*decision.headers(), *retiring],
                )
                return
        limit_headers = decision.headers() if decision is not None else []
        if retiring:  # on the gateway's own answers too; replaces the service's copy
            limit_headers = [*limit_headers, *retiring]
        if refusal is not None:
            status, title, detail, challenge = refusal
            self.metrics.auth_failures.labels(SERVICE, op.api, str(status)).inc()
            await self._problem(send, ex, cid, status, title, detail,
                                [(b"www-authenticate", challenge), *limit_headers],
                                kind="insufficient-scope" if status == 403 else "unauthorized")
            return

        # The body, bounded (declared length first, then what actually arrives).
        body: bytes | None = None
        limit = settings.max_body_bytes
        if content_length is not None:
            try:
                declared = int(content_length)
                if declared < 0:
                    raise ValueError
            except ValueError:
                await self._problem(send, ex, cid, 400, "Bad Request",
                                    "Invalid Content-Length.", limit_headers)
                return
            if declared > limit:
                await self._problem(send, ex, cid, 413, "Content Too Large",
                                    f"Request bodies are limited to {limit} bytes.",
                                    limit_headers)
                return
        if content_length is not None or chunked or op.method in _BODY_METHODS:
            chunks: list[bytes] = []
            size = 0
            while True:
                message: Message = await receive()
                if message["type"] == "http.disconnect":
                    ex.status = 499  # client went away; nothing to answer
                    return
                chunk = message.get("body", b"")
                size += len(chunk)
                if size > limit:
                    await self._problem(send, ex, cid, 413, "Content Too Large",
                                        f"Request bodies are limited to {limit} bytes.",
                                        limit_headers)
                    return
                if chunk:
                    chunks.append(chunk)
                if not message.get("more_body", False):
                    break
            body = b"".join(chunks) if (chunks or content_length is not None) else None

        # Headers for the upstream.
        trace_id, traceparent_out = gw_tracing.traceparent(traceparent)
        ex.trace_id = trace_id.decode()
        out: list[tuple[bytes, bytes]] = [
            (name, value) for name, value in scope["headers"]
            if name not in _REPLACED and not hdr.is_hop_by_hop(name, named)
        ]
        proto = scope.get("scheme", "http")
        if not via_proxy:  # a chain from anyone but a trusted proxy is the caller's say-so
            xff, forwarded = [], []
        xff.append(peer.encode())
        node = f"for={hdr.forwarded_pair(peer)};proto={proto}"
        if host is not None:
            node += f";host={hdr.quoted(host.decode('latin-1'))}"
        forwarded.append(node.encode())
        out += [
            (hdr.CORRELATION, cid),
            (hdr.TRACEPARENT, traceparent_out),
            (b"x-forwarded-for", b", ".join(xff)),
            (b"x-forwarded-proto", proto.encode()),
            (b"forwarded", b", ".join(forwarded)),
        ]
        if host is not None:
            out.append((b"x-forwarded-host", host))

        query = scope.get("query_string", b"")
        try:
            target = match.upstream_path + (f"?{query.decode('latin-1')}" if query else "")
            # an instance of the service, failover and the time budget: upstreams.py
            response = await self.upstreams.forward(op.api, scope["method"], target, out,
                                                    body)
        except httpx.InvalidURL:
            await self._problem(send, ex, cid, 400, "Bad Request", "Invalid request target.",
                                limit_headers)
            return
        except UpstreamUnavailable as exc:
            self.metrics.upstream_errors.labels(SERVICE, op.api, "unconfigured").inc()
            errors_log.warning("upstream unavailable: %s", exc, extra={"api": op.api})
            await self._problem(send, ex, cid, 503, "Service Unavailable",
                                f"The {op.api} service is unavailable.", limit_headers)
            return
        except (TimeoutError, httpx.TimeoutException) as exc:
            kind = "connect_timeout" if isinstance(exc, httpx.ConnectTimeout) else "timeout"
            self.metrics.upstream_errors.labels(SERVICE, op.api, kind).inc()
            await self._problem(
                send, ex, cid, 504, "Gateway Timeout",
                f"The {op.api} service did not answer within "
                f"{settings.upstream_timeout:g} s.", limit_headers)
            return
        except httpx.ConnectError:
            self.metrics.upstream_errors.labels(SERVICE, op.api, "connect").inc()
            await self._problem(send, ex, cid, 502, "Bad Gateway",
                                f"The {op.api} service is unreachable.", limit_headers)
            return
        except httpx.HTTPError as exc:
            self.metrics.upstream_errors.labels(SERVICE, op.api, "protocol").inc()
            errors_log.warning("upstream error", extra={"api": op.api,
                                                        "error": type(exc).__name__})
            await self._problem(send, ex, cid, 502, "Bad Gateway",
                                f"The {op.api} service failed to answer.", limit_headers)
            return

        await self._stream_back(send, response, cid, limit_headers, ex)

    async def _stream_back(
        self, send: Send, response: httpx.Response, cid: bytes,
        limit_headers: list[tuple[bytes, bytes]], ex: _Exchange,
    ) -> None:
        raw = response.headers.raw
        named = hdr.connection_named(raw) if b"connection" in (k.lower() for k, _ in raw) \
            else set()
        # The gateway's own RateLimit/deprecation headers replace any the service sent.
        dropped = (_RESPONSE_DROPPED.union(k for k, _ in limit_headers) if limit_headers
                   else _RESPONSE_DROPPED)
        headers = [
            (name, hdr.public_location(value, ex.api) if name in _LOCATIONS else value)
            for name, value in ((k.lower(), v) for k, v in raw)
            if name not in dropped and not hdr.is_hop_by_hop(name, named)
        ]
        headers.append((hdr.CORRELATION, cid))
        headers += limit_headers
        ex.status = response.status_code
        ex.responded = True
        try:
            await send({"type": "http.response.start", "status": response.status_code,
                        "headers": headers})
            # One chunk held back so the last one carries more_body=False (one send less).
            pending: bytes | None = None
            async for chunk in _raw_chunks(response):
                if not chunk:
                    continue
                if pending is not None:
                    await send({"type": "http.response.body", "body": pending,
                                "more_body": True})
                pending = chunk
            await send({"type": "http.response.body", "body": pending or b""})
        except httpx.HTTPError as exc:
            # Headers are gone already: the only honest signal left is a broken connection.
            self.metrics.upstream_errors.labels(SERVICE, ex.api, "stream").inc()
            errors_log.warning("upstream failed mid-response",
                               extra={"api": ex.api, "error": type(exc).__name__})
            raise
        finally:
            await response.aclose()


_LOCATIONS = frozenset({b"location", b"content-location"})


def _refusal(problem: TokenProblem) -> tuple[int, str, str, bytes]:
    """A token refusal (401 or 403) in ``_authorize``'s shape: the problem shared with the
    services."""
    return problem.status, problem.title, problem.detail, problem.challenge.encode()


async def _raw_chunks(response: httpx.Response) -> AsyncIterator[bytes]:
    """The body as received; a response already read (e.g. from a mock transport) at once."""
    if response.is_stream_consumed:
        yield response.content
        return
    async for chunk in response.aiter_raw():
        yield chunk


def create_app(
    *,
    spec_dir: Path | None = None,
    upstreams: Mapping[str, str | Sequence[str]] | None = None,
    verifier: TokenVerifier | None = None,
    settings: GatewaySettings | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
    registry: CollectorRegistry | None = None,
    access_log: bool | None = None,
    resolver: Resolver | None = None,
) -> Gateway:
    """Build the gateway.

    ``spec_dir`` (default ``openapi/``) is read once, now: every ``<api>/v<major>.yaml``
    becomes routes. ``upstreams`` maps an API name to its service's base URL (default
    ``charter.config.service_url(api)``); ``verifier`` defaults to one fed by the
    authorization server's JWKS (prefetched); ``settings`` default to the environment;
    ``transport`` replaces the network for every upstream (tests). An API may map to
    several base URLs (its instances); ``resolver`` (``host -> addresses``) replaces the
    system's DNS for services discovered by DNS (tests).
    """
    settings = settings or GatewaySettings.from_env()
    routes = RouteTable.from_specs(spec_dir)
    if verifier is None:
        verifier = build_verifier(config.auth_settings())
    pools = Upstreams([a.api for a in routes.apis], settings, upstreams, transport, resolver)
    if access_log is None:
        access_log = GatewayConfig.parse().gateway_access_log
    return Gateway(routes, verifier, pools, settings, registry, access_log)


@fails_fast
def create_asgi() -> Gateway:
    """ASGI entry point for uvicorn: JSON logs, routes from ``openapi/``, env settings."""
    cfg = load_config()  # fails closed: every missing or bad variable in one message
    logs.configure(NAME, cfg.log_level)
    tracing.install(NAME)  # OTLP export when OTEL_EXPORTER_OTLP_ENDPOINT is set
    # httpx logs every upstream request at INFO: one access line per request is enough.
    for noisy in ("httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    return create_app(settings=GatewaySettings.from_env(cfg), access_log=cfg.gateway_access_log)
