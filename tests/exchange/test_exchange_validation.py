"""Bad input is a 400 problem+json, never a 500 (the spec is the validator)."""

from __future__ import annotations

from typing import Any

import pytest


def assert_400(response: Any) -> None:
    assert response.status_code == 400, f"{response.status_code} {response.text}"
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["status"] == 400


@pytest.mark.parametrize("query", [
    "", "to=USD", "from=eur&to=USD", "from=EURO", "from=EU", "from=EUR&to=usd",
    "from=123", "from=EUR&to=", "from=EUR&colour=red",
])
def test_bad_rate_queries(client: Any, auth: dict[str, str], query: str) -> None:
    assert_400(client.get(f"/v1/rates?{query}", headers=auth))


@pytest.mark.parametrize("query", [
    "from=EUR&to=USD", "from=EUR&amount=1", "to=USD&amount=1",
    "from=EUR&to=USD&amount=-1", "from=EUR&to=USD&amount=1.5",
    "from=EUR&to=USD&amount=ten", "from=EUR&to=USD&amount=100000000000001",
    "from=EUR&to=USD&amount=", "from=eur&to=USD&amount=1", "from=EUR&to=USD&amount=1&x=1",
])
def test_bad_convert_queries(client: Any, auth: dict[str, str], query: str) -> None:
    assert_400(client.get(f"/v1/convert?{query}", headers=auth))


def test_unsafe_methods_are_not_routed(client: Any, auth: dict[str, str]) -> None:
    response = client.post("/v1/rates?from=EUR", headers=auth, json={})
    assert response.status_code == 405
    assert response.headers["content-type"].startswith("application/problem+json")
