"""Every loyalty operation over HTTP: balances, history, awards, redemptions, reversals."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from charter.db import Database
from services.loyalty.app import create_app, loyalty_service
from tests.support.plugin import assert_problem

Auth = Callable[..., dict[str, str]]
Award = Callable[..., Any]


def balance(client: Any, auth: Auth, sub: str = "alice") -> int:
    r = client.get("/v1/balance", headers=auth(sub))
    assert r.status_code == 200, r.text
    return int(r.json()["balance"])


def redeem(client: Any, auth: Auth, order_id: str, points: int, sub: str = "alice",
           **fields: Any) -> Any:
    return client.post("/v1/redemptions", json={"order_id": order_id, "points": points,
                                                **fields}, headers=auth(sub))


# balance -------------------------------------------------------------------------------
def test_a_new_customer_has_zero_points(client: Any, auth: Auth) -> None:
    r = client.get("/v1/balance", headers=auth("newbie"))
    assert r.status_code == 200
    assert r.json() == {"customer_id": "newbie", "balance": 0, "updated_at": None}
    r = client.get("/v1/history", headers=auth("newbie"))
    assert r.json() == {"items": [], "page": 1, "page_size": 20, "total": 0}


# awards --------------------------------------------------------------------------------
def test_award_from_amount(client: Any, auth: Auth, award: Award) -> None:
    r = award("alice", "ord-1", amount=12990, currency="EUR")
    assert r.status_code == 201, r.text
    assert r.headers["location"] == "/v1/awards/ord-1"
    assert "idempotent-replayed" not in r.headers
    body = r.json()
    assert body == {
        "order_id": "ord-1", "customer_id": "alice", "status": "awarded", "points": 129,
        "amount": 12990, "currency": "EUR", "balance_after": 129,
        "created_at": body["created_at"], "reversal": None,
    }
    assert body["created_at"].endswith("Z")
    assert balance(client, auth) == 129


def test_award_explicit_points(client: Any, auth: Auth, award: Award) -> None:
    r = award("alice", "ord-1", points=50)
    assert r.status_code == 201, r.text
    assert (r.json()["points"], r.json()["amount"], r.json()["currency"]) == (50, None, None)
    assert balance(client, auth) == 50


def test_award_is_idempotent_by_order_id(client: Any, auth: Auth, award: Award) -> None:
    first = award("alice", "ord-1", amount=5000, currency="EUR")
    assert first.status_code == 201
    for _ in range(3):
        again = award("alice", "ord-1", amount=5000, currency="EUR")
        assert again.status_code == 200, again.text
        assert again.headers["idempotent-replayed"] == "true"
        assert again.json() == first.json()
    assert balance(client, auth) == 50
    assert client.get("/v1/history", headers=auth()).json()["total"] == 1


@pytest.mark.parametrize("changed", [
    {"customer_id": "alice", "amount": 5001, "currency": "EUR"},
    {"customer_id": "alice", "amount": 5000, "currency": "USD"},
    {"customer_id": "alice", "points": 50},
    {"customer_id": "bob", "amount": 5000, "currency": "EUR"},
])
def test_a_different_award_for_the_same_order_is_409(
    client: Any, auth: Auth, award: Award, changed: dict[str, Any]
) -> None:
    assert award("alice", "ord-1", amount=5000, currency="EUR").status_code == 201
    customer = changed.pop("customer_id")
    assert_problem(award(customer, "ord-1", **changed), 409)
    assert balance(client, auth) == 50
    assert balance(client, auth, "bob") == 0


def test_points_per_unit_is_configurable(db: Database, tokens: Any, service_auth: Any,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOYALTY_POINTS_PER_UNIT", "5")
    app = create_app(db=db, verifier=tokens.verifier())
    with app.test_client() as c:
        r = c.post("/v1/awards", json={"customer_id": "alice", "order_id": "o",
                                       "amount": 1999, "currency": "EUR"}, headers=service_auth)
        assert r.json()["points"] == 95


def test_zero_point_award_is_recorded(client: Any, auth: Auth, award: Award) -> None:
    r = award("alice", "ord-cheap", amount=99, currency="EUR")
    assert r.status_code == 201 and r.json()["points"] == 0
    assert award("alice", "ord-cheap", amount=99, currency="EUR").status_code == 200


def test_customers_and_plain_clients_cannot_award(client: Any, auth: Auth, tokens: Any) -> None:
    body = {"customer_id": "alice", "order_id": "ord-1", "points": 1000}
    no_role = {"Authorization": "Bearer " + tokens.token(sub="demo-cli", scope="loyalty:write")}
    for headers in (auth("alice"), no_role):
        assert_problem(client.post("/v1/awards", json=body, headers=headers), 403)
    assert balance(client, auth) == 0


@pytest.mark.parametrize("role", ["staff", "admin", "service"])
def test_privileged_roles_may_award(client: Any, auth: Auth, role: str) -> None:
    body = {"customer_id": "alice", "order_id": f"ord-{role}", "points": 10}
    r = client.post("/v1/awards", json=body, headers=auth("someone", role=role))
    assert r.status_code == 201, r.text


def test_get_award_and_ownership(client: Any, auth: Auth, award: Award) -> None:
    created = award("alice", "ord-1", points=10).json()
    assert client.get("/v1/awards/ord-1", headers=auth("alice")).json() == created
    assert client.get("/v1/awards/ord-1", headers=auth("carol", role="staff")).json() == created
    assert_problem(client.get("/v1/awards/ord-1", headers=auth("bob")), 404)
    assert_problem(client.get("/v1/awards/ord-unknown", headers=auth("alice")), 404)


# award reversal --------------------------------------------------------------------------
def test_reverse_award(client: Any, auth: Auth, award: Award, service_auth: Any) -> None:
    award("alice", "ord-1", points=100)
    award("alice", "ord-2", points=20)
    r = client.post("/v1/awards/ord-1/reversal", headers=service_auth)
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["status"] == "reversed"
    assert body["reversal"]["points"] == 100 and body["reversal"]["shortfall"] == 0
    assert body["reversal"]["balance_after"] == 20
    assert balance(client, auth) == 20
    again = client.post("/v1/awards/ord-1/reversal", headers=service_auth)
    assert again.status_code == 200 and again.headers["idempotent-replayed"] == "true"
    assert again.json() == body
    assert balance(client, auth) == 20
    assert client.get("/v1/awards/ord-1", headers=auth()).json() == body
    # the original award, repeated, still answers with the (now reversed) award
    replay = award("alice", "ord-1", points=100)
    assert replay.status_code == 200 and replay.json()["status"] == "reversed"
    assert balance(client, auth) == 20


def test_reverse_award_of_spent_points_has_a_shortfall(
    client: Any, auth: Auth, award: Award, service_auth: Any
) -> None:
    award("alice", "ord-1", points=100)
    assert redeem(client, auth, "ord-2", 70).status_code == 201
    r = client.post("/v1/awards/ord-1/reversal", headers=service_auth)
    assert r.status_code == 201
    assert r.json()["reversal"] == {**r.json()["reversal"], "points": 30, "shortfall": 70,
                                    "balance_after": 0}
    assert balance(client, auth) == 0
    entry = client.get("/v1/history?type=award_reversal", headers=auth()).json()["items"][0]
    assert (entry["points"], entry["shortfall"], entry["balance_after"]) == (-30, 70, 0)


def test_reverse_award_unknown_order_is_404(client: Any, service_auth: Any) -> None:
    assert_problem(client.post("/v1/awards/ord-none/reversal", headers=service_auth), 404)


def test_customers_cannot_reverse(client: Any, auth: Auth, award: Award) -> None:
    award("alice", "ord-1", points=100)
    assert redeem(client, auth, "ord-2", 10).status_code == 201
    assert_problem(client.post("/v1/awards/ord-1/reversal", headers=auth()), 403)
    assert_problem(client.post("/v1/redemptions/ord-2/reversal", headers=auth()), 403)
    assert balance(client, auth) == 90


# redemptions -----------------------------------------------------------------------------
def test_redeem_and_replay(client: Any, auth: Auth, award: Award) -> None:
    award("alice", "ord-1", points=100)
    r = redeem(client, auth, "ord-2", 40)
    assert r.status_code == 201, r.text
    assert r.headers["location"] == "/v1/redemptions/ord-2"
    body = r.json()
    assert body == {"order_id": "ord-2", "customer_id": "alice", "status": "redeemed",
                    "points": 40, "balance_after": 60, "created_at": body["created_at"],
                    "reversal": None}
    again = redeem(client, auth, "ord-2", 40)
    assert again.status_code == 200 and again.json() == body
    assert again.headers["idempotent-replayed"] == "true"
    assert balance(client, auth) == 60
    assert_problem(redeem(client, auth, "ord-2", 41), 409)
    assert balance(client, auth) == 60


def test_redeem_more_than_the_balance_is_422(client: Any, auth: Auth, award: Award) -> None:
    award("alice", "ord-1", points=100)
    problem = assert_problem(redeem(client, auth, "ord-2", 101), 422)
    assert (problem["balance"], problem["requested"]) == (100, 101)
    assert balance(client, auth) == 100
    assert redeem(client, auth, "ord-2", 100).status_code == 201  # nothing was stored
    assert balance(client, auth) == 0
    assert_problem(redeem(client, auth, "ord-3", 1), 422)


def test_redemption_for_another_customer(client: Any, auth: Auth, award: Award) -> None:
    award("alice", "ord-1", points=100)
    # a customer naming someone else: 403; naming themselves: fine
    assert_problem(redeem(client, auth, "ord-2", 10, sub="bob", customer_id="alice"), 403)
    assert redeem(client, auth, "ord-2", 10, customer_id="alice").status_code == 201
    # staff and services redeem on a customer's behalf and must say whose points
    r = client.post("/v1/redemptions", json={"order_id": "ord-3", "points": 5},
                    headers=auth("orders", role="service"))
    assert_problem(r, 422)  # well-formed, but this caller must name the customer
    r = client.post("/v1/redemptions", json={"order_id": "ord-3", "points": 5,
                                             "customer_id": "alice"},
                    headers=auth("orders", role="service"))
    assert r.status_code == 201 and r.json()["customer_id"] == "alice"
    assert balance(client, auth) == 85
    # the same order id redeemed by another customer is that customer's own redemption
    award("bob", "ord-b", points=100)
    assert redeem(client, auth, "ord-3", 5, sub="bob").status_code == 201
    assert balance(client, auth, "bob") == 95
    assert balance(client, auth) == 85


def _shape(response: Any) -> tuple[Any, ...]:
    """What a caller can observe of an answer, its own ids and timestamps aside."""
    body = response.json()
    for volatile in ("order_id", "customer_id", "created_at", "detail"):
        body.pop(volatile, None)
    return (response.status_code, response.headers.get("idempotent-replayed"),
            response.headers["content-type"].split(";")[0], body)


def test_another_customers_order_id_answers_like_a_fresh_one(
    client: Any, auth: Auth, award: Award
) -> None:
    """Nothing a customer sends reveals whether another customer used an order id."""
    award("alice", "ord-a", points=100)
    for order_id in ("ord-u1", "ord-u2", "ord-u3"):  # alice's order ids
        assert redeem(client, auth, order_id, 10).status_code == 201
    award("bob", "ord-b", points=100)
    award("carol", "ord-c", points=100)
    # bob on alice's ids, carol on fresh ones (same balances): identical answers, with
    # the same points as alice's redemption and with different ones
    for order_id, points in (("ord-u1", 10), ("ord-u2", 7)):
        used = redeem(client, auth, order_id, points, sub="bob")
        fresh = redeem(client, auth, f"ord-fresh-{points}", points, sub="carol")
        assert used.status_code == 201, used.text
        assert _shape(used) == _shape(fresh)
    # too many points: the same 422 for a used id and a fresh one
    used = redeem(client, auth, "ord-u3", 1000, sub="bob")
    fresh = redeem(client, auth, "ord-never", 1000, sub="bob")
    assert used.status_code == 422 and _shape(used) == _shape(fresh)
    # reading someone else's redemption: the same 404 as one that never existed
    other = client.get("/v1/redemptions/ord-u3", headers=auth("bob"))
    missing = client.get("/v1/redemptions/ord-none", headers=auth("bob"))
    assert other.status_code == 404 and _shape(other) == _shape(missing)
    # bob's redemptions only ever touched bob's points, alice's stay hers
    mine = client.get("/v1/redemptions/ord-u1", headers=auth()).json()
    assert (mine["customer_id"], mine["points"], mine["balance_after"]) == ("alice", 10, 90)
    assert client.get("/v1/redemptions/ord-u2", headers=auth("bob")).json()["points"] == 7
    assert balance(client, auth) == 70
    assert balance(client, auth, "bob") == 100 - 10 - 7


def test_staff_name_the_customer_of_a_shared_order_id(
    client: Any, auth: Auth, award: Award, service_auth: Any
) -> None:
    award("alice", "ord-a", points=100)
    award("bob", "ord-b", points=100)
    assert redeem(client, auth, "ord-1", 10).status_code == 201
    staff = auth("carol", role="staff")
    only = client.get("/v1/redemptions/ord-1", headers=staff)
    assert only.status_code == 200 and only.json()["customer_id"] == "alice"
    assert redeem(client, auth, "ord-1", 20, sub="bob").status_code == 201
    assert_problem(client.get("/v1/redemptions/ord-1", headers=staff), 409)
    assert_problem(client.post("/v1/redemptions/ord-1/reversal", headers=service_auth), 409)
    r = client.get("/v1/redemptions/ord-1?customer_id=bob", headers=staff)
    assert (r.json()["customer_id"], r.json()["points"]) == ("bob", 20)
    r = client.post("/v1/redemptions/ord-1/reversal?customer_id=bob", headers=service_auth)
    assert r.status_code == 201 and r.json()["customer_id"] == "bob"
    assert r.headers["location"] == "/v1/redemptions/ord-1?customer_id=bob"
    assert (balance(client, auth), balance(client, auth, "bob")) == (90, 100)
    # a customer naming someone else's customer_id is refused whatever exists
    assert_problem(client.get("/v1/redemptions/ord-1?customer_id=alice",
                              headers=auth("bob")), 403)
    assert_problem(client.get("/v1/redemptions/ord-zzz?customer_id=alice",
                              headers=auth("bob")), 403)


def test_get_redemption_and_ownership(client: Any, auth: Auth, award: Award) -> None:
    award("alice", "ord-1", points=100)
    created = redeem(client, auth, "ord-2", 10).json()
    assert client.get("/v1/redemptions/ord-2", headers=auth()).json() == created
    assert_problem(client.get("/v1/redemptions/ord-2", headers=auth("bob")), 404)
    assert_problem(client.get("/v1/redemptions/ord-9", headers=auth()), 404)
    staff = client.get("/v1/redemptions/ord-2", headers=auth("carol", role="staff"))
    assert staff.json() == created


def test_reverse_redemption(client: Any, auth: Auth, award: Award, service_auth: Any) -> None:
    award("alice", "ord-1", points=100)
    redeem(client, auth, "ord-2", 30)
    r = client.post("/v1/redemptions/ord-2/reversal", headers=service_auth)
    assert r.status_code == 201, r.text
    assert r.json()["status"] == "reversed"
    assert r.json()["reversal"] == {**r.json()["reversal"], "points": 30, "balance_after": 100}
    again = client.post("/v1/redemptions/ord-2/reversal", headers=service_auth)
    assert again.status_code == 200 and again.json() == r.json()
    assert balance(client, auth) == 100
    # the redemption itself is not repeated by a replay after its reversal
    replay = redeem(client, auth, "ord-2", 30)
    assert replay.status_code == 200 and replay.json()["status"] == "reversed"
    assert balance(client, auth) == 100
    assert_problem(client.post("/v1/redemptions/ord-x/reversal", headers=service_auth), 404)


# history -----------------------------------------------------------------------------------
def test_history_newest_first_paginated_and_filtered(
    client: Any, auth: Auth, award: Award, service_auth: Any
) -> None:
    for i in range(5):
        award("alice", f"ord-{i}", points=10 * (i + 1))
    redeem(client, auth, "ord-r", 25)
    client.post("/v1/awards/ord-0/reversal", headers=service_auth)
    award("bob", "ord-bob", points=7)
    page = client.get("/v1/history?page=1&page_size=3", headers=auth()).json()
    assert (page["page"], page["page_size"], page["total"]) == (1, 3, 7)
    assert [e["type"] for e in page["items"]] == ["award_reversal", "redemption", "award"]
    assert [e["balance_after"] for e in page["items"]] == [115, 125, 150]
    assert page["items"][1]["points"] == -25
    last = client.get("/v1/history?page=3&page_size=3", headers=auth()).json()
    assert [e["order_id"] for e in last["items"]] == ["ord-0"]
    awards = client.get("/v1/history?type=award", headers=auth()).json()
    assert awards["total"] == 5 and {e["type"] for e in awards["items"]} == {"award"}
    first = awards["items"][-1]
    assert set(first) == {"id", "customer_id", "type", "points", "order_id", "amount",
                          "currency", "balance_after", "created_at"}
    assert client.get("/v1/history", headers=auth("bob")).json()["total"] == 1


def test_customer_paths(client: Any, auth: Auth, award: Award) -> None:
    award("alice", "ord-1", points=10)
    # own id: allowed; someone else's: 403; staff and services: anyone's
    assert client.get("/v1/customers/alice/balance", headers=auth()).json()["balance"] == 10
    assert client.get("/v1/customers/alice/history", headers=auth()).json()["total"] == 1
    assert_problem(client.get("/v1/customers/alice/balance", headers=auth("bob")), 403)
    assert_problem(client.get("/v1/customers/alice/history", headers=auth("bob")), 403)
    assert_problem(client.get("/v1/customers/alice/balance",
                              headers=auth("bob", role="")), 403)
    for role in ("staff", "admin", "service"):
        headers = auth("x", role=role)
        assert client.get("/v1/customers/alice/balance", headers=headers).json()["balance"] == 10
        history = client.get("/v1/customers/alice/history?type=award", headers=headers)
        assert history.json()["total"] == 1


def test_ledger_and_cached_balances_agree(db: Database, client: Any, auth: Auth,
                                          award: Award, service_auth: Any) -> None:
    award("alice", "ord-1", points=100)
    redeem(client, auth, "ord-2", 60)
    client.post("/v1/awards/ord-1/reversal", headers=service_auth)
    client.post("/v1/redemptions/ord-2/reversal", headers=service_auth)
    award("bob", "ord-3", amount=1000, currency="EUR")
    service = loyalty_service(db, points_per_unit=1)
    assert service.inconsistent_accounts() == []
    # a cache corrupted behind the service's back is detected
    with db.engine.begin() as conn:
        from sqlalchemy import text

        conn.execute(text("UPDATE accounts SET balance = balance + 1 "
                          "WHERE customer_id = 'bob'"))
    assert service.inconsistent_accounts() == [("bob", 11, 10, 10)]


def test_an_award_above_the_points_limit_is_422(db: Database, tokens: Any,
                                               service_auth: Any) -> None:
    app = create_app(db=db, verifier=tokens.verifier(), points_per_unit=1000)
    with app.test_client() as c:
        body = {"customer_id": "alice", "order_id": "ord-big", "amount": 100_000_000_000,
                "currency": "EUR"}
        problem = assert_problem(c.post("/v1/awards", json=body, headers=service_auth), 422)
        assert "limited" in problem["detail"]
        assert c.get("/v1/customers/alice/balance", headers=service_auth).json()["balance"] == 0
