"""Prometheus metrics of the gateway (one registry per app, so tests can build many).

Named ``charter_gateway_*`` and labelled ``service="gateway"`` like every other component's
``charter_*`` families. Labels are bounded: ``api`` and ``operation`` come from the specs
(``-``/``unrouted`` for anything else), methods outside the HTTP set are counted as
``OTHER``.
"""

from __future__ import annotations

import contextlib
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

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
        self.instances = InstanceMetrics(registry)  # per upstream instance (balancing)
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


class InstanceSeries:
    """The series of one upstream instance, bound once (the hot path then pays one
    ``inc()`` per request; the outstanding gauge is sampled by the health checker)."""

    __slots__ = ("_ejections", "_failures", "_labels", "_owner", "_retries", "healthy",
                 "outstanding", "requests")

    def __init__(self, owner: InstanceMetrics, api: str, instance: str) -> None:
        self._owner = owner
        self._labels = (SERVICE, api, instance)
        self.requests = owner.requests.labels(*self._labels)
        self.healthy = owner.healthy.labels(*self._labels)
        self.outstanding = owner.outstanding.labels(*self._labels)
        self._retries = owner.retries.labels(*self._labels)
        self._ejections = owner.ejections.labels(*self._labels)
        self._failures: dict[str, Any] = {}

    def failure(self, kind: str) -> None:
        """Count one failed request (``kind``: connect, connect_timeout, timeout, reset,
        protocol)."""
        child = self._failures.get(kind)
        if child is None:
            child = self._failures[kind] = self._owner.failures.labels(*self._labels, kind)
        child.inc()

    def retry(self) -> None:
        """Count one request that failed here and was sent again to another instance."""
        self._retries.inc()

    def ejection(self) -> None:
        """Count one passive ejection."""
        self._ejections.inc()


class InstanceMetrics:
    """``charter_gateway_upstream_*`` families per upstream instance (label ``upstream``:
    the API, ``instance``: ``host:port``). Gauges carry a multiprocess mode: each worker
    process balances and health-checks on its own, so ``healthy`` is the minimum over the
    live workers (1 only when every worker has the instance in rotation) and
    ``outstanding`` their sum."""

    def __init__(self, registry: CollectorRegistry) -> None:
        labels = ["service", "upstream", "instance"]
        self.requests = Counter(
            "charter_gateway_upstream_requests_total",
            "Requests sent to an upstream instance (each attempt, retries included)",
            labels, registry=registry)
        self.failures = Counter(
            "charter_gateway_upstream_failures_total",
            "Requests to an upstream instance that failed at the connection level, by kind "
            "(connect, connect_timeout, timeout, reset, protocol)",
            [*labels, "kind"], registry=registry)
        self.retries = Counter(
            "charter_gateway_upstream_instance_retries_total",
            "Idempotent requests that failed on this instance and were sent once to another",
            labels, registry=registry)
        self.ejections = Counter(
            "charter_gateway_upstream_ejections_total",
            "Passive ejections of an upstream instance after connection failures",
            labels, registry=registry)
        self.healthy = Gauge(
            "charter_gateway_upstream_healthy",
            "1 while the instance is in rotation (health checks pass, not ejected), else 0",
            labels, registry=registry, multiprocess_mode="livemin")
        self.outstanding = Gauge(
            "charter_gateway_upstream_outstanding",
            "Requests awaiting an answer's headers from the instance (sampled each health "
            "check interval)",
            labels, registry=registry, multiprocess_mode="livesum")

    def series(self, api: str, instance: str) -> InstanceSeries:
        """The bound series of one instance."""
        return InstanceSeries(self, api, instance)

    def forget(self, api: str, instance: str) -> None:
        """Drop an instance's gauges (it left the DNS answer); counters keep their
        totals."""
        for gauge in (self.healthy, self.outstanding):
            with contextlib.suppress(KeyError):
                gauge.remove(SERVICE, api, instance)
