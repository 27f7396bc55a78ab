"""Every producer honours every message pact its consumers committed
(``contracts/pacts/*-messages.json``).

One test per pact file: the Pact verifier asks, for each message description, for the
message the producer would publish; pact-python's message handler answers with the envelope
made by the producer's **real** function (:mod:`tests.contracts.producers`: orders'
``integration_events``, ``auth.events.user_registered``, …) and its routing key as metadata.
The verifier then checks the body against the consumer's matchers (types, regexes, exact
``type``/``source``) and the metadata. A producer function that does not exist fails the
test with the name it is expected under.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from pact import Verifier
from pact.types import Message

from tests.contracts import pacts
from tests.contracts import producers as p
from tests.contracts.consumer.messages import message_pact_path, message_pairs

PACT_FILES = [message_pact_path(c, pr) for c, pr in message_pairs()]


def message(description: str) -> Message:
    """The message the producer publishes in the scenario ``description``."""
    envelope = p.produce(description)
    return Message(contents=envelope.to_json().encode(), content_type="application/json",
                   metadata={"routing_key": envelope.routing_key})


def verify_messages(pact_file: Path) -> None:
    """Run the Pact verifier on ``pact_file`` with the producers as message handlers; fail
    with the verifier's report (or the missing producer) when a message does not hold."""
    document = pacts.load(pact_file)
    producer = document["provider"]["name"]
    descriptions = [i["description"] for i in document["interactions"]]
    unknown = sorted(set(descriptions) - set(p.SCENARIOS))
    assert not unknown, f"{pact_file.name}: no producer scenario for {unknown}"
    for description in descriptions:  # a missing producer: say which, not a bare mismatch
        try:
            p.produce(description)
        except p.ProducerMissing as exc:
            pytest.fail(f"{pact_file.name}: {exc}", pytrace=False)
    verifier = (Verifier(producer)
                .message_handler({d: (lambda d=d: message(d)) for d in descriptions})
                .add_source(pact_file)
                .set_coloured_output(enabled=False))
    try:
        verifier.verify()
    except RuntimeError:  # pact raises a bare RuntimeError: its output says what broke
        pytest.fail(f"{producer} does not honour {pact_file.name} (the Pact verifier's "
                    f"report follows):\n{verifier.output(strip_ansi=True)}", pytrace=False)


def test_every_message_pact_is_verified() -> None:
    on_disk = sorted(pacts.PACT_DIR.glob("*-messages.json"))
    assert on_disk == sorted(PACT_FILES), "message pacts on disk and consumer cases differ"


@pytest.mark.parametrize("pact_file", PACT_FILES, ids=[f.stem for f in PACT_FILES])
def test_producer_honours_message_pact(pact_file: Path) -> None:
    verify_messages(pact_file)


def test_a_broken_producer_fails_verification(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """The check can fail: orders publishing ``total`` as a bare number breaks loyalty's
    pact, and the report names the field."""
    real = p.SCENARIOS[p.ORDER_CONFIRMED]

    def broken() -> object:
        envelope = real()
        data = {**envelope.data, "total": 5970}
        return type(envelope).new(envelope.type, data, source=envelope.source)

    monkeypatch.setitem(p.SCENARIOS, p.ORDER_CONFIRMED, broken)
    with pytest.raises(pytest.fail.Exception) as failed:
        verify_messages(message_pact_path("loyalty", "orders"))
    assert "total" in str(failed.value)


def test_a_missing_producer_fails_verification(monkeypatch: pytest.MonkeyPatch) -> None:
    """A producer function that does not exist is a failure naming it, never a skip."""
    monkeypatch.setitem(p.SCENARIOS, p.LOW_STOCK,
                        lambda: p.producer("services.catalog.events", "no_such_producer")())
    with pytest.raises(pytest.fail.Exception) as failed:
        verify_messages(message_pact_path("notifications", "catalog"))
    assert "services.catalog.events.no_such_producer is missing" in str(failed.value)
