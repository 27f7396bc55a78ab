"""Prometheus metrics of the gateway (one registry per app, so tests can build many).

Named ``charter_gateway_*`` and labelled ``service="gateway"`` like every other component's
``charter_*`` families. Labels are bounded: ``api`` and ``operation`` come from the specs
(``-``/``unrouted`` for anything else), methods outside the HTTP set are counted as
``OTHER``.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram

SERVICE = "gateway"
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE"})


class GatewayMetrics:
    """Requests, latency, rate-limit rejections, auth failures, upstream errors and
    retries."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.requests = Counter(
            "charter_gateway_requests_total",
            "Responses of the gateway by API, operation, method and status",
            ["service", "api", "operation", "method", "status"],
            registry=registry,
        )
        self.latency = Histogram(
            "charter_gateway_request_duration_seconds",
            "Time from request to the end of the response, by API and operation",
            ["service", "api", "operation"],
            registry=registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
        )
        self.rate_limited = Counter(
            "charter_gateway_rate_limited_total", "Requests refused with 429, by API",
            ["service", "api"], registry=registry,
        )
        self.auth_failures = Counter(
            "charter_gateway_auth_failures_total", "Requests refused with 401 or 403, by API",
            ["service", "api", "status"], registry=registry,
        )
        self.upstream_errors = Counter(
            "charter_gateway_upstream_errors_total",
            "Upstream failures by API and kind (connect, timeout, protocol, unconfigured)",
            ["service", "api", "kind"], registry=registry,
        )
        self.upstream_retries = Counter(
            "charter_gateway_upstream_retries_total",
            "Idempotent requests sent again on a new connection after a stale kept-alive "
            "one failed before any byte of the answer (kind: protocol, read, write)",
            ["service", "api", "kind"], registry=registry,
        )
        self.rate_limit_backend_errors = Counter(
            "charter_gateway_rate_limit_backend_errors_total",
            "Rate-limit decisions the shared store (Redis) failed to make; the request was "
            "limited in-process instead",
            ["service"], registry=registry,
        )
        self.rate_limit_backend_errors.labels(SERVICE)  # exported at 0 from the start
        self._request_children: dict[tuple[str, str, str, int], Any] = {}
        self._latency_children: dict[tuple[str, str], Any] = {}

    def observe(self, api: str, operation: str, method: str, status: int,
                seconds: float) -> None:
        """Count one response and its latency (label children cached)."""
        if method not in _METHODS:
            method = "OTHER"
        key = (api, operation, method, status)
        counter = self._request_children.get(key)
        if counter is None:
            counter = self.requests.labels(SERVICE, api, operation, method, str(status))
            self._request_children[key] = counter
        counter.inc()
        lkey = (api, operation)
        hist = self._latency_children.get(lkey)
        if hist is None:
            hist = self.latency.labels(SERVICE, api, operation)
            self._latency_children[lkey] = hist
        hist.observe(seconds)

    def count_rate_limit_backend_error(self) -> None:
        """Count one rate-limit decision Redis failed to make (fallback used)."""
        self.rate_limit_backend_errors.labels(SERVICE).inc()

    def count_retry(self, api: str, kind: str) -> None:
        """Count one retry of a request that met a stale upstream connection."""
        self.upstream_retries.labels(SERVICE, api, kind).inc()
