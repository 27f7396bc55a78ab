"""CORS on the token endpoint: registered redirect-URI origins only, never credentials."""

from __future__ import annotations

from typing import Any


def _preflight(client: Any, origin: str) -> Any:
    return client.options("/oauth/token", headers={
        "Origin": origin, "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type,x-requested-with"})


def test_registered_swagger_origin_may_call_token_endpoint(client: Any) -> None:
    r = _preflight(client, "http://127.0.0.1:8080")
    assert r.headers["Access-Control-Allow-Origin"] == "http://127.0.0.1:8080"
    assert "POST" in r.headers["Access-Control-Allow-Methods"]
    # Swagger UI's token request sends X-Requested-With: it must be allowed
    allowed = {h.strip().lower() for h in r.headers["Access-Control-Allow-Headers"].split(",")}
    assert {"content-type", "x-requested-with"} <= allowed
    assert "Access-Control-Allow-Credentials" not in r.headers
    jwks = client.get("/.well-known/jwks.json", headers={"Origin": "http://localhost:8080"})
    assert jwks.headers["Access-Control-Allow-Origin"] == "http://localhost:8080"


def test_unknown_origin_gets_no_cors_headers(client: Any) -> None:
    r = _preflight(client, "http://evil.example")
    assert "Access-Control-Allow-Origin" not in r.headers
    login = client.get("/login", headers={"Origin": "http://127.0.0.1:8080"})
    assert "Access-Control-Allow-Origin" not in login.headers


def test_swagger_redirect_uris_follow_configured_ports(monkeypatch: Any) -> None:
    from auth.seed import swagger_redirect_uris

    monkeypatch.setenv("CHARTER_MTLS", "0")  # services serve their own Swagger UI
    monkeypatch.setenv("CATALOG_PORT", "18101")
    monkeypatch.setenv("SWAGGER_UI_REDIRECT_URIS", "https://api.example.com/ui/oauth2-redirect.html")
    uris = swagger_redirect_uris()
    assert "http://127.0.0.1:18101/v1/ui/oauth2-redirect.html" in uris
    assert "http://127.0.0.1:8101/v1/ui/oauth2-redirect.html" not in uris
    assert "https://api.example.com/ui/oauth2-redirect.html" in uris
