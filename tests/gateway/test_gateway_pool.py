"""The gateway's upstream connection pool (``services.gateway.pool.UpstreamPool``, issue 8):
O(1) work per request, keep-alive reuse, ``max_connections`` with FIFO waiters, the pool
timeout, expiry, and no slot lost to a cancelled request.

Against a real uvicorn upstream that records which connection (client port) carried
each request; ``?delay=<s>`` makes it answer late.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

import httpcore
import httpx
import pytest
from prometheus_client import CollectorRegistry

from charter.testing import TokenFactory
from services.gateway.app import create_app
from services.gateway.pool import REUSED, UpstreamPool
from services.gateway.settings import GatewaySettings
from services.gateway.upstreams import ReuseAwareTransport, Upstreams
from tests.support.servers import ThreadServer, read_body

pytestmark = pytest.mark.anyio


@dataclass
class PortRecorder:
    """Answers 200 ``{}`` (after ``?delay=`` seconds) and records each request's client
    port: one port per upstream connection."""

    ports: list[int] = field(default_factory=list)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        await read_body(receive)
        self.ports.append(scope["client"][1])
        delay = parse_qs(scope["query_string"].decode()).get("delay")
        if delay:
            await asyncio.sleep(float(delay[0]))
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", b"2")]})
        await send({"type": "http.response.body", "body": b"{}"})

    @property
    def connections(self) -> int:
        return len(set(self.ports))


@pytest.fixture
def upstream(asgi_server: Callable[..., ThreadServer]) -> tuple[PortRecorder, str]:
    recorder = PortRecorder()
    return recorder, asgi_server(recorder).url


def transport(url: str, max_connections: int = 20, max_keepalive: int = 20,
              expiry: float = 4.0) -> ReuseAwareTransport:
    return ReuseAwareTransport(url, True, httpx.Limits(
        max_connections=max_connections, max_keepalive_connections=max_keepalive,
        keepalive_expiry=expiry))


async def get(t: ReuseAwareTransport, url: str, delay: float = 0,
              pool_timeout: float | None = None) -> httpx.Request:
    """One GET through ``t``, body read and closed; the request (with its extensions)."""
    request = httpx.Request("GET", f"{url}/x" + (f"?delay={delay}" if delay else ""))
    if pool_timeout is not None:
        request.extensions["timeout"] = {"pool": pool_timeout}
    response = await t.handle_async_request(request)
    try:
        await response.aread()
        assert response.status_code == 200
    finally:
        await response.aclose()
    return request


async def until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    """Yield to the loop until ``condition()`` holds (fails after ``timeout``)."""
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.005)


def stats(t: ReuseAwareTransport) -> dict[str, int]:
    return t.pool.stats()


async def busy_single_slot(url: str, delay: float) -> tuple[ReuseAwareTransport,
                                                              asyncio.Task[httpx.Request]]:
    """A transport of one connection, taken by a request the service answers after
    ``delay`` seconds."""
    t = transport(url, max_connections=1)
    slow = asyncio.create_task(get(t, url, delay=delay))
    await until(lambda: stats(t)["in_use"] == 1)
    return t, slow


async def assert_one_connection_left(t: ReuseAwareTransport, recorder: PortRecorder,
                                     url: str, slow: asyncio.Task[httpx.Request]) -> None:
    """After ``slow`` finished: no slot lost, its connection idle and reused next."""
    await slow
    assert stats(t) == {"idle": 1, "in_use": 0, "waiters": 0}
    assert (await get(t, url, pool_timeout=0.5)).extensions[REUSED] is True
    assert recorder.connections == 1
    await t.aclose()


async def test_sequential_requests_reuse_one_connection(
        upstream: tuple[PortRecorder, str]) -> None:
    recorder, url = upstream
    t = transport(url)
    requests = [await get(t, url) for _ in range(10)]
    assert recorder.connections == 1
    assert [r.extensions[REUSED] for r in requests] == [False] + [True] * 9
    assert stats(t) == {"idle": 1, "in_use": 0, "waiters": 0}
    await t.aclose()
    assert stats(t)["idle"] == 0


async def test_concurrent_requests_open_at_most_one_connection_each_then_reuse(
        upstream: tuple[PortRecorder, str]) -> None:
    recorder, url = upstream
    t = transport(url, max_connections=50, max_keepalive=50)
    await asyncio.gather(*(get(t, url, delay=0.1) for _ in range(20)))
    first = set(recorder.ports)
    assert 1 < len(first) <= 20
    assert stats(t) == {"idle": len(first), "in_use": 0, "waiters": 0}
    requests = await asyncio.gather(*(get(t, url, delay=0.1) for _ in range(len(first))))
    assert set(recorder.ports) == first  # no new connection
    assert all(r.extensions[REUSED] for r in requests)
    await t.aclose()


async def test_only_the_taken_connection_is_checked(
        upstream: tuple[PortRecorder, str], monkeypatch: pytest.MonkeyPatch) -> None:
    """O(1): with 20 idle connections, a request checks one (httpcore's pool: all 20)."""
    recorder, url = upstream
    t = transport(url)
    await asyncio.gather(*(get(t, url, delay=0.1) for _ in range(20)))
    assert stats(t)["idle"] == recorder.connections > 1
    checks = 0
    has_expired = httpcore.AsyncHTTPConnection.has_expired

    def counting(self: httpcore.AsyncHTTPConnection) -> bool:
        nonlocal checks
        checks += 1
        return has_expired(self)

    monkeypatch.setattr(httpcore.AsyncHTTPConnection, "has_expired", counting)
    for _ in range(10):
        await get(t, url)
    assert checks == 10
    await t.aclose()


async def test_max_connections_is_respected_and_waiters_are_served_in_order(
        upstream: tuple[PortRecorder, str]) -> None:
    recorder, url = upstream
    t = transport(url, max_connections=1)
    done: list[str] = []

    async def call(name: str, delay: float = 0) -> httpx.Request:
        request = await get(t, url, delay=delay)
        done.append(name)
        return request

    first = asyncio.create_task(call("a", delay=0.3))
    await until(lambda: stats(t)["in_use"] == 1)
    waiting = []
    for n, name in enumerate("bcd", start=1):
        waiting.append(asyncio.create_task(call(name)))
        await until(lambda n=n: stats(t)["waiters"] == n)  # type: ignore[misc]
    assert stats(t) == {"idle": 0, "in_use": 1, "waiters": 3}
    requests = await asyncio.gather(first, *waiting)
    assert done == ["a", "b", "c", "d"]
    assert recorder.connections == 1
    assert [r.extensions[REUSED] for r in requests] == [False, True, True, True]
    assert stats(t) == {"idle": 1, "in_use": 0, "waiters": 0}
    await t.aclose()


async def test_pool_timeout_raises_pool_timeout_and_loses_no_slot(
        upstream: tuple[PortRecorder, str]) -> None:
    recorder, url = upstream
    t, slow = await busy_single_slot(url, delay=0.4)
    with pytest.raises(httpx.PoolTimeout):
        await get(t, url, pool_timeout=0.05)
    assert stats(t)["waiters"] == 0
    await assert_one_connection_left(t, recorder, url, slow)


async def test_gateway_answers_504_when_the_pool_stays_full(
        upstream: tuple[PortRecorder, str], tokens: TokenFactory) -> None:
    _, url = upstream
    settings = GatewaySettings(rate_limit=0, max_connections=1, upstream_timeout=0.3)
    gateway = create_app(upstreams={"catalog": url}, verifier=tokens.verifier(),
                         settings=settings, registry=CollectorRegistry(), access_log=False)
    headers = {"Authorization": f"Bearer {tokens.token(scope='catalog:read')}"}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(gateway),
                                 base_url="http://gateway.test") as client:
        answers = await asyncio.gather(
            client.get("/catalog/v1/products/1?delay=0.2", headers=headers),
            client.get("/catalog/v1/products/1?delay=0.2", headers=headers))
    assert sorted(r.status_code for r in answers) == [200, 504]
    late = next(r for r in answers if r.status_code == 504)
    assert late.headers["content-type"] == "application/problem+json"
    await gateway.upstreams.aclose()


