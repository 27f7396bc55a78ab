"""Fixtures of the gateway tests: real upstream HTTP servers (uvicorn in a thread), tokens,
and gateways driven in-process through ``httpx.ASGITransport``."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import httpx
import pytest
from gateway_support import EchoUpstream, serve

from charter.testing import TokenFactory
from services.gateway.app import Gateway, create_app
from services.gateway.routes import RouteTable
from services.gateway.settings import GatewaySettings

ALL_SCOPES = ("catalog:read catalog:write catalog:reserve cart:read cart:write "
              "orders:read orders:write payments:read payments:write exchange:read "
              "loyalty:read loyalty:write notifications:read notifications:write")


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session")
def tokens() -> TokenFactory:
    return TokenFactory()


@pytest.fixture(scope="session")
def routes() -> RouteTable:
    """The route table of the real ``openapi/`` folder."""
    return RouteTable.from_specs()


@pytest.fixture
def echo() -> Iterator[EchoUpstream]:
    """An echo service on a real port: answers every request with what it received."""
    upstream = EchoUpstream()
    server = serve(upstream)
    upstream.url = server.url
    yield upstream
    server.stop()


@pytest.fixture
def make_gateway(tokens: TokenFactory, routes: RouteTable,
                 echo: EchoUpstream) -> Callable[..., Gateway]:
    """A gateway whose every API is served by ``echo`` unless ``upstreams`` says otherwise."""

    def make(settings: GatewaySettings | None = None,
             upstreams: dict[str, str] | None = None, **kwargs: Any) -> Gateway:
        urls = {a.api: echo.url for a in routes.apis}
        urls.update(upstreams or {})
        return create_app(
            upstreams=urls,
            verifier=kwargs.pop("verifier", tokens.verifier()),
            settings=settings or GatewaySettings(rate_limit=0, upstream_timeout=5.0),
            **kwargs,
        )

    return make


@pytest.fixture
def gateway(make_gateway: Callable[..., Gateway]) -> Gateway:
    return make_gateway()


@pytest.fixture
async def client(gateway: Gateway) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(gateway),
                                 base_url="http://gateway.test") as http:
        yield http
    await gateway.upstreams.aclose()


@pytest.fixture
def bearer(tokens: TokenFactory) -> Callable[..., dict[str, str]]:
    """``Authorization`` header with a token carrying ``scope`` (every scope by default)."""

    def headers(scope: str = ALL_SCOPES, **claims: Any) -> dict[str, str]:
        return {"Authorization": f"Bearer {tokens.token(scope=scope, **claims)}"}

    return headers
