"""The outbox relay: publishes a service's unsent outbox rows in order and marks them sent.

One round (:meth:`OutboxRelay.run_once`) reads a batch of unsent rows in a short read
transaction, publishes them one by one *outside* any transaction (``publish`` returns only
once the broker confirmed), then marks the published ones sent in a second short
transaction. A publish failure stops the round at that row (order per service is kept), is
recorded on the row (``attempts``, ``last_error``) and is retried next round. A crash
between a confirmed publish and the mark publishes the row again: a duplicate, never a
loss; consumers drop it (:mod:`charter.messaging.inbox`).

Run it once per service, not once per worker: under a
:class:`charter.messaging.leader.LeaderLock` (:func:`charter.messaging.leader.lead`).
See ``docs/messaging.md``, *Outbox and relay*.
"""

from __future__ import annotations

import logging
import random
import re
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge

from charter.db import Database
from charter.messaging.envelope import Envelope
from charter.messaging.outbox import Outbox

__all__ = ["OutboxRelay", "PublishFailed", "RelayMetrics", "describe_error"]

log = logging.getLogger(__name__)

# With several worker processes (prometheus-client multiprocess mode) only the leader's
# relay sets the gauges: the most recent value of a live process is the right one.
_GAUGE_MODE: Final = "livemostrecent"

_CREDENTIALS = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)[^/\s:@]*(:[^/\s@]*)?@")


def describe_error(exc: BaseException) -> str:
    """``Type: message`` of ``exc`` with credentials in URLs masked (safe to log and store)."""
    return _CREDENTIALS.sub(r"\g<scheme>***@", f"{type(exc).__name__}: {exc}")


class PublishFailed(RuntimeError):
    """A round stopped because ``publish`` raised; the row stays unsent and is retried.

    ``published`` rows before it were published and marked sent.
    """

    def __init__(self, position: int, published: int, cause: BaseException) -> None:
        super().__init__(f"publishing outbox row {position} failed: {describe_error(cause)}")
        self.position = position
        self.published = published


@dataclass(frozen=True)
class RelayMetrics:
    """The relay's Prometheus metrics in one registry (labelled by ``service``)."""

    published: Counter
    backlog: Gauge
    lag: Gauge
    errors: Counter

    @classmethod
    def of(cls, registry: CollectorRegistry) -> RelayMetrics:
        """The metrics registered in ``registry`` (created once per registry)."""
        with _metrics_lock:
            metrics = _metrics.get(registry)
            if metrics is None:
                metrics = cls(
                    published=Counter("charter_outbox_published_total",
                                      "Outbox events published and confirmed by the broker",
                                      ["service"], registry=registry),
                    backlog=Gauge("charter_outbox_backlog", "Unsent outbox events",
                                  ["service"], registry=registry, multiprocess_mode=_GAUGE_MODE),
                    lag=Gauge("charter_outbox_lag_seconds",
                              "Age of the oldest unsent outbox event (0 when none)",
                              ["service"], registry=registry, multiprocess_mode=_GAUGE_MODE),
                    errors=Counter("charter_outbox_publish_errors_total",
                                   "Outbox publishes that failed (retried later)",
                                   ["service"], registry=registry),
                )
                _metrics[registry] = metrics
            return metrics


_metrics: weakref.WeakKeyDictionary[CollectorRegistry, RelayMetrics] = (
    weakref.WeakKeyDictionary()
)
_metrics_lock = threading.Lock()


