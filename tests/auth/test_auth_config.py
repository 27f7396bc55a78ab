"""Seed idempotency, production-mode behaviour of secrets, settings."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from auth.seed import seed, swagger_redirect_uris
from auth.settings import load_settings, session_secret
from auth.store import Client, User
from charter.config import ConfigError


def test_seed_is_idempotent(db):
    first = seed(db)
    second = seed(db)
    assert first == second
    assert first["client demo-cli"].startswith("secret demo-cli-secret")
    assert "alice-password-1" in first["user alice@example.com"]
    with db.session() as session:
        assert session.scalar(select(func.count()).select_from(User)) == 3
        assert session.scalar(select(func.count()).select_from(Client)) == 3
        ui = session.get(Client, "swagger-ui")
        assert ui is not None and ui.token_endpoint_auth_method == "none"
        assert ui.client_secret_hash is None
        cli = session.get(Client, "demo-cli")
        assert cli is not None and "catalog:reserve" not in cli.scope.split()
        internal = session.get(Client, "charter-internal")
        assert internal is not None and "catalog:reserve" in internal.scope.split()


def test_swagger_redirect_uris_cover_services_and_gateway():
    uris = swagger_redirect_uris()
    assert "http://127.0.0.1:8101/v1/ui/oauth2-redirect.html" in uris
    assert "http://localhost:8107/v1/ui/oauth2-redirect.html" in uris
    assert "http://127.0.0.1:8080/catalog/v1/ui/oauth2-redirect.html" in uris
    assert "http://127.0.0.1:8080/ui/oauth2-redirect.html" in uris


def test_production_seed_skips_entries_without_env(db, monkeypatch):
    monkeypatch.setenv("CHARTER_ENV", "production")
    monkeypatch.setenv("DEMO_CLI_SECRET", "from-the-environment")
    result = seed(db)
    assert result["client demo-cli"].startswith("secret from-the-environment")
    assert "client charter-internal" not in result
    assert not any(key.startswith("user ") for key in result)
    assert all("-password-1" not in value for value in result.values())


def test_session_secret_required_in_production(monkeypatch):
    monkeypatch.setenv("CHARTER_ENV", "production")
    monkeypatch.delenv("AUTH_SESSION_SECRET", raising=False)
    with pytest.raises(ConfigError):
        session_secret()


def test_embedded_session_secret_is_persisted_per_var_dir(tmp_path, monkeypatch):
    monkeypatch.delenv("CHARTER_ENV", raising=False)
    monkeypatch.delenv("AUTH_SESSION_SECRET", raising=False)
    monkeypatch.setenv("CHARTER_VAR_DIR", str(tmp_path))
    first = session_secret()
    assert len(first) >= 32 and session_secret() == first
    assert (tmp_path / "auth-session-secret").stat().st_mode & 0o077 == 0


def test_access_token_ttl_from_env(tmp_path, monkeypatch):
    monkeypatch.setenv("CHARTER_VAR_DIR", str(tmp_path))
    monkeypatch.setenv("AUTH_ACCESS_TOKEN_TTL", "300")
    monkeypatch.setenv("AUTH_SESSION_SECRET", "x" * 40)
    settings = load_settings()
    assert settings.access_token_ttl == 300
    assert settings.audience == "charter-api"
