"""Fail closed: outside development mode no component starts without its settings.

Each component is started the way uvicorn starts it (``create_asgi()``), first without
development mode and without any setting (the error names every missing variable at
once), then with everything production needs (https issuer, secrets, database URL, PKI).
"""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from charter import config, serve
from charter.migrations import upgrade
from charter.security.revocation import RevocationPoller

COMPONENTS = {
    "auth": "auth",
    "gateway": "services.gateway",
    "catalog": "services.catalog",
    "cart": "services.cart",
    "orders": "services.orders",
    "payments": "services.payments",
    "exchange": "services.exchange",
    "loyalty": "services.loyalty",
    "notifications": "services.notifications",
}
SECRETS = {"auth": "AUTH_SESSION_SECRET", "cart": "CART_CLIENT_SECRET",
           "orders": "ORDERS_CLIENT_SECRET"}
ROOT = Path(__file__).resolve().parents[2]


def _production(monkeypatch: pytest.MonkeyPatch) -> None:
    """Production mode with nothing configured (the test suite's dev values removed)."""
    for name in list(os.environ):
        if name.endswith(("_SECRET", "_PASSWORD", "_DATABASE_URL")) or name in (
                "DATABASE_URL", "AUTH_ISSUER", "CHARTER_PKI_DIR", "CHARTER_MTLS"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("CHARTER_ENV", "production")


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from charterctl.pki import init_pki

    directory = tmp_path_factory.mktemp("pki")
    init_pki(directory)
    return directory


@pytest.mark.parametrize("name", list(COMPONENTS))
def test_component_refuses_to_start_naming_every_missing_setting(
        name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    _production(monkeypatch)
    app = importlib.import_module(f"{COMPONENTS[name]}.app")
    with pytest.raises(config.ConfigError) as caught:
        app.create_asgi.__wrapped__()  # the factory itself (charter.serve.fails_fast)
    message = str(caught.value)
    assert "AUTH_ISSUER" in message
    assert ("CHARTER_PKI_DIR" in message) is (name != "auth")
    assert (f"{name.upper()}_DATABASE_URL or DATABASE_URL" in message) is (name != "gateway")
    if name in SECRETS:
        assert SECRETS[name] in message


@pytest.mark.parametrize("name", ["gateway", "catalog"])
def test_uvicorn_factory_stops_the_server_with_the_message(
        name: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    _production(monkeypatch)
    app = importlib.import_module(f"{COMPONENTS[name]}.app")
    with pytest.raises(SystemExit) as stopped:
        app.create_asgi()  # what uvicorn --factory calls
    assert stopped.value.code == serve.STARTUP_FAILURE
    assert "AUTH_ISSUER" in capsys.readouterr().err


@pytest.fixture
def pollers(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[RevocationPoller]]:
    """Every revocation poller a started app runs, stopped after the test (they would
    otherwise poll the unreachable test feed until the test session ends)."""
    started: list[RevocationPoller] = []
    real_start = RevocationPoller.start

    def start(self: RevocationPoller) -> None:
        started.append(self)
        real_start(self)

    monkeypatch.setattr(RevocationPoller, "start", start)
    yield started
    for poller in started:
        poller.stop()


@pytest.mark.parametrize("name", list(COMPONENTS))
def test_component_starts_with_every_required_setting(
        name: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, pki: Path,
        pollers: list[RevocationPoller]) -> None:
    _production(monkeypatch)
    url = f"sqlite:///{tmp_path / name}.db"
    monkeypatch.setenv("AUTH_ISSUER", "https://auth.example.test")
    monkeypatch.setenv("AUTH_JWKS_URL", "http://127.0.0.1:9/.well-known/jwks.json")
    monkeypatch.setenv("CHARTER_PKI_DIR", str(pki))
    monkeypatch.setenv(f"{name.upper()}_DATABASE_URL", url)
    if name in SECRETS:
        monkeypatch.setenv(SECRETS[name], "a-real-production-secret-" + "x" * 24)
    app = importlib.import_module(f"{COMPONENTS[name]}.app")
    if name != "gateway":
        upgrade(name, app.MIGRATIONS_DIR, url)
    assert callable(app.create_asgi())
    assert len(pollers) == (0 if name == "auth" else 1)  # services watch auth's feed


def test_issuer_must_be_https(monkeypatch: pytest.MonkeyPatch) -> None:
    _production(monkeypatch)
    monkeypatch.setenv("AUTH_ISSUER", "http://auth.example.test")
    from services.catalog.settings import load_config

    with pytest.raises(config.ConfigError, match="AUTH_ISSUER must be an https:// URL"):
        load_config()
    with pytest.raises(config.ConfigError, match="AUTH_ISSUER"):
        monkeypatch.delenv("AUTH_ISSUER")
        config.auth_settings()  # no silent http://127.0.0.1 fallback


def test_unset_charter_env_is_production(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CHARTER_ENV")
    assert not config.is_development()
    monkeypatch.setenv("CHARTER_ENV", "embedded")  # the old name still asks for development
    assert config.is_development()
    monkeypatch.setenv("CHARTER_ENV", "staging")
    with pytest.raises(config.ConfigError, match="CHARTER_ENV"):
        config.is_development()


@pytest.mark.parametrize("known", sorted(config.KNOWN_DEV_SECRETS))
def test_every_known_development_secret_is_refused(known: str,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    _production(monkeypatch)
    monkeypatch.setenv("AUTH_SESSION_SECRET", known)
    with pytest.raises(config.ConfigError, match="AUTH_SESSION_SECRET is a known development"):
        config.secret("AUTH_SESSION_SECRET")
    from auth.settings import load_config

    monkeypatch.setenv("DEMO_CLI_SECRET", known)
    monkeypatch.setenv("SMTP_PASSWORD", known)
    with pytest.raises(config.ConfigError) as caught:
        load_config()
    for name in ("AUTH_SESSION_SECRET", "DEMO_CLI_SECRET"):
        assert f"{name} is a known development secret" in str(caught.value)
    from services.notifications.settings import load_config as notifications_config

    with pytest.raises(config.ConfigError, match="SMTP_PASSWORD is a known development"):
        notifications_config()


def test_known_secrets_are_fine_in_development_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AUTH_SESSION_SECRET", "test-session-secret")
    assert config.secret("AUTH_SESSION_SECRET") == "test-session-secret"


def test_development_secret_is_random_private_and_stable(monkeypatch: pytest.MonkeyPatch,
                                                         tmp_path: Path) -> None:
    monkeypatch.setenv("CHARTER_VAR_DIR", str(tmp_path))
    monkeypatch.delenv("CART_CLIENT_SECRET", raising=False)
    first = config.secret("CART_CLIENT_SECRET")
    assert len(first) >= 32 and first not in config.KNOWN_DEV_SECRETS
    assert config.secret("CART_CLIENT_SECRET") == first
    path = tmp_path / "secrets" / "CART_CLIENT_SECRET"
    assert path.stat().st_mode & 0o777 == 0o600
    monkeypatch.setenv("CHARTER_ENV", "production")
    with pytest.raises(config.ConfigError, match="CART_CLIENT_SECRET must be set"):
        config.secret("CART_CLIENT_SECRET")  # never the development file in production


def test_cookies_are_secure_outside_development_mode(monkeypatch: pytest.MonkeyPatch,
                                                     tmp_path: Path) -> None:
    from auth.app import MIGRATIONS_DIR, create_flask_app
    from auth.settings import load_settings
    from charter.db import Database

    _production(monkeypatch)
    url = f"sqlite:///{tmp_path / 'auth.db'}"
    monkeypatch.setenv("AUTH_ISSUER", "https://auth.example.test")
    monkeypatch.setenv("AUTH_SESSION_SECRET", "a-real-production-secret-" + "y" * 24)
    monkeypatch.setenv("AUTH_DATABASE_URL", url)
    upgrade("auth", MIGRATIONS_DIR, url)
    db = Database(url)
    try:
        client = create_flask_app(db, load_settings()).test_client()
        response = client.get("/login")
        cookie = response.headers.get("Set-Cookie", "")
        assert "charter_auth=" in cookie and "Secure" in cookie
    finally:
        db.dispose()


def test_invalid_number_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    from services.payments.settings import PaymentsConfig

    monkeypatch.setenv("PAYMENTS_DECLINE_ABOVE", "lots")
    monkeypatch.setenv("LOYALTY_POINTS_PER_UNIT", "5000")
    with pytest.raises(config.ConfigError, match="PAYMENTS_DECLINE_ABOVE"):
        PaymentsConfig.load()
    from services.loyalty.settings import LoyaltyConfig

    with pytest.raises(config.ConfigError, match="LOYALTY_POINTS_PER_UNIT"):
        LoyaltyConfig.load()


def test_charter_up_without_dev_refuses_naming_the_variables(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items()
           if not k.endswith(("_SECRET", "_PASSWORD", "_DATABASE_URL"))
           and k not in ("CHARTER_ENV", "DATABASE_URL", "AUTH_ISSUER", "CHARTER_PKI_DIR")}
    env["CHARTER_VAR_DIR"] = str(tmp_path)
    done = subprocess.run([sys.executable, "-m", "charterctl.cli", "up"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    for name in ("AUTH_ISSUER", "AUTH_SESSION_SECRET", "CATALOG_DATABASE_URL or DATABASE_URL",
                 "CART_CLIENT_SECRET", "CHARTER_PKI_DIR", "charter up --dev"):
        assert name in done.stderr
    assert not (tmp_path / "auth.db").exists()  # refused before touching anything
