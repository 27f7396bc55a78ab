"""Helpers for the auth tests: client authentication, PKCE, the browser part of the code flow."""

from __future__ import annotations

import base64
import re
import secrets
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import jwt
import pytest
from authlib.oauth2.rfc7636 import create_s256_code_challenge
from flask.testing import FlaskClient

from auth import passwords

ISSUER = "http://127.0.0.1:8090"
AUDIENCE = "charter-api"
REDIRECT_URI = "http://127.0.0.1:8080/catalog/v1/ui/oauth2-redirect.html"
ALICE = ("alice@example.com", "alice-password-1")
CLI = ("demo-cli", "demo-cli-secret")
# A confidential client registered by the test fixtures, as a resource server would be.
RESOURCE_SERVER = ("test-resource-server", "test-resource-server-secret")
# Argon2id at the lowest cost argon2 accepts (development mode only): microseconds instead
# of ~0.1-0.3 s per hash, which made the auth tests take minutes.
TEST_ARGON2 = passwords.Argon2Params(time_cost=1, memory_cost=8, parallelism=1)


def use_test_hashing() -> None:
    """Make ``TEST_ARGON2`` this process's hashing cost (allowed in development mode)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CHARTER_ENV", "development")
        passwords.configure(TEST_ARGON2)


def basic(client_id: str, secret: str) -> dict[str, str]:
    raw = base64.b64encode(f"{client_id}:{secret}".encode()).decode()
    return {"Authorization": f"Basic {raw}"}


def client_credentials(client: FlaskClient, creds: tuple[str, str] = CLI, **extra: str) -> Any:
    return client.post(
        "/oauth/token", data={"grant_type": "client_credentials", **extra}, headers=basic(*creds)
    )


def jwks_verify(client: FlaskClient, token: str) -> dict[str, Any]:
    """Verify like a resource server: JWKS key by kid, pinned alg, audience, issuer."""
    header = jwt.get_unverified_header(token)
    keys = {k["kid"]: k for k in client.get("/.well-known/jwks.json").get_json()["keys"]}
    key = jwt.PyJWK(keys[header["kid"]]).key
    return jwt.decode(
        token,
        key,
        algorithms=["RS256"],
        audience=AUDIENCE,
        issuer=ISSUER,
        leeway=30,
        options={"require": ["exp", "iat", "iss", "aud", "sub", "jti"]},
    )


def csrf_from(html: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match, "no CSRF token in page"
    return match.group(1)


def pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    return verifier, create_s256_code_challenge(verifier)


def authorize_url(challenge: str | None, scope: str = "", method: str | None = "S256",
                  state: str = "st4te") -> str:
    params = {
        "response_type": "code",
        "client_id": "swagger-ui",
        "redirect_uri": REDIRECT_URI,
        "state": state,
    }
    if scope:
        params["scope"] = scope
    if challenge is not None:
        params["code_challenge"] = challenge
    if method is not None:
        params["code_challenge_method"] = method
    return "/oauth/authorize?" + urlencode(params)


def login(client: FlaskClient, email: str, password: str, next_url: str = "/") -> Any:
    page = client.get("/login?" + urlencode({"next": next_url}))
    return client.post(
        "/login",
        data={"csrf_token": csrf_from(page.get_data(as_text=True)), "email": email,
              "password": password, "next": next_url},
    )


def query_of(location: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


def obtain_code(client: FlaskClient, challenge: str, scope: str = "",
                user: tuple[str, str] = ALICE) -> str:
    """Run the browser part of the code flow: login, consent, Allow; return the code."""
    url = authorize_url(challenge, scope)
    first = client.get(url)
    assert first.status_code == 302 and first.headers["Location"].startswith("/login?next=")
    signed_in = login(client, *user, next_url=url)
    assert signed_in.status_code == 302 and signed_in.headers["Location"] == url
    consent = client.get(url)
    assert consent.status_code == 200
    html = consent.get_data(as_text=True)
    assert "Allow" in html and "Deny" in html
    decision = client.post(url, data={"csrf_token": csrf_from(html), "decision": "allow"})
    assert decision.status_code == 302, decision.get_data(as_text=True)
    location = decision.headers["Location"]
    assert location.startswith(REDIRECT_URI)
    params = query_of(location)
    assert params["state"] == "st4te"
    return params["code"]


def exchange_code(client: FlaskClient, code: str, verifier: str | None) -> Any:
    data = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": REDIRECT_URI,
        "client_id": "swagger-ui",
    }
    if verifier is not None:
        data["code_verifier"] = verifier
    return client.post("/oauth/token", data=data)


def code_flow_tokens(client: FlaskClient, scope: str = "",
                     user: tuple[str, str] = ALICE) -> dict[str, Any]:
    """The whole code + PKCE flow for ``user`` on ``swagger-ui``: the token response."""
    verifier, challenge = pkce()
    response = exchange_code(client, obtain_code(client, challenge, scope, user), verifier)
    assert response.status_code == 200, response.get_data(as_text=True)
    tokens: dict[str, Any] = response.get_json()
    return tokens


def refresh(client: FlaskClient, refresh_token: str) -> Any:
    """Redeem ``refresh_token`` as the public client ``swagger-ui``."""
    return client.post("/oauth/token", data={"grant_type": "refresh_token",
                                             "refresh_token": refresh_token,
                                             "client_id": "swagger-ui"})
