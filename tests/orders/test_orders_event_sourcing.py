"""Orders are event-sourced: the stream is the truth, the read model a projection that a
rebuild reproduces, a stale writer gets a conflict, events carry no personal data, what
other services hear goes through the outbox in the same transaction, and orders stored
before event sourcing move onto streams by migration."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from orders_fakes import (
    InMemoryCart,
    InMemoryCatalog,
    InMemoryPayments,
)
from orders_support import cancel, confirm, payment_for, place
from sqlalchemy import select, text

from charter import migrations
from charter.db import Database
from charter.eventstore import ProjectionRunner
from charter.messaging.envelope import Envelope
from charter.testing import TokenFactory
from charter.unit_of_work import WriteConflict
from services.orders.app import create_app
from services.orders.domain import Order, OrderLine, OrderStatus, RejectionCode
from services.orders.store import (
    OrdersProjection,
    SqlOrderRepository,
    event_store,
    event_tables,
    order_lines,
    orders,
    outbox,
)
from tests.support.databases import migrations_dir
from tests.support.plugin import bearer

T0 = datetime(2026, 12, 6, 10, 0, tzinfo=UTC)
EMAIL = "alice.private@example.com"


@pytest.fixture
def any_db(any_database_url: str, migrated_db: Callable[[str, str], Database]) -> Database:
    return migrated_db("orders", any_database_url)


def read_model(db: Database) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    with db.session() as s:
        rows = [dict(r) for r in s.execute(select(orders).order_by(orders.c.id)).mappings()]
        lines = [dict(r) for r in s.execute(
            select(order_lines).order_by(order_lines.c.order_id, order_lines.c.position)
        ).mappings()]
    return rows, lines


def busy_platform(db: Database, tokens: TokenFactory) -> dict[str, str]:
    """Orders in every state through the API; returns their ids by state."""
    catalog = InMemoryCatalog()
    catalog.put(1, price=2490, on_hand=10)
    catalog.put(2, price=590, on_hand=0)
    payments = InMemoryPayments()
    app = create_app(db=db, verifier=tokens.verifier(), catalog=catalog, cart=InMemoryCart(),
                     payments=payments)
    alice = bearer(tokens.token(sub="alice", scope="orders:read orders:write",
                                role="customer", email=EMAIL))
    items = {"items": [{"product_id": 1, "quantity": 2}]}
    ids: dict[str, str] = {}
    with app.test_client() as client:
        confirmed = place(client, alice, items).json()
        pay = payments.put(payment_for(confirmed))
        assert confirm(client, alice, confirmed["id"], pay.id).status_code == 200
        ids["confirmed"] = confirmed["id"]
        rejected = place(client, alice, {"items": [{"product_id": 2, "quantity": 1}]})
        assert rejected.status_code == 409  # out of stock: a rejected order, stored too
        cancelled = place(client, alice, items).json()
        assert cancel(client, alice, cancelled["id"]).json()["status"] == "cancelled"
        ids["cancelled"] = cancelled["id"]
        ids["reserved"] = place(client, alice, items).json()["id"]
    return ids


def test_the_read_model_is_rebuilt_from_the_events_alone(
        any_db: Database, tokens: TokenFactory) -> None:
    busy_platform(any_db, tokens)
    before = read_model(any_db)
    assert len(before[0]) == 4
    runner = ProjectionRunner(event_store, event_tables)
    with any_db.session() as s:  # the inline updates kept the checkpoint current
        assert runner.lag(s, OrdersProjection()) == 0
    with any_db.write() as s:  # tamper: the rebuild must not depend on what is there
        s.execute(orders.update().values(status="pending", payment_status=None))
        s.execute(order_lines.delete().where(order_lines.c.position == 1))
    assert read_model(any_db) != before
    applied = runner.rebuild(any_db, OrdersProjection())
    with any_db.session() as s:
        stored = len(event_store.read_all(s, 0, 10_000))
    assert applied == stored > 4
    assert read_model(any_db) == before


def test_the_state_is_the_replay_of_the_stream(any_db: Database, tokens: TokenFactory) -> None:
    ids = busy_platform(any_db, tokens)
    with any_db.session() as s:
        repo = SqlOrderRepository(s)
        for order_id in (ids["confirmed"], ids["cancelled"], ids["reserved"]):
            stream = event_store.load(s, order_id)
            order = repo.get(order_id)
            assert order is not None and order.version == len(stream) == order.stored_version
            row = s.execute(select(orders).where(orders.c.id == order_id)).mappings().one()
            assert row["status"] == order.status.value
            assert row["updated_at"] == order.updated_at
        confirmed = event_store.load(s, ids["confirmed"])
    assert [e.type for e in confirmed][:2] == ["OrderPlaced", "StockReserved"]
    assert [e.type for e in confirmed][-3:] == ["StockCommitted", "PaymentCaptured",
                                                 "OrderConfirmed"]
    assert all(e.metadata.correlation_id for e in confirmed)  # from the requests


def test_a_stale_writer_gets_a_conflict_not_a_lost_update(any_db: Database) -> None:
    lines = [OrderLine(1, "S1", "One", 100, "EUR", 1)]
    with any_db.write() as s:
        SqlOrderRepository(s).add(Order.place("o-stale", "bob", lines, "EUR", T0))
    with any_db.session() as s:
        first = SqlOrderRepository(s).get("o-stale")
    with any_db.session() as s:
        second = SqlOrderRepository(s).get("o-stale")
    assert first is not None and second is not None
    first.mark_reserved(T0 + timedelta(seconds=1))
    with any_db.write() as s:
        SqlOrderRepository(s).save(first)
    second.reject(RejectionCode.INSUFFICIENT_STOCK, "short", T0 + timedelta(seconds=2))
    with pytest.raises(WriteConflict), any_db.write() as s:
        SqlOrderRepository(s).save(second)
    with any_db.session() as s:
        again = SqlOrderRepository(s).get("o-stale")
    assert again is not None and again.status is OrderStatus.RESERVED


def test_events_carry_no_personal_data_and_the_contact_is_kept_apart(
        any_db: Database, tokens: TokenFactory) -> None:
    ids = busy_platform(any_db, tokens)
    with any_db.session() as s:
        stored = json.dumps([[e.data, e.metadata.to_json()]
                             for e in event_store.read_all(s, 0, 10_000)])
        sent = " ".join(r.body for r in outbox.pending(s, 1000))
        order = SqlOrderRepository(s).get(ids["confirmed"])
    assert "alice" in stored  # the customer id, not their address
    assert EMAIL not in stored and EMAIL not in sent
    assert order is not None and order.customer_email == EMAIL


def test_what_others_hear_goes_through_the_outbox_with_the_events(
        any_db: Database, tokens: TokenFactory) -> None:
    ids = busy_platform(any_db, tokens)
    with any_db.session() as s:
        published = [r.envelope() for r in outbox.pending(s, 1000)]
    kinds = sorted((e.type, e.data["order_id"]) for e in published)
    assert kinds == sorted([("OrderConfirmed", ids["confirmed"]),
                            ("OrderCancelled", ids["cancelled"])])
    confirmed = next(e for e in published if e.type == "OrderConfirmed")
    assert isinstance(confirmed, Envelope) and confirmed.routing_key == "orders.OrderConfirmed"
    assert confirmed.data["total"] == {"amount_minor": 4980, "currency": "EUR"}
    assert confirmed.correlation_id and confirmed.saga_id == ids["confirmed"]
    # the outbox row and the event commit together: a failed write leaves neither
    with any_db.session() as s:
        order = SqlOrderRepository(s).get(ids["reserved"])
    assert order is not None
    order.cancel(T0)
    with pytest.raises(RuntimeError), any_db.write() as s:
        SqlOrderRepository(s).save(order)
        raise RuntimeError("crash before commit")
    with any_db.session() as s:
        assert len(outbox.pending(s, 1000)) == 2
        kept = SqlOrderRepository(s).get(ids["reserved"])
        assert kept is not None and kept.status is OrderStatus.RESERVED


def test_orders_stored_before_event_sourcing_move_onto_streams(
        any_database_url: str, migrated_db: Callable[[str, str], Database]) -> None:
    """A database at orders_0003 with orders in it: upgrading gives each one stream whose
    replay is the row, and the e-mail moves to the contacts table."""
    db = migrated_db("orders", any_database_url)
    config = migrations.alembic_config("orders", migrations_dir("orders"), any_database_url)
    from alembic import command

    command.downgrade(config, "orders_0003")
    with db.engine.begin() as conn:
        conn.execute(text(
            "INSERT INTO orders (id, customer_id, customer_email, status, source, currency, "
            "total, payment_id, payment_status, loyalty_status, notification_status, "
            "created_at, updated_at) VALUES ('o-legacy', 'carol', 'carol@example.com', "
            "'confirmed', 'items', 'EUR', 300, 'pay_1', 'captured', 'done', 'pending', "
            ":c, :u)"), {"c": T0, "u": T0 + timedelta(minutes=5)})
        conn.execute(text(
            "INSERT INTO order_lines (order_id, product_id, position, sku, name, unit_price, "
            "currency, quantity) VALUES ('o-legacy', 7, 1, 'S7', 'Seven', 150, 'EUR', 2)"))
    command.upgrade(config, "head")
    with db.session() as s:
        order = SqlOrderRepository(s).get("o-legacy")
        stream = event_store.load(s, "o-legacy")
        trail = SqlOrderRepository(s).events("o-legacy", 0, 10)
    assert [e.type for e in stream] == ["OrderImported"]
    assert "carol@example.com" not in json.dumps(stream[0].data)
    assert order is not None
    assert (order.status, order.payment_status, order.total, order.customer_email) == (
        OrderStatus.CONFIRMED, "captured", 300, "carol@example.com")
    assert order.created_at == T0 and order.updated_at == T0 + timedelta(minutes=5)
    assert [ln.product_id for ln in order.lines] == [7]
    assert [(e.type, e.data["status"]) for e in trail] == [("order.imported", "confirmed")]


def test_charter_projections_rebuild_orders(tmp_path: Path, tokens: TokenFactory,
                                            migrated_db: Callable[[str, str], Database]
                                            ) -> None:
    url = f"sqlite:///{tmp_path / 'orders.db'}"
    db = migrated_db("orders", url)
    busy_platform(db, tokens)
    before = read_model(db)
    with db.write() as s:
        s.execute(order_lines.delete())
        s.execute(orders.delete())
    done = subprocess.run(
        [sys.executable, "-m", "charterctl.cli", "projections", "rebuild", "orders"],
        env={"PATH": "/usr/bin:/bin", "ORDERS_DATABASE_URL": url,
             "CHARTER_ENV": "development", "CHARTER_VAR_DIR": str(tmp_path)},
        capture_output=True, text=True, timeout=60, cwd=Path(__file__).resolve().parents[2])
    assert done.returncode == 0, done.stdout + done.stderr
    assert "orders: orders rebuilt" in done.stdout
    assert read_model(db) == before
