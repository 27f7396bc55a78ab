"""Taking back an order's loyalty points on the wire: orders' HTTP adapter against the
real loyalty service (its app, its own database, a token of the orders client), and the
answers only a broken or overloaded loyalty gives, from a stub (decided on the problem
``type``, never on the status alone)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from charter import problem_types
from charter.db import Database
from charter.testing import TokenFactory
from services.loyalty.app import create_app as create_loyalty
from services.orders.clients import HttpLoyalty
from services.orders.ports import Delivery, LoyaltyUnavailable, Reversal
from tests.support.plugin import StubServer
from tests.support.servers import ThreadServer

ORDER_ID = "3f2a9c0d-1e4b-4d8f-9a6b-7c5d4e3f2a1b"


@pytest.fixture
def adapter(tmp_path: Path, migrated_db: Callable[[str, str], Database],
            tokens: TokenFactory, asgi_server: Callable[..., ThreadServer],
            monkeypatch: pytest.MonkeyPatch) -> HttpLoyalty:
    monkeypatch.setenv("CHARTER_MTLS", "0")
    db = migrated_db("loyalty", f"sqlite:///{tmp_path / 'loyalty.db'}")
    server = asgi_server(create_loyalty(db=db, verifier=tokens.verifier(), points_per_unit=1))
    token = tokens.token(sub="orders", scope="loyalty:write", role="service",
                         client_id="orders")
    return HttpLoyalty(server.url, lambda: token, timeout=5.0)


def test_award_then_reverse_once(adapter: HttpLoyalty) -> None:
    assert adapter.award("alice", ORDER_ID, 4980, "EUR") is Delivery.DONE
    assert adapter.reverse_award(ORDER_ID) is Reversal.REVERSED  # 201
    assert adapter.reverse_award(ORDER_ID) is Reversal.REVERSED  # 200, replayed


def test_an_order_without_award_has_nothing_to_reverse(adapter: HttpLoyalty) -> None:
    assert adapter.reverse_award("order-never-awarded") is Reversal.NOT_AWARDED


def typed(slug: str) -> tuple[int, dict[str, Any]]:
    status = problem_types.get(slug).status
    return status, {"type": f"https://elsewhere.example/problems/{slug}",
                    "title": "Reworded title", "status": status}


@pytest.mark.parametrize(("reply", "expected"), [
    ((201, {}), Reversal.REVERSED),
    (typed("not-found"), Reversal.NOT_AWARDED),
    ((404, {"title": "Not Found", "status": 404}), Reversal.REFUSED),  # untyped: no guess
    (typed("conflict"), Reversal.REFUSED),
])
def test_answers_by_problem_type(stub_server: Callable[..., StubServer],
                                 reply: tuple[int, Any], expected: Reversal) -> None:
    stub = stub_server(lambda seen: reply)
    loyalty = HttpLoyalty(stub.url, lambda: "orders-token", timeout=1.0)
    try:
        assert loyalty.reverse_award(ORDER_ID) is expected
    finally:
        loyalty.close()
    seen = stub.seen[0]
    assert (seen.method, seen.path) == ("POST", f"/v1/awards/{ORDER_ID}/reversal")
    assert seen.headers["authorization"] == "Bearer orders-token"


@pytest.mark.parametrize("reply", [(503, {"title": "x", "status": 503}),
                                   (429, {"title": "x", "status": 429}),
                                   (403, {"title": "x", "status": 403}),
                                   typed("concurrent-update")])
def test_unavailable_answers_raise(stub_server: Callable[..., StubServer],
                                   reply: tuple[int, Any]) -> None:
    stub = stub_server(lambda seen: reply)
    loyalty = HttpLoyalty(stub.url, lambda: "orders-token", timeout=1.0)
    try:
        with pytest.raises(LoyaltyUnavailable):
            loyalty.reverse_award(ORDER_ID)
    finally:
        loyalty.close()
