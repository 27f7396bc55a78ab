"""Message pacts: what each consumer reads from each event it takes off ``charter.events``.

One :class:`MessageCase` per message a consumer expects: the routing key and the ``data``
fields it reads, with matchers (types, regexes), never the whole payload, so a producer may
add fields freely. The envelope's identity (``id``, ``occurred_at``) is matched by shape,
its ``type`` and ``source`` exactly, and the message metadata carries the routing key.

:func:`build_message_pact` declares a pair's cases on a V4 Pact with pact-python's
asynchronous-message interactions, replays every message through :func:`read` (what the
consumer relies on; it fails the pact when the example breaks it) and writes
``<consumer>-<producer>-messages.json``. The case descriptions are the producer scenarios
of :mod:`tests.contracts.producers`, which the provider verification replays.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator
from pact import Pact, match

from charter.messaging import schemas
from charter.messaging.envelope import Envelope
from tests.contracts import pacts
from tests.contracts import producers as p

UUID_PATTERN = r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"
ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$"
TIMESTAMP_PATTERN = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?Z$"
CODE_PATTERN = r"^[a-z][a-z0-9_]{0,63}$"
JSON = "application/json"


def _uuid(example: str) -> Any:
    return match.regex(example, regex=UUID_PATTERN)


def _id(example: str) -> Any:
    return match.regex(example, regex=ID_PATTERN)


MONEY = {"amount_minor": match.int(5970), "currency": match.regex("EUR", regex=r"^[A-Z]{3}$")}


@dataclass(frozen=True)
class MessageCase:
    """One message ``consumer`` expects from ``producer``: routing key and fields read."""

    consumer: str
    producer: str
    description: str  # a scenario of tests.contracts.producers
    routing_key: str
    data: Mapping[str, Any] = field(default_factory=dict)

    @property
    def example(self) -> dict[str, Any]:
        """The envelope the consumer expects, with matchers."""
        source, type_ = self.routing_key.split(".", 1)
        return {"id": _uuid("6afb9be9-2d65-470c-a9c8-d85338fbefd1"),
                "type": type_, "source": source,
                "occurred_at": match.regex("2026-12-01T12:00:00Z", regex=TIMESTAMP_PATTERN),
                "data": dict(self.data)}


def _order_confirmed(consumer: str, reads: tuple[str, ...]) -> MessageCase:
    fields = {"order_id": _uuid(p.ORDER_ID), "customer_id": _id(p.CUSTOMER), "total": MONEY,
              "item_count": match.int(3), "payment_id": _id(p.PAYMENT_ID)}
    return MessageCase(consumer, "orders", p.ORDER_CONFIRMED, "orders.OrderConfirmed",
                       {k: fields[k] for k in reads})


def _order_cancelled(consumer: str, description: str, code: str, after: bool,
                     reads: tuple[str, ...]) -> MessageCase:
    fields = {"order_id": _uuid(p.ORDER_ID), "customer_id": _id(p.CUSTOMER), "total": MONEY,
              "item_count": match.int(3), "code": match.regex(code, regex=CODE_PATTERN),
              "after_confirmation": after}  # exact: the case is about it
    return MessageCase(consumer, "orders", description, "orders.OrderCancelled",
                       {k: fields[k] for k in reads})


_LOYALTY_CANCEL = ("order_id", "customer_id", "after_confirmation")
_NOTIFY_CANCEL = ("order_id", "customer_id", "total", "code", "after_confirmation")

CASES: tuple[MessageCase, ...] = (
    # loyalty (queue loyalty.orders): awards from the total, reverses after a refund
    _order_confirmed("loyalty", ("order_id", "customer_id", "total")),
    _order_cancelled("loyalty", p.ORDER_CANCELLED, "cancelled_by_customer", False,
                     _LOYALTY_CANCEL),
    _order_cancelled("loyalty", p.ORDER_REFUNDED, "cancelled_by_staff", True, _LOYALTY_CANCEL),
    # notifications (queue notifications.events)
    _order_confirmed("notifications", ("order_id", "customer_id", "total", "item_count")),
    _order_cancelled("notifications", p.ORDER_CANCELLED, "cancelled_by_customer", False,
                     _NOTIFY_CANCEL),
    _order_cancelled("notifications", p.ORDER_REFUNDED, "cancelled_by_staff", True,
                     _NOTIFY_CANCEL),
    MessageCase("notifications", "auth", p.USER_REGISTERED, "auth.UserRegistered", {
        "user_id": _id("7c9e6679-7425-40de-944b-e07fc1f90ae7"),
        "role": match.regex("customer", regex=r"^(customer|staff|admin)$")}),
    MessageCase("notifications", "catalog", p.LOW_STOCK, "catalog.LowStock", {
        "product_id": match.int(1), "available": match.int(5), "threshold": match.int(5)}),
    # orders (queue orders.replies): the saga's follow-ups
    MessageCase("orders", "loyalty", p.POINTS_AWARDED, "loyalty.PointsAwarded", {
        "order_id": _id(p.ORDER_ID), "customer_id": _id(p.CUSTOMER),
        "points": match.int(59)}),
    MessageCase("orders", "loyalty", p.AWARD_REVERSED, "loyalty.AwardReversed", {
        "order_id": _id(p.ORDER_ID), "customer_id": _id(p.CUSTOMER),
        "points": match.int(59)}),
    MessageCase("orders", "notifications", p.NOTIFICATION_SENT,
                "notifications.NotificationSent", {
                    "notification_id": _uuid(p.NOTIFICATION_ID),
                    "kind": match.regex("order_confirmed",
                                        regex=r"^(order_confirmed|order_cancelled)$"),
                    "order_id": _uuid(p.ORDER_ID)}),
)


def message_pairs() -> list[tuple[str, str]]:
    """``(consumer, producer)`` of every message pact, sorted."""
    return sorted({(c.consumer, c.producer) for c in CASES})


def message_pact_path(consumer: str, producer: str, directory: Path = pacts.PACT_DIR) -> Path:
    """``<directory>/<consumer>-<producer>-messages.json``."""
    return directory / f"{consumer}-{producer}-messages.json"


def read(case: MessageCase, body: str | bytes | None, metadata: Mapping[str, Any]) -> None:
    """What the consumer relies on in a message: the body decodes as an envelope with the
    case's routing key (also in the metadata), every field it reads is there, and each is
    allowed by the event's published JSON Schema (a consumer cannot expect what the
    contract does not promise). Raises, failing the pact, when the example breaks this."""
    assert body is not None, f"{case.description}: no body"
    envelope = Envelope.from_json(str(body) if not isinstance(body, bytes) else body)
    assert envelope.routing_key == case.routing_key, envelope.routing_key
    assert metadata.get("routing_key") == case.routing_key, metadata
    missing = set(case.data) - set(envelope.data)
    assert not missing, f"{case.description}: fields {sorted(missing)} missing"
    properties = schemas.load(case.routing_key)["properties"]
    for name, value in envelope.data.items():
        assert name in properties, f"{case.routing_key} has no field {name!r} in its schema"
        errors = list(Draft202012Validator(properties[name]).iter_errors(value))
        assert not errors, f"{case.routing_key} {name}: {errors[0].message}"


def build_message_pact(consumer: str, producer: str, directory: Path) -> Path:
    """Declare the pair's messages, replay each through :func:`read`, and write the
    normalised pact to ``<directory>/<consumer>-<producer>-messages.json``."""
    cases = {c.description: c for c in CASES if (c.consumer, c.producer) == (consumer, producer)}
    assert cases, f"no message case for {consumer} <- {producer}"
    pact = Pact(consumer, producer).with_specification("V4")
    for case in cases.values():
        (pact.upon_receiving(case.description, "Async")
         .with_body(case.example, JSON)
         .with_metadata({"routing_key": case.routing_key}))

    def handler(body: str | bytes | None, metadata: dict[str, object]) -> None:
        envelope = json.loads(str(body) if body is not None else "{}")
        key = f"{envelope.get('source')}.{envelope.get('type')}"
        found = [c for c in cases.values() if c.routing_key == key]
        assert found, f"{consumer} has no case for {key}"
        read(found[0], body, metadata)

    errors = pact.verify(handler, "Async", raises=False)
    assert not errors, "; ".join(f"{e.description}: {e.error}" for e in errors)
    target = message_pact_path(consumer, producer, directory)
    with tempfile.TemporaryDirectory() as scratch:  # Pact names it <consumer>-<provider>.json
        pact.write_file(scratch, overwrite=True)
        pacts.write_normalised(pacts.load(pacts.pact_path(consumer, producer, Path(scratch))),
                               target)
    return target

