"""Each service's token provider: its own client id, secret variable and derived scopes."""

from __future__ import annotations

from pathlib import Path

import pytest

from charter import config, dependencies
from charter.security.client_credentials import client_secret_variable, service_token_provider


@pytest.fixture(autouse=True)
def _env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHARTER_VAR_DIR", str(tmp_path / "var"))
    monkeypatch.setenv("AUTH_URL", "http://auth.local:9999")
    monkeypatch.delenv("AUTH_TOKEN_URL", raising=False)
    for name in ("ORDERS", "CART"):
        monkeypatch.delenv(f"{name}_CLIENT_SECRET", raising=False)


@pytest.mark.parametrize("service", ["cart", "orders"])
def test_provider_asks_for_exactly_the_derived_scopes(
        service: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHARTER_ENV", "development")
    provider = service_token_provider(service)
    assert provider.client_id == service
    assert provider.scope == dependencies.load().client_scope(service)
    assert provider.token_url == "http://auth.local:9999/oauth/token"
    # Development mode: the generated secret auth's seed registers (same var dir).
    assert provider._secret == config.secret(f"{service.upper()}_CLIENT_SECRET")
    assert service_token_provider(service) is provider  # one cached token per service


def test_secret_comes_from_the_environment_and_is_required_in_production(
        monkeypatch: pytest.MonkeyPatch) -> None:
    assert client_secret_variable("orders") == "ORDERS_CLIENT_SECRET"
    monkeypatch.setenv("CHARTER_ENV", "production")
    with pytest.raises(config.ConfigError, match="ORDERS_CLIENT_SECRET"):
        service_token_provider("orders")
    monkeypatch.setenv("ORDERS_CLIENT_SECRET", "orders-secret-from-the-vault")
    monkeypatch.setenv("AUTH_TOKEN_URL", "https://auth.example/token")
    provider = service_token_provider("orders")
    assert (provider._secret, provider.token_url) == ("orders-secret-from-the-vault",
                                                       "https://auth.example/token")


def test_a_service_without_calls_has_no_client(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHARTER_ENV", "development")
    with pytest.raises(dependencies.ManifestError, match="no calls"):
        service_token_provider("catalog")
