"""Idempotency keys: a payment is never charged twice for one key, even concurrently.

The races on the service layer (SQLite and PostgreSQL) are in test_payments_persistence.py.
"""

from __future__ import annotations

from payments_support import DECLINED_CARD, Caller, count_payments, new_key

from services.payments.clients import SimulatedProvider
from services.payments.services import PaymentsService
from tests.support.plugin import assert_problem, run_threads


def test_same_key_twice_is_one_provider_call_and_the_same_answer(
        alice: Caller, provider: SimulatedProvider, service: PaymentsService) -> None:
    key = new_key()
    first = alice.authorize(key=key)
    assert first.status_code == 201
    for _ in range(3):
        again = alice.authorize(key=key)
        assert again.status_code == 201
        assert again.json() == first.json()
        assert again.headers["idempotent-replayed"] == "true"
        assert again.headers["location"] == first.headers["location"]
    assert len(provider.calls_of("authorize")) == 1
    assert provider.charges == 1
    assert count_payments(service) == 1


def test_a_declined_answer_is_replayed_too(alice: Caller, provider: SimulatedProvider) -> None:
    key = new_key()
    first = alice.authorize(key=key, card_number=DECLINED_CARD)
    again = alice.authorize(key=key, card_number=DECLINED_CARD)
    assert_problem(again, 402)
    assert again.json() == first.json() and again.headers["idempotent-replayed"] == "true"
    assert len(provider.calls_of("authorize")) == 1


def test_same_key_with_a_different_body_is_422(alice: Caller,
                                               provider: SimulatedProvider) -> None:
    key = new_key()
    assert alice.authorize(key=key).status_code == 201
    problem = assert_problem(alice.authorize(key=key, amount=4981), 422)
    assert key in problem["detail"]
    assert provider.charges == 1


def test_keys_are_per_caller(alice: Caller, bob: Caller, provider: SimulatedProvider) -> None:
    key = new_key()
    a = alice.authorize(key=key).json()
    b = bob.authorize(key=key).json()
    assert a["id"] != b["id"] and b["customer_id"] == "bob"
    assert provider.charges == 2


def test_capture_void_refund_replay(alice: Caller, provider: SimulatedProvider) -> None:
    pid = alice.authorize().json()["id"]
    key = new_key()
    first = alice.capture(pid, {"amount": 1000}, key=key)
    again = alice.capture(pid, {"amount": 1000}, key=key)
    assert (first.status_code, again.status_code) == (200, 200)
    assert again.json() == first.json() and again.headers["idempotent-replayed"] == "true"
    assert_problem(alice.capture(pid, {"amount": 999}, key=key), 422)
    assert len(provider.calls_of("capture")) == 1

    refund_key = new_key()
    r1 = alice.refund(pid, {"amount": 100}, key=refund_key)
    r2 = alice.refund(pid, {"amount": 100}, key=refund_key)
    assert r1.status_code == r2.status_code == 201 and r1.json() == r2.json()
    assert alice.get(pid).json()["refunded_amount"] == 100
    assert len(provider.calls_of("refund")) == 1

    other = alice.authorize().json()["id"]
    void_key = new_key()
    assert alice.void(other, key=void_key).status_code == 200
    replay = alice.void(other, key=void_key)
    assert replay.status_code == 200 and replay.headers["idempotent-replayed"] == "true"
    assert len(provider.calls_of("void")) == 1


def test_refund_keys_are_per_payment(alice: Caller) -> None:
    """The same key on two payments refunds both (keys are scoped by payment)."""
    ids = []
    for _ in range(2):
        pid = alice.authorize().json()["id"]
        alice.capture(pid)
        ids.append(pid)
    key = new_key()
    for pid in ids:
        assert alice.refund(pid, {"amount": 5}, key=key).status_code == 201
        assert alice.get(pid).json()["refunded_amount"] == 5


def test_concurrent_same_key_over_http(alice: Caller, provider: SimulatedProvider) -> None:
    key = new_key()
    results = run_threads(8, lambda _i: alice.authorize(key=key))
    assert all(r.status_code == 201 for r in results), [r.text for r in results]
    assert len({r.json()["id"] for r in results}) == 1
    assert provider.charges == 1
