"""The v2 checkout figure's client: it follows ``Location`` until the order is final, counts
cancelled orders, and counts as errors every unexpected answer and every order that never
becomes final; the report carries the ``checkout_v2_*`` keys and the table row; the
products chosen for the checkouts have the stock. A fake gateway stands in for the
platform (the live figure is covered by ``test_bench_quick.py``)."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import subprocess
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from bench import checkout_v2, report
from bench.__main__ import checkout_products
from bench.platform import BenchError, Platform
from bench.stats import Result

TOKEN = "bench-token"
DECLINED_PRODUCT = 13  # the fake gateway cancels orders of this product


class FakeGateway:
    """ASGI stand-in for the gateway's v2 orders: 202 + public ``Location``, then the order
    reads ``pending`` twice before it is final."""

    def __init__(self) -> None:
        self.orders: dict[str, dict[str, Any]] = {}
        self.reads: Counter[str] = Counter()
        self.keys: list[str] = []
        self.bodies: list[dict[str, Any]] = []

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        if headers.get("authorization") != f"Bearer {TOKEN}":
            await self._send(send, 401, {"title": "Unauthorized"})
        elif scope["method"] == "POST" and scope["path"] == "/orders/v2/orders":
            request = json.loads(body)
            self.keys.append(headers["idempotency-key"])
            self.bodies.append(request)
            order_id = f"ord-{len(self.orders) + 1}"
            product = request["items"][0]["product_id"]
            final = "cancelled" if product == DECLINED_PRODUCT else "confirmed"
            self.orders[order_id] = {"id": order_id, "status": "pending", "final": final}
            await self._send(send, 202, self._public(order_id),
                             [(b"location", f"/orders/v2/orders/{order_id}".encode())])
        elif scope["method"] == "GET" and scope["path"].startswith("/orders/v2/orders/"):
            order_id = scope["path"].rsplit("/", 1)[-1]
            self.reads[order_id] += 1
            order = self.orders[order_id]
            if self.reads[order_id] >= 3:
                order["status"] = order["final"]
            await self._send(send, 200, self._public(order_id))
        else:
            await self._send(send, 404, {"title": "Not Found"})

    def _public(self, order_id: str) -> dict[str, Any]:
        order = self.orders[order_id]
        return {"id": order["id"], "status": order["status"]}

    @staticmethod
    async def _send(send: Any, status: int, doc: dict[str, Any],
                    extra: list[tuple[bytes, bytes]] | None = None) -> None:
        payload = json.dumps(doc).encode()
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(payload)).encode()),
                                *(extra or [])]})
        await send({"type": "http.response.body", "body": payload})


def test_checkouts_are_followed_to_their_final_status_and_cancellations_counted(
        asgi_server: Callable[..., Any]) -> None:
    gateway = FakeGateway()
    server = asgi_server(gateway)

    run = checkout_v2.run(server.url, TOKEN, [1, DECLINED_PRODUCT, 2], users=3, total=9,
                          poll_interval=0.002, timeout=5)

    assert run.errors == []
    assert run.result.name == "checkout_v2" and run.result.connections == 3
    assert run.result.requests == 9 and run.result.errors == 0
    assert run.result.statuses == {"confirmed": 6, "cancelled": 3}
    assert run.cancelled == 3
    assert run.result.rps > 0 and 0 < run.result.p50_ms <= run.result.p99_ms
    # every order was read until final (third read), through its Location, and no further
    assert set(gateway.reads) == set(gateway.orders) and set(gateway.reads.values()) == {3}
    assert len(set(gateway.keys)) == 9  # a fresh Idempotency-Key per checkout
    assert gateway.bodies[0]["payment_method"] == {"type": "token", "token": "tok_visa"}
    assert all(b["items"][0]["quantity"] == 1 and b["currency"] == "EUR"
               for b in gateway.bodies)


def _mock_client(handler: Callable[[httpx.Request], httpx.Response]) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.MockTransport(handler),
                             base_url="http://gateway.test")


def _checkout(handler: Callable[[httpx.Request], httpx.Response], timeout: float = 2.0
              ) -> str:
    async def go() -> str:
        async with _mock_client(handler) as http:
            return await checkout_v2.checkout(http, 1, poll_interval=0.001, timeout=timeout)
    return asyncio.run(go())


def _placed(location: str | None = "/orders/v2/orders/o1", status: int = 202,
            order_status: str = "pending") -> httpx.Response:
    headers = {"Location": location} if location else {}
    return httpx.Response(status, json={"id": "o1", "status": order_status}, headers=headers)


def test_an_order_that_stays_pending_is_a_timeout() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            return _placed()
        return httpx.Response(200, json={"id": "o1", "status": "pending"})

    with pytest.raises(checkout_v2.CheckoutFailed, match="still 'pending' after"):
        _checkout(handler, timeout=0.05)


def test_a_final_status_in_the_202_needs_no_read() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        assert request.method == "POST", "no read expected"
        return _placed(order_status="confirmed")

    assert _checkout(handler) == "confirmed"


@pytest.mark.parametrize(("placed", "read", "message"), [
    (_placed(status=201), None, "POST /orders/v2/orders: 201"),
    (_placed(location=None), None, "202 without Location"),
    (_placed(location="/orders/v2/orders/other"), None, "is not order o1"),
    (_placed(location="http://elsewhere.test/orders/v2/orders/o1"), None, "is not order o1"),
    (_placed(), httpx.Response(503, json={"title": "Service Unavailable"}), ": 503"),
    (_placed(), httpx.Response(200, json={"id": "o2", "status": "confirmed"}),
     "answered order o2"),
    (_placed(), httpx.Response(200, json={"status": "confirmed"}), "no order id"),
])
def test_every_unexpected_answer_fails_the_checkout(
        placed: httpx.Response, read: httpx.Response | None, message: str) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            return placed
        assert read is not None, f"unexpected read {request.url}"
        return read

    with pytest.raises(checkout_v2.CheckoutFailed, match=message):
        _checkout(handler)


def test_a_failing_gateway_gives_errors_not_latencies(asgi_server: Callable[..., Any]
                                                       ) -> None:
    server = asgi_server(FakeGateway())

    run = checkout_v2.run(server.url, "wrong-token", [1], users=2, total=4,
                          poll_interval=0.002, timeout=5)

    assert run.result.requests == 0 and run.result.errors == 4 and len(run.errors) == 4
    assert all("401" in e for e in run.errors)
    assert run.result.p99_ms == 0.0 and run.cancelled == 0


def _result(name: str, rps: float = 100.0, **kw: Any) -> Result:
    return Result(name=name, connections=20, requests=10, seconds=1.0, rps=rps,
                  p50_ms=kw.pop("p50", 5.0), p99_ms=kw.pop("p99", 9.0), **kw)


def test_the_report_carries_the_v2_keys_and_table_row() -> None:
    reads = [_result(n) for n in ("governed_read", "direct_read", "fastapi_jwt",
                                  "plain_flask", "mtls_client_ceiling")]
    v2 = _result("checkout_v2", rps=12.5, p50=40.0, p99=180.25, errors=1,
                 statuses={"confirmed": 8, "cancelled": 2})
    doc = report.summary(reads, _result("checkout"), v2, _result("token_issuance"),
                         {"catalog_workers": 2, "quick": True, "seconds_per_figure": 1.5,
                          "checkout_v2_poll_ms": 10.0})

    assert (doc["checkout_v2_rps"], doc["checkout_v2_p50_ms"], doc["checkout_v2_p99_ms"]) \
        == (12.5, 40.0, 180.2)
    assert (doc["checkout_v2_errors"], doc["checkout_v2_cancelled"]) == (1, 2)
    assert doc["checkout_v2_count"] == 10
    assert [r["name"] for r in doc["runs"]].count("checkout_v2") == 1
    table = report.table(doc)
    assert "| checkout v2: POST → poll until confirmed/cancelled" in table
    assert "**2 cancelled**" in table and "p99 **180.2 ms**" in table


def test_a_waiting_client_sends_prefer_and_reads_nothing_when_the_answer_is_final() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        response = _placed(order_status="confirmed")
        response.headers["Preference-Applied"] = "wait=5"
        return response

    async def go() -> str:
        async with _mock_client(handler) as http:
            return await checkout_v2.checkout(http, 1, poll_interval=0.001, timeout=2, wait=5)
    assert asyncio.run(go()) == "confirmed"
    assert [(r.method, r.headers.get("prefer")) for r in seen] == [("POST", "wait=5")]


def test_a_wait_neither_applied_nor_final_is_a_failure() -> None:
    async def go() -> str:
        async with _mock_client(lambda request: _placed()) as http:
            return await checkout_v2.checkout(http, 1, poll_interval=0.001, timeout=2, wait=5)
    with pytest.raises(checkout_v2.CheckoutFailed, match="neither applied nor final"):
        asyncio.run(go())


def test_the_report_carries_the_waiting_figures() -> None:
    reads = [_result(n) for n in ("governed_read", "direct_read", "fastapi_jwt",
                                  "plain_flask", "mtls_client_ceiling")]
    wait = _result("checkout_v2_wait", rps=30.0, p50=500.0, p99=900.0,
                   statuses={"confirmed": 10})
    single = Result(name="checkout_v2_wait", connections=1, requests=5, seconds=1.0, rps=15.0,
                    p50_ms=60.0, p99_ms=110.0, statuses={"confirmed": 5})
    doc = report.summary(reads, _result("checkout"), _result("checkout_v2"),
                         _result("token_issuance"),
                         {"catalog_workers": 2, "quick": True, "seconds_per_figure": 1.5},
                         v2_wait=wait, v2_single=single)
    assert (doc["checkout_v2_wait_p99_ms"], doc["checkout_v2_single_p99_ms"]) == (900.0, 110.0)
    assert doc["checkout_v2_single_count"] == 5 and doc["checkout_v2_wait_cancelled"] == 0
    table = report.table(doc)
    assert "| checkout v2: POST with Prefer: wait → final status, as alice (checkouts/s) | 1 |" \
        in table
    assert "With `Prefer: wait`: p99 **900.0 ms** at 20 clients, 110.0 ms for one" in table


def _catalog(var: Path, stock: list[tuple[int, int, str]]) -> Platform:
    var.mkdir()
    db = sqlite3.connect(var / "catalog.db")
    db.executescript("CREATE TABLE products (id INTEGER PRIMARY KEY, active INTEGER, "
                     "currency TEXT); CREATE TABLE stock (product_id INTEGER, on_hand "
                     "INTEGER, reserved INTEGER);")
    for product_id, available, currency in stock:
        db.execute("INSERT INTO products VALUES (?, 1, ?)", (product_id, currency))
        db.execute("INSERT INTO stock VALUES (?, ?, 0)", (product_id, available))
    db.commit()
    db.close()
    proc = subprocess.Popen(["true"])
    proc.wait()
    return Platform({"CHARTER_VAR_DIR": str(var)}, proc, var / "log")


def test_checkout_products_have_the_stock_or_the_run_stops(tmp_path: Path) -> None:
    platform = _catalog(tmp_path / "var", [(1, 300, "EUR"), (2, 60, "EUR"), (3, 500, "USD"),
                                           (4, 40, "EUR"), (5, 30, "EUR"), (6, 0, "EUR")])

    assert checkout_products(platform, 20) == [1, 2, 4, 5]
    assert checkout_products(platform, 120) == [1, 2, 4, 5]
    with pytest.raises(BenchError, match="too little stock for 200"):
        checkout_products(platform, 200)
