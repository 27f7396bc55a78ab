"""A service's messaging at run time: its outbox relay and its consumers, run once per
service by the worker process that holds the service's leader lock.

Every worker process of a service builds one :class:`Messaging` and calls
:meth:`Messaging.start`; each competes for ``LeaderLock("<service>-messaging", …)``
(:mod:`charter.messaging.leader`) and only the holder declares the subscriptions, runs
the relay and one consumer thread per subscription. When it loses the lock, or stops,
they stop and another worker takes over. ``/health/ready`` of every worker checks that
the broker answers (:meth:`Messaging.check_ready`). See ``docs/messaging.md``,
*Running it: one leader per service*.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Final

from prometheus_client import REGISTRY, CollectorRegistry, Gauge
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector
from sqlalchemy import Engine, event
from sqlalchemy.orm import Session

from charter import config
from charter.db import Database
from charter.messaging.broker import Broker, BrokerUnavailable, Subscription
from charter.messaging.consumer import Consumer, Handler
from charter.messaging.envelope import Envelope
from charter.messaging.inbox import Inbox
from charter.messaging.leader import LeaderLock, lead
from charter.messaging.outbox import OUTBOX_WRITTEN, Outbox
from charter.messaging.relay import OutboxRelay, describe_error
from charter.observability import tracing

__all__ = ["ENV", "Consumes", "Handler", "Messaging", "enabled", "watch"]

log = logging.getLogger(__name__)

ENV: Final = "CHARTER_MESSAGING"
"""``off`` starts no relay and no consumer in this process (special runs); default ``on``."""

_OFF = frozenset({"off", "0", "false", "no"})
_ON = frozenset({"on", "1", "true", "yes"})

METRIC_PREFIXES: Final = ("charter_outbox_", "charter_messages_consumed", "charter_message_",
                          "charter_dlq_", "charter_consumer_lag", "charter_messaging_")
"""Metric families :meth:`Messaging.collector` forwards to an app's ``/metrics``."""


RETENTION_ENV: Final = "MESSAGING_RETENTION_DAYS"
DEFAULT_RETENTION_DAYS: Final = 30


def retention() -> timedelta:
    """How long sent outbox rows and processed message ids are kept
    (``MESSAGING_RETENTION_DAYS``, default 30, at least 1): longer than any redelivery or
    DLQ replay can come, or a replayed message would be processed again."""
    raw = (config.env(RETENTION_ENV) or str(DEFAULT_RETENTION_DAYS)).strip()
    try:
        days = int(raw)
    except ValueError:
        days = 0
    if not 1 <= days <= 3650:
        raise config.ConfigError(f"{RETENTION_ENV} must be a whole number of days from 1 to "
                                 f"3650, not {raw!r}")
    return timedelta(days=days)


def enabled() -> bool:
    """Whether this process runs messaging (``CHARTER_MESSAGING``: on/off, default on).

    Any other value is a :class:`charter.config.ConfigError` (fail closed on typos)."""
    value = (config.env(ENV) or "on").strip().lower()
    if value in _OFF:
        return False
    if value in _ON:
        return True
    raise config.ConfigError(f"{ENV} must be 'on' or 'off', not {value!r}")


@dataclass(frozen=True)
class Consumes:
    """One consumer of a service: the queue and bindings, and the handler of its messages
    (``on_depth``: told the messages waiting, ready in the queue or in its delay queues
    for another attempt, whenever the consumer measures them, for a service's own gauge)."""

    subscription: Subscription
    handler: Handler
    on_depth: Callable[[int], None] | None = None


# -- wake-up after commit ----------------------------------------------------------------
# One class-level listener for every Session; callbacks are looked up by the session's
# engine, so a commit on a database nobody watches costs a dict lookup.
_watchers: weakref.WeakKeyDictionary[Engine, list[Callable[[], None]]] = (
    weakref.WeakKeyDictionary())
_watch_lock = threading.Lock()
_installed = False


