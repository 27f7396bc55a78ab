"""Authorization code + PKCE (S256 only), consent, refresh-token rotation, revocation."""

from __future__ import annotations

import pytest
from auth_helpers import (
    ALICE,
    REDIRECT_URI,
    RESOURCE_SERVER,
    authorize_url,
    basic,
    code_flow_tokens,
    csrf_from,
    exchange_code,
    jwks_verify,
    login,
    obtain_code,
    pkce,
    query_of,
    refresh,
)

from auth.accounts import find_by_email
from auth.scopes import ROLE_SCOPES

ALICE_SCOPES = ROLE_SCOPES["customer"]


def alice_id(db) -> str:
    with db.session() as session:
        user = find_by_email(session, ALICE[0])
        assert user is not None
        return user.id


def test_full_code_flow_as_alice(client, db):
    verifier, challenge = pkce()
    code = obtain_code(client, challenge, scope="catalog:read catalog:write cart:read")
    response = exchange_code(client, code, verifier)
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert body["refresh_token"]
    assert body["scope"] == "catalog:read cart:read"  # catalog:write is not a customer scope

    claims = jwks_verify(client, body["access_token"])
    assert claims["sub"] == alice_id(db)
    assert claims["client_id"] == "swagger-ui"
    assert claims["role"] == "customer"
    assert claims["email"] == ALICE[0]
    assert set(claims["scope"].split()) == {"catalog:read", "cart:read"}


def test_no_requested_scope_gives_all_role_scopes(client):
    verifier, challenge = pkce()
    code = obtain_code(client, challenge)
    body = exchange_code(client, code, verifier).get_json()
    assert set(body["scope"].split()) == set(ALICE_SCOPES)


def test_code_is_single_use(client):
    verifier, challenge = pkce()
    code = obtain_code(client, challenge)
    assert exchange_code(client, code, verifier).status_code == 200
    again = exchange_code(client, code, verifier)
    assert again.status_code == 400
    assert again.get_json()["error"] == "invalid_grant"


def test_plain_pkce_is_refused(client):
    login(client, *ALICE)
    verifier = "a" * 50
    response = client.get(authorize_url(verifier, method="plain"))
    assert response.status_code == 302
    params = query_of(response.headers["Location"])
    assert response.headers["Location"].startswith(REDIRECT_URI)
    assert params["error"] == "invalid_request"
    assert params["state"] == "st4te"


def test_missing_code_challenge_is_refused(client):
    login(client, *ALICE)
    response = client.get(authorize_url(None, method=None))
    assert response.status_code == 302
    assert query_of(response.headers["Location"])["error"] == "invalid_request"


@pytest.mark.parametrize(("verifier", "error"), [
    pytest.param(None, "invalid_request", id="missing"),
    pytest.param(pkce()[0], "invalid_grant", id="wrong"),
])
def test_missing_or_wrong_code_verifier_is_refused(client, verifier, error):
    _verifier, challenge = pkce()
    code = obtain_code(client, challenge)
    response = exchange_code(client, code, verifier)
    assert response.status_code == 400
    assert response.get_json()["error"] == error


def test_unregistered_redirect_uri_is_not_redirected_to(client):
    login(client, *ALICE)
    _verifier, challenge = pkce()
    url = authorize_url(challenge).replace("127.0.0.1%3A8080", "evil.example")
    response = client.get(url)
    assert response.status_code == 400
    assert "Location" not in response.headers


def test_deny_redirects_with_access_denied(client):
    _verifier, challenge = pkce()
    url = authorize_url(challenge)
    login(client, *ALICE, next_url=url)
    html = client.get(url).get_data(as_text=True)
    response = client.post(url, data={"csrf_token": csrf_from(html), "decision": "deny"})
    assert response.status_code == 302
    assert query_of(response.headers["Location"])["error"] == "access_denied"


def test_consent_post_without_csrf_is_refused(client):
    _verifier, challenge = pkce()
    url = authorize_url(challenge)
    login(client, *ALICE, next_url=url)
    response = client.post(url, data={"decision": "allow"})
    assert response.status_code == 400
    assert "Location" not in response.headers


def test_refresh_token_rotation(client):
    first = code_flow_tokens(client)

    second = refresh(client, first["refresh_token"])
    assert second.status_code == 200, second.get_json()
    second_body = second.get_json()
    assert second_body["refresh_token"] != first["refresh_token"]
    assert jwks_verify(client, second_body["access_token"])["role"] == "customer"

    third = refresh(client, second_body["refresh_token"])
    assert third.status_code == 200

    replay = refresh(client, first["refresh_token"])
    assert replay.status_code == 400
    assert replay.get_json()["error"] == "invalid_grant"
    # Replaying a used token revokes the whole family, the newest token included.
    after_replay = refresh(client, third.get_json()["refresh_token"])
    assert after_replay.status_code == 400


def test_revoke_refresh_token(client):
    tokens = code_flow_tokens(client)
    response = client.post(
        "/oauth/revoke",
        data={"token": tokens["refresh_token"], "token_type_hint": "refresh_token",
              "client_id": "swagger-ui"},
    )
    assert response.status_code == 200
    assert refresh(client, tokens["refresh_token"]).status_code == 400


def test_revoke_user_access_token(client):
    tokens = code_flow_tokens(client)
    introspect = {"token": tokens["access_token"]}
    active = client.post("/oauth/introspect", data=introspect, headers=basic(*RESOURCE_SERVER))
    assert active.get_json()["active"] is True
    assert active.get_json()["username"] == ALICE[0]
    revoked = client.post(
        "/oauth/revoke", data={"token": tokens["access_token"], "client_id": "swagger-ui"}
    )
    assert revoked.status_code == 200
    inactive = client.post("/oauth/introspect", data=introspect, headers=basic(*RESOURCE_SERVER))
    assert inactive.get_json() == {"active": False}


def test_admin_gets_every_requested_scope(client):
    verifier, challenge = pkce()
    code = obtain_code(client, challenge, scope="catalog:write notifications:write",
                       user=("admin@example.com", "admin-password-1"))
    body = exchange_code(client, code, verifier).get_json()
    assert body["scope"] == "catalog:write notifications:write"
