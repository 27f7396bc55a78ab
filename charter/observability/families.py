"""Process-wide metric families and how an app's ``/metrics`` shows them.

Some metrics are recorded far from any app object (the HTTP client policy in
:mod:`charter.resilience`, the caches, the orders saga, loyalty's consumer): they are
created once per process on prometheus_client's default registry. With several workers
(``PROMETHEUS_MULTIPROC_DIR``) every metric lands in the workers' files whatever its
registry, and ``/metrics`` sums them (:mod:`charter.observability.metrics_exposition`);
with one process, :class:`ProcessFamilies` registered on the app's registry forwards the
default registry's ``charter_`` families (but the messaging ones) to the app's ``/metrics``.

This module also holds the cache family (``charter_cache_requests_total``), used by every
cache read: :func:`count_cache`. The full list of families is in ``docs/observability.md``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Final

from prometheus_client import REGISTRY, CollectorRegistry, Counter
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

PREFIX: Final = "charter_"
MESSAGING_PREFIXES: Final = ("charter_outbox_", "charter_messages_consumed", "charter_message_",
                             "charter_dlq_", "charter_consumer_lag", "charter_messaging_")
"""Left to their own forwarder, :meth:`charter.messaging.runtime.Messaging.collector`
(the same tuple as ``charter.messaging.runtime.METRIC_PREFIXES``; a test keeps them equal)."""

CACHE_REQUESTS = Counter(
    "charter_cache_requests_total",
    "Cache reads by service, cache (namespace) and result (hit, miss; a read that bypassed "
    "an unavailable cache is a miss)",
    ["service", "cache", "result"],
)


def process_service() -> str:
    """The service label for code that belongs to no app object (the token verifier's
    caches): ``CHARTER_SERVICE`` (set by ``charter up`` for each process), else
    ``unknown``."""
    return os.environ.get("CHARTER_SERVICE") or "unknown"


def count_cache(service: str, cache: str, hit: bool) -> None:
    """Count one read of ``cache`` (``hit`` or ``miss``) in ``service``."""
    CACHE_REQUESTS.labels(service, cache, "hit" if hit else "miss").inc()


class CacheCounter:
    """The hit and miss counters of one cache, bound once (a read on a hot path then
    costs one increment, not a label lookup)."""

    def __init__(self, service: str, cache: str) -> None:
        self._hit = CACHE_REQUESTS.labels(service, cache, "hit")
        self._miss = CACHE_REQUESTS.labels(service, cache, "miss")

    def count(self, hit: bool) -> None:
        """Count one read."""
        (self._hit if hit else self._miss).inc()


class ProcessFamilies(Collector):
    """The default registry's ``charter_`` families but :data:`MESSAGING_PREFIXES`, for an
    app's own registry."""

    def __init__(self, source: CollectorRegistry = REGISTRY) -> None:
        self.source = source

    def describe(self) -> list[Metric]:
        return []  # no name clash check: the families live in the other registry

    def collect(self) -> Iterator[Metric]:
        for family in self.source.collect():
            if (family.name.startswith(PREFIX)
                    and not family.name.startswith(MESSAGING_PREFIXES)):
                yield family
