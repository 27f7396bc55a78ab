"""Discovery metadata, JWKS and health endpoints."""

from __future__ import annotations

import pytest
from auth_helpers import ISSUER
from authlib.oauth2.rfc8414 import AuthorizationServerMetadata

from tests.support.plugin import assert_problem


@pytest.mark.parametrize(
    "path", ["/.well-known/oauth-authorization-server", "/.well-known/openid-configuration"]
)
def test_discovery_document_is_valid(client, path):
    response = client.get(path)
    assert response.status_code == 200
    doc = response.get_json()
    AuthorizationServerMetadata(doc).validate()
    assert doc["issuer"] == ISSUER
    assert doc["code_challenge_methods_supported"] == ["S256"]
    assert set(doc["grant_types_supported"]) == {
        "authorization_code", "client_credentials", "refresh_token"
    }
    assert "implicit" not in doc["grant_types_supported"]
    assert "password" not in doc["grant_types_supported"]
    assert doc["response_types_supported"] == ["code"]
    assert doc["token_endpoint"] == f"{ISSUER}/oauth/token"
    assert doc["authorization_endpoint"] == f"{ISSUER}/oauth/authorize"
    assert doc["introspection_endpoint"] == f"{ISSUER}/oauth/introspect"
    assert doc["revocation_endpoint"] == f"{ISSUER}/oauth/revoke"
    assert doc["jwks_uri"] == f"{ISSUER}/.well-known/jwks.json"
    assert "catalog:read" in doc["scopes_supported"]
    assert "catalog:reserve" in doc["scopes_supported"]


def test_jwks_publishes_the_signing_key(client, app):
    keys = client.get("/.well-known/jwks.json").get_json()["keys"]
    assert len(keys) == 1
    key = keys[0]
    signing = app.extensions["charter.auth"].server.keys.signing_key()
    assert key["kid"] == signing.kid
    assert key["kty"] == "RSA" and key["alg"] == "RS256" and key["use"] == "sig"
    assert "d" not in key and "p" not in key  # public half only


def test_health(client):
    live = client.get("/health/live")
    assert live.status_code == 200 and live.get_json()["status"] == "ok"
    ready = client.get("/health/ready")
    assert ready.status_code == 200 and ready.get_json()["checks"]["database"] == "ok"


def test_ready_is_503_problem_when_database_is_down(client, app, monkeypatch):
    db = app.extensions["charter.auth"].db

    def broken() -> None:
        raise RuntimeError("db down")

    monkeypatch.setattr(db, "ping", broken)
    response = client.get("/health/ready")
    assert_problem(response, 503)


def test_unknown_path_is_problem_json(client):
    response = client.get("/no/such/thing")
    assert "type" in assert_problem(response, 404)
