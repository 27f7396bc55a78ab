"""Bad input is answered 400 problem+json by the spec's validation, never 500."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.support.plugin import PROBLEM, assert_problem

BAD_NEW_ITEMS: dict[str, Any] = {
    "quantity_zero": {"product_id": 1, "quantity": 0},
    "quantity_negative": {"product_id": 1, "quantity": -1},
    "quantity_100": {"product_id": 1, "quantity": 100},
    "quantity_huge": {"product_id": 1, "quantity": 10**40},
    "quantity_string": {"product_id": 1, "quantity": "2"},
    "quantity_float": {"product_id": 1, "quantity": 1.5},
    "quantity_bool": {"product_id": 1, "quantity": True},
    "quantity_null": {"product_id": 1, "quantity": None},
    "quantity_missing": {"product_id": 1},
    "product_missing": {"quantity": 1},
    "product_string": {"product_id": "abc", "quantity": 1},
    "product_zero": {"product_id": 0, "quantity": 1},
    "product_too_big": {"product_id": 2**31, "quantity": 1},
    "product_object": {"product_id": {"id": 1}, "quantity": 1},
    "unknown_field": {"product_id": 1, "quantity": 1, "price": 1},
    "user_id_smuggled": {"product_id": 1, "quantity": 1, "user_id": "bob"},
    "oversize": {"product_id": 1, "quantity": 1, "note": "x" * 1_000_000},
    "array": [{"product_id": 1, "quantity": 1}],
    "string": "1",
    "null": None,
    "empty_object": {},
}

BAD_UPDATES: dict[str, Any] = {
    "zero": {"quantity": 0},
    "negative": {"quantity": -1},
    "hundred": {"quantity": 100},
    "string": {"quantity": "3"},
    "unknown_field": {"quantity": 1, "product_id": 2},
    "missing": {},
    "oversize": {"quantity": 1, "x": ["y"] * 100_000},
}


def assert_400(response: Any) -> None:
    assert_problem(response, 400)
    body = response.json()
    assert body["status"] == 400 and body["title"]


@pytest.mark.parametrize("body", list(BAD_NEW_ITEMS.values()), ids=list(BAD_NEW_ITEMS))
def test_bad_new_item_is_400(client: Any, auth: Any, body: Any) -> None:
    assert_400(client.post("/v1/cart/items", content=json.dumps(body), headers={
        **auth(), "Content-Type": "application/json",
    }))
    assert client.get("/v1/cart", headers=auth()).json()["items"] == []


@pytest.mark.parametrize("body", list(BAD_UPDATES.values()), ids=list(BAD_UPDATES))
def test_bad_quantity_update_is_400(client: Any, auth: Any, body: Any) -> None:
    assert client.post(
        "/v1/cart/items", json={"product_id": 1, "quantity": 2}, headers=auth()
    ).status_code == 201
    assert_400(client.put("/v1/cart/items/1", json=body, headers=auth()))
    assert client.get("/v1/cart", headers=auth()).json()["items"][0]["quantity"] == 2


def path_call(client: Any, auth: Any, method: str, product_id: str) -> Any:
    kwargs: dict[str, Any] = {"headers": auth()}
    if method == "PUT":
        kwargs["json"] = {"quantity": 1}
    return client.request(method, f"/v1/cart/items/{product_id}", **kwargs)


@pytest.mark.parametrize("product_id", ["0", "-1", "2147483648", "99999999999999999999999"])
@pytest.mark.parametrize("method", ["PUT", "DELETE"])
def test_out_of_range_product_id_in_path_is_400(
    client: Any, auth: Any, method: str, product_id: str
) -> None:
    assert_400(path_call(client, auth, method, product_id))


@pytest.mark.parametrize("product_id", ["abc", "1.5", "1e3", "%20"])
@pytest.mark.parametrize("method", ["PUT", "DELETE"])
def test_non_integer_product_id_in_path_is_a_404_problem(
    client: Any, auth: Any, method: str, product_id: str
) -> None:
    # Connexion routes integer path parameters with an int converter: a segment that is
    # not an integer matches no route (404), it never reaches the handler.
    r = path_call(client, auth, method, product_id)
    assert_problem(r, 404)


@pytest.mark.parametrize("user_id", ["a b", "x" * 129, "<script>"])
def test_bad_user_id_on_staff_path_is_400(client: Any, auth: Any, user_id: str) -> None:
    r = client.get(f"/v1/carts/{user_id}", headers=auth("carol", scope="cart:read", role="staff"))
    assert_400(r)


def test_malformed_json_is_400(client: Any, auth: Any) -> None:
    r = client.post(
        "/v1/cart/items",
        content=b'{"product_id": 1, "quantity": ',
        headers={**auth(), "Content-Type": "application/json"},
    )
    assert_400(r)


def test_missing_body_is_400(client: Any, auth: Any) -> None:
    r = client.post("/v1/cart/items", headers={**auth(), "Content-Type": "application/json"})
    assert_400(r)


def test_wrong_content_type_is_a_4xx_problem(client: Any, auth: Any) -> None:
    r = client.post(
        "/v1/cart/items",
        content=b"product_id=1&quantity=1",
        headers={**auth(), "Content-Type": "application/x-www-form-urlencoded"},
    )
    assert r.status_code in (400, 415), r.text
    assert r.headers["content-type"].startswith(PROBLEM)


def test_unknown_path_and_method_are_problems(client: Any, auth: Any) -> None:
    r = client.get("/v1/cart/nothing-here", headers=auth())
    assert_problem(r, 404)
    r = client.patch("/v1/cart", json={}, headers=auth())
    assert_problem(r, 405)