def _after_commit(session: Session) -> None:
    if not session.info.pop(OUTBOX_WRITTEN, False):
        return
    bind = session.bind
    if not isinstance(bind, Engine):
        return
    with _watch_lock:
        callbacks = list(_watchers.get(bind, ()))
    for callback in callbacks:
        try:
            callback()
        except Exception:  # noqa: BLE001 - a wake-up must never fail a commit
            log.exception("outbox commit callback failed")


def _after_rollback(session: Session) -> None:
    session.info.pop(OUTBOX_WRITTEN, None)


def watch(db: Database, callback: Callable[[], None]) -> Callable[[], None]:
    """Call ``callback`` after each commit on ``db`` that wrote outbox rows
    (:meth:`Outbox.add` marks the session); returns the function that stops it."""
    global _installed
    with _watch_lock:
        if not _installed:
            event.listen(Session, "after_commit", _after_commit)
            event.listen(Session, "after_rollback", _after_rollback)
            _installed = True
        _watchers.setdefault(db.engine, []).append(callback)

    def unwatch() -> None:
        with _watch_lock:
            callbacks = _watchers.get(db.engine, [])
            if callback in callbacks:
                callbacks.remove(callback)

    return unwatch


# -- metrics -----------------------------------------------------------------------------
_leader_gauges: weakref.WeakKeyDictionary[CollectorRegistry, Gauge] = (
    weakref.WeakKeyDictionary())
_metrics_lock = threading.Lock()


def _leader_gauge(registry: CollectorRegistry) -> Gauge:
    # ``livesum``: over live workers, the number that lead (1; 0 = nobody, 2 = a bug).
    with _metrics_lock:
        gauge = _leader_gauges.get(registry)
        if gauge is None:
            gauge = _leader_gauges[registry] = Gauge(
                "charter_messaging_leader",
                "1 in the process running the service's relay and consumers",
                ["service"], registry=registry, multiprocess_mode="livesum")
        return gauge


