"""Orders' exchange adapter (``HttpExchange``) against a tiny real HTTP server: what it
sends (checked against the exchange spec) and how every kind of answer is mapped.

A conversion is an answer; "no rate at all" (503 ``no-exchange-rates``) and an unknown
currency (404 ``unknown-currency``) are refusals, returned, never raised; anything else
that prevents an answer raises :class:`ExchangeUnavailable`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, urlsplit

import jsonschema
import pytest

from charter import problem_types, specs
from services.orders.clients import HttpExchange
from services.orders.ports import Conversion, ExchangeUnavailable
from tests.support.plugin import Seen, StubServer, free_port

CONVERSION = {"from": "USD", "to": "EUR", "amount": 5425, "converted_amount": 5000,
              "rate": "0.9216589862", "rounding": "half_even",
              "as_of": "2026-11-24T10:00:00Z", "source": "table", "stale": False, "age": 3}


def reply(*answers: tuple[int, Any]) -> Callable[[Seen], tuple[int, Any]]:
    """Answer the requests with ``answers`` in turn (the last one repeats)."""
    queue = list(answers)
    return lambda _seen: queue.pop(0) if len(queue) > 1 else queue[0]


def problem(slug: str) -> tuple[int, dict[str, Any]]:
    """A typed problem as another environment sends it (another base URL, another title):
    the adapter decides on the type's slug only."""
    status = problem_types.get(slug).status
    return status, {"type": f"https://elsewhere.example/problems/{slug}",
                    "title": "Reworded title", "status": status}


def exchange(url: str, timeout: float = 1.0) -> HttpExchange:
    return HttpExchange(url, lambda: "exchange-token", timeout=timeout)


def convert(url: str, amount: int = 5425, source: str = "USD", *,
            timeout: float = 1.0) -> Any:
    client = exchange(url, timeout)
    try:
        return client.convert(amount, source, "EUR")
    finally:
        client.close()


def assert_query_fits_the_spec(seen: Seen) -> dict[str, str]:
    """``seen`` is ``GET /v1/convert`` with every query parameter valid for the exchange
    spec's ``convert_amount``; the query, one value per name."""
    parts = urlsplit(seen.path)
    assert (seen.method, parts.path) == ("GET", "/v1/convert")
    query = parse_qs(parts.query, strict_parsing=True)
    assert all(len(values) == 1 for values in query.values()), query
    spec = specs.load("exchange")
    parameters = spec["paths"]["/convert"]["get"]["parameters"]
    assert set(query) == {p["name"] for p in parameters}
    for parameter in parameters:
        value: Any = query[parameter["name"]][0]
        if parameter["name"] == "amount":
            value = int(value)
        schema = {**parameter["schema"], "components": spec["components"]}
        jsonschema.Draft4Validator(schema).validate(value)
    return {name: values[0] for name, values in query.items()}


# -- answers ----------------------------------------------------------------------------
def test_a_conversion_is_asked_with_the_internal_token_and_read(
        stub_server: Callable[..., StubServer]) -> None:
    stub = stub_server(reply((200, CONVERSION)))
    outcome = convert(stub.url)
    assert outcome.conversion == Conversion(5000, "EUR", "0.9216589862", stale=False)
    assert outcome.refused is None
    (seen,) = stub.seen
    assert assert_query_fits_the_spec(seen) == {"from": "USD", "to": "EUR", "amount": "5425"}
    assert seen.headers["authorization"] == "Bearer exchange-token"
    assert seen.headers["accept"] == "application/json"


def test_a_stale_conversion_stays_marked_stale(stub_server: Callable[..., StubServer]) -> None:
    stub = stub_server(reply((200, {**CONVERSION, "stale": True, "age": 900})))
    outcome = convert(stub.url)
    assert outcome.conversion is not None and outcome.conversion.stale is True


