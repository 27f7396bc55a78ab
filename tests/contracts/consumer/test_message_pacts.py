"""The committed message pacts (contracts/pacts/*-messages.json) are exactly what the
consumers' message cases write, and each consumer subscribes to what it pacts.

``CHARTER_UPDATE_PACTS=1`` rewrites the committed files (review the diff, commit it).
"""

from __future__ import annotations

import difflib
import json
import os
import shutil
from pathlib import Path

import pytest

from tests.contracts import pacts
from tests.contracts.consumer.messages import (
    CASES,
    MessageCase,
    build_message_pact,
    message_pact_path,
    message_pairs,
    read,
)

PAIRS = message_pairs()


def _text(path: Path) -> list[str]:
    return json.dumps(pacts.normalised(pacts.load(path)), indent=2,
                      sort_keys=True).splitlines()


@pytest.mark.parametrize(("consumer", "producer"), PAIRS, ids=[f"{c}-{p}" for c, p in PAIRS])
def test_committed_message_pact_is_up_to_date(consumer: str, producer: str,
                                              tmp_path: Path) -> None:
    built = build_message_pact(consumer, producer, tmp_path)
    committed = message_pact_path(consumer, producer)
    if os.environ.get(pacts.UPDATE_ENV) == "1":
        shutil.copyfile(built, committed)
    assert committed.is_file(), f"{committed.name} is missing: run `{pacts.REFRESH_COMMAND}`"
    new, old = _text(built), _text(committed)
    if new != old:
        diff = "\n".join(list(difflib.unified_diff(old, new, "committed", "consumer cases",
                                                   lineterm=""))[:80])
        pytest.fail(f"{committed.name} differs from what the message cases write; if the "
                    f"change is intended, run `{pacts.REFRESH_COMMAND}`.\n{diff}",
                    pytrace=False)


def test_the_pacts_hold_asynchronous_messages_only() -> None:
    for consumer, producer in PAIRS:
        document = pacts.load(message_pact_path(consumer, producer))
        assert (document["consumer"]["name"], document["provider"]["name"]) == (consumer,
                                                                                 producer)
        kinds = {i["type"] for i in document["interactions"]}
        assert kinds == {"Asynchronous/Messages"}, kinds


def _topic_matches(pattern: str, key: str) -> bool:
    """AMQP topic matching: ``*`` is one word, ``#`` zero or more."""
    def match(words: list[str], parts: list[str]) -> bool:
        if not words:
            return not parts
        if words[0] == "#":
            return any(match(words[1:], parts[i:]) for i in range(len(parts) + 1))
        return bool(parts) and words[0] in ("*", parts[0]) and match(words[1:], parts[1:])
    return match(pattern.split("."), key.split("."))


@pytest.mark.parametrize("consumer", sorted({c.consumer for c in CASES}))
def test_consumer_subscribes_to_what_it_pacts(consumer: str) -> None:
    """The routing keys of a consumer's message cases are bound by its SUBSCRIPTIONS
    (``services/<consumer>/messaging.py``), and it binds nothing it has no pact for."""
    import importlib

    try:
        module = importlib.import_module(f"services.{consumer}.messaging")
    except ModuleNotFoundError:
        pytest.fail(f"services/{consumer}/messaging.py (SUBSCRIPTIONS) does not exist yet",
                    pytrace=False)
    bindings = [b for sub in module.SUBSCRIPTIONS for b in sub.bindings]
    pacted = {c.routing_key for c in CASES if c.consumer == consumer}
    unbound = sorted(k for k in pacted if not any(_topic_matches(b, k) for b in bindings))
    assert not unbound, f"{consumer} pacts {unbound} but does not subscribe to them"
    unpacted = sorted(b for b in bindings if not any(_topic_matches(b, k) for k in pacted))
    assert not unpacted, f"{consumer} subscribes to {unpacted} without a message pact"


def test_topic_matching() -> None:
    assert _topic_matches("orders.*", "orders.OrderConfirmed")
    assert _topic_matches("#", "orders.OrderConfirmed")
    assert _topic_matches("orders.#", "orders")
    assert not _topic_matches("orders.*", "loyalty.PointsAwarded")
    assert not _topic_matches("orders.*", "orders.a.b")


def _body(data: dict[str, object]) -> str:
    return json.dumps({"id": "6afb9be9-2d65-470c-a9c8-d85338fbefd1", "type": "LowStock",
                       "source": "catalog", "occurred_at": "2026-12-01T12:00:00Z",
                       "data": data})


def test_a_consumer_cannot_expect_a_field_outside_the_contract() -> None:
    meta = {"routing_key": "catalog.LowStock"}
    with_sku = MessageCase("notifications", "catalog", "x", "catalog.LowStock",
                           {"product_id": 1, "sku": "COF-0001"})
    with pytest.raises(AssertionError, match="no field 'sku'"):
        read(with_sku, _body({"product_id": 1, "sku": "COF-0001"}), meta)
    available = MessageCase("notifications", "catalog", "x", "catalog.LowStock",
                            {"product_id": 1, "available": 5})
    with pytest.raises(AssertionError, match="available: 'five' is not of type 'integer'"):
        read(available, _body({"product_id": 1, "available": "five"}), meta)
    with pytest.raises(AssertionError, match=r"fields \['available'\] missing"):
        read(available, _body({"product_id": 1}), meta)
    read(available, _body({"product_id": 1, "available": 5}), meta)  # the good one passes
