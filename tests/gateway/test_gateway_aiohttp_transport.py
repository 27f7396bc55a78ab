"""The gateway's aiohttp upstream client behind httpx's transport interface: what goes on
the wire is exactly what the gateway built, reuse is marked, errors are httpx's."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable

import httpx
import pytest

from services.gateway.aiohttp_transport import AiohttpTransport
from services.gateway.pool import REUSED
from services.gateway.settings import GatewaySettings
from services.gateway.upstreams import Upstreams

pytestmark = pytest.mark.anyio

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
LIMITS = httpx.Limits(max_connections=10, max_keepalive_connections=10, keepalive_expiry=4)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def read_request(reader: asyncio.StreamReader) -> tuple[str, list[tuple[str, str]],
                                                              bytes]:
    head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
    headers = [tuple(line.split(": ", 1)) for line in head[1:] if line]
    length = next((int(v) for k, v in headers if k.lower() == "content-length"), 0)
    body = await reader.readexactly(length) if length else b""
    return head[0], headers, body  # type: ignore[return-value]


async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Answers every request on the connection with what it received, as JSON."""
    while True:
        try:
            line, headers, body = await read_request(reader)
        except (asyncio.IncompleteReadError, ConnectionError):
            break
        doc = json.dumps({"line": line, "headers": headers, "body": body.decode()}).encode()
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                     b"Content-Length: " + str(len(doc)).encode() + b"\r\n\r\n" + doc)
        await writer.drain()
    writer.close()


@pytest.fixture
async def serve() -> AsyncIterator[Callable[[Handler], Awaitable[str]]]:
    servers: list[asyncio.Server] = []

    async def start(handler: Handler) -> str:
        server = await asyncio.start_server(handler, "127.0.0.1", 0)
        servers.append(server)
        return f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"

    yield start
    for server in servers:
        server.close()


async def send(t: AiohttpTransport, request: httpx.Request) -> httpx.Response:
    request.extensions["timeout"] = {"connect": 2.0, "read": 2.0, "write": 2.0, "pool": 2.0}
    response = await t.handle_async_request(request)
    await response.aread()
    await response.aclose()
    return response


async def test_the_request_goes_out_exactly_as_built(
        serve: Callable[[Handler], Awaitable[str]]) -> None:
    url = await serve(echo)
    t = AiohttpTransport(url, None, LIMITS)
    request = httpx.Request("POST", f"{url}/v1/items/a%2Fb?q=%20x&q=y", content=b'{"n":1}',
                            headers=[("X-Correlation-Id", "c1"), ("Forwarded", "for=a"),
                                     ("Forwarded", "for=b")])
    doc = json.loads((await send(t, request)).content)
    assert doc["line"] == "POST /v1/items/a%2Fb?q=%20x&q=y HTTP/1.1"
    names = [name.lower() for name, _ in doc["headers"]]
    for added in ("user-agent", "accept", "accept-encoding", "content-type", "cookie"):
        assert added not in names  # nothing of aiohttp's own
    assert [v for k, v in doc["headers"] if k.lower() == "forwarded"] == ["for=a", "for=b"]
    assert doc["body"] == '{"n":1}'
    await t.aclose()


async def test_a_kept_alive_connection_is_reused_and_marked(
        serve: Callable[[Handler], Awaitable[str]]) -> None:
    url = await serve(echo)
    t = AiohttpTransport(url, None, LIMITS)
    first = httpx.Request("GET", f"{url}/x")
    second = httpx.Request("GET", f"{url}/x")
    await send(t, first)
    await send(t, second)
    assert first.extensions[REUSED] is False and second.extensions[REUSED] is True
    await t.aclose()


async def test_a_connection_closed_without_an_answer_is_httpx_remote_protocol_error(
        serve: Callable[[Handler], Awaitable[str]]) -> None:
    async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.close()

    url = await serve(hang_up)
    t = AiohttpTransport(url, None, LIMITS)
    with pytest.raises(httpx.RemoteProtocolError, match="without sending a response"):
        await send(t, httpx.Request("GET", f"{url}/x"))  # not retried by aiohttp itself
    await t.aclose()


async def test_refused_and_slow_upstreams_are_httpx_errors(
        serve: Callable[[Handler], Awaitable[str]]) -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        await asyncio.sleep(5)

    url = await serve(silent)
    t = AiohttpTransport(url, None, LIMITS)
    request = httpx.Request("GET", f"{url}/x")
    request.extensions["timeout"] = {"connect": 1.0, "read": 0.2, "write": 1.0, "pool": 1.0}
    with pytest.raises(httpx.ReadTimeout):
        await t.handle_async_request(request)
    await t.aclose()
    closed = AiohttpTransport("http://127.0.0.1:9", None, LIMITS)  # discard port: refused
    with pytest.raises(httpx.ConnectError):
        await send(closed, httpx.Request("GET", "http://127.0.0.1:9/x"))
    await closed.aclose()


async def test_the_gateway_uses_it_by_default_and_httpcore_on_request(
        serve: Callable[[Handler], Awaitable[str]]) -> None:
    url = await serve(echo)
    default = Upstreams(["catalog"], GatewaySettings(rate_limit=0), {"catalog": url})
    assert isinstance(default.pool("catalog"), AiohttpTransport)
    response = await default.send("catalog", httpx.Request("GET", f"{url}/x"))
    assert response.status_code == 200 and response.request.url.path == "/x"
    await response.aread()
    await response.aclose()
    await default.aclose()
    other = Upstreams(["catalog"], GatewaySettings(rate_limit=0, upstream_client="httpcore"),
                      {"catalog": url})
    assert not isinstance(other.pool("catalog"), AiohttpTransport)
    await other.aclose()