@pytest.mark.parametrize("slug", ["no-exchange-rates", "unknown-currency"])
def test_no_rate_is_a_refusal_not_an_outage(stub_server: Callable[..., StubServer],
                                            slug: str) -> None:
    stub = stub_server(reply(problem(slug)))
    outcome = convert(stub.url, 4980, "CHF")
    assert outcome.conversion is None
    assert outcome.refused is not None and slug in outcome.refused
    assert "CHF" in outcome.refused and "EUR" in outcome.refused
    assert stub.seen and all(assert_query_fits_the_spec(s)["from"] == "CHF" for s in stub.seen)


def test_a_refusal_after_a_passing_outage_is_still_a_refusal(
        stub_server: Callable[..., StubServer]) -> None:
    # A GET is retried once on 502/503/504: the second answer decides.
    stub = stub_server(reply((502, None), problem("unknown-currency")))
    outcome = convert(stub.url)
    assert outcome.conversion is None and "unknown-currency" in (outcome.refused or "")
    assert len(stub.seen) == 2


# -- no answer --------------------------------------------------------------------------
BAD_CONVERSIONS = {
    "empty": {},
    "fractional amount": {**CONVERSION, "converted_amount": 5000.5},  # never truncated
    "amount as text": {**CONVERSION, "converted_amount": "5000"},
    "amount as flag": {**CONVERSION, "converted_amount": True},
    "negative amount": {**CONVERSION, "converted_amount": -1},
    "stale as text": {**CONVERSION, "stale": "false"},  # would read as True
    "stale missing": {k: v for k, v in CONVERSION.items() if k != "stale"},
    "rate as number": {**CONVERSION, "rate": 0.92},
    "rate as prose": {**CONVERSION, "rate": "about 0.92"},
    "rate missing": {k: v for k, v in CONVERSION.items() if k != "rate"},
}
NO_ANSWERS = {
    "500 bare": (500, None),
    "500 problem": problem("internal-error"),
    "503 outage": problem("upstream-unavailable"),  # 503, but not "no rate": an outage
    "503 untyped": (503, {"title": "No exchange rates", "status": 503}),  # not trusted
    "404 no route": problem("not-found"),  # 404, but not "unknown currency"
    "404 untyped": (404, {"title": "Unknown currency", "status": 404}),
    "401": problem("unauthorized"),
    "403": problem("insufficient-scope"),
    "400": problem("validation-error"),
    "200 not json": (200, b"<html>not json</html>"),
    "200 list": (200, ["not", "an", "object"]),
    "200 string": (200, "a string"),
    **{f"200 {name}": (200, body) for name, body in BAD_CONVERSIONS.items()},
}


@pytest.mark.parametrize("answer", list(NO_ANSWERS.values()), ids=list(NO_ANSWERS))
def test_anything_else_is_unavailable(stub_server: Callable[..., StubServer],
                                      answer: tuple[int, Any]) -> None:
    stub = stub_server(reply(answer))
    with pytest.raises(ExchangeUnavailable):
        convert(stub.url)
    assert stub.seen  # it did reach the exchange


def test_an_unreachable_exchange_is_unavailable() -> None:
    with pytest.raises(ExchangeUnavailable):
        convert(f"http://127.0.0.1:{free_port()}", timeout=0.5)


def test_a_slow_exchange_times_out_as_unavailable(
        stub_server: Callable[..., StubServer]) -> None:
    # The stub holds every answer until it is closed (at most 1 s); the timeout is 0.3 s.
    slow = stub_server(reply((200, CONVERSION)), delay=1.0)
    with pytest.raises(ExchangeUnavailable):
        convert(slow.url, timeout=0.3)
    assert slow.seen


def test_no_token_no_call(stub_server: Callable[..., StubServer]) -> None:
    stub = stub_server(reply((200, CONVERSION)))

    def no_token() -> str:
        raise RuntimeError("auth is down")

    client = HttpExchange(stub.url, no_token, timeout=1.0)
    try:
        with pytest.raises(ExchangeUnavailable):
            client.convert(5425, "USD", "EUR")
    finally:
        client.close()
    assert not stub.seen  # fails closed: nothing sent without a token
