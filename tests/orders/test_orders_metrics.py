"""Orders' saga and business metrics on its /metrics: moved by the behaviour, exactly once
per order (a replay or a resumed saga does not count again), never for a rolled-back
write."""

from __future__ import annotations

from typing import Any

import pytest
from orders_support import Auth, new_key
from sqlalchemy import text
from test_orders_v2 import (  # noqa: F401 - fixtures used by name
    ITEMS,
    TOKEN,
    TOTAL,
    FakeCheckoutPayments,
    app,
    checkout,
    checkout_payments,
)

from charter.committed import on_commit
from charter.db import Database
from tests.support.metrics import sample, scrape

OUTCOMES = "charter_saga_outcomes_total"
DURATION = "charter_saga_duration_seconds_count"


class Scrapes:
    """Before/after differences of the app's /metrics."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.before = scrape(client)

    def delta(self, name: str, **labels: str) -> float:
        labels.setdefault("service", "orders")
        return sample(scrape(self.client), name, **labels) - sample(self.before, name,
                                                                    **labels)


def test_a_confirmed_checkout_counts_placed_outcome_duration_and_revenue(
        client: Any, auth: Auth) -> None:
    m = Scrapes(client)
    order = checkout(client, auth("alice")).json()
    assert order["status"] == "confirmed"
    assert m.delta("charter_orders_placed_total", currency="EUR") == 1
    assert m.delta(OUTCOMES, outcome="confirmed", reason="") == 1
    assert m.delta(DURATION, outcome="confirmed") == 1
    assert m.delta("charter_revenue_minor_total", currency="EUR") == TOTAL
    assert m.delta(OUTCOMES, outcome="cancelled", reason="payment_declined") == 0


def test_a_declined_payment_counts_cancelled_payment_declined_and_no_revenue(
        client: Any, auth: Auth) -> None:
    m = Scrapes(client)
    body = {**ITEMS, "payment_method": {"type": "token", "token": "tok_chargeDeclined"}}
    assert checkout(client, auth("alice"), body).json()["status"] == "cancelled"
    assert m.delta(OUTCOMES, outcome="cancelled", reason="payment_declined") == 1
    assert m.delta(DURATION, outcome="cancelled") == 1
    assert m.delta(OUTCOMES, outcome="confirmed", reason="") == 0
    assert m.delta("charter_revenue_minor_total", currency="EUR") == 0
    assert m.delta("charter_orders_placed_total", currency="EUR") == 1


def test_short_stock_counts_its_rejection_code(client: Any, auth: Auth) -> None:
    m = Scrapes(client)
    checkout(client, auth("alice"), {"items": [{"product_id": 3, "quantity": 1}],
                                     "payment_method": TOKEN})
    assert m.delta(OUTCOMES, outcome="cancelled", reason="insufficient_stock") == 1


def test_a_resumed_saga_and_replays_count_the_outcome_once(
        client: Any, auth: Auth,
        checkout_payments: FakeCheckoutPayments,  # noqa: F811 - the imported fixture
) -> None:
    m = Scrapes(client)
    key = new_key()
    checkout_payments.down = True
    first = checkout(client, auth("alice"), key=key).json()
    assert first["status"] == "pending"
    assert m.delta(OUTCOMES, outcome="confirmed", reason="") == 0  # not settled yet
    checkout_payments.down = False
    for _ in range(3):  # the pass that settles it, then replays of the same key
        assert checkout(client, auth("alice"), key=key).json()["status"] == "confirmed"
    assert m.delta(OUTCOMES, outcome="confirmed", reason="") == 1
    assert m.delta("charter_orders_placed_total", currency="EUR") == 1
    assert m.delta("charter_revenue_minor_total", currency="EUR") == TOTAL


def test_on_commit_runs_after_a_commit_only(db: Database) -> None:
    called: list[str] = []
    with pytest.raises(RuntimeError), db.write() as session:
        session.execute(text("SELECT 1"))
        on_commit(session, lambda: called.append("rolled back"))
        raise RuntimeError("the transaction fails")
    with db.write() as session:
        session.execute(text("SELECT 1"))
        on_commit(session, lambda: called.append("committed"))
        assert called == []  # not before the commit
    assert called == ["committed"]
