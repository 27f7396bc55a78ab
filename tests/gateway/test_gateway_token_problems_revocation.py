"""The gateway and a service answer the same problem for the same token failure (every
401, and the 403 of a token lacking the operation's scope), and both refuse a revoked
token (a cached one included) as soon as their deny-set knows it.

The catalog app (Connexion, in-process) and the gateway each own a verifier; both share
one :class:`DenySet` here, as two processes fed by the same revocation feed would agree.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest

from charter.config import AuthSettings
from charter.db import Database
from charter.security.revocation import DenySet, Entry
from charter.security.tokens import TokenVerifier, scope_problem, token_problem
from charter.testing import TokenFactory
from services.catalog import app as catalog_app
from services.gateway.app import create_app
from services.gateway.settings import GatewaySettings

pytestmark = pytest.mark.anyio

PATH = "/v1/categories"


def verifier(tokens: TokenFactory, deny: DenySet) -> TokenVerifier:
    settings = AuthSettings(tokens.issuer, tokens.audience, "")
    return TokenVerifier(settings, tokens.verifier().jwks, revocations=deny)


@pytest.fixture
def deny() -> DenySet:
    return DenySet()


@pytest.fixture
async def pair(tmp_path: Path, tokens: TokenFactory, deny: DenySet,
               migrated_db: Callable[[str, str], Database],
               ) -> AsyncIterator[tuple[httpx.AsyncClient, httpx.AsyncClient]]:
    db = migrated_db("catalog", f"sqlite:///{tmp_path / 'catalog.db'}")
    service = catalog_app.create_app(db=db, verifier=verifier(tokens, deny))

    def unreachable(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json=[])  # the gateway forwards only accepted tokens

    gateway = create_app(upstreams={"catalog": "http://catalog.test"},
                         verifier=verifier(tokens, deny),
                         transport=httpx.MockTransport(unreachable),
                         settings=GatewaySettings(rate_limit=0))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(service),
                                 base_url="http://catalog.test") as s, \
            httpx.AsyncClient(transport=httpx.ASGITransport(gateway),
                              base_url="http://gateway.test") as g:
        yield g, s
    await gateway.upstreams.aclose()


async def both(pair: tuple[httpx.AsyncClient, httpx.AsyncClient],
               headers: dict[str, str]) -> tuple[httpx.Response, httpx.Response]:
    gateway, service = pair
    return (await gateway.get("/catalog" + PATH, headers=headers),
            await service.get(PATH, headers=headers))


def failures(tokens: TokenFactory) -> dict[str, tuple[dict[str, str], str]]:
    bad = tokens.bad_tokens("catalog:read")
    return {
        "missing": ({}, "missing"),
        "not_bearer": ({"Authorization": "Basic Zm9vOmJhcg=="}, "missing"),
        "expired": ({"Authorization": f"Bearer {bad['expired']}"}, "expired"),
        "bad_signature": ({"Authorization": f"Bearer {bad['bad_signature']}"}, "invalid"),
        "wrong_audience": ({"Authorization": f"Bearer {bad['wrong_audience']}"}, "invalid"),
        "malformed": ({"Authorization": "Bearer not-a-jwt"}, "invalid"),
    }


@pytest.mark.parametrize("kind", sorted(failures(TokenFactory())))
async def test_gateway_and_service_give_the_same_problem(
        pair: Any, tokens: TokenFactory, kind: str) -> None:
    headers, reason = failures(tokens)[kind]
    via_gateway, direct = await both(pair, headers)
    expected = token_problem(reason)
    for response in (via_gateway, direct):
        assert response.status_code == 401, response.text
        assert response.headers["content-type"].startswith("application/problem+json")
        assert response.json() == expected.body()
        assert response.headers["www-authenticate"] == expected.challenge
    assert "Error" not in via_gateway.text  # no library exception names


@pytest.mark.parametrize("scope", ["", "catalog:write", "cart:read orders:write"])
async def test_gateway_and_service_give_the_same_403_for_a_missing_scope(
        pair: Any, tokens: TokenFactory, scope: str) -> None:
    """RFC 6750 §3.1: ``insufficient_scope`` naming the required scope, never the token's."""
    token = tokens.token(sub="alice", scope=scope)
    via_gateway, direct = await both(pair, {"Authorization": f"Bearer {token}"})
    expected = scope_problem({"catalog:read"})
    for response in (via_gateway, direct):
        assert response.status_code == 403, response.text
        assert response.headers["content-type"].startswith("application/problem+json")
        assert response.json() == expected.body()
        assert response.headers["www-authenticate"] == (
            'Bearer realm="charter", error="insufficient_scope", scope="catalog:read"')
        for own in scope.split():
            assert own not in response.text
    assert via_gateway.json() == direct.json()


async def test_revoked_token_is_refused_alike_even_when_cached(
        pair: Any, tokens: TokenFactory, deny: DenySet) -> None:
    token = tokens.token(sub="alice", scope="catalog:read", sid="grant-1")
    headers = {"Authorization": f"Bearer {token}"}
    via_gateway, direct = await both(pair, headers)
    assert (via_gateway.status_code, direct.status_code) == (200, 200), direct.text

    claims = jwt.decode(token, options={"verify_signature": False})
    deny.add([Entry("jti", claims["jti"], claims["exp"], claims["iat"])])
    via_gateway, direct = await both(pair, headers)
    assert (via_gateway.status_code, direct.status_code) == (401, 401)
    assert via_gateway.json() == direct.json() == token_problem("revoked").body()
