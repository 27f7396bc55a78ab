"""No 502 from a stale kept-alive upstream connection (issue 8, point 4).

A pooled connection the service closes (its keep-alive ran out) just as the gateway
reuses it fails before any byte of the answer. The gateway (1) drops idle connections
before the service's keep-alive does (``GATEWAY_UPSTREAM_KEEPALIVE_EXPIRY`` < uvicorn's
``--timeout-keep-alive``) and (2) sends an idempotent request that still meets one once
more on a new connection, counted in ``charter_gateway_upstream_retries_total``.

The burst test reproduces the report with a real uvicorn upstream (default keep-alive
5 s) whose keep-alive timer fires as it does on a busy event loop: late, just as the
next request arrives (:class:`OverdueKeepAlive`), closing the connection with the request
unread. Its ``unfixed`` case (old 30 s pool expiry, retry switched off) keeps the
reported failure reproducible: 50 × 502 out of 50.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import uvicorn
from prometheus_client import CollectorRegistry
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from charter import serve
from charter.testing import TokenFactory
from services.gateway import upstreams
from services.gateway.app import Gateway, create_app
from services.gateway.settings import GatewaySettings
from services.gateway.upstreams import REUSED, stale_connection_failure
from tests.support.servers import ThreadServer, read_body

pytestmark = pytest.mark.anyio

READ = "/catalog/v1/products/1"
WRITE = "/catalog/v1/categories"
UVICORN_KEEP_ALIVE = 5  # uvicorn's default --timeout-keep-alive


@dataclass
class CountingUpstream:
    """Answers 200 ``{}`` and counts the requests its application saw."""

    seen: int = 0

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        await read_body(receive)
        self.seen += 1
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", b"2")]})
        await send({"type": "http.response.body", "body": b"{}"})


def retries(gateway: Gateway, kind: str = "protocol") -> float:
    """``charter_gateway_upstream_retries_total{api="catalog", kind=...}``."""
    value = gateway.registry.get_sample_value(
        "charter_gateway_upstream_retries_total",
        {"service": "gateway", "api": "catalog", "kind": kind})
    return value or 0.0


def all_retries(gateway: Gateway) -> float:
    return sum(retries(gateway, k) for k in ("protocol", "read", "write"))


@pytest.fixture
def headers(tokens: TokenFactory) -> dict[str, str]:
    token = tokens.token(scope="catalog:read catalog:write")
    return {"Authorization": f"Bearer {token}"}


class OverdueKeepAlive(HttpToolsProtocol):
    """uvicorn's HTTP protocol as it behaves when its event loop is busy when the
    keep-alive timer falls due: a request arriving after the keep-alive ran out meets the
    overdue timer first, which closes the connection with the request unread.

    (On an idle loop the timer closes the connection on time and the gateway's pool sees
    the close before reusing it; under load the report's 502s came from this ordering.
    Emulating it here makes the race deterministic.)
    """

    _idle_since: float | None = None

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._idle_since = self.loop.time()

    def timeout_keep_alive_handler(self) -> None:
        """The timer "runs late": at the next request (:meth:`data_received`)."""

    def data_received(self, data: bytes) -> None:
        since, self._idle_since = self._idle_since, None
        if since is not None and self.loop.time() - since >= self.timeout_keep_alive:
            self.transport.close()  # the overdue keep-alive timer wins
            return
        super().data_received(data)


@pytest.mark.parametrize("case", ["fixed", "expiry-above-keepalive", "unfixed"])
async def test_burst_after_idle_longer_than_keepalive_has_no_errors(
        case: str, tokens: TokenFactory, headers: dict[str, str],
        asgi_server: Callable[..., ThreadServer], monkeypatch: pytest.MonkeyPatch) -> None:
    """``fixed``: the defaults. ``expiry-above-keepalive``: a gateway keeping idle
    connections longer than the service (only the retry saves it). ``unfixed``: that and
    no retry, as before the fix: the reproduction gives the reported 502s."""
    upstream = CountingUpstream()
    server = asgi_server(upstream, http=OverdueKeepAlive)  # uvicorn's 5 s keep-alive
    assert server.server.config.timeout_keep_alive == UVICORN_KEEP_ALIVE
    settings = GatewaySettings(rate_limit=0)
    if case != "fixed":
        settings = GatewaySettings(rate_limit=0, upstream_keepalive_expiry=30.0)
    if case == "unfixed":
        monkeypatch.setattr(upstreams, "stale_connection_failure", lambda *_: None)
    gateway = create_app(upstreams={"catalog": server.url}, verifier=tokens.verifier(),
                         settings=settings, registry=CollectorRegistry(), access_log=False)
    burst = 50

    async with httpx.AsyncClient(transport=httpx.ASGITransport(gateway),
                                 base_url="http://gateway.test", timeout=30) as client:

        async def fire() -> list[int]:
            answers = await asyncio.gather(
                *(client.get(READ, headers=headers) for _ in range(burst)))
            return [r.status_code for r in answers]

        assert await fire() == [200] * burst  # fills the gateway's pool
        await asyncio.sleep(UVICORN_KEEP_ALIVE + 0.3)  # idle longer than the keep-alive
        statuses = await fire()

    await gateway.upstreams.aclose()
    if case == "unfixed":  # the reported failure: 502s after an idle pause
        assert statuses.count(502) > 0, statuses
        assert set(statuses) <= {200, 502}
        return
    assert statuses == [200] * burst, sorted(set(statuses))
    assert upstream.seen == 2 * burst  # each request reached the service exactly once
    if case == "fixed":
        assert all_retries(gateway) == 0  # the gateway had dropped its idle connections
    else:  # the reused connections were stale; each request was sent again once
        assert 0 < all_retries(gateway) <= burst


@dataclass
class DroppingUpstream:
    """A raw HTTP/1.1 server: answers the first request on each connection (kept alive);
    a later one is read and recorded, then the connection is closed without a byte of
    answer (what a service does when its keep-alive runs out, or when it crashes)."""

    seen: list[tuple[str, str | None]] = field(default_factory=list)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        served = False
        try:
            while True:
                head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
                lines = head.split("\r\n")
                method = lines[0].split(" ", 1)[0]
                fields = dict(line.split(":", 1) for line in lines[1:] if ":" in line)
                named = {k.strip().lower(): v.strip() for k, v in fields.items()}
                await reader.readexactly(int(named.get("content-length", "0")))
                self.seen.append((method, named.get("idempotency-key")))
                if served:
                    return  # dropped: closed below, nothing answered
                served = True
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                             b"content-length: 2\r\n\r\n{}")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            return
        finally:
            writer.close()


@pytest.fixture
async def dropping(tokens: TokenFactory) -> AsyncIterator[tuple[DroppingUpstream, Gateway,
                                                                 httpx.AsyncClient]]:
    upstream = DroppingUpstream()
    server = await asyncio.start_server(upstream.handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    gateway = create_app(upstreams={"catalog": f"http://127.0.0.1:{port}"},
                         verifier=tokens.verifier(), settings=GatewaySettings(rate_limit=0),
                         registry=CollectorRegistry(), access_log=False)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(gateway),
                                 base_url="http://gateway.test") as client:
        yield upstream, gateway, client
    await gateway.upstreams.aclose()
    server.close()
    await server.wait_closed()


async def test_post_without_key_on_a_stale_connection_is_not_retried(
        dropping: tuple[DroppingUpstream, Gateway, httpx.AsyncClient],
        headers: dict[str, str]) -> None:
    upstream, gateway, client = dropping
    assert (await client.get(READ, headers=headers)).status_code == 200  # opens a connection
    r = await client.post(WRITE, headers=headers, json={"slug": "tea", "name": "Tea"})
    assert r.status_code == 502
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["status"] == 502
    assert [m for m, _ in upstream.seen] == ["GET", "POST"]  # the POST arrived once
    assert all_retries(gateway) == 0
    assert gateway.registry.get_sample_value(
        "charter_gateway_upstream_errors_total",
        {"service": "gateway", "api": "catalog", "kind": "protocol"}) == 1


async def test_idempotent_requests_are_retried_once_and_counted(
        dropping: tuple[DroppingUpstream, Gateway, httpx.AsyncClient],
        headers: dict[str, str]) -> None:
    upstream, gateway, client = dropping
    assert (await client.get(READ, headers=headers)).status_code == 200
    r = await client.get(READ, headers=headers)  # reused connection dropped → retried
    assert r.status_code == 200, r.text
    assert retries(gateway) == 1
    assert (await client.get(READ, headers=headers)).status_code == 200  # new pooled one
    keyed = {**headers, "Idempotency-Key": "k-1"}
    r = await client.post(WRITE, headers=keyed, json={"slug": "tea", "name": "Tea"})
    assert r.status_code == 200, r.text
    assert retries(gateway) == 2
    assert upstream.seen == [("GET", None), ("GET", None), ("GET", None), ("GET", None),
                             ("POST", "k-1"), ("POST", "k-1")]
    metrics = (await client.get("/metrics")).text
    assert ('charter_gateway_upstream_retries_total{api="catalog",kind="protocol",'
            'service="gateway"} 2.0') in metrics


def _failed(method: str, reused: bool, exc: Exception,
            headers: dict[str, str] | None = None) -> str | None:
    request = httpx.Request(method, "http://upstream/x", headers=headers)
    request.extensions[REUSED] = reused
    return stale_connection_failure(request, exc)


@pytest.mark.parametrize("method", ["GET", "HEAD", "OPTIONS", "PUT", "DELETE"])
def test_idempotent_methods_may_be_retried(method: str) -> None:
    dropped = httpx.RemoteProtocolError("Server disconnected without sending a response.")
    assert _failed(method, True, dropped) == "protocol"
    assert _failed(method, True, httpx.ReadError("reset")) == "read"
    assert _failed(method, True, httpx.WriteError("broken pipe")) == "write"
    assert _failed(method, False, dropped) is None  # a new connection: not the stale race


@pytest.mark.parametrize("method", ["POST", "PATCH"])
def test_other_methods_only_with_an_idempotency_key(method: str) -> None:
    dropped = httpx.RemoteProtocolError("Server disconnected without sending a response.")
    assert _failed(method, True, dropped) is None
    assert _failed(method, True, dropped, {"Idempotency-Key": "k"}) == "protocol"


def test_a_malformed_answer_or_a_timeout_is_not_retried() -> None:
    assert _failed("GET", True, httpx.RemoteProtocolError("illegal status line")) is None
    assert _failed("GET", True, httpx.ReadTimeout("slow")) is None


def test_gateway_drops_idle_connections_before_services_close_them() -> None:
    expiry = GatewaySettings().upstream_keepalive_expiry
    assert expiry < UVICORN_KEEP_ALIVE  # a service run by bare uvicorn
    assert expiry < serve.KEEP_ALIVE  # a service run by charter up
    assert serve.uvicorn_keepalive_config()["timeout_keep_alive"] == serve.KEEP_ALIVE
    cfg = uvicorn.Config("x:y")
    assert cfg.timeout_keep_alive == UVICORN_KEEP_ALIVE
