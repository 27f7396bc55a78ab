"""Delivery to a handler: at-least-once, retries with back-off, the dead-letter queue.

A :class:`Consumer` takes messages from its subscription's queue one at a time and calls
the handler with the :class:`~charter.messaging.envelope.Envelope`. The message is acked
only after the handler returned (or after it was re-published for a retry or to the
DLQ, confirmed), so a crash gives a duplicate, never a loss; the handler must be
idempotent (the inbox of :mod:`charter.messaging.inbox`).

When the handler raises, the message is re-published to the delay queue of its next
attempt (``<queue>.retry.<n>``, header ``x-attempt``) and comes back to ``<queue>`` when
the tier's TTL has passed. After ``max_attempts``, or at once for a body that is not an
envelope or a handler raising :class:`PoisonMessage`, it goes to ``<queue>.dlq`` with the
reason, the last error, the attempts and the original routing key in its headers.
"""

from __future__ import annotations

import contextlib
import logging
import random
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from kombu import Connection, Producer, Queue
from kombu import Consumer as KombuConsumer
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge

from charter.clock import rfc3339, utcnow
from charter.messaging.broker import (
    CONTENT_TYPE,
    H_ATTEMPT,
    H_ATTEMPTS,
    H_DEAD_AT,
    H_LAST_ERROR,
    H_ORIGINAL_KEY,
    H_REASON,
    PERSISTENT,
    Broker,
    Subscription,
    open_connection,
)
from charter.messaging.envelope import Envelope, InvalidEnvelope
from charter.observability import logs, tracing

log = logging.getLogger("charter.messaging.consumer")

Handler = Callable[[Envelope], None]

MAX_ERROR_CHARS = 1000
GAUGE_INTERVAL = 5.0
RECONNECT_BASE = 0.5
RECONNECT_MAX = 30.0

_attempt: ContextVar[int] = ContextVar("charter_delivery_attempt", default=1)


def current_attempt() -> int:
    """The attempt (1, 2, …) of the message the running handler was called with."""
    return _attempt.get()


class PoisonMessage(Exception):
    """Raised by a handler for a message that can never succeed: straight to the DLQ."""


def checked(envelope: Envelope) -> dict[str, Any]:
    """The event's data once it satisfies its contract (``contracts/events``); else
    :class:`PoisonMessage` (a message that breaks its contract never will succeed)."""
    from charter.messaging import schemas

    try:
        schemas.validate(envelope)
    except schemas.EventContractError as exc:
        raise PoisonMessage(str(exc)) from exc
    return dict(envelope.data)


