"""The observability middleware sees the operation even when the server's scope lacks
``extensions`` (uvicorn's does): a bug found when metrics said ``unrouted`` in production."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import Any

from prometheus_client import CollectorRegistry

from charter.observability import logs
from charter.observability.middleware import ObservabilityMiddleware, RequestMetrics


def test_operation_label_survives_scope_without_extensions() -> None:
    async def routed_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        # Connexion's inner middlewares pass shallow copies of the scope on; its routing
        # then records the operation in the (shared) extensions dict
        scope = dict(scope)
        scope.setdefault("extensions", {}).setdefault("connexion_routing", {})[
            "operation_id"] = "svc.api.get_thing"
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    registry = CollectorRegistry()
    middleware = ObservabilityMiddleware(routed_app, RequestMetrics(registry, "svc"))
    scope = {"type": "http", "method": "GET", "path": "/v1/things/1", "headers": []}
    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b""}

    asyncio.run(middleware(scope, receive, send))
    value = registry.get_sample_value("charter_http_requests_total", {
        "service": "svc", "method": "GET", "operation": "svc.api.get_thing", "status": "200"})
    assert value == 1.0
    assert any(k == b"x-correlation-id" for k, _ in sent[0]["headers"])


@contextmanager
def _access_log() -> Iterator[list[logging.LogRecord]]:
    """The access-log records written inside the block."""
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    handler = Keep()
    access = logging.getLogger("charter.access")
    access.addHandler(handler)
    access.setLevel(logging.INFO)
    try:
        yield records
    finally:
        access.removeHandler(handler)


def _serve(path: str, status: int) -> list[logging.LogRecord]:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": status, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    middleware = ObservabilityMiddleware(app, RequestMetrics(CollectorRegistry(), "auth"))

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b""}

    async def send(_message: dict[str, Any]) -> None:
        return None

    with _access_log() as records:
        asyncio.run(middleware({"type": "http", "method": "GET", "path": path,
                                "headers": []}, receive, send))
    return records


def test_the_polled_revocation_feed_is_logged_only_when_it_fails() -> None:
    assert _serve("/oauth/revocations", 200) == []
    assert len(_serve("/oauth/revocations", 400)) == 1
    assert len(_serve("/oauth/token", 200)) == 1


def test_outbound_request_lines_of_httpx_are_not_logged_at_info() -> None:
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        logs.configure("svc", "INFO")
        assert not logging.getLogger("httpx").isEnabledFor(logging.INFO)
        assert logging.getLogger("httpx").isEnabledFor(logging.WARNING)
    finally:
        root.handlers[:], level = saved
        root.setLevel(level)


def _counted(app: Any) -> tuple[CollectorRegistry, list[logging.LogRecord]]:
    registry = CollectorRegistry()
    middleware = ObservabilityMiddleware(app, RequestMetrics(registry, "catalog"))
    scope = {"type": "http", "method": "POST", "path": "/v1/reservations", "headers": []}

    async def receive() -> dict[str, Any]:
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        raise AssertionError("nothing may be sent")

    with _access_log() as records, suppress(RuntimeError):
        asyncio.run(middleware(scope, receive, send))
    return registry, records


def _count(registry: CollectorRegistry, status: str) -> float | None:
    return registry.get_sample_value("charter_http_requests_total", {
        "service": "catalog", "method": "POST", "operation": "unrouted", "status": status})


def test_a_client_that_went_away_is_499_not_a_server_error() -> None:
    """Found by the chaos run: with injected latency the caller timed out and hung up;
    the catalog answered nothing, yet counted and logged a 500 (a false server error)."""
    async def gone(scope: dict[str, Any], receive: Any, send: Any) -> None:
        assert (await receive())["type"] == "http.disconnect"  # the bridge just returns

    registry, records = _counted(gone)
    assert _count(registry, "499") == 1.0 and _count(registry, "500") is None
    assert [getattr(r, "status", None) for r in records] == [499]


def test_an_error_before_any_answer_is_still_a_500() -> None:
    async def broken(scope: dict[str, Any], receive: Any, send: Any) -> None:
        raise RuntimeError("boom")

    registry, records = _counted(broken)
    assert _count(registry, "500") == 1.0 and _count(registry, "499") is None
