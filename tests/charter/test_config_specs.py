"""Configuration precedence and spec bundling."""

from __future__ import annotations

from pathlib import Path

import pytest

from charter import config, specs
from charter.config import ConfigError


def test_database_url_precedence(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.delenv("CATALOG_DATABASE_URL", raising=False)
    monkeypatch.setenv("CHARTER_VAR_DIR", str(tmp_path))
    assert config.database_url("catalog") == f"sqlite:///{tmp_path / 'catalog.db'}"
    monkeypatch.setenv("DATABASE_URL", "postgresql://pg/charter_{service}")
    assert config.database_url("catalog") == "postgresql://pg/charter_catalog"
    monkeypatch.setenv("CATALOG_DATABASE_URL", "postgresql://pg/special")
    assert config.database_url("catalog") == "postgresql://pg/special"


def test_production_requires_database_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHARTER_ENV", "production")
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.delenv("CART_DATABASE_URL", raising=False)
    with pytest.raises(ConfigError):
        config.database_url("cart")


def test_ports_and_urls_follow_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CATALOG_PORT", "9101")
    monkeypatch.delenv("CATALOG_URL", raising=False)
    monkeypatch.delenv("CHARTER_MTLS", raising=False)
    assert config.service_url("catalog") == "https://127.0.0.1:9101"  # mTLS is the default
    monkeypatch.setenv("CHARTER_MTLS", "0")
    assert config.service_url("catalog") == "http://127.0.0.1:9101"
    monkeypatch.setenv("AUTH_PORT", "9090")
    monkeypatch.delenv("AUTH_ISSUER", raising=False)
    assert config.auth_settings().issuer == "http://127.0.0.1:9090"
    assert config.auth_settings().jwks_url == "http://127.0.0.1:9090/.well-known/jwks.json"


def test_bundling_inlines_external_refs_and_rewrites_auth_urls(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AUTH_PUBLIC_URL", "https://login.example.com")
    doc = specs.load("probe", "v1", Path(__file__).parent / "specs")
    scheme = doc["components"]["securitySchemes"]["oauth2"]
    assert scheme["x-tokenInfoFunc"] == "charter.security.connexion_auth.token_info"
    flow = scheme["flows"]["authorizationCode"]
    assert flow["authorizationUrl"] == "https://login.example.com/oauth/authorize"
    unauthorized = doc["paths"]["/things/{thing_id}"]["get"]["responses"]["401"]
    schema = unauthorized["content"]["application/problem+json"]["schema"]
    assert schema["type"] == "object" and "status" in schema["properties"]
    # local references of the root document stay local
    ok = doc["paths"]["/things/{thing_id}"]["get"]["responses"]["200"]
    assert ok["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Thing"}
    assert specs.scopes(doc) == ["catalog:read", "catalog:write"]
