"""The portal's problem-type pages and the types of the gateway's own problems: every
``type`` the gateway answers resolves to a page it serves, without a token."""

from __future__ import annotations

import html
from collections.abc import Callable
from urllib.parse import urlsplit

import httpx
import pytest

from charter.problem_types import TYPES
from services.gateway.app import Gateway
from services.gateway.settings import GatewaySettings
from tests.support.problems import assert_problem

pytestmark = pytest.mark.anyio
PUBLIC = "https://portal.example.test"


@pytest.fixture(autouse=True)
def _public_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHARTER_PUBLIC_URL", PUBLIC)


async def test_index_lists_every_type_unauthenticated_and_cacheable(
        client: httpx.AsyncClient) -> None:
    assert 'href="/problems/"' in (await client.get("/")).text  # linked from the portal
    for path in ("/problems/", "/problems"):
        r = await client.get(path)
        assert r.status_code == 200
        assert r.headers["content-type"] == "text/html; charset=utf-8"
        assert r.headers["cache-control"] == "public, max-age=3600"
        for slug in TYPES:
            assert f'href="/problems/{slug}"' in r.text, slug


@pytest.mark.parametrize("slug", sorted(TYPES))
async def test_a_page_per_type_from_the_registry(client: httpx.AsyncClient, slug: str) -> None:
    r = await client.get(f"/problems/{slug}")
    assert r.status_code == 200 and r.headers["cache-control"] == "public, max-age=3600"
    t = TYPES[slug]
    assert f"<h1><code>{slug}</code></h1>" in r.text
    assert f"{t.status} {html.escape(t.title)}" in r.text
    first_words = " ".join(t.description.replace("`", "").split()[:3])
    assert html.escape(first_words) in r.text.replace("<code>", "").replace("</code>", "")


async def test_unknown_type_and_unsafe_method(client: httpx.AsyncClient) -> None:
    body = assert_problem(await client.get("/problems/no-such-kind"), 404)
    assert body["type"] == f"{PUBLIC}/problems/not-found"
    assert (await client.head("/problems/not-found")).status_code == 200
    body = assert_problem(await client.post("/problems/not-found"), 405)
    assert body["type"] == f"{PUBLIC}/problems/method-not-allowed"


async def test_the_gateways_own_problems_are_typed_and_resolve(
        client: httpx.AsyncClient, bearer: Callable[..., dict[str, str]]) -> None:
    answers = {
        "unauthorized": (await client.get("/catalog/v1/products"), 401),
        "insufficient-scope": (await client.get("/catalog/v1/products",
                                                headers=bearer("cart:read")), 403),
        "not-found": (await client.get("/nowhere"), 404),
        "method-not-allowed": (await client.put("/catalog/v1/products",
                                                headers=bearer()), 405),
    }
    for slug, (response, status) in answers.items():
        body = assert_problem(response, status)
        assert body["type"] == f"{PUBLIC}/problems/{slug}", body
        page = await client.get(urlsplit(body["type"]).path)  # it resolves at the portal
        assert page.status_code == 200 and f"<code>{slug}</code>" in page.text


async def test_rate_limited_is_typed(make_gateway: Callable[..., Gateway]) -> None:
    gateway = make_gateway(GatewaySettings(rate_limit=1, rate_burst=1))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(gateway),
                                 base_url="http://gateway.test") as http:
        await http.get("/catalog/v1/products")
        body = assert_problem(await http.get("/catalog/v1/products"), 429)
    await gateway.upstreams.aclose()
    assert body["type"] == f"{PUBLIC}/problems/rate-limited"
