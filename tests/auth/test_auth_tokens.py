"""Client credentials, JWT shape, introspection, revocation and key rotation."""

from __future__ import annotations

import jwt
from auth_helpers import (
    AUDIENCE,
    CLI,
    ISSUER,
    RESOURCE_SERVER,
    basic,
    client_credentials,
    jwks_verify,
)

from auth.keys import rotate

RS = basic(*RESOURCE_SERVER)


def test_client_credentials_issues_rfc9068_jwt(client):
    response = client_credentials(client)
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store"
    body = response.get_json()
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 900
    assert "refresh_token" not in body

    token = body["access_token"]
    header = jwt.get_unverified_header(token)
    assert header["typ"] == "at+jwt"
    assert header["alg"] == "RS256"
    kids = [k["kid"] for k in client.get("/.well-known/jwks.json").get_json()["keys"]]
    assert header["kid"] in kids

    claims = jwks_verify(client, token)
    assert claims["iss"] == ISSUER
    assert claims["aud"] == AUDIENCE
    assert claims["sub"] == "demo-cli"
    assert claims["client_id"] == "demo-cli"
    assert claims["exp"] - claims["iat"] == 900
    assert claims["jti"]
    scopes = claims["scope"].split()
    assert "catalog:write" in scopes and "orders:read" in scopes
    assert "catalog:reserve" not in scopes and "orders:write" not in scopes
    assert "role" not in claims


def test_client_credentials_scope_is_narrowed(client):
    response = client_credentials(client, scope="catalog:read catalog:reserve")
    assert response.status_code == 200
    assert response.get_json()["scope"] == "catalog:read"


def test_unknown_scope_is_invalid_scope(client):
    response = client_credentials(client, scope="root:everything")
    assert response.status_code == 400
    assert response.get_json()["error"] == "invalid_scope"


def test_wrong_secret_is_401_invalid_client(client):
    response = client_credentials(client, ("demo-cli", "not-the-secret"))
    assert response.status_code == 401
    assert response.get_json()["error"] == "invalid_client"


def test_public_client_cannot_use_client_credentials(client):
    response = client.post(
        "/oauth/token", data={"grant_type": "client_credentials", "client_id": "swagger-ui"}
    )
    assert response.status_code in (400, 401)
    assert response.get_json()["error"] in ("invalid_client", "unauthorized_client")


def test_password_and_implicit_grants_are_not_supported(client):
    response = client.post(
        "/oauth/token",
        data={"grant_type": "password", "username": "alice@example.com",
              "password": "alice-password-1"},
        headers=basic(*CLI),
    )
    assert response.status_code == 400
    assert response.get_json()["error"] == "unsupported_grant_type"


def test_introspection_then_revocation(client):
    token = client_credentials(client).get_json()["access_token"]

    active = client.post("/oauth/introspect", data={"token": token}, headers=RS)
    assert active.status_code == 200
    body = active.get_json()
    assert body["active"] is True
    assert body["client_id"] == "demo-cli"
    assert body["sub"] == "demo-cli"
    assert body["jti"] == jwt.decode(token, options={"verify_signature": False})["jti"]

    revoked = client.post(
        "/oauth/revoke", data={"token": token, "token_type_hint": "access_token"},
        headers=basic(*CLI),
    )
    assert revoked.status_code == 200

    inactive = client.post("/oauth/introspect", data={"token": token}, headers=RS)
    assert inactive.get_json() == {"active": False}


def test_introspection_requires_client_authentication(client):
    token = client_credentials(client).get_json()["access_token"]
    response = client.post("/oauth/introspect", data={"token": token})
    assert response.status_code == 401
    assert response.get_json()["error"] == "invalid_client"


def test_introspection_of_garbage_is_inactive(client):
    response = client.post(
        "/oauth/introspect", data={"token": "not-a-token"}, headers=basic(*RESOURCE_SERVER)
    )
    assert response.status_code == 200
    assert response.get_json() == {"active": False}


def test_client_cannot_revoke_another_clients_token(client):
    token = client_credentials(client).get_json()["access_token"]
    response = client.post("/oauth/revoke", data={"token": token}, headers=RS)
    assert response.status_code == 400
    still = client.post("/oauth/introspect", data={"token": token}, headers=RS)
    assert still.get_json()["active"] is True


def test_key_rotation_keeps_old_tokens_verifiable(client, db):
    old_token = client_credentials(client).get_json()["access_token"]
    old_kid = jwt.get_unverified_header(old_token)["kid"]

    new_kid = rotate(db)
    assert new_kid != old_kid

    kids = [k["kid"] for k in client.get("/.well-known/jwks.json").get_json()["keys"]]
    assert kids[0] == new_kid and old_kid in kids
    assert jwks_verify(client, old_token)["sub"] == "demo-cli"

    new_token = client_credentials(client).get_json()["access_token"]
    assert jwt.get_unverified_header(new_token)["kid"] == new_kid
    assert jwks_verify(client, new_token)["sub"] == "demo-cli"

    active = client.post("/oauth/introspect", data={"token": old_token}, headers=RS)
    assert active.get_json()["active"] is True


def test_retired_key_leaves_jwks_after_retention(client, db, app):
    from sqlalchemy import update

    from auth.store import SigningKey

    old_kid = jwt.get_unverified_header(client_credentials(client).get_json()["access_token"])[
        "kid"
    ]
    rotate(db)
    with db.session() as session:
        session.execute(
            update(SigningKey).where(SigningKey.kid == old_kid).values(retired_at=1)
        )
    kids = [k["kid"] for k in client.get("/.well-known/jwks.json").get_json()["keys"]]
    assert old_kid not in kids and len(kids) == 1


def test_tokens_and_secrets_never_logged(client, caplog):
    import logging

    caplog.set_level(logging.DEBUG)
    body = client_credentials(client).get_json()
    client.post("/oauth/introspect", data={"token": body["access_token"]}, headers=RS)
    client_credentials(client, ("demo-cli", "wrong-secret-value"))
    text = caplog.text
    assert body["access_token"] not in text
    assert body["access_token"].split(".")[1] not in text
    assert "demo-cli-secret" not in text and "wrong-secret-value" not in text
