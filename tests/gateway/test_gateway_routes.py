"""Routes are generated from ``openapi/``: every operation of every spec, nothing else."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
import yaml
from gateway_support import EchoUpstream, example_path

from charter import config, specs
from charter.testing import TokenFactory
from services.gateway.app import Gateway, create_app
from services.gateway.routes import Match, NoMatch, RouteTable, build_api, discover
from services.gateway.settings import GatewaySettings

pytestmark = pytest.mark.anyio


def spec_files() -> list[tuple[str, str]]:
    return [(p.parent.name, p.stem) for p in sorted(config.OPENAPI_DIR.glob("*/v*.yaml"))
            if p.parent.name != "common"]


def test_every_spec_file_is_discovered(routes: RouteTable) -> None:
    assert discover() == sorted(spec_files(), key=lambda t: (t[0], int(t[1][1:])))
    assert [(a.api, a.version) for a in routes.apis] == discover()
    assert {"catalog", "cart"} <= {a.api for a in routes.apis}


def test_every_operation_is_routed_to_its_service(routes: RouteTable) -> None:
    count = 0
    for api, version in discover():
        doc = specs.load(api, version)
        for path, item in doc["paths"].items():
            for method, op in item.items():
                if method not in ("get", "put", "post", "delete", "patch", "head", "options"):
                    continue
                concrete = example_path(path)
                found = routes.match(method.upper(), f"/{api}/{version}{concrete}")
                assert isinstance(found, Match), (api, method, path)
                assert found.operation.operation_id == op["operationId"]
                assert found.upstream_path == f"/{version}{concrete}"
                declared = {s for req in op.get("security", doc.get("security", []))
                            for names in req.values() for s in names}
                assert set(found.operation.required_scopes) == declared
                count += 1
    assert count == len(routes) > 10


def test_templates_match_exactly_one_segment(routes: RouteTable) -> None:
    assert isinstance(routes.match("GET", "/catalog/v1/products/42"), Match)
    assert isinstance(routes.match("GET", "/catalog/v1/products/a%2Fb"), Match)
    for path in ("/catalog/v1/products/42/extra", "/catalog/v1/products/",
                 "/catalog/v1/products//", "/catalog/v1/products/..",
                 "/catalog/v1/products/./42", "/catalog/v2/products", "/catalog",
                 "/nope/v1/products", "/catalog/v1", "/v1/products"):
        found = routes.match("GET", path)
        assert isinstance(found, NoMatch) and found.status == 404, path


def test_undeclared_method_is_405_with_allow(routes: RouteTable) -> None:
    found = routes.match("PUT", "/catalog/v1/categories")
    assert isinstance(found, NoMatch) and found.status == 405
    assert set(found.allow) == {"GET", "POST"}


def test_concrete_paths_win_over_templates() -> None:
    doc = {"paths": {
        "/items/{id}": {"get": {"operationId": "get_item"}},
        "/items/mine": {"get": {"operationId": "my_items"}},
        "/items/{id}/{part}": {"get": {"operationId": "part"}},
        "/items/{id}/stock": {"get": {"operationId": "stock"}},
    }}
    table = RouteTable([build_api("shop", "v1", doc)])

    def op(path: str) -> str:
        found = table.match("GET", path)
        assert isinstance(found, Match), path
        return found.operation.operation_id

    assert op("/shop/v1/items/mine") == "my_items"
    assert op("/shop/v1/items/7") == "get_item"
    assert op("/shop/v1/items/7/stock") == "stock"
    assert op("/shop/v1/items/7/colour") == "part"


def test_security_alternatives_and_public_operations() -> None:
    doc = {
        "security": [{"oauth2": ["a:read"]}],
        "paths": {
            "/inherited": {"get": {"operationId": "inherited"}},
            "/public": {"get": {"operationId": "public", "security": []}},
            "/either": {"get": {"operationId": "either",
                                "security": [{"oauth2": ["a:write"]}, {"oauth2": ["b:x"]}]}},
            "/anonymous-ok": {"get": {"operationId": "anon",
                                      "security": [{"oauth2": ["a:read"]}, {}]}},
        },
    }
    table = RouteTable([build_api("a", "v1", doc)])
    ops = {o.operation_id: o for o in table.apis[0].operations}
    assert ops["inherited"].security == (frozenset({"a:read"}),)
    assert ops["public"].security is None and ops["anon"].security is None
    assert ops["either"].allows({"b:x"}) and not ops["either"].allows({"a:read"})


async def test_unrouted_paths_are_problem_json(client: httpx.AsyncClient,
                                               echo: EchoUpstream) -> None:
    r = await client.get("/catalog/v1/nothing-here")
    assert r.status_code == 404
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["status"] == 404
    r = await client.delete("/catalog/v1/products")
    assert r.status_code == 405
    assert r.headers["content-type"] == "application/problem+json"
    assert {m.strip() for m in r.headers["allow"].split(",")} == {"GET", "POST"}
    r = await client.get("/unknown/v1/x")
    assert r.status_code == 404
    assert echo.seen == []  # nothing reached any service


async def test_query_string_and_raw_path_are_forwarded(
        client: httpx.AsyncClient, echo: EchoUpstream,
        bearer: Callable[..., dict[str, str]]) -> None:
    r = await client.get("/catalog/v1/products?page=2&page_size=5&q=a%20b", headers=bearer())
    assert r.status_code == 200, r.text
    assert echo.last["path"] == "/v1/products"
    assert echo.last["query"] == "page=2&page_size=5&q=a%20b"
    r = await client.get("/catalog/v1/products/a%2Fb", headers=bearer())
    assert r.status_code == 200
    assert echo.last["raw_path"] == "/v1/products/a%2Fb"


async def test_a_new_operation_is_routed_without_code_change(
        tmp_path: Path, echo: EchoUpstream, tokens: TokenFactory,
        bearer: Callable[..., dict[str, str]]) -> None:
    spec_dir = tmp_path / "openapi"
    shutil.copytree(config.OPENAPI_DIR, spec_dir)
    path = spec_dir / "catalog" / "v1.yaml"
    doc = yaml.safe_load(path.read_text())
    doc["paths"]["/products/{product_id}/reviews"] = {"get": {
        "operationId": "list_product_reviews",
        "summary": "Reviews of a product",
        "tags": ["products"],
        "security": [{"oauth2": ["catalog:read"]}],
        "parameters": [{"name": "product_id", "in": "path", "required": True,
                        "schema": {"type": "integer"}}],
        "responses": {"200": {"description": "Reviews."}},
    }}
    doc["paths"]["/status"] = {"get": {  # a public operation: no token needed
        "operationId": "public_status", "summary": "Status", "tags": ["products"],
        "security": [], "responses": {"200": {"description": "Up."}},
    }}
    path.write_text(yaml.safe_dump(doc))
    # ... and a whole new API, with a new major version of it.
    (spec_dir / "reviews").mkdir()
    new_api = {"openapi": "3.0.3", "info": {"title": "Reviews", "version": "2.0.0"},
               "paths": {"/reviews": {"get": {"operationId": "list_reviews",
                                              "security": [{"oauth2": ["reviews:read"]}],
                                              "responses": {"200": {"description": "ok"}}}}}}
    (spec_dir / "reviews" / "v2.yaml").write_text(yaml.safe_dump(new_api))

    gateway: Gateway = create_app(
        spec_dir=spec_dir,
        upstreams={"catalog": echo.url, "reviews": echo.url},
        verifier=tokens.verifier(),
        settings=GatewaySettings(rate_limit=0),
    )
    async with httpx.AsyncClient(transport=httpx.ASGITransport(gateway),
                                 base_url="http://gw") as http:
        r = await http.get("/catalog/v1/products/7/reviews", headers=bearer("catalog:read"))
        assert r.status_code == 200, r.text
        assert echo.last["path"] == "/v1/products/7/reviews"
        r = await http.get("/catalog/v1/products/7/reviews", headers=bearer("cart:read"))
        assert r.status_code == 403
        r = await http.get("/catalog/v1/status")
        assert r.status_code == 200 and echo.last["path"] == "/v1/status"
        assert "authorization" not in echo.last["headers"]
        r = await http.get("/reviews/v2/reviews", headers=bearer("reviews:read"))
        assert r.status_code == 200
        assert echo.last["path"] == "/v2/reviews"
        portal = await http.get("/")
        assert "/reviews/v2/ui/" in portal.text
    await gateway.upstreams.aclose()
