"""The one envelope every event travels in (``DESIGN.md`` "Messaging, data and the saga").

An :class:`Envelope` is what a producer writes to its outbox, what the broker carries as
the message body (JSON) and what a consumer receives. Its routing key on the topic
exchange is ``<source>.<type>`` (``orders.OrderConfirmed``). Events carry ids, never
personal data (no e-mail, name or address), so a customer's data can be exported and
erased from the services that own it.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from charter.clock import parse_rfc3339, rfc3339, utcnow

SCHEMA_VERSION = 1


class InvalidEnvelope(ValueError):
    """A message body that is not an envelope (a poison message: never retried)."""


@dataclass(frozen=True)
class Envelope:
    """One event: identity, type, origin, causality and the payload (``data``)."""

    id: str
    type: str
    source: str
    occurred_at: datetime
    data: Mapping[str, Any] = field(default_factory=dict)
    correlation_id: str | None = None
    causation_id: str | None = None
    saga_id: str | None = None
    traceparent: str | None = None

    @classmethod
    def new(cls, type: str, data: Mapping[str, Any], *, source: str,
            correlation_id: str | None = None, causation_id: str | None = None,
            saga_id: str | None = None, traceparent: str | None = None,
            occurred_at: datetime | None = None, id: str | None = None) -> Envelope:
        """A new event with a fresh id, stamped now unless ``occurred_at`` is given."""
        return cls(id=id or str(uuid.uuid4()), type=type, source=source,
                   occurred_at=occurred_at or utcnow(), data=dict(data),
                   correlation_id=correlation_id, causation_id=causation_id,
                   saga_id=saga_id, traceparent=traceparent)

    @property
    def routing_key(self) -> str:
        """The topic-exchange routing key: ``<source>.<type>``."""
        return f"{self.source}.{self.type}"

    def caused(self, type: str, data: Mapping[str, Any], *, source: str) -> Envelope:
        """A new event caused by this one (same correlation and saga, causation = my id;
        the trace context of the span handling it, else this event's)."""
        from charter.observability.tracing import traceparent_of

        return Envelope.new(type, data, source=source, correlation_id=self.correlation_id,
                            causation_id=self.id, saga_id=self.saga_id,
                            traceparent=traceparent_of() or self.traceparent)

    def to_dict(self) -> dict[str, Any]:
        """The JSON document of the envelope (``contracts/events/envelope.schema.json``)."""
        doc: dict[str, Any] = {
            "specversion": SCHEMA_VERSION,
            "id": self.id,
            "type": self.type,
            "source": self.source,
            "occurred_at": rfc3339(self.occurred_at),
            "correlation_id": self.correlation_id,
            "causation_id": self.causation_id,
            "saga_id": self.saga_id,
            "traceparent": self.traceparent,
            "data": dict(self.data),
        }
        return doc

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), separators=(",", ":"), sort_keys=True)

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any]) -> Envelope:
        """The envelope of a decoded message; :class:`InvalidEnvelope` if it is not one."""
        try:
            data = doc["data"]
            if not isinstance(data, Mapping):
                raise InvalidEnvelope("envelope data must be an object")
            for key in ("id", "type", "source"):
                if not isinstance(doc[key], str) or not doc[key]:
                    raise InvalidEnvelope(f"envelope {key} must be a non-empty string")
            optional = {k: doc.get(k) for k in
                        ("correlation_id", "causation_id", "saga_id", "traceparent")}
            for key, value in optional.items():
                if value is not None and not isinstance(value, str):
                    raise InvalidEnvelope(f"envelope {key} must be a string or null")
            return cls(id=doc["id"], type=doc["type"], source=doc["source"],
                       occurred_at=parse_rfc3339(str(doc["occurred_at"])), data=dict(data),
                       **optional)
        except InvalidEnvelope:
            raise
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidEnvelope(f"not an event envelope: {exc}") from exc

    @classmethod
    def from_json(cls, body: str | bytes) -> Envelope:
        try:
            doc = json.loads(body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise InvalidEnvelope(f"message body is not JSON: {exc}") from exc
        if not isinstance(doc, Mapping):
            raise InvalidEnvelope("message body is not a JSON object")
        return cls.from_dict(doc)