class _Forward(Collector):
    """The messaging metric families of ``registry``, for an app's own registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry

    def describe(self) -> list[Metric]:
        return []  # no name clash check: the families live in the other registry

    def collect(self) -> Iterator[Metric]:
        for family in self.registry.collect():
            if family.name.startswith(METRIC_PREFIXES):
                yield family


# -- the runtime -------------------------------------------------------------------------
class Messaging:
    """A service's relay and consumers, run by the one process of the service that holds
    its leader lock (``LeaderLock(f"{service}-messaging", database_url, var_dir=…)``).

    ``broker``: a :class:`Broker`, a factory called on first use, or ``None`` for
    :meth:`Broker.from_config` (on first use too, so a missing ``AMQP_URL`` shows as a
    failed readiness check and an error in the log, not as a crash). A broker made here
    is closed by :meth:`stop`; one passed in belongs to the caller. ``idle`` is the
    relay's poll interval, ``lead_interval`` how often the lock is tried and checked.
    """

    def __init__(self, service: str, db: Database, *, outbox: Outbox | None = None,
                 consumes: Sequence[Consumes] = (),
                 broker: Broker | Callable[[], Broker] | None = None,
                 lock: LeaderLock | None = None, registry: CollectorRegistry | None = None,
                 idle: float = 0.2, lead_interval: float = 1.0,
                 ready_cache: float = 1.0, join_timeout: float = 10.0,
                 inbox: Inbox | None = None, keep: timedelta | None = None,
                 housekeeping_every: float = 3600.0) -> None:
        self.service = service
        self.db = db
        self.outbox = outbox
        self.inbox = inbox
        self.keep = keep or retention()
        self.housekeeping_every = housekeeping_every
        self.consumes = tuple(consumes)
        queues = [c.subscription.queue for c in self.consumes]
        if len(set(queues)) != len(queues):
            raise ValueError(f"{service}: one Consumes per queue ({queues})")
        self.registry = REGISTRY if registry is None else registry
        self.idle = idle
        self.lead_interval = lead_interval
        self.ready_cache = ready_cache
        self.join_timeout = join_timeout
        self.lock = lock or LeaderLock(f"{service}-messaging", db.url,
                                       var_dir=config.var_dir())
        self._broker: Broker | None = broker if isinstance(broker, Broker) else None
        self._factory: Callable[[], Broker] = (
            Broker.from_config if broker is None
            else broker if not isinstance(broker, Broker) else (lambda: broker))
        self._owns_broker = not isinstance(broker, Broker)
        self._broker_lock = threading.Lock()
        self.relay = (OutboxRelay(db, outbox, self._publish, service=service,
                                  registry=self.registry) if outbox is not None else None)
        self._leader = _leader_gauge(self.registry).labels(service)
        self._leader.set(0)
        self._leading = threading.Event()
        self._mutex = threading.Lock()
        self._stop: threading.Event | None = None
        self._thread: threading.Thread | None = None
        self._unwatch: Callable[[], None] | None = None
        self._ready_lock = threading.Lock()
        self._ready_at = float("-inf")
        self._ready_error: str | None = None

    # -- the broker -----------------------------------------------------------------------
    @property
    def broker(self) -> Broker:
        """The broker (made on first use; :class:`charter.config.ConfigError` if it
        cannot be configured)."""
        with self._broker_lock:
            if self._broker is None:
                self._broker = self._factory()
            return self._broker

    def _publish(self, envelope: Envelope) -> None:
        # A PRODUCER span, child of the request that wrote the outbox row; the message
        # carries the span's traceparent (unchanged when tracing is off).
        with tracing.producer_span(self.service, envelope.routing_key,
                                   envelope.traceparent) as traceparent:
            if traceparent != envelope.traceparent:
                envelope = dataclasses.replace(envelope, traceparent=traceparent)
            self.broker.publish(envelope)

    # -- life cycle -----------------------------------------------------------------------
    def start(self) -> None:
        """Compete for the lock and, once held, run the relay and consumers, in a daemon
        thread. Idempotent; never raises for a down broker (the threads retry)."""
        with self._mutex:
            if self._thread is not None and self._thread.is_alive():
                return
            stop = self._stop = threading.Event()
            if self.relay is not None and self._unwatch is None:
                self._unwatch = self.watch(self.db)
            self._thread = threading.Thread(target=self._run, args=(stop,), daemon=True,
                                            name=f"messaging-{self.service}")
            self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the relay and consumers, release the lock (waits up to ``timeout`` s)."""
        with self._mutex:
            stop, thread = self._stop, self._thread
            self._thread = None
            if self._unwatch is not None:
                self._unwatch()
                self._unwatch = None
        if stop is not None:
            stop.set()
        if thread is not None:
            thread.join(timeout)
            if thread.is_alive():
                log.warning("messaging of %s did not stop within %.1f s", self.service,
                            timeout)
        if self._owns_broker:
            with self._broker_lock:
                if self._broker is not None:
                    self._broker.close()

    def __enter__(self) -> Messaging:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def watch(self, db: Database) -> Callable[[], None]:
        """Wake the relay after every commit on ``db`` that wrote outbox rows (done by
        :meth:`start` for this service's database); returns the function undoing it."""
        return watch(db, self.notify)

    def notify(self) -> None:
        """Wake the relay now (after a commit that wrote outbox rows). A no-op in a
        process that does not lead: the leader finds the rows at its next poll."""
        if self.relay is not None and self._leading.is_set():
            self.relay.wake()

    @property
    def leading(self) -> bool:
        """True while this process holds the lock and runs the relay and consumers (set
        once the subscriptions are declared: from then on no event for them is lost)."""
        return self._leading.is_set()

    def check_ready(self) -> None:
        """Raise unless the broker answers (the readiness check ``broker``); the answer
        is kept for ``ready_cache`` seconds."""
        with self._ready_lock:
            if time.monotonic() - self._ready_at >= self.ready_cache:
                try:
                    self.broker.ping()
                    self._ready_error = None
                except Exception as exc:  # noqa: BLE001 - any failure = not ready
                    self._ready_error = describe_error(exc)
                self._ready_at = time.monotonic()
            error = self._ready_error
        if error is not None:
            raise BrokerUnavailable(error)

    def collector(self) -> Collector:
        """A collector of this runtime's metrics, for an app's own registry
        (:func:`charter.service.create_app` registers it)."""
        return _Forward(self.registry)

    # -- the threads ----------------------------------------------------------------------
    def _run(self, stop: threading.Event) -> None:
        try:
            self.broker  # noqa: B018 - resolve the configuration once, up front
        except Exception as exc:  # noqa: BLE001 - ConfigError: readiness reports it
            log.error("messaging of %s not started: %s", self.service, describe_error(exc))
            return
        lead(self.lock, stop, self._lead, retry=self.lead_interval, check=self.lead_interval)

    def _lead(self, leading: threading.Event) -> None:
        """While the lock is ours: declare, then relay and consume until ``leading``."""
        inner = threading.Event()
        threads: list[threading.Thread] = []
        try:
            if not self._declare(leading):
                return
            if self.relay is not None:
                threads.append(threading.Thread(
                    target=self.relay.run, args=(inner, self.idle), daemon=True,
                    name=f"relay-{self.service}"))
            for consumes in self.consumes:
                consumer = Consumer(self.broker, consumes.subscription, consumes.handler,
                                    service=self.service, registry=self.registry,
                                    on_depth=consumes.on_depth)
                threads.append(threading.Thread(
                    target=consumer.run, args=(inner,), daemon=True,
                    name=f"consumer-{consumes.subscription.queue}"))
            if self.outbox is not None or self.inbox is not None:
                threads.append(threading.Thread(
                    target=self._housekeep, args=(inner,), daemon=True,
                    name=f"housekeeping-{self.service}"))
            for thread in threads:
                thread.start()
            self._leading.set()
            self._leader.set(1)
            log.info("%s messaging leading: relay %s, consumers %s", self.service,
                     "on" if self.relay is not None else "off",
                     [c.subscription.queue for c in self.consumes])
            leading.wait()
        finally:
            inner.set()
            self._join(threads)
            self._leading.clear()
            self._leader.set(0)

    def _housekeep(self, stop: threading.Event) -> None:
        """While leading: now and every ``housekeeping_every`` seconds, delete the outbox
        rows sent and the message ids processed more than ``keep`` ago (never an unsent
        row), so neither table grows without end."""
        while True:
            try:
                with self.db.write() as session:
                    sent = self.outbox.purge_sent(session, self.keep) if self.outbox else 0
                    seen = self.inbox.purge(session, self.keep) if self.inbox else 0
                if sent or seen:
                    log.info("%s messaging: purged %d sent outbox rows and %d processed ids "
                             "older than %s", self.service, sent, seen, self.keep)
            except Exception as exc:  # noqa: BLE001 - the database may be busy: next time
                log.warning("%s messaging housekeeping failed: %s", self.service,
                            describe_error(exc))
            if stop.wait(self.housekeeping_every):
                return

    def _declare(self, leading: threading.Event) -> bool:
        """Declare every subscription, retrying with back-off; False if told to stop."""
        pending = [c.subscription for c in self.consumes]
        failures = 0
        while pending:
            try:
                self.broker.declare(pending[0])
            except Exception as exc:  # noqa: BLE001 - down, or refused: retry later
                failures += 1
                delay = min(30.0, 0.5 * 2 ** min(failures - 1, 6))
                log.warning("declaring %s failed (%s); retrying in %.1f s",
                            pending[0].queue, describe_error(exc), delay)
                if leading.wait(delay):
                    return False
                continue
            pending.pop(0)
        return True

    def _join(self, threads: Iterable[threading.Thread]) -> None:
        deadline = time.monotonic() + self.join_timeout
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
            if thread.is_alive():
                log.warning("%s did not stop within %.1f s (a handler still running?)",
                            thread.name, self.join_timeout)