async def test_expired_idle_connection_is_not_reused(
        upstream: tuple[PortRecorder, str]) -> None:
    recorder, url = upstream
    t = transport(url, expiry=0.2)
    await get(t, url)
    await asyncio.sleep(0.3)
    request = await get(t, url)
    assert request.extensions[REUSED] is False
    assert recorder.connections == 2
    assert stats(t) == {"idle": 1, "in_use": 0, "waiters": 0}
    await t.aclose()


async def test_old_idle_connections_are_dropped_without_being_taken(
        upstream: tuple[PortRecorder, str]) -> None:
    """LIFO keeps reusing the newest; the ones idle past the expiry at the old end are
    closed as requests come and go (no socket left lingering)."""
    _, url = upstream
    t = transport(url, expiry=0.3)
    await asyncio.gather(*(get(t, url, delay=0.1) for _ in range(5)))
    assert stats(t)["idle"] > 1
    for _ in range(8):
        await get(t, url)
        await asyncio.sleep(0.05)
    assert stats(t)["idle"] == 1
    await t.aclose()


async def test_connection_the_service_closed_while_idle_is_not_reused(
        asgi_server: Callable[..., ThreadServer]) -> None:
    recorder = PortRecorder()
    url = asgi_server(recorder, timeout_keep_alive=1).url
    t = transport(url, expiry=30.0)  # longer than the service's keep-alive
    await get(t, url)
    await asyncio.sleep(1.5)  # the service closed it
    request = await get(t, url)
    assert request.extensions[REUSED] is False
    assert recorder.connections == 2
    await t.aclose()


