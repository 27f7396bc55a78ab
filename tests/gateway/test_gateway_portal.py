"""The portal page, each API's Swagger UI and ``openapi.json``, health and metrics."""

from __future__ import annotations

import html
import json
import re
from collections.abc import Callable

import httpx
import pytest

from charter import specs
from charter.config import AuthSettings
from charter.security.tokens import JWKSCache, TokenVerifier
from services.gateway.app import Gateway
from services.gateway.routes import RouteTable
from services.gateway.settings import GatewaySettings

pytestmark = pytest.mark.anyio


async def test_portal_lists_every_api_with_links(client: httpx.AsyncClient,
                                                 routes: RouteTable) -> None:
    r = await client.get("/")
    assert r.status_code == 200
    assert r.headers["content-type"] == "text/html; charset=utf-8"
    page = r.text
    text = " ".join(html.unescape(re.sub(r"<[^>]+>", "", page)).split())  # as shown
    for entry in routes.apis:
        info = entry.spec["info"]
        assert html.escape(info["title"]) in page, entry.api
        assert f'href="/{entry.api}/{entry.version}/ui/"' in page
        assert f'href="/{entry.api}/{entry.version}/openapi.json"' in page
        assert f"owner: {html.escape(info['x-owner'])}" in page
        assert f"lifecycle: {html.escape(info['x-lifecycle'])}" in page
        # the description is rendered Markdown: its words, without the markup
        words = re.sub(r"[*`]", "", str(info["description"])).split()[:4]
        assert " ".join(words) in text, entry.api


async def test_openapi_json_points_servers_at_the_gateway(
        client: httpx.AsyncClient, routes: RouteTable) -> None:
    for entry in routes.apis:
        r = await client.get(f"/{entry.api}/{entry.version}/openapi.json")
        assert r.status_code == 200 and r.headers["content-type"] == "application/json"
        doc = r.json()
        assert doc["servers"] == [{"url": f"/{entry.api}/{entry.version}",
                                   "description": "Through the Charter gateway"}]
        bundled = specs.load(entry.api, entry.version)
        assert doc["paths"] == json.loads(json.dumps(bundled["paths"]))
        assert "$ref" not in json.dumps(doc).replace('"$ref": "#/', "")  # bundled


async def test_swagger_ui_page_is_configured_for_the_gateway_and_pkce(
        client: httpx.AsyncClient) -> None:
    r = await client.get("/catalog/v1/ui/")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    match = re.search(r"var config = (\{.*?\});", r.text)
    assert match is not None
    config = json.loads(match.group(1))
    assert config["url"] == "/catalog/v1/openapi.json"
    assert config["oauth2RedirectUrl"] == \
        "http://gateway.test/catalog/v1/ui/oauth2-redirect.html"
    oauth = config["initOAuth"]
    assert oauth["clientId"] == "swagger-ui"
    assert oauth["usePkceWithAuthorizationCodeGrant"] is True
    assert set(oauth["scopes"].split()) == set(specs.scopes(specs.load("catalog")))
    assert './swagger-ui-bundle.js' in r.text
    # index.html is the same page, /ui redirects to /ui/.
    assert (await client.get("/catalog/v1/ui/index.html")).text == r.text
    redirect = await client.get("/catalog/v1/ui")
    assert redirect.status_code == 308 and redirect.headers["location"] == "/catalog/v1/ui/"


async def test_public_url_overrides_the_redirect_origin(
        make_gateway: Callable[..., Gateway]) -> None:
    gateway = make_gateway(GatewaySettings(rate_limit=0, public_url="https://api.example"))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(gateway),
                                 base_url="http://gw") as http:
        r = await http.get("/cart/v1/ui/")
    assert "https://api.example/cart/v1/ui/oauth2-redirect.html" in r.text


async def test_swagger_ui_static_files(client: httpx.AsyncClient) -> None:
    js = await client.get("/catalog/v1/ui/swagger-ui-bundle.js")
    assert js.status_code == 200 and "javascript" in js.headers["content-type"]
    assert len(js.content) > 100_000
    css = await client.get("/cart/v1/ui/swagger-ui.css")
    assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")
    for path in ("/catalog/v1/ui/oauth2-redirect.html", "/ui/oauth2-redirect.html"):
        page = await client.get(path)
        assert page.status_code == 200 and "swaggerUIRedirectOauth2" in page.text
    for path in ("/catalog/v1/ui/nope.js", "/catalog/v1/ui/../../etc/passwd",
                 "/catalog/v1/ui/index.j2", "/catalog/v1/ui/a/b.js"):
        assert (await client.get(path)).status_code == 404, path
    head = await client.head("/catalog/v1/ui/swagger-ui.css")
    assert head.status_code == 200 and head.content == b""
    assert (await client.post("/")).status_code == 405


async def test_health_live_and_ready(client: httpx.AsyncClient, routes: RouteTable) -> None:
    live = await client.get("/health/live")
    assert live.status_code == 200 and live.json()["status"] == "ok"
    ready = await client.get("/health/ready")
    assert ready.status_code == 200
    checks = ready.json()["checks"]
    assert checks["routes"] == f"ok ({len(routes)} operations)"
    assert checks["jwks"] == "ok (1 keys)"
    with_upstreams = await client.get("/health/ready?upstreams=1")
    assert set(with_upstreams.json()["upstreams"]) == {a.api for a in routes.apis}
    assert with_upstreams.json()["upstreams"]["catalog"] == "ok"  # the echo answers 200


async def test_not_ready_without_signing_keys(make_gateway: Callable[..., Gateway]) -> None:
    def unreachable() -> dict[str, object]:
        raise ConnectionError("auth is down")

    verifier = TokenVerifier(AuthSettings("http://auth.test", "charter-api", ""),
                             JWKSCache(unreachable, min_refresh_interval=0))
    gateway = make_gateway(verifier=verifier)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(gateway),
                                 base_url="http://gw") as http:
        r = await http.get("/health/ready")
    assert r.status_code == 503
    assert r.json()["checks"]["jwks"] == "failed: no signing keys"


async def test_metrics_endpoint(client: httpx.AsyncClient) -> None:
    await client.get("/")
    r = await client.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    assert ('charter_gateway_requests_total{api="-",method="GET",operation="portal",'
            'service="gateway",status="200"} 1.0') in r.text
