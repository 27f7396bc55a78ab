"""The event contracts: JSON Schemas (draft 2020-12) of the envelope and of each event's data.

``contracts/events/envelope.schema.json`` describes the envelope
(:meth:`Envelope.to_dict`); ``contracts/events/<source>.<Type>.schema.json`` describes the
``data`` of the event with that routing key. Every schema forbids unknown fields
(``additionalProperties: false``) and bounds its strings and integers, so an event that
grows a field (an e-mail address, say) is refused until its contract says so.

:func:`validate` checks an envelope against both and raises :class:`EventContractError`
naming the routing key, the field and the rule (never the offending value, which may be
personal data). Producers' tests call it for every event
they publish; a service may call it at runtime before writing to its outbox (it fails
closed: an unknown routing key is an error, not a pass).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError, best_match

from charter import config
from charter.messaging.envelope import Envelope

SCHEMA_DIR = config.ROOT / "contracts" / "events"
ENVELOPE_FILE = "envelope.schema.json"
_SUFFIX = ".schema.json"


class EventContractError(ValueError):
    """An envelope (or its data) does not satisfy its JSON Schema."""

    def __init__(self, routing_key: str, where: str, message: str) -> None:
        self.routing_key, self.where, self.message = routing_key, where, message
        super().__init__(f"{routing_key}: {where}: {message}")


def schema_path(routing_key: str, directory: Path = SCHEMA_DIR) -> Path:
    """``<directory>/<routing_key>.schema.json`` (``orders.OrderConfirmed``)."""
    return directory / f"{routing_key}{_SUFFIX}"


@cache
def _validator(path: Path) -> Draft202012Validator:
    schema = json.loads(path.read_text(encoding="utf-8"))
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)


def routing_keys(directory: Path = SCHEMA_DIR) -> list[str]:
    """Every routing key with a data schema, sorted."""
    return sorted(p.name[: -len(_SUFFIX)] for p in directory.glob(f"*{_SUFFIX}")
                  if p.name != ENVELOPE_FILE)


def load(routing_key: str, directory: Path = SCHEMA_DIR) -> dict[str, Any]:
    """The data schema of ``routing_key`` as JSON (``KeyError`` when there is none)."""
    path = schema_path(routing_key, directory)
    if not path.is_file():
        raise KeyError(routing_key)
    return dict(_validator(path).schema)


def _check(validator: Draft202012Validator, instance: Any, routing_key: str,
           prefix: str) -> None:
    error = best_match(validator.iter_errors(instance))
    if error is not None:
        where = "/".join([prefix, *map(str, error.absolute_path)])
        raise EventContractError(routing_key, where, _describe(error))


def _describe(error: ValidationError) -> str:
    """The rule broken, without the offending value (it may be personal data)."""
    if error.validator in ("additionalProperties", "required"):
        return error.message  # names fields, never values
    return f"fails {error.validator} {json.dumps(error.validator_value)[:200]}"


def validate_document(document: Mapping[str, Any], directory: Path = SCHEMA_DIR) -> None:
    """Check an envelope as JSON (what the broker carries) against the envelope schema
    and its routing key's data schema; :class:`EventContractError` on the first problem."""
    routing_key = f"{document.get('source')}.{document.get('type')}"
    _check(_validator(directory / ENVELOPE_FILE), document, routing_key, "envelope")
    path = schema_path(routing_key, directory)
    if not path.is_file():
        raise EventContractError(routing_key, "envelope", "no contract for this routing key "
                                 f"(expected {path.name} in contracts/events/)")
    _check(_validator(path), document["data"], routing_key, "data")


def validate(envelope: Envelope, directory: Path = SCHEMA_DIR) -> None:
    """Check ``envelope`` against its contract (see :func:`validate_document`)."""
    validate_document(envelope.to_dict(), directory)
