"""Migrations match the models (SQLite and PostgreSQL), downgrade cleanly, and the
database constraints hold even if the service layer were bypassed."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from charter.db import Database
from charter.testing import TokenFactory
from services.loyalty.app import create_app
from services.loyalty.store import metadata
from tests.support.plugin import bearer
from tests.support.schema import assert_migrations_match_models

TABLES = {"accounts", "ledger_entries", "alembic_version_loyalty"}


def test_migrations_match_models(any_database_url: str) -> None:
    assert assert_migrations_match_models("loyalty", any_database_url, metadata) >= TABLES


def test_constraints(any_database_url: str,
                     migrated_db: Callable[[str, str], Database]) -> None:
    db = migrated_db("loyalty", any_database_url)
    now = datetime.now(UTC)
    insert_entry = text(
        "INSERT INTO ledger_entries (customer_id, type, points, order_id, shortfall, "
        "balance_after, created_at) VALUES ('alice', :type, :points, :order_id, 0, "
        ":after, :now)")
    with db.engine.begin() as conn:
        conn.execute(text("INSERT INTO accounts VALUES ('alice', 5, :now, :now)"),
                     {"now": now})
        conn.execute(insert_entry, {"type": "award", "points": 5, "order_id": "o1",
                                    "after": 5, "now": now})
    bad = [
        (text("UPDATE accounts SET balance = -1"), {}),
        (insert_entry, {"type": "award", "points": 5, "order_id": "o1", "after": 10,
                        "now": now}),  # second award of one order
        (insert_entry, {"type": "bonus", "points": 5, "order_id": "o2", "after": 10,
                        "now": now}),
        (insert_entry, {"type": "redemption", "points": -10, "order_id": "o3",
                        "after": -5, "now": now}),
    ]
    for statement, params in bad:
        with pytest.raises(IntegrityError), db.engine.begin() as conn:
            conn.execute(statement, params)


@pytest.mark.postgres
def test_api_on_postgres(postgres_url: str, tokens: TokenFactory,
                         service_auth: dict[str, str],
                         migrated_db: Callable[[str, str], Database]) -> None:
    """The whole award → redeem → reverse path over HTTP with PostgreSQL underneath."""
    db = migrated_db("loyalty", postgres_url)
    app = create_app(db=db, verifier=tokens.verifier(), points_per_unit=1)
    alice = bearer(tokens.token(sub="alice", scope="loyalty:read loyalty:write",
                                role="customer"))
    with app.test_client() as c:
        body = {"customer_id": "alice", "order_id": "ord-1", "amount": 4550,
                "currency": "EUR"}
        assert c.post("/v1/awards", json=body, headers=service_auth).status_code == 201
        assert c.post("/v1/awards", json=body, headers=service_auth).status_code == 200
        r = c.post("/v1/redemptions", json={"order_id": "ord-2", "points": 40},
                   headers=alice)
        assert r.status_code == 201 and r.json()["balance_after"] == 5
        r = c.post("/v1/redemptions", json={"order_id": "ord-3", "points": 40},
                   headers=alice)
        assert r.status_code == 422
        r = c.post("/v1/redemptions/ord-2/reversal", headers=service_auth)
        assert r.status_code == 201 and r.json()["reversal"]["balance_after"] == 45
        r = c.post("/v1/awards/ord-1/reversal", headers=service_auth)
        assert r.status_code == 201 and r.json()["reversal"]["shortfall"] == 0
        assert c.get("/v1/balance", headers=alice).json()["balance"] == 0
        history = c.get("/v1/history", headers=alice).json()
        assert [e["type"] for e in history["items"]] == [
            "award_reversal", "redemption_reversal", "redemption", "award"]
