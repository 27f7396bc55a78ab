"""Every exchange operation over HTTP: one rate, all rates, conversions, unknown currencies."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from charter.db import Database
from services.exchange.seed import seed


def get(client: Any, auth: dict[str, str], url: str, status: int = 200) -> dict[str, Any]:
    response = client.get(url, headers=auth)
    assert response.status_code == status, response.text
    if status >= 400:
        assert response.headers["content-type"].startswith("application/problem+json")
    doc: dict[str, Any] = response.json()
    return doc


def test_one_rate(client: Any, auth: dict[str, str]) -> None:
    response = client.get("/v1/rates?from=EUR&to=USD", headers=auth)
    assert response.status_code == 200 and "warning" not in response.headers
    assert response.json() == {"from": "EUR", "to": "USD", "rate": "1.0850000000",
                               "as_of": "2026-11-24T12:00:00Z", "source": "table",
                               "stale": False, "age": 0}


def test_cross_and_inverse_rates(client: Any, auth: dict[str, str]) -> None:
    assert get(client, auth, "/v1/rates?from=USD&to=EUR")["rate"] == "0.9216589862"
    assert get(client, auth, "/v1/rates?from=GBP&to=JPY")["rate"] == "189.6149358226"
    assert get(client, auth, "/v1/rates?from=BRL&to=CHF")["rate"] == "0.1753246753"


def test_all_rates_from_a_currency(client: Any, auth: dict[str, str]) -> None:
    doc = get(client, auth, "/v1/rates?from=USD")
    assert doc["from"] == "USD" and "to" not in doc
    assert sorted(doc["rates"]) == ["AUD", "BRL", "CAD", "CHF", "DKK", "EUR", "GBP", "JPY",
                                    "KWD", "NOK", "PLN", "SEK"]
    assert doc["rates"]["EUR"] == "0.9216589862"
    assert (doc["source"], doc["stale"], doc["age"]) == ("table", False, 0)


def test_same_currency_is_rate_one(client: Any, auth: dict[str, str]) -> None:
    doc = get(client, auth, "/v1/rates?from=JPY&to=JPY")
    assert (doc["rate"], doc["source"], doc["stale"]) == ("1.0000000000", "identity", False)
    conv = get(client, auth, "/v1/convert?from=JPY&to=JPY&amount=500")
    assert (conv["converted_amount"], conv["rate"]) == (500, "1.0000000000")


@pytest.mark.parametrize("url", [
    "/v1/rates?from=XYZ&to=EUR", "/v1/rates?from=EUR&to=XYZ", "/v1/rates?from=XYZ",
    "/v1/rates?from=INR&to=EUR",  # a real currency the table does not carry
    "/v1/rates?from=XYZ&to=XYZ", "/v1/convert?from=EUR&to=XYZ&amount=1",
    "/v1/convert?from=XYZ&to=XYZ&amount=1",
])
def test_unknown_currency_is_404(client: Any, auth: dict[str, str], url: str) -> None:
    problem = get(client, auth, url, 404)
    assert problem["title"] == "Unknown currency" and problem["currency"] in url


@pytest.mark.parametrize(("query", "converted", "rate"), [
    ("from=EUR&to=JPY&amount=1000", 1625, "162.5000000000"),
    ("from=JPY&to=EUR&amount=1625", 1000, "0.0061538462"),
    ("from=EUR&to=USD&amount=1001", 1086, "1.0850000000"),
    ("from=EUR&to=KWD&amount=100", 334, "0.3340000000"),  # 1 EUR = 0.334 KWD = 334 fils
    ("from=USD&to=EUR&amount=0", 0, "0.9216589862"),
])
def test_conversions(client: Any, auth: dict[str, str], query: str, converted: int,
                     rate: str) -> None:
    doc = get(client, auth, f"/v1/convert?{query}")
    assert (doc["converted_amount"], doc["rate"], doc["rounding"]) == (converted, rate,
                                                                       "half_even")
    params = dict(part.split("=") for part in query.split("&"))
    assert (doc["from"], doc["to"], doc["amount"]) == (params["from"], params["to"],
                                                       int(params["amount"]))
    assert (doc["source"], doc["stale"], doc["age"]) == ("table", False, 0)


def test_the_seeded_table_is_the_default_source(make_app: Callable[..., Any], db: Database,
                                                auth: dict[str, str]) -> None:
    with make_app().test_client() as client:  # no source given: the database table
        assert client.get("/v1/rates?from=EUR&to=USD", headers=auth).status_code == 503
    assert seed(db) == 13
    with make_app().test_client() as client:
        doc = get(client, auth, "/v1/convert?from=GBP&to=BRL&amount=10000")
    assert (doc["source"], doc["rate"], doc["converted_amount"]) == ("table", "6.2893815636",
                                                                     62894)
