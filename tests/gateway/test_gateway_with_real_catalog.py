"""The gateway in front of the real catalog service (uvicorn on 127.0.0.1, SQLite).

Both verify tokens from the same :class:`TokenFactory`: a request passes the gateway's
check, then the catalog's own (zero trust), and the catalog's answers — including its
validation problems — come back unchanged.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from charter.db import Database
from charter.testing import TokenFactory
from services.catalog import app as catalog_app
from services.gateway.app import create_app
from services.gateway.settings import GatewaySettings
from tests.support.servers import ThreadServer

pytestmark = pytest.mark.anyio


@dataclass
class Recorder:
    """ASGI middleware remembering the headers of every request the catalog gets."""

    app: Any
    seen: list[dict[str, str]] = field(default_factory=list)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            self.seen.append({k.decode(): v.decode() for k, v in scope["headers"]})
        await self.app(scope, receive, send)


@pytest.fixture
def catalog(tmp_path: Path, tokens: TokenFactory,
            migrated_db: Callable[[str, str], Database],
            asgi_server: Callable[..., ThreadServer]) -> tuple[str, Recorder]:
    db = migrated_db("catalog", f"sqlite:///{tmp_path / 'catalog.db'}")
    recorder = Recorder(catalog_app.create_app(db=db, verifier=tokens.verifier()))
    return asgi_server(recorder).url, recorder


@pytest.fixture
async def http(catalog: tuple[str, Recorder],
               tokens: TokenFactory) -> AsyncIterator[httpx.AsyncClient]:
    gateway = create_app(upstreams={"catalog": catalog[0]}, verifier=tokens.verifier(),
                         settings=GatewaySettings(rate_limit=1000, rate_burst=1000))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(gateway),
                                 base_url="http://gateway.test") as client:
        yield client
    await gateway.upstreams.aclose()


async def test_governed_calls_through_the_gateway(
        http: httpx.AsyncClient, catalog: tuple[str, Recorder], tokens: TokenFactory) -> None:
    token = tokens.token(sub="staff-1", scope="catalog:read catalog:write")
    staff = {"Authorization": f"Bearer {token}"}
    r = await http.post("/catalog/v1/categories", json={"slug": "tea", "name": "Tea"},
                        headers={**staff, "X-Correlation-Id": "via-gateway-1"})
    assert r.status_code == 201, r.text
    assert r.headers["x-correlation-id"] == "via-gateway-1"
    assert r.headers["ratelimit-limit"] == "1000"
    category = r.json()
    seen = catalog[1].seen[-1]
    assert seen["x-correlation-id"] == "via-gateway-1"
    assert seen["authorization"] == staff["Authorization"]
    assert seen["traceparent"].startswith("00-")

    r = await http.post("/catalog/v1/products", headers=staff, json={
        "sku": "TEA-0001", "name": "Sencha", "price": 990, "currency": "EUR",
        "category_id": category["id"]})
    assert r.status_code == 201, r.text
    product = r.json()
    reader = {"Authorization": f"Bearer {tokens.token(scope='catalog:read')}"}
    r = await http.get(f"/catalog/v1/products/{product['id']}", headers=reader)
    assert r.status_code == 200 and r.json()["sku"] == "TEA-0001"
    r = await http.get("/catalog/v1/products?page_size=10", headers=reader)
    assert r.status_code == 200 and r.json()["total"] == 1


async def test_service_answers_come_back_unchanged(
        http: httpx.AsyncClient, tokens: TokenFactory) -> None:
    reader = {"Authorization": f"Bearer {tokens.token(scope='catalog:read')}"}
    r = await http.get("/catalog/v1/products/999999", headers=reader)
    assert r.status_code == 404
    assert r.headers["content-type"] == "application/problem+json"
    writer = {"Authorization": f"Bearer {tokens.token(scope='catalog:write')}"}
    r = await http.post("/catalog/v1/categories", json={"slug": 1, "extra": True},
                        headers=writer)
    assert r.status_code == 400  # the catalog's own validation
    assert r.headers["content-type"] == "application/problem+json"


async def test_the_service_verifies_again(
        catalog: tuple[str, Recorder], tokens: TokenFactory) -> None:
    """Zero trust: a gateway trusting another key still cannot get a token accepted."""
    rogue = TokenFactory()  # a different signing key the catalog does not trust
    gateway = create_app(upstreams={"catalog": catalog[0]}, verifier=rogue.verifier(),
                         settings=GatewaySettings(rate_limit=0))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(gateway),
                                 base_url="http://gw") as client:
        r = await client.get("/catalog/v1/products", headers={
            "Authorization": f"Bearer {rogue.token(scope='catalog:read')}"})
    await gateway.upstreams.aclose()
    assert r.status_code == 401  # refused by the catalog, not the gateway
    assert catalog[1].seen  # it did reach the catalog