class ConsumerMetrics:
    """The consumer metrics of one registry (shared by every consumer using it)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.consumed = Counter(
            "charter_messages_consumed_total",
            "Messages handled, by outcome (ok, retried, dead_lettered)",
            ["service", "queue", "outcome"], registry=registry)
        self.retries = Counter(
            "charter_message_retries_total", "Messages sent back for another attempt",
            ["service", "queue"], registry=registry)
        self.dlq = Gauge(
            "charter_dlq_messages", "Messages in the dead-letter queue",
            ["service", "queue"], registry=registry, multiprocess_mode="max")
        self.lag = Gauge(
            "charter_consumer_lag", "Messages ready in the consumer's queue",
            ["service", "queue"], registry=registry, multiprocess_mode="max")


_metrics: weakref.WeakKeyDictionary[CollectorRegistry, ConsumerMetrics] = (
    weakref.WeakKeyDictionary())
_metrics_lock = threading.Lock()


def consumer_metrics(registry: CollectorRegistry | None = None) -> ConsumerMetrics:
    """The :class:`ConsumerMetrics` of ``registry`` (the default registry if ``None``)."""
    reg = registry if registry is not None else REGISTRY
    with _metrics_lock:
        found = _metrics.get(reg)
        if found is None:
            found = _metrics[reg] = ConsumerMetrics(reg)
        return found


@dataclass
class _Session:
    conn: Connection
    consumer: KombuConsumer
    producer: Producer


class Consumer:
    """Calls ``handler`` for each message of ``sub``'s queue (one thread)."""

    def __init__(self, broker: Broker, sub: Subscription, handler: Handler, *, service: str,
                 registry: CollectorRegistry | None = None, prefetch: int = 1,
                 on_depth: Callable[[int], None] | None = None) -> None:
        self.broker = broker
        self.on_depth = on_depth  # told ready + delayed messages with each gauge update
        self.sub = sub
        self.handler = handler
        self.service = service
        self.prefetch = prefetch
        self.metrics = consumer_metrics(registry)
        self._session: _Session | None = None
        self._handled = 0
        self._gauges_at = 0.0

    # -- the loops ----------------------------------------------------------------------
    def run(self, stop: threading.Event) -> None:
        """Consume until ``stop`` is set; reconnect with back-off while the broker is down.

        A handler's exception never ends the loop (it is a retry or a dead letter).
        """
        failures = 0
        while not stop.is_set():
            try:
                with self._connected() as session:
                    failures = 0
                    while not stop.is_set():
                        self._drain_once(session, 1.0)
                        session.conn.heartbeat_check()
                        self._update_gauges()
            except self.broker.errors as exc:
                log.warning("broker unavailable for %s: %s: %s", self.sub.queue,
                            type(exc).__name__, exc)
            except Exception:  # noqa: BLE001 - the loop must survive
                log.exception("consumer of %s failed; reconnecting", self.sub.queue)
            if stop.is_set():
                break
            failures += 1
            delay = min(RECONNECT_MAX, RECONNECT_BASE * 2 ** (failures - 1))
            stop.wait(delay * random.uniform(0.5, 1.0))

    def drain(self, timeout: float, *, idle: float = 0.5) -> int:
        """Handle what arrives until nothing came for ``idle`` s or ``timeout`` passed;
        return how many messages were handled (any outcome). For tests and checks."""
        deadline = time.monotonic() + timeout
        start = self._handled
        with self._connected() as session:
            last = time.monotonic()
            while (now := time.monotonic()) < deadline and now - last < idle:
                before = self._handled
                self._drain_once(session, min(0.1, deadline - now))
                if self._handled != before:
                    last = time.monotonic()
        self._update_gauges(force=True)
        return self._handled - start

    # -- connection ---------------------------------------------------------------------
    @contextmanager
    def _connected(self) -> Iterator[_Session]:
        conn = self.broker.connection(heartbeat=30)
        try:
            open_connection(conn)
            self.broker.declare_on(conn, self.sub)
            channel = conn.channel()
            producer = Producer(conn.channel(), auto_declare=False)
            consumer = KombuConsumer(channel, queues=[Queue(self.sub.queue, no_declare=True)],
                                     on_message=self._on_message,
                                     prefetch_count=self.prefetch)
            self._session = _Session(conn, consumer, producer)
            consumer.consume()
            yield self._session
        finally:
            self._session = None
            try:
                conn.release()
            except Exception:  # noqa: BLE001 - already broken
                log.debug("closing the consumer connection failed", exc_info=True)

    @staticmethod
    def _drain_once(session: _Session, timeout: float) -> None:
        with contextlib.suppress(TimeoutError):  # socket.timeout: nothing arrived in time
            session.conn.drain_events(timeout=timeout)

    # -- one message --------------------------------------------------------------------
    def _on_message(self, message: Any) -> None:
        headers = dict(message.headers or {})
        attempt = _positive_int(headers.get(H_ATTEMPT), 1)
        try:
            envelope = Envelope.from_json(message.body)
        except InvalidEnvelope as exc:
            self._dead_letter(message, headers, attempt, "invalid-envelope", exc)
            return
        failure: BaseException | None = None
        poison = False
        tokens = (logs.correlation_id.set(envelope.correlation_id),
                  logs.saga_id.set(envelope.saga_id), _attempt.set(attempt))
        try:
            # A CONSUMER span, child of the producer's (the envelope's traceparent).
            with tracing.consumer_span(self.service, self.sub.queue, envelope.type,
                                       envelope.id, envelope.traceparent):
                self.handler(envelope)
        except PoisonMessage as exc:
            failure, poison = exc, True
        except Exception as exc:  # noqa: BLE001 - every handler failure is retried
            failure = exc
        finally:
            logs.correlation_id.reset(tokens[0])
            logs.saga_id.reset(tokens[1])
            _attempt.reset(tokens[2])
        if failure is None:
            message.ack()
            self._count("ok")
        elif poison:
            self._dead_letter(message, headers, attempt, "poison", failure, envelope)
        elif attempt >= self.sub.max_attempts:
            self._dead_letter(message, headers, attempt, "max-attempts", failure, envelope)
        else:
            self._retry(message, headers, attempt, failure, envelope)

    def _retry(self, message: Any, headers: dict[str, Any], attempt: int,
               error: BaseException, envelope: Envelope) -> None:
        target = self.sub.retry_queue(attempt + 1)
        headers.update({H_ATTEMPT: attempt + 1, H_LAST_ERROR: _describe(error),
                        H_ORIGINAL_KEY: _original_key(message, headers)})
        self._republish(message, target, headers)
        message.ack()
        self.metrics.retries.labels(self.service, self.sub.queue).inc()
        self._count("retried")
        log.warning("message %s (%s) failed attempt %d of %d on %s: %s; retry via %s",
                    envelope.id, envelope.type, attempt, self.sub.max_attempts,
                    self.sub.queue, type(error).__name__, target)

    def _dead_letter(self, message: Any, headers: dict[str, Any], attempt: int, reason: str,
                     error: BaseException, envelope: Envelope | None = None) -> None:
        headers.update({H_ATTEMPT: attempt, H_ATTEMPTS: attempt, H_REASON: reason,
                        H_LAST_ERROR: _describe(error), H_DEAD_AT: rfc3339(utcnow()),
                        H_ORIGINAL_KEY: _original_key(message, headers)})
        self._republish(message, self.sub.dlq, headers)
        message.ack()
        self._count("dead_lettered")
        self._update_gauges(force=True)
        log.error("message %s (%s) dead-lettered to %s after %d attempt(s): %s (%s)",
                  envelope.id if envelope else message.properties.get("message_id"),
                  envelope.type if envelope else "?", self.sub.dlq, attempt, reason,
                  type(error).__name__)

    def _republish(self, message: Any, queue: str, headers: dict[str, Any]) -> None:
        assert self._session is not None
        props = message.properties
        self._session.producer.publish(
            message.body, exchange="", routing_key=queue, headers=headers,
            delivery_mode=PERSISTENT, content_type=message.content_type or CONTENT_TYPE,
            content_encoding=message.content_encoding or "utf-8",
            message_id=props.get("message_id"), correlation_id=props.get("correlation_id"),
            type=props.get("type"), retry=False, timeout=self.broker.confirm_timeout,
            confirm_timeout=self.broker.confirm_timeout)

    # -- metrics ------------------------------------------------------------------------
    def _count(self, outcome: str) -> None:
        self._handled += 1
        self.metrics.consumed.labels(self.service, self.sub.queue, outcome).inc()

    def _update_gauges(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._gauges_at < GAUGE_INTERVAL:
            return
        self._gauges_at = now
        try:
            lag = self.broker.queue_depth(self.sub.queue)
            dead = self.broker.queue_depth(self.sub.dlq)
        except Exception as exc:  # noqa: BLE001 - metrics must not stop consumption
            log.debug("queue depth of %s unavailable: %s", self.sub.queue, exc)
            return
        self.metrics.lag.labels(self.service, self.sub.queue).set(lag)
        self.metrics.dlq.labels(self.service, self.sub.queue).set(dead)
        if self.on_depth is not None:
            try:  # ready, and delayed for another attempt
                waiting = self.broker.queue_waiting(self.sub)
            except Exception as exc:  # noqa: BLE001 - metrics must not stop consumption
                log.debug("messages waiting in %s unavailable: %s", self.sub.queue, exc)
                return
            self.on_depth(waiting)


def _positive_int(value: Any, default: int) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError):
        return default
    return number if number >= 1 else default


def _describe(error: BaseException) -> str:
    text = f"{type(error).__name__}: {error}"
    return text if len(text) <= MAX_ERROR_CHARS else text[: MAX_ERROR_CHARS - 1] + "…"


def _original_key(message: Any, headers: dict[str, Any]) -> str:
    known = headers.get(H_ORIGINAL_KEY)
    if known:
        return str(known)
    return str((message.delivery_info or {}).get("routing_key") or "")
