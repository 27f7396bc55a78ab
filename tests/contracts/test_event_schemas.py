"""The event contracts (contracts/events/*.schema.json, openapi/events/asyncapi.yaml): every
producer's real envelopes satisfy them, they refuse what they must (personal data, unknown
fields, unknown events), they are strict and bounded, and the AsyncAPI document is valid
AsyncAPI 3.0 (Spectral's ``spectral:asyncapi`` ruleset, pinned in package-lock.json) and
agrees with the schemas and the message pacts.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from charter import config
from charter.messaging import schemas
from charter.messaging.envelope import Envelope
from tests.contracts import producers as p
from tests.contracts.consumer.messages import CASES
from tests.support.databases import skip_or_fail

ROUTING_KEYS = ["auth.UserRegistered", "catalog.LowStock", "catalog.StockChanged",
                "loyalty.AwardReversed", "loyalty.PointsAwarded",
                "notifications.NotificationSent", "orders.OrderCancelled",
                "orders.OrderConfirmed"]  # the platform's events (fixed)
ASYNCAPI = config.ROOT / "openapi" / "events" / "asyncapi.yaml"
SPECTRAL = config.ROOT / "node_modules" / ".bin" / "spectral"
RULESET = "extends: ['spectral:asyncapi']\nrules:\n  asyncapi-latest-version: off\n"


def test_one_schema_per_event() -> None:
    assert schemas.routing_keys() == ROUTING_KEYS


@pytest.mark.parametrize("scenario", sorted(p.SCENARIOS))
def test_producer_envelope_satisfies_its_contract(scenario: str) -> None:
    envelope = p.produce(scenario)  # a missing producer fails here, naming the function
    schemas.validate(envelope)
    again = Envelope.from_json(envelope.to_json())  # what the broker carries, round-tripped
    schemas.validate_document(json.loads(again.to_json()))


def test_every_event_has_a_producer_scenario() -> None:
    produced = {scenario.split(":", 1)[0] for scenario in p.SCENARIOS}
    assert produced == set(ROUTING_KEYS)


def _confirmed(**changes: Any) -> Envelope:
    envelope = p.produce(p.ORDER_CONFIRMED)
    return Envelope.new(envelope.type, {**envelope.data, **changes}, source=envelope.source)


def test_an_email_field_is_refused() -> None:
    with pytest.raises(schemas.EventContractError) as refused:
        schemas.validate(_confirmed(email="alice@example.com"))
    assert refused.value.routing_key == "orders.OrderConfirmed"
    assert refused.value.where == "data"
    assert "'email' was unexpected" in str(refused.value)
    assert "alice@example.com" not in str(refused.value)  # never echo the value


def test_an_email_as_an_id_is_refused_without_echoing_it() -> None:
    with pytest.raises(schemas.EventContractError) as refused:
        schemas.validate(_confirmed(customer_id="alice@example.com"))
    assert refused.value.where == "data/customer_id"
    assert "alice@example.com" not in str(refused.value)


@pytest.mark.parametrize(("changes", "where"), [
    ({"item_count": -1}, "data/item_count"),
    ({"item_count": 2**40}, "data/item_count"),
    ({"total": {"amount_minor": 100, "currency": "euro"}}, "data/total/currency"),
    ({"total": {"amount_minor": 100, "currency": "EUR", "rate": 1}}, "data/total"),
    ({"payment_id": "x" * 129}, "data/payment_id"),
    ({"order_id": "not-a-uuid"}, "data/order_id"),
])
def test_out_of_contract_values_are_refused(changes: dict[str, Any], where: str) -> None:
    with pytest.raises(schemas.EventContractError) as refused:
        schemas.validate(_confirmed(**changes))
    assert refused.value.where == where


def test_a_missing_field_is_refused() -> None:
    envelope = p.produce(p.USER_REGISTERED)
    data = {k: v for k, v in envelope.data.items() if k != "role"}
    with pytest.raises(schemas.EventContractError, match="'role' is a required property"):
        schemas.validate(Envelope.new(envelope.type, data, source=envelope.source))


def test_an_unknown_event_is_refused() -> None:
    with pytest.raises(schemas.EventContractError, match="no contract for this routing key"):
        schemas.validate(Envelope.new("OrderShipped", {"order_id": p.ORDER_ID},
                                      source="orders"))


def test_the_envelope_is_strict() -> None:
    document = p.produce(p.LOW_STOCK).to_dict()
    for key, value in [("extra", 1), ("traceparent", "00-nothex"), ("specversion", 2),
                       ("occurred_at", "yesterday")]:
        with pytest.raises(schemas.EventContractError) as refused:
            schemas.validate_document({**document, key: value})
        assert refused.value.where.startswith("envelope"), (key, refused.value)


def _nodes(schema: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """``schema`` and every subschema (properties, items, combinators)."""
    yield schema
    for sub in (schema.get("properties") or {}).values():
        yield from _nodes(sub)
    for key in ("items", "additionalProperties"):
        if isinstance(schema.get(key), dict):
            yield from _nodes(schema[key])
    for key in ("allOf", "anyOf", "oneOf"):
        for sub in schema.get(key) or []:
            yield from _nodes(sub)


@pytest.mark.parametrize("path", sorted(schemas.SCHEMA_DIR.glob("*.schema.json")),
                         ids=lambda path: path.name)
def test_schemas_are_strict_and_bounded(path: Path) -> None:
    schema = json.loads(path.read_text(encoding="utf-8"))
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    for node in _nodes(schema):
        kinds = node.get("type")
        kinds = set(kinds) if isinstance(kinds, list) else {kinds}
        if "object" in kinds:
            assert node.get("additionalProperties") is False or "maxProperties" in node, node
        if "string" in kinds:
            assert "maxLength" in node or "enum" in node, node
        if "integer" in kinds:
            assert "minimum" in node and "maximum" in node, node


# -- AsyncAPI ----------------------------------------------------------------------------

def _asyncapi() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(ASYNCAPI.read_text(encoding="utf-8"))
    return document


def _spectral(document: Path, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    if not SPECTRAL.exists():
        skip_or_fail(f"{SPECTRAL} is missing: run `make node` (npm ci)")
    ruleset = tmp_path / "asyncapi-ruleset.yaml"
    ruleset.write_text(RULESET, encoding="utf-8")
    return subprocess.run([str(SPECTRAL), "lint", "-r", str(ruleset), "--fail-severity",
                           "hint", "-f", "text", str(document)], capture_output=True,
                          text=True, timeout=60, check=False)


def test_asyncapi_document_is_valid(tmp_path: Path) -> None:
    run = _spectral(ASYNCAPI, tmp_path)
    assert run.returncode == 0, run.stdout + run.stderr


def test_an_invalid_asyncapi_document_is_caught(tmp_path: Path) -> None:
    copy = tmp_path / "openapi" / "events" / "asyncapi.yaml"
    copy.parent.mkdir(parents=True)
    shutil.copytree(schemas.SCHEMA_DIR, tmp_path / "contracts" / "events")
    copy.write_text(ASYNCAPI.read_text(encoding="utf-8").replace("action: send",
                                                                 "action: publish", 1))
    run = _spectral(copy, tmp_path)
    assert run.returncode != 0 and "action" in run.stdout, run.stdout


def test_asyncapi_channels_are_the_schemas() -> None:
    document = _asyncapi()
    assert document["asyncapi"] == "3.0.0"
    addresses = sorted(c["address"] for c in document["channels"].values())
    assert addresses == ROUTING_KEYS
    for message in document["components"]["messages"].values():
        key = message["title"]
        refs = [part.get("$ref") or part["properties"]["data"]["$ref"]
                for part in message["payload"]["allOf"]]
        assert refs == ["../../contracts/events/envelope.schema.json",
                        f"../../contracts/events/{key}.schema.json"]
        source, type_ = key.split(".")
        consts = message["payload"]["allOf"][1]["properties"]
        assert (consts["source"]["const"], consts["type"]["const"]) == (source, type_)


def test_asyncapi_operations_name_producers_and_consumers() -> None:
    document = _asyncapi()
    channels = {f"#/channels/{name}": c["address"] for name, c in document["channels"].items()}
    sends: set[tuple[str, str]] = set()
    receives: set[tuple[str, str]] = set()
    for op in document["operations"].values():
        key = channels[op["channel"]["$ref"]]
        (sends if op["action"] == "send" else receives).add((op["x-charter-component"], key))
    assert sends == {(key.split(".")[0], key) for key in ROUTING_KEYS}
    assert receives == {(c.consumer, c.routing_key) for c in CASES}


def test_the_backstage_catalog_lists_the_event_contract() -> None:
    """`charter gov catalog` lists the AsyncAPI document as an API provided by every
    producer and consumed by every consumer (catalog/ is checked for drift elsewhere)."""
    from governance.catalog import generate

    files = generate.entities()
    api = next(e for e in files["apis.yaml"] if e["metadata"]["name"] == "charter-events")
    assert api["spec"]["type"] == "asyncapi"
    assert api["spec"]["definition"] == {"$text": "../openapi/events/asyncapi.yaml"}
    components = {e["metadata"]["name"]: e["spec"] for e in files["components.yaml"]}
    providers = {n for n, s in components.items()
                 if "api:charter-events" in s.get("providesApis", [])}
    consumers = {n for n, s in components.items()
                 if "api:charter-events" in s.get("consumesApis", [])}
    assert providers == {key.split(".")[0] for key in ROUTING_KEYS}
    assert consumers == {c.consumer for c in CASES}
