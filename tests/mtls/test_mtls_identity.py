"""A token is bound to its service's certificate on internal operations (real mTLS server).

The catalog's reservations are internal to orders (``x-internal-callers: [orders]``).
Tokens carry the scopes the dependency manifest derives for each service's client.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest

from charter import dependencies
from charter.security import mtls
from charter.testing import TokenFactory

Bearer = Callable[..., dict[str, str]]
CallAs = Callable[[str], httpx.Client]


def service_token(tokens: TokenFactory, service: str, **extra: str) -> dict[str, str]:
    """Headers with a token of ``service``'s client, holding exactly its derived scopes."""
    scope = dependencies.load().client_scope(service)
    token = tokens.token(sub=service, scope=scope, role="service", client_id=service)
    return {"Authorization": f"Bearer {token}", **extra}


def reserve(client: httpx.Client, headers: dict[str, str], product_id: int) -> httpx.Response:
    body = {"order_id": "order-7", "items": [{"product_id": product_id, "quantity": 1}]}
    return client.post("/v1/reservations", json=body,
                       headers={**headers, "Idempotency-Key": "key-identity-01"})


def assert_forbidden(answer: httpx.Response, *words: str) -> None:
    assert answer.status_code == 403, answer.text
    assert answer.headers["content-type"].startswith("application/problem+json")
    problem = answer.json()
    assert problem["status"] == 403 and problem["title"] == "Forbidden"
    for word in words:
        assert word in problem["detail"]


def test_orders_certificate_with_the_cart_clients_token_is_refused(
        call_as: CallAs, tokens: TokenFactory, product: dict[str, Any]) -> None:
    orders = call_as("orders")
    # Even with the right scope, a token of another client does not pass.
    cart_token = tokens.token(sub="cart", scope="catalog:read catalog:reserve",
                              role="service", client_id="cart")
    answer = reserve(orders, {"Authorization": f"Bearer {cart_token}"}, product["id"])
    assert_forbidden(answer, "'orders'", "'cart'")
    assert_forbidden(orders.get("/v1/reservations/order-7",
                                headers={"Authorization": f"Bearer {cart_token}"}))
    # The control: orders' own token with the orders certificate.
    assert reserve(orders, service_token(tokens, "orders"), product["id"]).status_code == 201


def test_cart_certificate_with_the_orders_token_is_refused(
        call_as: CallAs, tokens: TokenFactory, product: dict[str, Any]) -> None:
    answer = reserve(call_as("cart"), service_token(tokens, "orders"), product["id"])
    assert_forbidden(answer, "'cart' may not use it")


def test_return_of_stock_is_internal_to_orders(
        call_as: CallAs, tokens: TokenFactory, product: dict[str, Any]) -> None:
    """``return_reservation`` is bound to orders like commit: another certificate or
    another client's token is refused before any stock moves."""
    orders, own = call_as("orders"), service_token(tokens, "orders")
    assert reserve(orders, own, product["id"]).status_code == 201
    commit = orders.post("/v1/reservations/order-7/commit",
                         headers={**own, "Idempotency-Key": "key-identity-02"})
    assert commit.status_code == 200, commit.text
    path, key = "/v1/reservations/order-7/return", {"Idempotency-Key": "key-identity-03"}
    assert_forbidden(call_as("cart").post(path, headers={**own, **key}), "'cart' may not use it")
    cart_token = tokens.token(sub="cart", scope="catalog:read catalog:reserve",
                              role="service", client_id="cart")
    assert_forbidden(orders.post(path, headers={"Authorization": f"Bearer {cart_token}", **key}),
                     "'orders'", "'cart'")
    assert orders.get("/v1/reservations/order-7", headers=own).json()["status"] == "committed"
    answer = orders.post(path, headers={**own, **key})  # the control: orders itself
    assert answer.status_code == 200 and answer.json()["status"] == "returned", answer.text


def test_a_users_token_is_refused_on_internal_operations(
        call_as: CallAs, tokens: TokenFactory) -> None:
    user = tokens.token(sub="user-1", scope="catalog:read catalog:reserve", role="admin",
                        client_id="swagger-ui")
    answer = call_as("orders").get("/v1/reservations/order-7",
                                   headers={"Authorization": f"Bearer {user}"})
    assert_forbidden(answer, "'swagger-ui'")


def test_an_invalid_token_is_left_to_the_token_check(
        call_as: CallAs, tokens: TokenFactory) -> None:
    forged = tokens.token(sub="orders", scope="catalog:reserve", client_id="orders",
                          sign_with_other_key=True)
    answer = call_as("orders").get("/v1/reservations/order-7",
                                   headers={"Authorization": f"Bearer {forged}"})
    assert answer.status_code == 401


def test_nothing_outside_the_derived_scopes(
        call_as: CallAs, tokens: TokenFactory, product: dict[str, Any]) -> None:
    orders = call_as("orders")
    headers = service_token(tokens, "orders")
    # catalog:write is no scope of orders' client: 403 even with its own certificate.
    answer = orders.patch(f"/v1/products/{product['id']}", json={"price": 1},
                          headers=headers)
    assert_forbidden(answer)
    cart = call_as("cart")
    cart_headers = service_token(tokens, "cart")
    assert cart.get(f"/v1/products/{product['id']}", headers=cart_headers).status_code == 200
    answer = cart.put(f"/v1/products/{product['id']}/stock", json={"on_hand": 0},
                      headers=cart_headers)
    assert_forbidden(answer)


@pytest.mark.parametrize(("headers", "token"), [
    ([(b"authorization", b"Bearer abc.def")], "abc.def"),
    ([(b"Authorization", b"bearer  xyz ")], "xyz"),
    ([(b"authorization", b"Basic Zm9vOmJhcg==")], None),
    ([(b"authorization", b"Bearer")], None),
    ([], None),
])
def test_bearer_token_from_the_scope(headers: list[tuple[bytes, bytes]],
                                     token: str | None) -> None:
    assert mtls.bearer_token({"headers": headers}) == token
