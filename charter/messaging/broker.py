"""The broker: publish envelopes to the topic exchange and declare each consumer's queues.

RabbitMQ in production (``AMQP_URL``), the server-less transport of
:mod:`charter.messaging.embedded` otherwise (``<var_dir>/broker.db``). Both go through
kombu; the topology is the same on both (``docs/messaging.md``, "Topology"):

* the durable topic exchange ``charter.events``; an envelope's routing key is
  ``<source>.<type>``;
* per subscription a durable queue ``<queue>`` bound to each of its patterns, one delay
  queue per back-off tier ``<queue>.retry.<n>`` (``x-message-ttl`` = the tier's delay,
  dead-lettered back to ``<queue>`` through the default exchange) and ``<queue>.dlq``.

Thread safety: :meth:`Broker.publish`, :meth:`declare`, :meth:`ping` and
:meth:`queue_depth` share one connection behind a lock, so any thread may call them.
:meth:`connection` hands out a new kombu connection that belongs to its caller (one
thread). A :class:`~charter.messaging.consumer.Consumer` owns its connection.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from amqp.exceptions import AMQPError, MessageNacked
from amqp.exceptions import ChannelError as AMQPChannelError
from kombu import Connection, Exchange, Producer, Queue
from kombu.exceptions import KombuError
from kombu.utils.url import maybe_sanitize_url

from charter.messaging import embedded
from charter.messaging.envelope import Envelope

log = logging.getLogger("charter.messaging.broker")

DEFAULT_EXCHANGE = "charter.events"
CONTENT_TYPE = "application/json"
PERSISTENT = 2

# Headers a message carries besides the envelope body (docs/messaging.md).
H_CORRELATION = "correlation_id"
H_TRACEPARENT = "traceparent"
H_SAGA = "saga_id"
H_TYPE = "type"
H_ATTEMPT = "x-attempt"
H_ORIGINAL_KEY = "x-original-routing-key"
H_LAST_ERROR = "x-last-error"
H_REASON = "x-dead-letter-reason"
H_DEAD_AT = "x-dead-lettered-at"
H_ATTEMPTS = "x-attempts"


class BrokerUnavailable(Exception):
    """The broker could not be reached, or did not confirm a message."""


class UnknownQueue(LookupError):
    """A queue that does not exist on the broker."""


@dataclass(frozen=True)
class Subscription:
    """One consumer's queue: the routing patterns it takes, its attempts and back-off.

    ``backoff[i]`` is the delay (s) before attempt ``i + 2``; when ``max_attempts`` is
    larger than ``len(backoff) + 1`` the last tier is used again.
    """

    queue: str
    bindings: tuple[str, ...]
    max_attempts: int = 5
    backoff: tuple[float, ...] = (1.0, 5.0, 30.0, 120.0)

    def __post_init__(self) -> None:
        if not self.queue or self.queue.endswith(".dlq") or ".retry." in self.queue:
            raise ValueError(f"bad queue name {self.queue!r}")
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if self.max_attempts > 1 and not self.backoff:
            raise ValueError("retries need at least one back-off tier")
        if any(delay <= 0 for delay in self.backoff):
            raise ValueError("back-off delays must be positive")

    @property
    def dlq(self) -> str:
        return dead_letter_queue(self.queue)

    def tiers(self) -> tuple[float, ...]:
        """The delays that get a delay queue (no more than the retries need)."""
        return self.backoff[: max(self.max_attempts - 1, 0)]

    def retry_queue(self, next_attempt: int) -> str:
        """The delay queue a message enters before ``next_attempt`` (2, 3, …)."""
        tier = min(next_attempt - 1, len(self.tiers()))
        return f"{self.queue}.retry.{tier}"


def envelope_headers(envelope: Envelope) -> dict[str, str]:
    """The headers a published envelope carries (only those with a value)."""
    values = {H_TYPE: envelope.type, H_CORRELATION: envelope.correlation_id,
              H_TRACEPARENT: envelope.traceparent, H_SAGA: envelope.saga_id}
    return {key: value for key, value in values.items() if value}


def dead_letter_queue(queue: str) -> str:
    """The DLQ of a consumer queue."""
    return f"{queue}.dlq"


def is_amqp(url: str) -> bool:
    return url.split("://", 1)[0].lower() in ("amqp", "amqps", "pyamqp")


class Broker:
    """A kombu connection to RabbitMQ or the embedded broker, shared by threads."""

    def __init__(self, url: str, *, exchange: str = DEFAULT_EXCHANGE,
                 transport_options: dict[str, Any] | None = None,
                 connect_timeout: float = 5.0, confirm_timeout: float = 10.0) -> None:
        self.url = url
        self.exchange_name = exchange
        self.amqp = is_amqp(url)
        self.connect_timeout = connect_timeout
        self.confirm_timeout = confirm_timeout
        options = dict(transport_options or {})
        if self.amqp:
            options.setdefault("confirm_publish", True)
        self.transport_options = options
        self.exchange = Exchange(exchange, type="topic", durable=True)
        self._lock = threading.RLock()
        self._conn: Connection | None = None
        self._producer: Producer | None = None

    @classmethod
    def from_config(cls) -> Broker:
        """``AMQP_URL`` when set; else, in development mode only, the embedded broker on
        ``<var_dir>/broker.db``. Outside development a missing ``AMQP_URL`` is a
        :class:`charter.config.ConfigError` (fail closed: the embedded broker only connects
        processes on one machine, which a production deployment must ask for explicitly,
        ``AMQP_URL=embedded+sqlite:///…``)."""
        from charter import config

        url = config.env("AMQP_URL") or os.environ.get("AMQP_URL")
        if url:
            return cls(url)
        if not config.is_development():
            raise config.ConfigError(
                "AMQP_URL must be set outside development mode (amqp://… for RabbitMQ, or "
                "embedded+sqlite:///<path> for the one-machine broker)")
        return cls(embedded.url_for(config.var_dir() / "broker.db"))

    @property
    def safe_url(self) -> str:
        """The URL with its password masked (for logs and messages)."""
        return str(maybe_sanitize_url(self.url))

    @property
    def errors(self) -> tuple[type[BaseException], ...]:
        """Exceptions meaning the broker is down or refused an operation."""
        return (OSError, socket.timeout, KombuError, AMQPError, ConnectionError, MessageNacked,
                *embedded.Transport.connection_errors, *embedded.Transport.channel_errors)

    def connection(self, *, heartbeat: float = 0) -> Connection:
        """A new kombu connection (not connected yet); the caller owns and closes it.

        ``heartbeat`` (s, RabbitMQ only) suits a connection whose owner calls
        ``heartbeat_check()`` regularly, as a consumer's loop does.
        """
        return Connection(self.url, connect_timeout=self.connect_timeout,
                          transport_options=dict(self.transport_options),
                          heartbeat=heartbeat if self.amqp else 0)

    # -- the shared connection ----------------------------------------------------------
    def _shared(self) -> Connection:
        if self._conn is None:
            conn = self.connection()
            try:
                open_connection(conn)
            except BaseException:
                conn.release()
                raise
            self._conn = conn
        return self._conn

    def _reset(self) -> None:
        producer, conn = self._producer, self._conn
        self._producer = self._conn = None
        for closing in (producer, conn):
            if closing is not None:
                try:
                    closing.release()
                except Exception:  # noqa: BLE001 - it is broken already
                    log.debug("closing a broken broker connection failed", exc_info=True)

    def _call(self, what: str, fn: Any) -> Any:
        """Run ``fn`` on the shared connection; reconnect once; else BrokerUnavailable."""
        last: BaseException | None = None
        with self._lock:
            for _ in range(2):
                try:
                    return fn(self._shared())
                except UnknownQueue:
                    raise
                except AMQPChannelError as exc:
                    self._reset()
                    if not _not_found(exc):
                        raise  # the broker answered but refused (PRECONDITION_FAILED, …)
                    last = exc  # e.g. the exchange was deleted: redeclare and try again
                except self.errors as exc:
                    last = exc
                    self._reset()
        raise BrokerUnavailable(f"{what}: broker {self.safe_url} unavailable "
                                f"({type(last).__name__}: {last})") from last

    # -- publishing ---------------------------------------------------------------------
    def publish(self, envelope: Envelope) -> None:
        """Publish ``envelope`` persistently; returns once the broker has it (publisher
        confirms on RabbitMQ, a committed row on the embedded broker)."""
        headers = envelope_headers(envelope)
        body = envelope.to_json()

        def send(conn: Connection) -> None:
            if self._producer is None:
                self._producer = Producer(conn.channel(), exchange=self.exchange,
                                          auto_declare=True)
            self._producer.publish(
                body, routing_key=envelope.routing_key, delivery_mode=PERSISTENT,
                content_type=CONTENT_TYPE, content_encoding="utf-8", headers=headers,
                message_id=envelope.id, correlation_id=envelope.correlation_id,
                type=envelope.type, retry=False, timeout=self.confirm_timeout,
                confirm_timeout=self.confirm_timeout)

        self._call(f"publish {envelope.routing_key}", send)

    # -- topology -----------------------------------------------------------------------
    def declare(self, sub: Subscription) -> None:
        """Declare the exchange, ``sub``'s queue and bindings, delay queues and DLQ
        (idempotent)."""
        self._call(f"declare {sub.queue}", lambda conn: self.declare_on(conn, sub))

    def declare_on(self, conn: Connection, sub: Subscription) -> None:
        """:meth:`declare` on a connection the caller holds.

        RabbitMQ refuses (``PRECONDITION_FAILED``, raised as is) to redeclare a delay
        queue with another TTL: after changing ``backoff``, delete the empty
        ``<queue>.retry.<n>`` queues once.
        """
        with conn.channel() as channel:
            self.exchange(channel).declare()
            Queue(sub.queue, durable=True)(channel).declare()
            for pattern in sub.bindings:
                channel.queue_bind(sub.queue, self.exchange_name, pattern)
            for tier, delay in enumerate(sub.tiers(), start=1):
                Queue(f"{sub.queue}.retry.{tier}", durable=True, queue_arguments={
                    "x-message-ttl": int(delay * 1000),
                    "x-dead-letter-exchange": "",
                    "x-dead-letter-routing-key": sub.queue,
                })(channel).declare()
            Queue(sub.dlq, durable=True)(channel).declare()

    def delete(self, sub: Subscription) -> None:
        """Delete ``sub``'s queues (tests and tear-down; messages are lost)."""
        def drop(conn: Connection) -> None:
            with conn.channel() as channel:
                names = [sub.queue, sub.dlq,
                         *(f"{sub.queue}.retry.{n}" for n in range(1, len(sub.tiers()) + 1))]
                for name in names:
                    channel.queue_delete(name)
        self._call(f"delete {sub.queue}", drop)

    def delete_exchange(self) -> None:
        """Delete the exchange (tests)."""
        def drop(conn: Connection) -> None:
            with conn.channel() as channel:
                channel.exchange_delete(self.exchange_name)
        self._call(f"delete exchange {self.exchange_name}", drop)

    # -- health and depth ---------------------------------------------------------------
    def ping(self) -> None:
        """Raise :class:`BrokerUnavailable` unless the broker answers (``/health/ready``)."""
        def check(conn: Connection) -> None:
            with conn.channel() as channel:
                self.exchange(channel).declare()
        self._call("ping", check)

    def queue_depth(self, queue: str) -> int:
        """Messages ready in ``queue``; :class:`UnknownQueue` if it does not exist."""
        return int(self._call(f"depth of {queue}", lambda conn: depth_on(conn, queue)))

    def queue_waiting(self, sub: Subscription) -> int:
        """Messages of ``sub`` not yet handled: ready in its queue plus those delayed for
        another attempt (in its delay queues on RabbitMQ, held back in the queue itself on
        the embedded broker); :class:`UnknownQueue` if a queue does not exist."""
        if self.amqp:
            return self.queue_depth(sub.queue) + sum(
                self.queue_depth(sub.retry_queue(n + 2)) for n in range(len(sub.tiers())))

        def waiting(conn: Connection) -> int:
            depth_on(conn, sub.queue)  # UnknownQueue as on RabbitMQ
            channel = conn.channel()
            try:
                return int(channel.waiting(sub.queue))
            finally:
                channel.close()

        return int(self._call(f"waiting in {sub.queue}", waiting))

    def close(self) -> None:
        """Close the shared connection (it reopens on next use)."""
        with self._lock:
            self._reset()

    def __enter__(self) -> Broker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def queue_names(self) -> list[str] | None:
        """Every queue on the broker, or ``None`` when the broker cannot list them
        (RabbitMQ without its management API, see :mod:`charter.messaging.dlq`)."""
        if self.amqp:
            return None
        def names(conn: Connection) -> list[str]:
            with conn.channel() as channel:
                return list(channel.queue_names())
        result: list[str] = self._call("list queues", names)
        return result

    @contextmanager
    def channel(self) -> Iterator[Any]:
        """A channel on a connection of its own, closed on exit: unacked messages
        go back to their queue."""
        conn = self.connection()
        try:
            try:
                open_connection(conn)
            except self.errors as exc:
                raise BrokerUnavailable(f"broker {self.safe_url} unavailable "
                                        f"({type(exc).__name__}: {exc})") from exc
            channel = conn.channel()
            try:
                yield channel
            finally:
                try:
                    channel.close()
                except self.errors:
                    log.debug("closing a broker channel failed", exc_info=True)
        finally:
            conn.release()


def open_connection(conn: Connection) -> None:
    """Connect now, without kombu's default sleep before its one retry (the callers
    have their own back-off)."""
    conn.ensure_connection(max_retries=1, interval_start=0, interval_step=0,
                           interval_max=0, reraise_as_library_errors=False)


def depth_on(conn: Connection, queue: str) -> int:
    """Ready messages in ``queue`` through ``conn`` (a passive declare)."""
    channel = conn.channel()
    try:
        ok = channel.queue_declare(queue=queue, passive=True)
    except Exception as exc:
        if _not_found(exc):
            raise UnknownQueue(queue) from exc
        raise
    finally:
        try:
            channel.close()
        except Exception:  # noqa: BLE001 - RabbitMQ closed it after a 404
            log.debug("closing a channel after a passive declare failed", exc_info=True)
    return int(ok.message_count)


def _not_found(exc: BaseException) -> bool:
    code = getattr(exc, "code", None) or getattr(exc, "reply_code", None)
    return code == 404 or "NOT_FOUND" in str(exc)
