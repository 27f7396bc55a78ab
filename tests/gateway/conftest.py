"""Fixtures of the gateway tests: a real echo upstream (uvicorn in a thread) and gateways
driven in-process through ``httpx.ASGITransport``; ``tokens``, ``asgi_server`` and the
rest come from the shared plugin (tests/support/plugin.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from gateway_support import EchoUpstream

from charter.testing import TokenFactory
from services.gateway.app import Gateway, create_app
from services.gateway.routes import RouteTable
from services.gateway.settings import GatewaySettings
from tests.support.servers import ThreadServer

ALL_SCOPES = ("catalog:read catalog:write catalog:reserve cart:read cart:write "
              "orders:read orders:write payments:read payments:write exchange:read "
              "loyalty:read loyalty:write notifications:read notifications:write")


@pytest.fixture(scope="session")
def routes() -> RouteTable:
    """The route table of the real ``openapi/`` folder."""
    return RouteTable.from_specs()


@pytest.fixture
def echo(asgi_server: Callable[..., ThreadServer]) -> EchoUpstream:
    """An echo service on a real port: answers every request with what it received."""
    upstream = EchoUpstream()
    upstream.url = asgi_server(upstream).url
    return upstream


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
