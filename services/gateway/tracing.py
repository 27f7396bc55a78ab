"""The gateway's span: one SERVER span per request, whose context goes upstream.

With tracing off (:mod:`charter.observability.tracing`, the default) nothing is started
and :func:`traceparent` is :func:`.headers.traceparent` as before: the incoming trace id
is kept with a new parent id, or a new sampled trace starts. With tracing on, the span
continues the caller's ``traceparent`` (or roots a new trace, sampled by the
parent-based ratio) and the upstream gets the span's own ``traceparent``, so the
service's SERVER span is its child.
"""

from __future__ import annotations

from dataclasses import dataclass

from opentelemetry import context as otel_context
from opentelemetry import trace
from starlette.types import Scope

from charter.observability import tracing

from . import headers as hdr

SERVICE = "gateway"


@dataclass(slots=True)
class Traced:
    """A started gateway span and the context token to detach when it ends."""

    span: trace.Span
    token: object
    service_token: object


def start(scope: Scope) -> Traced | None:
    """Start the request's SERVER span (``None`` when tracing is off)."""
    if not tracing.enabled():
        return None
    service_token = tracing.current_service.set(SERVICE)
    span = tracing.tracer_for(SERVICE).start_span(
        scope.get("method", "HTTP"), context=tracing.extract_asgi(scope["headers"]),
        kind=trace.SpanKind.SERVER)
    token = otel_context.attach(trace.set_span_in_context(span))
    return Traced(span, token, service_token)


def finish(traced: Traced, method: str, api: str, operation: str, status: int) -> None:
    """Name the span after the route, record the outcome, end it."""
    span = traced.span
    if span.is_recording():
        span.update_name(f"{method} {api}.{operation}")
        span.set_attributes({"http.request.method": method, "charter.api": api,
                             "charter.operation": operation,
                             "http.response.status_code": status})
        if status >= 500:
            span.set_status(trace.StatusCode.ERROR)
    span.end()
    otel_context.detach(traced.token)  # type: ignore[arg-type]
    tracing.current_service.reset(traced.service_token)  # type: ignore[arg-type]


def traceparent(incoming: bytes | None) -> tuple[bytes, bytes]:
    """``(trace_id, traceparent for the upstream)``: the current gateway span's when
    tracing is on, else :func:`.headers.traceparent` of the incoming header."""
    current = tracing.traceparent_of()
    if current is not None and tracing.enabled():
        return current[3:35].encode(), current.encode()
    return hdr.traceparent(incoming)
