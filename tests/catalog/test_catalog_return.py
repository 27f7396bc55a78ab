"""``POST /v1/reservations/{order_id}/return``: a committed reservation's stock comes back.

committed → returned puts each line's quantity back on hand, once per Idempotency-Key (a
replay answers the first answer), and writes ``catalog.StockChanged`` with reason
``return`` in the same transaction. Returning a returned reservation (another key) is 200
with no change; a held or released one is 409 ``invalid-reservation-state``; an unknown
order is 404. Over HTTP on SQLite (responses validated against the spec), the outbox and
the concurrent returns on SQLite and PostgreSQL (``any_database_url``). Who may call it
(orders only, ``catalog:reserve``): ``test_catalog_security.py``,
``tests/mtls/test_mtls_identity.py``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from catalog_support import seed_small
from sqlalchemy import select

from charter.cache import TTLCache
from charter.db import Database
from charter.messaging.envelope import Envelope
from charter.problems import Conflict
from services.catalog import domain
from services.catalog.app import catalog_service
from services.catalog.domain import Reservation, ReservationLine, ReservationStatus, StockLevel
from services.catalog.services import CatalogService
from services.catalog.store import outbox
from tests.support.plugin import run_threads

Auth = Callable[..., dict[str, str]]


# --- helpers -------------------------------------------------------------------------


def post(client: Any, auth: Auth, order_id: str, action: str, key: str) -> Any:
    return client.post(f"/v1/reservations/{order_id}/{action}",
                       headers=auth(**{"Idempotency-Key": key}))


def stock_of(client: Any, auth: Auth, product_id: int) -> tuple[int, int, int]:
    s = client.get(f"/v1/products/{product_id}/stock", headers=auth()).json()
    return s["on_hand"], s["reserved"], s["available"]


def slug(response: Any) -> str:
    assert response.headers["content-type"].startswith("application/problem+json")
    return str(response.json()["type"]).rsplit("/", 1)[-1]


def stock_changes(db: Database, reason: str | None = None) -> list[dict[str, Any]]:
    """The data of every StockChanged in the outbox, in order (only ``reason`` if given)."""
    t = outbox.table
    with db.session() as session:
        bodies = session.scalars(select(t.c.body).order_by(t.c.position)).all()
    found = [Envelope.from_json(body) for body in bodies]
    return [dict(e.data) for e in found if e.type == "StockChanged"
            and (reason is None or e.data["reason"] == reason)]


@pytest.fixture
def committed(client: Any, auth: Auth, seeded: dict[str, Any]) -> dict[str, Any]:
    """``order-held`` (2 of ``held_product``, 10 on hand) committed: 8 on hand."""
    answer = post(client, auth, "order-held", "commit", "commit-held-1")
    assert answer.status_code == 200, answer.text
    assert stock_of(client, auth, seeded["held_product"]["id"]) == (8, 0, 8)
    return seeded


# --- over HTTP -----------------------------------------------------------------------


def test_return_after_commit_puts_the_stock_back(client: Any, auth: Auth,
                                                 committed: dict[str, Any]) -> None:
    held = committed["held_product"]["id"]
    answer = post(client, auth, "order-held", "return", "return-held-1")
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["status"] == "returned" and body["order_id"] == "order-held"
    assert body["items"] == [{"product_id": held, "quantity": 2}]
    assert "Idempotent-Replayed" not in answer.headers
    assert stock_of(client, auth, held) == (10, 0, 10)
    got = client.get("/v1/reservations/order-held", headers=auth())
    assert got.status_code == 200 and got.json()["status"] == "returned"


def test_every_line_of_a_multi_item_order_comes_back(client: Any, auth: Auth,
                                                     seeded: dict[str, Any]) -> None:
    p, spare = seeded["product"]["id"], seeded["spare"]["id"]
    items = [{"product_id": spare, "quantity": 2}, {"product_id": p, "quantity": 3}]
    created = client.post("/v1/reservations", json={"order_id": "order-2", "items": items},
                          headers=auth(**{"Idempotency-Key": "reserve-order-2"}))
    assert created.status_code == 201, created.text
    assert post(client, auth, "order-2", "commit", "commit-order-2").status_code == 200
    assert (stock_of(client, auth, p), stock_of(client, auth, spare)) == ((7, 0, 7), (3, 0, 3))
    assert post(client, auth, "order-2", "return", "return-order-2").status_code == 200
    assert (stock_of(client, auth, p), stock_of(client, auth, spare)) == ((10, 0, 10), (5, 0, 5))


def test_keyed_replay_acts_once(client: Any, auth: Auth, db: Database,
                                committed: dict[str, Any]) -> None:
    held = committed["held_product"]["id"]
    first = post(client, auth, "order-held", "return", "return-held-1")
    replay = post(client, auth, "order-held", "return", "return-held-1")
    assert first.status_code == replay.status_code == 200
    assert replay.headers["Idempotent-Replayed"] == "true"
    assert replay.json() == first.json()
    assert stock_of(client, auth, held) == (10, 0, 10)
    assert len(stock_changes(db, "return")) == 1


def test_returned_twice_with_another_key_is_200_with_no_change(
        client: Any, auth: Auth, db: Database, committed: dict[str, Any]) -> None:
    held = committed["held_product"]["id"]
    first = post(client, auth, "order-held", "return", "return-held-1")
    again = post(client, auth, "order-held", "return", "return-held-2")
    assert again.status_code == 200, again.text
    assert "Idempotent-Replayed" not in again.headers
    assert again.json()["status"] == "returned"
    assert again.json()["updated_at"] == first.json()["updated_at"]  # not touched
    assert stock_of(client, auth, held) == (10, 0, 10)
    assert len(stock_changes(db, "return")) == 1


def test_a_held_reservation_cannot_be_returned(client: Any, auth: Auth,
                                               seeded: dict[str, Any]) -> None:
    held = seeded["held_product"]["id"]
    answer = post(client, auth, "order-held", "return", "return-held-1")
    assert answer.status_code == 409 and slug(answer) == "invalid-reservation-state"
    assert "held" in answer.json()["detail"]
    assert stock_of(client, auth, held) == (10, 2, 8)
    # The refused key answers the same refusal; the reservation can still be committed.
    assert post(client, auth, "order-held", "return", "return-held-1").status_code == 409
    assert post(client, auth, "order-held", "commit", "commit-held-1").status_code == 200


def test_a_released_reservation_cannot_be_returned(client: Any, auth: Auth,
                                                   seeded: dict[str, Any]) -> None:
    held = seeded["held_product"]["id"]
    assert post(client, auth, "order-held", "release", "release-held-1").status_code == 200
    answer = post(client, auth, "order-held", "return", "return-held-1")
    assert answer.status_code == 409 and slug(answer) == "invalid-reservation-state"
    assert stock_of(client, auth, held) == (10, 0, 10)


def test_a_returned_reservation_is_final(client: Any, auth: Auth,
                                         committed: dict[str, Any]) -> None:
    assert post(client, auth, "order-held", "return", "return-held-1").status_code == 200
    for action in ("commit", "release"):
        answer = post(client, auth, "order-held", action, f"{action}-after-return")
        assert answer.status_code == 409 and slug(answer) == "invalid-reservation-state"
        assert "returned" in answer.json()["detail"]
    assert stock_of(client, auth, committed["held_product"]["id"]) == (10, 0, 10)


def test_unknown_reservation_is_404(client: Any, auth: Auth, seeded: dict[str, Any]) -> None:
    answer = post(client, auth, "order-nobody", "return", "return-nobody-1")
    assert answer.status_code == 404 and slug(answer) == "not-found"


def test_a_key_cannot_be_reused_for_another_order(client: Any, auth: Auth,
                                                  committed: dict[str, Any]) -> None:
    assert post(client, auth, "order-held", "return", "return-key-1").status_code == 200
    answer = post(client, auth, "order-other", "return", "return-key-1")
    assert answer.status_code in (409, 422) and slug(answer) == "idempotency-key-reused"


def test_the_key_is_required(client: Any, auth: Auth, committed: dict[str, Any]) -> None:
    answer = client.post("/v1/reservations/order-held/return", headers=auth())
    assert answer.status_code == 400
    assert stock_of(client, auth, committed["held_product"]["id"]) == (8, 0, 8)


# --- the outbox ----------------------------------------------------------------------


def test_return_writes_stock_changed_with_reason_return(client: Any, auth: Auth, db: Database,
                                                        committed: dict[str, Any]) -> None:
    held = committed["held_product"]["id"]
    before = len(stock_changes(db))
    assert post(client, auth, "order-held", "return", "return-held-1").status_code == 200
    assert stock_changes(db)[before:] == [
        {"product_id": held, "on_hand": 10, "reserved": 0, "available": 10, "reason": "return"}]


def test_a_refused_return_writes_nothing(client: Any, auth: Auth, db: Database,
                                         seeded: dict[str, Any]) -> None:
    before = stock_changes(db)
    assert post(client, auth, "order-held", "return", "return-held-1").status_code == 409
    assert post(client, auth, "order-nobody", "return", "return-nobody-1").status_code == 404
    assert stock_changes(db) == before


def test_a_positive_adjustment_is_never_a_return(client: Any, auth: Auth, db: Database,
                                                 seeded: dict[str, Any]) -> None:
    """The keyed return replaced the free-text mapping: the text ``return`` is just text."""
    p = seeded["product"]["id"]
    answer = client.post(f"/v1/products/{p}/stock/adjustments",
                         json={"delta": 3, "reason": "return"}, headers=auth())
    assert answer.status_code == 200, answer.text
    assert stock_changes(db)[-1]["reason"] == "adjust"
    assert stock_changes(db, "return") == []


# --- concurrency, on SQLite and PostgreSQL -------------------------------------------


@pytest.fixture
def any_db(any_database_url: str, migrated_db: Callable[[str, str], Database]) -> Database:
    return migrated_db("catalog", any_database_url)


def committed_order(db: Database) -> tuple[CatalogService, int]:
    service = catalog_service(db, TTLCache())
    seeded = seed_small(service)
    service.commit_reservation("race-commit", "order-held")
    return service, seeded["held_product"]["id"]


def test_concurrent_returns_put_the_stock_back_once(any_db: Database) -> None:
    service, held = committed_order(any_db)
    results = run_threads(12, lambda i: service.return_reservation(
        f"race-return-{i:04d}", "order-held"))
    errors = [r for r in results if isinstance(r, BaseException)]
    assert not errors, errors  # distinct keys: each waits for the row lock, then sees it
    assert {str(r.body.status) for r in results} == {"returned"}
    level = service.get_stock(held)
    assert (level.on_hand, level.reserved) == (10, 0)
    assert len(stock_changes(any_db, "return")) == 1


def test_concurrent_replays_of_one_key_act_once(any_db: Database) -> None:
    service, held = committed_order(any_db)
    results = run_threads(8, lambda i: service.return_reservation("race-one-key", "order-held"))
    done = [r for r in results if not isinstance(r, BaseException)]
    errors = [r for r in results if isinstance(r, BaseException)]
    # A call that meets the first one still running is told so (409 request-in-progress).
    assert all(isinstance(e, Conflict) for e in errors), errors
    assert done and sum(1 for r in done if not r.replayed) <= 1
    assert {str(r.body.status) for r in done} == {"returned"}
    level = service.get_stock(held)
    assert (level.on_hand, level.reserved) == (10, 0)
    assert len(stock_changes(any_db, "return")) == 1


# --- domain ---------------------------------------------------------------------------


def test_domain_moves_only_committed_to_returned() -> None:
    lines = [ReservationLine(1, 2)]
    committed = Reservation("o-1", lines, ReservationStatus.COMMITTED)
    assert committed.return_stock() is True and committed.status == ReservationStatus.RETURNED
    assert committed.return_stock() is False  # already returned
    for status in (ReservationStatus.HELD, ReservationStatus.RELEASED):
        with pytest.raises(domain.InvalidTransition, match=f"cannot return .* it is {status}"):
            Reservation("o-2", lines, status).return_stock()
    returned = Reservation("o-3", lines, ReservationStatus.RETURNED)
    for move in (returned.commit, returned.release):
        with pytest.raises(domain.InvalidTransition):
            move()


def test_domain_take_back_raises_on_hand_only() -> None:
    level = StockLevel(1, on_hand=4, reserved=1)
    domain.return_all({1: level}, [ReservationLine(1, 3)])
    assert (level.on_hand, level.reserved, level.available) == (7, 1, 6)
    with pytest.raises(domain.InvalidQuantity):
        level.take_back(0)
    full = StockLevel(2, on_hand=domain.MAX_ON_HAND)
    with pytest.raises(domain.InvalidQuantity):
        full.take_back(1)
    assert full.on_hand == domain.MAX_ON_HAND
