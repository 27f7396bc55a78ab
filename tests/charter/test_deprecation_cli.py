"""``charter gov deprecations``: which clients still call a deprecated version, read from
real ``/metrics`` documents (served over HTTP) or from Prometheus' query API (a stub)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from prometheus_client import CollectorRegistry, make_asgi_app

from charter import deprecation
from charterctl.cli import main
from tests.support.plugin import StubServer
from tests.support.servers import ThreadServer

ENTRY = deprecation.load().find("orders", "v1")
assert ENTRY is not None


def metrics_app(calls: dict[str, int]) -> Any:
    """A /metrics app whose counter holds ``calls`` per client (as a service counts)."""
    registry = CollectorRegistry()
    counted = deprecation.DeprecatedCalls(registry)
    assert ENTRY is not None
    for client, n in calls.items():
        for i in range(n):
            operation = "list_orders" if i % 2 else "get_order"
            counted.count("orders", ENTRY, operation, client, 200)
    return make_asgi_app(registry)


def test_scrape_lists_clients_busiest_first(
        asgi_server: Callable[..., ThreadServer], capsys: pytest.CaptureFixture[str]) -> None:
    one = asgi_server(metrics_app({"shop-web": 5, "legacy-app": 2}))
    two = asgi_server(metrics_app({"legacy-app": 2}))  # a second worker of the service
    code = main(["gov", "deprecations", "--scrape", f"{one.url}/metrics",
                 f"{two.url}/metrics"])
    out = capsys.readouterr().out
    assert code == 0
    assert "orders v1: deprecated 2026-11-30, sunset 2027-06-01" in out
    lines = [line.split() for line in out.splitlines() if line.startswith("  ")]
    assert lines == [["shop-web", "5", "calls"], ["legacy-app", "4", "calls"]]


def test_fail_if_called_and_json(
        asgi_server: Callable[..., ThreadServer], capsys: pytest.CaptureFixture[str]) -> None:
    busy = asgi_server(metrics_app({"shop-web": 1}))
    quiet = asgi_server(metrics_app({}))
    assert main(["gov", "deprecations", "--fail-if-called", "--scrape",
                 f"{busy.url}/metrics"]) == 1
    capsys.readouterr()
    assert main(["gov", "deprecations", "--fail-if-called", "--format", "json", "--scrape",
                 f"{quiet.url}/metrics"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["calls"] == [] and doc["versions"][0]["sunset_at"].startswith("2027-06-01")


def test_prometheus_increase_over_the_window(capsys: pytest.CaptureFixture[str]) -> None:
    def answer(seen: Any) -> tuple[int, Any]:
        return 200, {"status": "success", "data": {"resultType": "vector", "result": [
            {"metric": {"api": "orders", "version": "v1", "client_id": "shop-web"},
             "value": [1796000000, "41.5"]},
            {"metric": {"api": "orders", "version": "v1", "client_id": "gone-app"},
             "value": [1796000000, "0"]},
        ]}}

    with StubServer(answer) as prometheus:
        code = main(["gov", "deprecations", "--prometheus", prometheus.url,
                     "--window", "7d"])
        (seen,) = prometheus.seen
    out = capsys.readouterr().out
    assert code == 0
    query = parse_qs(urlsplit(seen.path).query)["query"][0]
    assert query == ("sum by (api, version, client_id) "
                     "(increase(charter_deprecated_calls_total[7d]))")
    assert "shop-web" in out and "42 calls" in out and "gone-app" not in out


def test_unreachable_source_is_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["gov", "deprecations", "--scrape", "http://127.0.0.1:9/metrics",
                 "--timeout", "0.5"]) == 2
    assert "charter gov deprecations:" in capsys.readouterr().err
