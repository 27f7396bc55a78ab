"""The dead-letter queues: list, inspect, replay and purge (``charter dlq``).

Works on RabbitMQ and the embedded broker alike, through kombu. Inspecting takes the
messages without acking them and closes the channel, which puts them back where they
were (nothing is consumed for good). Replaying re-publishes a message to its consumer's
queue with the attempt count reset, waits for the broker's confirm, then acks it in the
DLQ (a crash in between gives a duplicate, which the idempotent consumer absorbs).

Listing every DLQ needs the broker to list its queues: the embedded broker can;
RabbitMQ can through its management API (``RABBITMQ_MANAGEMENT_URL``, else
``http://<AMQP host>:15672`` with the AMQP credentials), or from the queue names given.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit

from kombu import Producer, Queue

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
    BrokerUnavailable,
    UnknownQueue,
    dead_letter_queue,
)

DLQ_SUFFIX = ".dlq"
H_REPLAYED_AT = "x-replayed-at"
# Headers that describe the failed attempts; a replay starts again at attempt 1.
RESET_HEADERS = (H_ATTEMPT, H_ATTEMPTS, H_LAST_ERROR, H_REASON, H_DEAD_AT, "x-death",
                 "x-first-death-exchange", "x-first-death-queue", "x-first-death-reason",
                 "x-last-death-exchange", "x-last-death-queue", "x-last-death-reason")


class CannotListQueues(RuntimeError):
    """The broker cannot enumerate its queues (RabbitMQ without the management API)."""


@dataclass(frozen=True)
class DeadLetter:
    """What ``charter dlq show`` prints of one dead-lettered message."""

    id: str
    type: str
    routing_key: str
    attempts: int
    reason: str
    last_error: str
    dead_lettered_at: str


def main_queue(queue: str) -> str:
    """The consumer queue a name refers to (``orders`` or ``orders.dlq`` → ``orders``)."""
    return queue[: -len(DLQ_SUFFIX)] if queue.endswith(DLQ_SUFFIX) else queue


def depths(broker: Broker, queue: str | None = None,
           known: Iterable[str] = ()) -> list[tuple[str, int]]:
    """``(dlq, depth)`` for ``queue``'s DLQ, or for every DLQ the broker has.

    :class:`UnknownQueue` for a queue without a DLQ; :class:`CannotListQueues` when the
    broker cannot list its queues and no ``known`` names are given.
    """
    if queue is not None:
        names = [dead_letter_queue(main_queue(queue))]
    else:
        listed = broker.queue_names()
        if listed is None:
            listed = _management_queue_names(broker)
        if listed is None:
            listed = [dead_letter_queue(main_queue(name)) for name in known]
            if not listed:
                raise CannotListQueues(
                    "RabbitMQ's management API is unreachable (set RABBITMQ_MANAGEMENT_URL) "
                    "and no queue was named: run `charter dlq list QUEUE`")
        names = sorted({name for name in listed if name.endswith(DLQ_SUFFIX)})
    return [(name, broker.queue_depth(name)) for name in names]


def peek(broker: Broker, queue: str, limit: int = 10) -> list[DeadLetter]:
    """Up to ``limit`` messages of ``queue``'s DLQ, left in it."""
    dlq = dead_letter_queue(main_queue(queue))
    depth = broker.queue_depth(dlq)
    found: list[DeadLetter] = []
    with broker.channel() as channel:
        bound = Queue(dlq, no_declare=True)(channel)
        for _ in range(min(limit, depth)):
            message = bound.get(no_ack=False)
            if message is None:
                break
            found.append(describe(message))
    return found  # closing the channel put every message back


def replay(broker: Broker, queue: str, message_id: str | None = None) -> int:
    """Move ``queue``'s dead letters (or only the one with ``message_id``) back to
    ``queue`` with the attempts reset; return how many moved."""
    main = main_queue(queue)
    dlq = dead_letter_queue(main)
    depth = broker.queue_depth(dlq)
    broker.queue_depth(main)  # UnknownQueue when the consumer queue is gone
    moved = 0
    with broker.channel() as channel:
        producer = Producer(channel, auto_declare=False)
        bound = Queue(dlq, no_declare=True)(channel)
        for _ in range(depth):
            message = bound.get(no_ack=False)
            if message is None:
                break
            if message_id is not None and message.properties.get("message_id") != message_id:
                continue  # left unacked: back in the DLQ when the channel closes
            headers = {key: value for key, value in dict(message.headers or {}).items()
                       if key not in RESET_HEADERS}
            headers[H_REPLAYED_AT] = rfc3339(utcnow())
            props = message.properties
            producer.publish(
                message.body, exchange="", routing_key=main, headers=headers,
                delivery_mode=PERSISTENT, content_type=message.content_type or CONTENT_TYPE,
                content_encoding=message.content_encoding or "utf-8",
                message_id=props.get("message_id"),
                correlation_id=props.get("correlation_id"), type=props.get("type"),
                retry=False, timeout=broker.confirm_timeout,
                confirm_timeout=broker.confirm_timeout)
            message.ack()
            moved += 1
    return moved


def purge(broker: Broker, queue: str) -> int:
    """Delete every ready message of ``queue``'s DLQ; return how many."""
    dlq = dead_letter_queue(main_queue(queue))
    broker.queue_depth(dlq)  # UnknownQueue
    with broker.channel() as channel:
        return int(Queue(dlq, no_declare=True)(channel).purge() or 0)


def describe(message: Any) -> DeadLetter:
    """The :class:`DeadLetter` of a kombu message taken from a DLQ."""
    headers = dict(message.headers or {})
    props = message.properties or {}
    attempts = headers.get(H_ATTEMPTS, headers.get(H_ATTEMPT))
    try:
        count = int(str(attempts))
    except (TypeError, ValueError):
        count = 0
    return DeadLetter(
        id=str(props.get("message_id") or "-"),
        type=str(props.get("type") or headers.get("type") or "-"),
        routing_key=str(headers.get(H_ORIGINAL_KEY) or "-"),
        attempts=count,
        reason=str(headers.get(H_REASON) or "-"),
        last_error=str(headers.get(H_LAST_ERROR) or "-"),
        dead_lettered_at=str(headers.get(H_DEAD_AT) or "-"),
    )


def _management_queue_names(broker: Broker) -> list[str] | None:
    """Queue names from RabbitMQ's management API, or ``None`` when it is unreachable."""
    import httpx

    base = os.environ.get("RABBITMQ_MANAGEMENT_URL")
    parts = urlsplit(broker.url)
    vhost = parts.path[1:] if len(parts.path) > 1 else "/"
    if not base:
        scheme = "https" if parts.scheme == "amqps" else "http"
        base = f"{scheme}://{parts.hostname or 'localhost'}:15672"
    managed = urlsplit(base)
    user = managed.username or parts.username or "guest"
    password = managed.password or parts.password or "guest"
    root = f"{managed.scheme}://{managed.hostname}" + (f":{managed.port}" if managed.port
                                                        else "")
    try:
        resp = httpx.get(f"{root}/api/queues/{quote(vhost, safe='')}",
                         params={"columns": "name"}, auth=(user, password), timeout=5.0)
        resp.raise_for_status()
        return [str(item["name"]) for item in resp.json()]
    except (httpx.HTTPError, ValueError, KeyError, TypeError):
        return None


__all__ = ["BrokerUnavailable", "CannotListQueues", "DeadLetter", "UnknownQueue", "depths",
           "describe", "main_queue", "peek", "purge", "replay"]
