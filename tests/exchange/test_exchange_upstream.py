"""The upstream HTTP rate source against a real tiny HTTP server on 127.0.0.1 (the
plugin's ``stub_server``)."""

from __future__ import annotations

import time
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest
from exchange_support import Reply, json_reply

from charter.config import ConfigError
from services.exchange.app import default_source
from services.exchange.clients import (
    HttpRateSource,
    RateSourceError,
    TableRateSource,
    upstream_timeout,
)
from tests.support.clocks import SettableClock
from tests.support.plugin import Seen, StubServer, free_port

GOOD = {"base": "EUR", "as_of": "2026-11-24T16:00:00Z",
        "rates": {"USD": "1.0850", "JPY": 162.5, "GBP": 0.857, "XBT": "0.00002"}}

MakeStub = Callable[..., StubServer]


def rates_url(stub: StubServer) -> str:
    """The upstream's rates endpoint on the stub."""
    return f"{stub.url}/rates"


@pytest.fixture
def upstream(stub_server: MakeStub) -> StubServer:
    return stub_server(lambda _seen: json_reply(GOOD))


def test_fetches_and_parses_the_documented_shape(upstream: StubServer) -> None:
    source = HttpRateSource(rates_url(upstream), timeout=2)
    table = source.fetch()
    assert source.name == "upstream" and table.base == "EUR"
    assert table.as_of.isoformat() == "2026-11-24T16:00:00+00:00"
    # JSON numbers are read as decimals, exactly as written
    assert table.rates == {"EUR": Decimal(1), "USD": Decimal("1.0850"),
                           "JPY": Decimal("162.5"), "GBP": Decimal("0.857")}
    assert upstream.paths == ["/rates"]
    source.close()


def test_missing_as_of_means_now(clock: SettableClock, stub_server: MakeStub) -> None:
    server = stub_server(lambda _seen: json_reply({"base": "USD", "rates": {"EUR": 0.92}}))
    table = HttpRateSource(rates_url(server), clock=clock.now).fetch()
    assert table.as_of == clock.now() and table.base == "USD"


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
def test_malformed_or_failed_answers_raise(reply: Reply, stub_server: MakeStub) -> None:
    server = stub_server(lambda _seen: reply)
    with pytest.raises(RateSourceError):
        HttpRateSource(rates_url(server), retries=0).fetch()
    assert server.paths == ["/rates"]  # one request: no retry when told so


def test_timeout_raises_within_the_timeout(stub_server: MakeStub) -> None:
    # The stub holds its answer until closed (at most 2 s): the source must give up first.
    server = stub_server(lambda _seen: json_reply(GOOD), delay=2.0)
    started = time.monotonic()
    with pytest.raises(RateSourceError) as info:
        HttpRateSource(rates_url(server), timeout=0.3).fetch()
    assert time.monotonic() - started < 1.5
    assert "timeout" in str(info.value)


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
        make_app: Callable[..., Any], auth: dict[str, str], clock: SettableClock,
        monkeypatch: pytest.MonkeyPatch, stub_server: MakeStub) -> None:
    state = {"up": True}

    def responder(_seen: Seen) -> Reply:
        return json_reply(GOOD) if state["up"] else (200, b"<html>maintenance</html>")

    server = stub_server(responder)
    monkeypatch.setenv("EXCHANGE_UPSTREAM_URL", rates_url(server))
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
