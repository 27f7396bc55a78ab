"""Seed idempotency, production-mode behaviour of secrets, settings."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from auth.seed import seed, swagger_redirect_uris
from auth.settings import load_settings, session_secret
from auth.store import Client, User
from charter.config import KNOWN_DEV_SECRETS, ConfigError


def test_seed_is_idempotent(db):
    first = seed(db)
    second = seed(db)
    assert first == second
    assert first["client demo-cli"].startswith("secret demo-cli-secret")
    assert "alice-password-1" in first["user alice@example.com"]
    with db.session() as session:
        assert session.scalar(select(func.count()).select_from(User)) == 3
        ui = session.get(Client, "swagger-ui")
        assert ui is not None and ui.token_endpoint_auth_method == "none"
        assert ui.client_secret_hash is None
        cli = session.get(Client, "demo-cli")
        assert cli is not None and "catalog:reserve" not in cli.scope.split()
        assert session.get(Client, "charter-internal") is None  # the retired shared client


def test_swagger_redirect_uris_are_only_real_swagger_uis(monkeypatch):
    monkeypatch.setenv("CHARTER_MTLS", "1")
    uris = swagger_redirect_uris()
    assert "http://127.0.0.1:8080/catalog/v1/ui/oauth2-redirect.html" in uris
    assert "http://localhost:8080/orders/v1/ui/oauth2-redirect.html" in uris
    assert "http://127.0.0.1:8080/ui/oauth2-redirect.html" in uris
    # No API named after a non-API component, nothing on auth's port, and with mTLS on
    # no service port (a browser has no client certificate for them).
    assert not any("/gateway/" in u or "/auth/" in u for u in uris)
    assert all(u.startswith(("http://127.0.0.1:8080/", "http://localhost:8080/")) for u in uris)


def test_swagger_redirect_uris_include_service_uis_without_mtls(monkeypatch):
    monkeypatch.setenv("CHARTER_MTLS", "0")
    uris = swagger_redirect_uris()
    assert "http://127.0.0.1:8101/v1/ui/oauth2-redirect.html" in uris
    assert "http://localhost:8107/v1/ui/oauth2-redirect.html" in uris
    assert not any(":8090" in u for u in uris)
    ports = {u.split(":")[2].split("/")[0] for u in uris}
    assert ports == {"8080", "8101", "8102", "8103", "8104", "8105", "8106", "8107"}


def test_production_seed_skips_entries_without_env(db, monkeypatch):
    monkeypatch.setenv("CHARTER_ENV", "production")
    monkeypatch.setenv("DEMO_CLI_SECRET", "from-the-environment")
    result = seed(db)
    assert result["client demo-cli"].startswith("secret from-the-environment")
    assert "client orders" not in result  # ORDERS_CLIENT_SECRET not set
    assert not any(key.startswith("user ") for key in result)
    assert all("-password-1" not in value for value in result.values())


def test_session_secret_required_in_production(monkeypatch):
    monkeypatch.setenv("CHARTER_ENV", "production")
    monkeypatch.delenv("AUTH_SESSION_SECRET", raising=False)
    with pytest.raises(ConfigError):
        session_secret()


def test_development_session_secret_is_persisted_per_var_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("CHARTER_ENV", "development")
    monkeypatch.delenv("AUTH_SESSION_SECRET", raising=False)
    monkeypatch.setenv("CHARTER_VAR_DIR", str(tmp_path))
    first = session_secret()
    assert len(first) >= 32 and session_secret() == first
    assert (tmp_path / "secrets" / "AUTH_SESSION_SECRET").stat().st_mode & 0o077 == 0
    monkeypatch.setenv("CHARTER_VAR_DIR", str(tmp_path / "other"))
    assert session_secret() != first


def test_development_demo_passwords_are_random_not_known(db, tmp_path, monkeypatch):
    for name in ("DEMO_ALICE_PASSWORD", "DEMO_STAFF_PASSWORD", "DEMO_ADMIN_PASSWORD",
                 "DEMO_CLI_SECRET"):
        monkeypatch.delenv(name, raising=False)
    result = seed(db)
    alice = result["user alice@example.com"]
    password = alice.split()[1]
    assert password not in KNOWN_DEV_SECRETS and len(password) >= 32
    assert seed(db)["user alice@example.com"] == alice
    assert not result["client demo-cli"].startswith("secret demo-cli-secret")


def test_production_refuses_a_known_development_client_secret(db, monkeypatch):
    monkeypatch.setenv("CHARTER_ENV", "production")
    monkeypatch.setenv("DEMO_CLI_SECRET", "demo-cli-secret")
    with pytest.raises(ConfigError, match="DEMO_CLI_SECRET"):
        seed(db)


def test_production_settings_name_every_missing_variable(monkeypatch):
    monkeypatch.setenv("CHARTER_ENV", "production")
    for name in ("AUTH_ISSUER", "AUTH_SESSION_SECRET", "DATABASE_URL", "AUTH_DATABASE_URL"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ConfigError) as caught:
        load_settings()
    message = str(caught.value)
    for name in ("AUTH_ISSUER", "AUTH_SESSION_SECRET", "AUTH_DATABASE_URL or DATABASE_URL"):
        assert name in message


def test_production_settings_have_secure_cookies(monkeypatch):
    monkeypatch.setenv("CHARTER_ENV", "production")
    for name in ("DEMO_ALICE_PASSWORD", "DEMO_STAFF_PASSWORD", "DEMO_ADMIN_PASSWORD",
                 "DEMO_CLI_SECRET", "ORDERS_CLIENT_SECRET"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AUTH_ISSUER", "https://auth.example.com")
    monkeypatch.setenv("AUTH_SESSION_SECRET", "k" * 48)
    monkeypatch.setenv("DATABASE_URL", "postgresql+psycopg://db.example/{service}")
    settings = load_settings()
    assert settings.secure_cookies and settings.issuer == "https://auth.example.com"
    monkeypatch.setenv("AUTH_ISSUER", "http://auth.example.com")
    with pytest.raises(ConfigError, match="AUTH_ISSUER must be an https:// URL"):
        load_settings()


def test_bad_number_names_the_variable(monkeypatch):
    monkeypatch.setenv("AUTH_ACCESS_TOKEN_TTL", "soon")
    with pytest.raises(ConfigError, match="AUTH_ACCESS_TOKEN_TTL"):
        load_settings()


def test_access_token_ttl_from_env(tmp_path, monkeypatch):
    monkeypatch.setenv("CHARTER_VAR_DIR", str(tmp_path))
    monkeypatch.setenv("AUTH_ACCESS_TOKEN_TTL", "300")
    monkeypatch.setenv("AUTH_SESSION_SECRET", "x" * 40)
    settings = load_settings()
    assert settings.access_token_ttl == 300
    assert settings.audience == "charter-api"
