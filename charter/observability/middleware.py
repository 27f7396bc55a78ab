"""An ASGI middleware, outermost in every service: correlation ids, access logs, metrics,
and the request's OpenTelemetry SERVER span (:mod:`charter.observability.tracing`).

It sits outside Connexion's own middleware so it also sees the 400/401/403/404 answers
that Connexion produces before Flask is reached (prometheus-flask-exporter never sees
those). Metrics are labelled by the spec's ``operationId`` (bounded cardinality), or
``unrouted`` for paths outside the spec.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from prometheus_client import CollectorRegistry, Counter, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from charter.observability import tracing
from charter.observability.logs import correlation_id

log = logging.getLogger("charter.access")

# Polled about once a second by every process of the platform (the revocation feed): an
# access-log line per poll would drown every other line, so only failures are logged.
POLLED_PATHS = ("/oauth/revocations",)

HEADER = b"x-correlation-id"
_VALID = re.compile(rb"^[A-Za-z0-9._:\-]{1,128}$")


class RequestMetrics:
    """The per-service HTTP metrics (one registry per app, so tests can build many)."""

    def __init__(self, registry: CollectorRegistry, service: str) -> None:
        self.requests = Counter(
            "charter_http_requests_total",
            "HTTP responses by operation and status, including middleware-produced ones",
            ["service", "method", "operation", "status"],
            registry=registry,
        )
        self.latency = Histogram(
            "charter_http_request_duration_seconds",
            "Time to answer an HTTP request",
            ["service", "method", "operation"],
            registry=registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
        )
        self.service = service


def _operation(scope: Scope) -> str:
    routing = scope.get("extensions", {}).get("connexion_routing", {})
    op = routing.get("operation_id")
    return str(op) if op else "unrouted"


CLIENT_CLOSED = 499
"""The status recorded for a request whose client disconnected before any answer was
started (nginx's convention): not a server error, so not a 5xx in metrics or logs."""


class ObservabilityMiddleware:
    """Correlation id in and out, one JSON access line, metrics and a trace span per
    request.

    The span continues the caller's W3C ``traceparent`` and is current while the request
    runs (the WSGI bridge copies the context into Flask's thread), so outbound calls,
    SQL statements and events written by the handler join the trace and every log line
    carries ``trace_id``. Hand-written rather than opentelemetry-instrumentation-asgi:
    this middleware already times and labels every request, and the contrib middleware
    would add a wrapper layer (and a span per ``send``/``receive``) to each one.
    ``/metrics`` and ``/health`` are not traced (polled, not requests of interest).
    """

    def __init__(self, app: ASGIApp, metrics: RequestMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        # Connexion's routing records the operation in scope["extensions"]; uvicorn's scope
        # has no such key, and a dict created further in would be invisible here.
        scope.setdefault("extensions", {})
        headers: list[tuple[bytes, bytes]] = list(scope.get("headers", []))
        cid_raw = next((v for k, v in headers if k == HEADER), None)
        if cid_raw is None or not _VALID.match(cid_raw):
            cid_raw = uuid.uuid4().hex.encode()
            headers = [(k, v) for k, v in headers if k != HEADER] + [(HEADER, cid_raw)]
            scope = dict(scope, headers=headers)
        cid = cid_raw.decode()
        token = correlation_id.set(cid)
        status = CLIENT_CLOSED  # no answer started and no error: the client went away
        path = scope.get("path", "")
        traced = not path.startswith(("/metrics", "/health"))
        spanned = traced and tracing.propagating()
        if spanned:
            service_token = tracing.current_service.set(self.metrics.service)
            span = tracing.tracer_for(self.metrics.service).start_span(
                scope.get("method", "HTTP"), context=tracing.extract_asgi(headers),
                kind=trace.SpanKind.SERVER)
            span_token = otel_context.attach(trace.set_span_in_context(span))
        started = time.perf_counter()

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                out: list[Any] = [
                    (k, v) for k, v in message.get("headers", []) if k.lower() != HEADER
                ]
                out.append((HEADER, cid_raw))
                message = dict(message, headers=out)
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        except BaseException:
            if status == CLIENT_CLOSED:
                status = 500  # failed before any answer: what the server error handler sends
            raise
        finally:
            elapsed = time.perf_counter() - started
            if traced:
                op = _operation(scope)
                method = scope.get("method", "")
                m = self.metrics
                m.requests.labels(m.service, method, op, str(status)).inc()
                m.latency.labels(m.service, method, op).observe(elapsed)
                if status >= 400 or not path.startswith(POLLED_PATHS):
                    log.info(
                        "%s %s %s",
                        method,
                        path,
                        status,
                        extra={"status": status, "duration_ms": round(elapsed * 1000, 2),
                               "operation": op},
                    )
            if spanned:
                if span.is_recording():
                    _finish_span(span, scope, op, status)
                span.end()
                otel_context.detach(span_token)
                tracing.current_service.reset(service_token)
            correlation_id.reset(token)


def _finish_span(span: trace.Span, scope: Scope, op: str, status: int) -> None:
    """Name the SERVER span after the operation and record the HTTP semantics."""
    method = scope.get("method", "")
    span.update_name(f"{method} {op}")
    span.set_attributes({
        "http.request.method": method,
        "url.path": scope.get("path", ""),
        "http.response.status_code": status,
        "charter.operation": op,
    })
    if status >= 500:
        span.set_status(trace.StatusCode.ERROR)