async def test_cancelled_mid_request_frees_the_slot(
        upstream: tuple[PortRecorder, str]) -> None:
    recorder, url = upstream
    t = transport(url, max_connections=1)
    hung = asyncio.create_task(get(t, url, delay=5))
    await until(lambda: len(recorder.ports) == 1)  # the request is at the service
    hung.cancel()
    with pytest.raises(asyncio.CancelledError):
        await hung
    assert stats(t) == {"idle": 0, "in_use": 0, "waiters": 0}
    request = await get(t, url, pool_timeout=0.5)  # the one slot is free again
    assert request.extensions[REUSED] is False  # the half-used connection was closed
    await t.aclose()


async def test_cancelled_while_waiting_frees_its_place(
        upstream: tuple[PortRecorder, str]) -> None:
    recorder, url = upstream
    t, slow = await busy_single_slot(url, delay=0.3)
    waiter = asyncio.create_task(get(t, url))
    await until(lambda: stats(t)["waiters"] == 1)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert stats(t)["waiters"] == 0
    await assert_one_connection_left(t, recorder, url, slow)


async def test_waiter_cancelled_as_it_is_handed_a_connection_passes_it_on(
        upstream: tuple[PortRecorder, str]) -> None:
    """The connection is handed over, then the waiter is cancelled before it runs: the
    connection goes to the next waiter (or back to the pool), not lost."""
    recorder, url = upstream
    t = transport(url, max_connections=1)
    response = await t.handle_async_request(httpx.Request("GET", f"{url}/x"))
    assert isinstance(response.stream, httpx.AsyncByteStream)
    assert b"".join([part async for part in response.stream]) == b"{}"  # read, not closed
    cancelled = asyncio.create_task(get(t, url))
    await until(lambda: stats(t)["waiters"] == 1)
    later = asyncio.create_task(get(t, url))
    await until(lambda: stats(t)["waiters"] == 2)
    await response.aclose()  # hands the connection to `cancelled` (not run yet) ...
    cancelled.cancel()  # ... which is cancelled before it runs
    with pytest.raises(asyncio.CancelledError):
        await cancelled
    assert (await asyncio.wait_for(later, 2)).extensions[REUSED] is True
    assert stats(t) == {"idle": 1, "in_use": 0, "waiters": 0}
    assert recorder.connections == 1
    await t.aclose()


