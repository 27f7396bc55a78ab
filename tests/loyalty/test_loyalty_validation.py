"""Bad input is answered 400 problem+json by the spec's validation, never 500."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from tests.support.plugin import PROBLEM, assert_problem

Auth = Callable[..., dict[str, str]]

GOOD_AWARD = {"customer_id": "alice", "order_id": "ord-1", "amount": 1000, "currency": "EUR"}

BAD_AWARDS: dict[str, Any] = {
    "points_and_amount": {**GOOD_AWARD, "points": 5},
    "amount_without_currency": {"customer_id": "alice", "order_id": "o", "amount": 1000},
    "currency_without_amount": {"customer_id": "alice", "order_id": "o", "currency": "EUR"},
    "neither": {"customer_id": "alice", "order_id": "o"},
    "points_zero": {"customer_id": "alice", "order_id": "o", "points": 0},
    "points_negative": {"customer_id": "alice", "order_id": "o", "points": -5},
    "points_huge": {"customer_id": "alice", "order_id": "o", "points": 10**12},
    "points_float": {"customer_id": "alice", "order_id": "o", "points": 1.5},
    "points_string": {"customer_id": "alice", "order_id": "o", "points": "5"},
    "amount_negative": {**GOOD_AWARD, "amount": -1},
    "amount_huge": {**GOOD_AWARD, "amount": 10**40},
    "currency_lower": {**GOOD_AWARD, "currency": "eur"},
    "currency_long": {**GOOD_AWARD, "currency": "EURO"},
    "customer_missing": {"order_id": "o", "points": 5},
    "customer_empty": {**GOOD_AWARD, "customer_id": ""},
    "customer_spaces": {**GOOD_AWARD, "customer_id": "a b"},
    "customer_too_long": {**GOOD_AWARD, "customer_id": "x" * 129},
    "order_missing": {"customer_id": "alice", "points": 5},
    "order_bad_chars": {**GOOD_AWARD, "order_id": "ord/1"},
    "order_too_long": {**GOOD_AWARD, "order_id": "o" * 65},
    "unknown_field": {**GOOD_AWARD, "bonus": True},
    "oversize": {**GOOD_AWARD, "note": "x" * 1_000_000},
    "array": [GOOD_AWARD],
    "string": "award",
    "null": None,
}

BAD_REDEMPTIONS: dict[str, Any] = {
    "points_zero": {"order_id": "o", "points": 0},
    "points_negative": {"order_id": "o", "points": -1},
    "points_missing": {"order_id": "o"},
    "points_bool": {"order_id": "o", "points": True},
    "order_missing": {"points": 5},
    "customer_bad": {"order_id": "o", "points": 5, "customer_id": "<script>"},
    "unknown_field": {"order_id": "o", "points": 5, "balance": 1000},
    "empty": {},
}


def raw_post(client: Any, path: str, body: Any, headers: dict[str, str]) -> Any:
    return client.post(path, content=json.dumps(body),
                       headers={**headers, "Content-Type": "application/json"})


@pytest.mark.parametrize("body", list(BAD_AWARDS.values()), ids=list(BAD_AWARDS))
def test_bad_award_is_400(client: Any, auth: Auth, service_auth: Any, body: Any) -> None:
    assert_problem(raw_post(client, "/v1/awards", body, service_auth), 400)
    assert client.get("/v1/history", headers=auth()).json()["total"] == 0


@pytest.mark.parametrize("body", list(BAD_REDEMPTIONS.values()), ids=list(BAD_REDEMPTIONS))
def test_bad_redemption_is_400(client: Any, auth: Auth, award: Any, body: Any) -> None:
    award("alice", "ord-1", points=100)
    assert_problem(raw_post(client, "/v1/redemptions", body, auth()), 400)
    assert client.get("/v1/balance", headers=auth()).json()["balance"] == 100


def test_unknown_currency_code_shape_is_fine_but_nonsense_is_400(
    client: Any, service_auth: Any
) -> None:
    # any three capital letters is a currency code (2 decimals unless known otherwise)
    r = client.post("/v1/awards", json={**GOOD_AWARD, "currency": "XYZ"}, headers=service_auth)
    assert r.status_code == 201 and r.json()["points"] == 10


@pytest.mark.parametrize("path", [
    "/v1/customers/a%20b/balance", "/v1/customers/" + "x" * 129 + "/history",
    "/v1/awards/bad%2Fid", "/v1/redemptions/" + "o" * 65,
    "/v1/history?page=0", "/v1/history?page_size=101", "/v1/history?type=bonus",
    "/v1/customers/alice/history?page=abc",
])
def test_bad_path_or_query_is_400_or_404_problem(client: Any, auth: Any, path: str) -> None:
    r = client.get(path, headers=auth("carol", role="staff"))
    assert r.status_code in (400, 404), r.text
    assert r.headers["content-type"].startswith(PROBLEM)
    if "?" in path or "%20" in path or "x" * 129 in path or "o" * 65 in path:
        assert r.status_code == 400, r.text


def test_malformed_json_and_wrong_content_type(client: Any, service_auth: Any) -> None:
    r = client.post("/v1/awards", content=b'{"customer_id": ',
                    headers={**service_auth, "Content-Type": "application/json"})
    assert_problem(r, 400)
    r = client.post("/v1/awards", content=b"customer_id=alice",
                    headers={**service_auth, "Content-Type": "application/x-www-form-urlencoded"})
    assert r.status_code in (400, 415) and r.headers["content-type"].startswith(PROBLEM)


def test_unknown_path_and_method_are_problems(client: Any, auth: Any) -> None:
    r = client.get("/v1/points", headers=auth())
    assert r.status_code == 404 and r.headers["content-type"].startswith(PROBLEM)
    r = client.delete("/v1/balance", headers=auth())
    assert r.status_code == 405 and r.headers["content-type"].startswith(PROBLEM)
