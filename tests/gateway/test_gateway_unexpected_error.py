"""An unexpected exception inside the gateway is a problem+json 500, not uvicorn's plain text."""

from __future__ import annotations

import logging
from collections.abc import Callable

import httpx
import pytest

from services.gateway.app import Gateway

pytestmark = pytest.mark.anyio


async def test_a_bug_in_routing_answers_problem_json_with_the_correlation_id(
        make_gateway: Callable[..., Gateway], monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    gateway = make_gateway()

    def broken(method: str, path: str) -> object:
        raise KeyError("/var/lib/charter/secret-route-table")

    monkeypatch.setattr(gateway.routes, "match", broken)
    transport = httpx.ASGITransport(gateway, raise_app_exceptions=False)
    with caplog.at_level(logging.ERROR):
        async with httpx.AsyncClient(transport=transport, base_url="http://gw") as http:
            r = await http.get("/catalog/v1/products", headers={"X-Correlation-Id": "cid-bug"})
    assert r.status_code == 500
    assert r.headers["content-type"] == "application/problem+json"
    body = r.json()
    assert body["status"] == 500 and body["title"] == "Internal Server Error"
    assert body["correlation_id"] == "cid-bug" == r.headers["x-correlation-id"]
    assert "secret-route-table" not in r.text and "KeyError" not in r.text
    assert any(rec.exc_info for rec in caplog.records), "the traceback goes to the log"
