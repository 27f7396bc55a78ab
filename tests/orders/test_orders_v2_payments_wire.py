"""The v2 checkout's payment steps on the wire: orders' HTTP adapter against the real
payments service (its app, its own database, a token of the orders client), so a path,
status or body the payments API does not have fails here, not in production."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from charter.db import Database
from charter.testing import TokenFactory
from services.orders.clients import HttpPayments
from services.payments.app import create_app as create_payments
from services.payments.clients import SimulatedProvider
from tests.support.servers import ThreadServer


@pytest.fixture
def adapter(tmp_path: Path, migrated_db: Callable[[str, str], Database],
            tokens: TokenFactory, asgi_server: Callable[..., ThreadServer],
            monkeypatch: pytest.MonkeyPatch) -> HttpPayments:
    monkeypatch.setenv("CHARTER_MTLS", "0")
    db = migrated_db("payments", f"sqlite:///{tmp_path / 'payments.db'}")
    server = asgi_server(create_payments(db=db, verifier=tokens.verifier(),
                                         provider=SimulatedProvider(decline_above=10**9)))
    token = tokens.token(sub="orders", scope="payments:read payments:write", role="service",
                         client_id="orders")
    return HttpPayments(server.url, lambda: token, timeout=5.0)


def test_authorize_capture_refund(adapter: HttpPayments) -> None:
    order_id = "3f2a9c0d-1e4b-4d8f-9a6b-7c5d4e3f2a1b"
    authorized = adapter.authorize(order_id, "alice", 7880, "EUR", "tok_visa",
                                   f"order-{order_id}-authorize")
    assert authorized.refused is None and authorized.payment is not None
    payment = authorized.payment
    assert (payment.status, payment.customer_id, payment.amount) == ("authorized", "alice",
                                                                     7880)
    # The same key again is the same payment (never authorised twice).
    again = adapter.authorize(order_id, "alice", 7880, "EUR", "tok_visa",
                              f"order-{order_id}-authorize")
    assert again.payment is not None and again.payment.id == payment.id
    captured = adapter.capture(payment.id, f"order-{order_id}-capture")
    assert captured.payment is not None and captured.payment.status == "captured"
    refunded = adapter.refund(payment.id, f"order-{order_id}-refund", "cancelled by alice")
    assert refunded.payment is not None and refunded.payment.status == "refunded"
    # Voiding a refunded payment is refused (an answer, not an outage).
    assert adapter.void(payment.id, f"order-{order_id}-void").refused is not None


def test_declined_and_void(adapter: HttpPayments) -> None:
    declined = adapter.authorize("order-2", "alice", 500, "EUR", "tok_card_declined",
                                 "order-order-2-authorize")
    assert declined.refused == "card_declined"
    assert declined.payment is not None and declined.payment.status == "declined"
    held = adapter.authorize("order-3", "alice", 500, "EUR", "tok_visa",
                             "order-order-3-authorize").payment
    assert held is not None
    voided = adapter.void(held.id, "order-order-3-void")
    assert voided.payment is not None and voided.payment.status == "voided"
