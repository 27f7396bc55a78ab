"""The upstream HTTP rate source against a real tiny HTTP server on 127.0.0.1."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import Any

import pytest
from exchange_support import FakeClock, StubServer, free_port, json_reply

from charter.config import ConfigError
from services.exchange.app import default_source
from services.exchange.clients import (
    HttpRateSource,
    RateSourceError,
    TableRateSource,
    upstream_timeout,
)

GOOD = {"base": "EUR", "as_of": "2026-11-24T16:00:00Z",
        "rates": {"USD": "1.0850", "JPY": 162.5, "GBP": 0.857, "XBT": "0.00002"}}


@pytest.fixture
def upstream() -> Iterator[StubServer]:
    server = StubServer(lambda _path: json_reply(GOOD))
    yield server
    server.close()


def test_fetches_and_parses_the_documented_shape(upstream: StubServer) -> None:
    source = HttpRateSource(upstream.url, timeout=2)
    table = source.fetch()
    assert source.name == "upstream" and table.base == "EUR"
    assert table.as_of.isoformat() == "2026-11-24T16:00:00+00:00"
    # JSON numbers are read as decimals, exactly as written
    assert table.rates == {"EUR": Decimal(1), "USD": Decimal("1.0850"),
                           "JPY": Decimal("162.5"), "GBP": Decimal("0.857")}
    assert upstream.paths == ["/rates"]
    source.close()


def test_missing_as_of_means_now(clock: FakeClock) -> None:
    server = StubServer(lambda _p: json_reply({"base": "USD", "rates": {"EUR": 0.92}}))
    try:
        table = HttpRateSource(server.url, clock=clock.now).fetch()
        assert table.as_of == clock.now() and table.base == "USD"
    finally:
        server.close()


@pytest.mark.parametrize("reply", [
    (200, b"not json"),
    (200, b'{"base": "EUR", "rates": '),
    json_reply([1, 2]),
    json_reply({"rates": {"USD": 1}}),
    json_reply({"base": "EUR"}),
    json_reply({"base": "EUR", "rates": {}}),
    json_reply({"base": "EUR", "rates": {"USD": -1}}),
    json_reply({"base": "EUR", "rates": {"USD": "lots"}}),
    json_reply({"base": "XXX", "rates": {"USD": 1}}),
    json_reply({"base": "EUR", "rates": {"USD": 1}, "as_of": "yesterday"}),
    json_reply({"base": "EUR", "rates": {"USD": 1}, "as_of": 17}),
    json_reply({"error": "down"}, status=500),
    json_reply({"error": "no"}, status=404),
])
def test_malformed_or_failed_answers_raise(reply: tuple[int, bytes]) -> None:
    server = StubServer(lambda _p: reply)
    try:
        with pytest.raises(RateSourceError):
            HttpRateSource(server.url, retries=0).fetch()
    finally:
        server.close()


def test_timeout_raises_within_the_timeout() -> None:
    server = StubServer(lambda _p: json_reply(GOOD), delay=2.0)
    try:
        started = time.monotonic()
        with pytest.raises(RateSourceError) as info:
            HttpRateSource(server.url, timeout=0.3).fetch()
        assert time.monotonic() - started < 1.5
        assert "timeout" in str(info.value)
    finally:
        server.close()


def test_unreachable_upstream_raises() -> None:
    with pytest.raises(RateSourceError):
        HttpRateSource(f"http://127.0.0.1:{free_port()}/rates", timeout=0.5).fetch()


def test_configuration_picks_the_source(monkeypatch: pytest.MonkeyPatch, db: Any) -> None:
    monkeypatch.delenv("EXCHANGE_UPSTREAM_URL", raising=False)
    assert isinstance(default_source(db), TableRateSource)
    monkeypatch.setenv("EXCHANGE_UPSTREAM_URL", "http://127.0.0.1:9/rates")
    monkeypatch.setenv("EXCHANGE_UPSTREAM_TIMEOUT", "0.5")
    source = default_source(db)
    assert isinstance(source, HttpRateSource) and source.http.timeout == 0.5
    monkeypatch.setenv("EXCHANGE_UPSTREAM_TIMEOUT", "soon")
    with pytest.raises(ConfigError):
        upstream_timeout()


def test_the_app_serves_stale_rates_when_the_upstream_fails(
        make_app: Callable[..., Any], auth: dict[str, str], clock: FakeClock,
        monkeypatch: pytest.MonkeyPatch) -> None:
    state = {"up": True}

    def responder(_path: str) -> tuple[int, bytes]:
        return json_reply(GOOD) if state["up"] else (200, b"<html>maintenance</html>")

    server = StubServer(responder)
    try:
        monkeypatch.setenv("EXCHANGE_UPSTREAM_URL", server.url)
        with make_app().test_client() as client:  # the source comes from the environment
            fresh = client.get("/v1/convert?from=EUR&to=JPY&amount=1000", headers=auth).json()
            assert (fresh["source"], fresh["stale"], fresh["converted_amount"]) == (
                "upstream", False, 1625)
            assert fresh["as_of"] == "2026-11-24T16:00:00Z"
            state["up"] = False
            clock.advance(90)
            response = client.get("/v1/convert?from=EUR&to=JPY&amount=1000", headers=auth)
            stale = response.json()
            assert (stale["stale"], stale["age"], stale["converted_amount"]) == (True, 90, 1625)
            assert response.headers["warning"] == '110 - "Response is Stale"'
        assert len(server.paths) == 2
    finally:
        server.close()
