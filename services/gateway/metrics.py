"""Prometheus metrics of the gateway (one registry per app, so tests can build many).

Labels are bounded: ``api`` and ``operation`` come from the specs (``-``/``unrouted`` for
anything else), methods outside the HTTP set are counted as ``OTHER``.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram

_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE"})


class GatewayMetrics:
    """Requests, latency, rate-limit rejections, auth failures, upstream errors and
    retries."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.requests = Counter(
            "gateway_requests_total",
            "Responses of the gateway by API, operation, method and status",
            ["api", "operation", "method", "status"],
            registry=registry,
        )
        self.latency = Histogram(
            "gateway_request_duration_seconds",
            "Time from request to the end of the response, by API and operation",
            ["api", "operation"],
            registry=registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
        )
        self.rate_limited = Counter(
            "gateway_rate_limited_total", "Requests refused with 429, by API",
            ["api"], registry=registry,
        )
        self.auth_failures = Counter(
            "gateway_auth_failures_total", "Requests refused with 401 or 403, by API",
            ["api", "status"], registry=registry,
        )
        self.upstream_errors = Counter(
            "gateway_upstream_errors_total",
            "Upstream failures by API and kind (connect, timeout, protocol, unconfigured)",
            ["api", "kind"], registry=registry,
        )
        self.upstream_retries = Counter(
            "gateway_upstream_retries_total",
            "Idempotent requests sent again on a new connection after a stale kept-alive "
            "one failed before any byte of the answer (kind: protocol, read, write)",
            ["api", "kind"], registry=registry,
        )
        self.rate_limit_backend_errors = Counter(
            "gateway_rate_limit_backend_errors_total",
            "Rate-limit decisions the shared store (Redis) failed to make; the request was "
            "limited in-process instead",
            registry=registry,
        )
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
            counter = self.requests.labels(api, operation, method, str(status))
            self._request_children[key] = counter
        counter.inc()
        lkey = (api, operation)
        hist = self._latency_children.get(lkey)
        if hist is None:
            hist = self.latency.labels(api, operation)
            self._latency_children[lkey] = hist
        hist.observe(seconds)

    def count_rate_limit_backend_error(self) -> None:
        """Count one rate-limit decision Redis failed to make (fallback used)."""
        self.rate_limit_backend_errors.inc()

    def count_retry(self, api: str, kind: str) -> None:
        """Count one retry of a request that met a stale upstream connection."""
        self.upstream_retries.labels(api, kind).inc()