class OutboxRelay:
    """Publishes ``outbox``'s unsent rows of ``db`` through ``publish``, in position order.

    ``publish(envelope)`` must return only once the broker has the message (publisher
    confirms on RabbitMQ; the transport's commit on the embedded one) and raise otherwise.
    """

    def __init__(self, db: Database, outbox: Outbox, publish: Callable[[Envelope], None], *,
                 service: str, batch: int = 100, registry: CollectorRegistry | None = None,
                 min_backoff: float = 0.5, max_backoff: float = 30.0) -> None:
        if batch < 1:
            raise ValueError("batch must be at least 1")
        self.db = db
        self.outbox = outbox
        self.publish = publish
        self.service = service
        self.batch = batch
        self.min_backoff = min_backoff
        self.max_backoff = max_backoff
        metrics = RelayMetrics.of(REGISTRY if registry is None else registry)
        self._published = metrics.published.labels(service)
        self._backlog = metrics.backlog.labels(service)
        self._lag = metrics.lag.labels(service)
        self._errors = metrics.errors.labels(service)
        self._wake = threading.Event()

    def wake(self) -> None:
        """Ask the running relay to poll now (call after committing outbox rows)."""
        self._wake.set()

    def run_once(self) -> int:
        """Publish one batch; return how many rows were published and marked sent.

        Raises :class:`PublishFailed` when ``publish`` failed (earlier rows of the batch
        are marked sent, the failed one recorded), or the database error when reading or
        marking failed (the published rows are then published again next round).
        """
        with self.db.session() as session:
            rows = self.outbox.pending(session, self.batch)
        published: list[int] = []
        failure: PublishFailed | None = None
        for row in rows:
            try:
                self.publish(row.envelope())
            except Exception as exc:
                failure = PublishFailed(row.position, len(published), exc)
                failure.__cause__ = exc
                break
            published.append(row.position)
        if published:
            with self.db.write() as session:
                self.outbox.mark_sent(session, published, self.outbox.clock())
            self._published.inc(len(published))
        if failure is not None:
            self._errors.inc()
            with self.db.write() as session:
                self.outbox.record_failure(session, failure.position,
                                           describe_error(failure.__cause__ or failure))
        if failure is None and len(rows) < self.batch:
            # the read saw every unsent row and all are sent now: nothing is waiting (rows
            # committed since are moments old), so the gauges need no query of their own
            self._backlog.set(0)
            self._lag.set(0.0)
        else:
            self.refresh_metrics()
        if failure is not None:
            raise failure
        return len(published)

    def refresh_metrics(self) -> None:
        """Set the backlog and lag gauges from the table."""
        with self.db.session() as session:
            count, age = self.outbox.backlog(session)
        self._backlog.set(count)
        self._lag.set(age or 0.0)

    def run(self, stop: threading.Event, idle: float = 0.2) -> None:
        """Relay until ``stop`` is set: poll every ``idle`` seconds (or at :meth:`wake`),
        straight on while full batches come back, with exponential back-off and jitter
        while rounds fail. Never dies on an exception: it is logged and retried."""
        failures = 0
        while not stop.is_set():
            try:
                count = self.run_once()
            except Exception as exc:
                failures += 1
                delay = self._backoff(failures)
                log.warning("outbox relay round failed; retrying", extra={
                    "outbox_service": self.service, "error": describe_error(exc),
                    "failures": failures, "retry_in": round(delay, 3)})
                self._sleep(stop, delay, wakeable=False)
                continue
            if failures:
                log.info("outbox relay recovered", extra={
                    "outbox_service": self.service, "failures": failures})
                failures = 0
            if count < self.batch:
                self._sleep(stop, idle, wakeable=True)

    def _backoff(self, failures: int) -> float:
        """Full-jitter exponential back-off: a random delay up to min(max, min * 2^(n-1))."""
        ceiling = min(self.max_backoff, self.min_backoff * 2 ** min(failures - 1, 30))
        return random.uniform(self.min_backoff / 2, max(self.min_backoff / 2, ceiling))

    def _sleep(self, stop: threading.Event, seconds: float, *, wakeable: bool) -> None:
        """Wait ``seconds``, cut short by ``stop`` (and by :meth:`wake` when ``wakeable``)."""
        deadline = time.monotonic() + seconds
        slice_ = 0.05
        while not stop.is_set():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            if self._wake.wait(min(remaining, slice_)) and wakeable:
                break
            if not wakeable:
                self._wake.clear()
        self._wake.clear()