async def test_last_waiter_cancelled_as_it_is_handed_a_connection_returns_it(
        upstream: tuple[PortRecorder, str]) -> None:
    recorder, url = upstream
    t = transport(url, max_connections=1)
    response = await t.handle_async_request(httpx.Request("GET", f"{url}/x"))
    assert isinstance(response.stream, httpx.AsyncByteStream)
    assert b"".join([part async for part in response.stream]) == b"{}"  # read, not closed
    cancelled = asyncio.create_task(get(t, url))
    await until(lambda: stats(t)["waiters"] == 1)
    await response.aclose()
    cancelled.cancel()
    with pytest.raises(asyncio.CancelledError):
        await cancelled
    assert stats(t) == {"idle": 1, "in_use": 0, "waiters": 0}
    assert (await get(t, url, pool_timeout=0.5)).extensions[REUSED] is True
    assert recorder.connections == 1
    await t.aclose()


async def test_waiter_handed_a_dead_connection_opens_a_new_one(
        upstream: tuple[PortRecorder, str], monkeypatch: pytest.MonkeyPatch) -> None:
    recorder, url = upstream
    t = transport(url, max_connections=1)
    response = await t.handle_async_request(httpx.Request("GET", f"{url}/x"))
    assert isinstance(response.stream, httpx.AsyncByteStream)
    assert b"".join([part async for part in response.stream]) == b"{}"
    waiter = asyncio.create_task(get(t, url))
    await until(lambda: stats(t)["waiters"] == 1)
    # The connection dies (the service closed it) as it is handed over.
    monkeypatch.setattr(httpcore.AsyncHTTPConnection, "has_expired", lambda self: True)
    await response.aclose()
    request = await asyncio.wait_for(waiter, 2)
    assert request.extensions[REUSED] is False
    assert recorder.connections == 2
    assert stats(t) == {"idle": 1, "in_use": 0, "waiters": 0}
    await t.aclose()


async def test_failed_connect_frees_the_slot() -> None:
    from tests.support.servers import free_port

    url = f"http://127.0.0.1:{free_port()}"  # nothing listens
    t = transport(url, max_connections=1)
    for _ in range(3):
        with pytest.raises(httpx.ConnectError):
            await get(t, url, pool_timeout=0.5)
    assert stats(t) == {"idle": 0, "in_use": 0, "waiters": 0}


async def test_pool_without_keepalive_never_reuses(
        upstream: tuple[PortRecorder, str]) -> None:
    """The retry pool (``max_keepalive=0``): always a new connection, even for a waiter."""
    recorder, url = upstream
    t = transport(url, max_connections=1, max_keepalive=0)
    requests = await asyncio.gather(*(get(t, url, delay=0.05) for _ in range(3)))
    assert [r.extensions[REUSED] for r in requests] == [False] * 3
    assert recorder.connections == 3
    assert stats(t) == {"idle": 0, "in_use": 0, "waiters": 0}


async def test_aclose_closes_connections_in_use(
        upstream: tuple[PortRecorder, str]) -> None:
    recorder, url = upstream
    t = transport(url)
    await get(t, url)
    in_flight = asyncio.create_task(get(t, url, delay=0.5))
    await until(lambda: len(recorder.ports) == 2)
    await t.aclose()
    with pytest.raises(httpx.TransportError):
        await in_flight
    assert stats(t) == {"idle": 0, "in_use": 0, "waiters": 0}


async def test_a_request_for_another_origin_is_refused(
        upstream: tuple[PortRecorder, str]) -> None:
    _, url = upstream
    t = transport(url)
    with pytest.raises(httpx.UnsupportedProtocol):
        await t.handle_async_request(httpx.Request("GET", "http://127.0.0.2:1/x"))
    assert stats(t)["in_use"] == 0


async def test_upstreams_send_goes_through_the_pool(
        upstream: tuple[PortRecorder, str]) -> None:
    recorder, url = upstream
    settings = GatewaySettings(rate_limit=0, upstream_client="httpcore")
    ups = Upstreams(["catalog"], settings, {"catalog": url})
    for _ in range(3):
        response = await ups.send("catalog", httpx.Request("GET", f"{url}/x"))
        await response.aread()
        await response.aclose()
    pool = ups.pool("catalog")
    assert isinstance(pool, ReuseAwareTransport)
    assert isinstance(pool.pool, UpstreamPool)
    assert recorder.connections == 1
    await ups.aclose()


def test_pool_needs_a_connection() -> None:
    with pytest.raises(ValueError, match="max_connections"):
        UpstreamPool(httpcore.Origin(b"http", b"localhost", 80), max_connections=0)

