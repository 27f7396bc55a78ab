"""Regression tests for the OAuth protocol defects of issue 6 (each failed before its fix)."""

from __future__ import annotations

from urllib.parse import urlencode

import pytest
from auth_helpers import (
    RESOURCE_SERVER,
    authorize_url,
    basic,
    client_credentials,
    code_flow_tokens,
    csrf_from,
    exchange_code,
    login,
    obtain_code,
    pkce,
    refresh,
)

from auth.store import Client
from auth.web import safe_next

# --- (a) open redirect after login ---------------------------------------------------


@pytest.mark.parametrize("target", [
    "/\t/attacker.example/x", "/\n/attacker.example/x", "/\r\n/attacker.example",
    "\t//attacker.example", "//attacker.example", "/\\attacker.example", "\\\\attacker.example",
    "https://attacker.example/", "javascript:alert(1)", "/x\x00y", "/ok\x7f", "///attacker",
    "attacker.example", "",
])
def test_safe_next_refuses_what_a_browser_would_send_elsewhere(target: str) -> None:
    assert safe_next(target) == "/"


@pytest.mark.parametrize("target", ["/", "/oauth/authorize?client_id=x&state=%2F%2Fy", "/a/b#c"])
def test_safe_next_keeps_local_paths(target: str) -> None:
    assert safe_next(target) == target


@pytest.mark.parametrize("raw_next", ["/%09/attacker.example/x", "/%0A/attacker.example/x",
                                      "/%0D%0ALocation:%20https://attacker.example"])
def test_login_never_redirects_off_site(client, raw_next: str) -> None:
    page = client.get(f"/login?next={raw_next}")
    assert page.status_code == 200
    response = client.post("/login", data={
        "csrf_token": csrf_from(page.get_data(as_text=True)),
        "email": "alice@example.com", "password": "alice-password-1",
        "next": page.request.args["next"]})
    assert response.status_code == 302, response.get_data(as_text=True)
    assert response.headers["Location"] == "/"


# --- (b) token_type_hint only orders the search ----------------------------------------


def test_introspection_with_wrong_hint_still_finds_the_access_token(client) -> None:
    token = client_credentials(client).get_json()["access_token"]
    response = client.post("/oauth/introspect", headers=basic(*RESOURCE_SERVER),
                           data={"token": token, "token_type_hint": "refresh_token"})
    assert response.status_code == 200
    assert response.get_json()["active"] is True


def test_revocation_with_wrong_hint_still_revokes_the_access_token(client) -> None:
    token = client_credentials(client).get_json()["access_token"]
    revoked = client.post("/oauth/revoke", headers=basic("demo-cli", "demo-cli-secret"),
                          data={"token": token, "token_type_hint": "refresh_token"})
    assert revoked.status_code == 200
    after = client.post("/oauth/introspect", data={"token": token},
                        headers=basic(*RESOURCE_SERVER))
    assert after.get_json() == {"active": False}


def test_refresh_token_found_with_access_token_hint(client) -> None:
    tokens = code_flow_tokens(client)
    revoked = client.post("/oauth/revoke", data={
        "token": tokens["refresh_token"], "token_type_hint": "access_token",
        "client_id": "swagger-ui"})
    assert revoked.status_code == 200
    again = refresh(client, tokens["refresh_token"])
    assert again.status_code == 400 and again.get_json()["error"] == "invalid_grant"


# --- (c) code replay revokes what the first exchange issued -----------------------------


def test_code_replay_revokes_tokens_of_the_first_exchange(client) -> None:
    verifier, challenge = pkce()
    code = obtain_code(client, challenge)
    first = exchange_code(client, code, verifier)
    assert first.status_code == 200
    tokens = first.get_json()
    replay = exchange_code(client, code, verifier)
    assert replay.status_code == 400 and replay.get_json()["error"] == "invalid_grant"

    introspected = client.post("/oauth/introspect", data={"token": tokens["access_token"]},
                               headers=basic(*RESOURCE_SERVER))
    assert introspected.get_json() == {"active": False}
    refreshed = refresh(client, tokens["refresh_token"])
    assert refreshed.status_code == 400 and refreshed.get_json()["error"] == "invalid_grant"


# --- (d) redirect_uri required when the client registered several -----------------------


def test_missing_redirect_uri_is_refused_on_a_page(client) -> None:
    login(client, "alice@example.com", "alice-password-1")
    _verifier, challenge = pkce()
    url = authorize_url(challenge).replace("redirect_uri=", "ignored=")
    response = client.get(url)
    assert response.status_code == 400
    assert "Location" not in response.headers
    assert response.mimetype == "text/html"
    assert "redirect_uri" in response.get_data(as_text=True)


def test_missing_redirect_uri_is_fine_with_a_single_registered_one(client, db) -> None:
    only = "https://app.example/cb"
    with db.session() as session:
        session.add(Client(client_id="single", client_name="One URI",
                           grant_types=["authorization_code"], response_types=["code"],
                           redirect_uris=[only], scope="catalog:read",
                           token_endpoint_auth_method="none"))
    login(client, "alice@example.com", "alice-password-1")
    _verifier, challenge = pkce()
    params = {"response_type": "code", "client_id": "single", "code_challenge": challenge,
              "code_challenge_method": "S256", "state": "s"}
    page = client.get("/oauth/authorize?" + urlencode(params))
    assert page.status_code == 200 and "Allow" in page.get_data(as_text=True)
