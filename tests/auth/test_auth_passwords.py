"""Argon2id cost: production parameters, used outside development mode; a lower cost
(the one these tests run with) is accepted only in development mode."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from argon2 import Type, extract_parameters
from argon2.profiles import RFC_9106_LOW_MEMORY
from auth_helpers import TEST_ARGON2, use_test_hashing

from auth import accounts, passwords
from auth.app import create_flask_app
from auth.settings import load_config, load_settings
from charter.config import ConfigError
from charter.db import Database


@pytest.fixture
def production(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A complete production environment for auth; the test cost is restored after."""
    for name in list(os.environ):
        if name.startswith(("AUTH_", "DEMO_")):  # e.g. development demo passwords
            monkeypatch.delenv(name)
    url = f"sqlite:///{tmp_path / 'auth.db'}"
    monkeypatch.setenv("CHARTER_ENV", "production")
    monkeypatch.setenv("AUTH_ISSUER", "https://auth.example.com")
    monkeypatch.setenv("AUTH_SESSION_SECRET", "a-real-production-session-secret-123456")
    monkeypatch.setenv("AUTH_DATABASE_URL", url)
    yield url
    use_test_hashing()


def test_production_cost_is_rfc9106_and_above_the_owasp_minimum() -> None:
    production = passwords.PRODUCTION
    assert production == passwords.Argon2Params(
        time_cost=RFC_9106_LOW_MEMORY.time_cost, memory_cost=RFC_9106_LOW_MEMORY.memory_cost,
        parallelism=RFC_9106_LOW_MEMORY.parallelism)
    assert (production.time_cost, production.memory_cost, production.parallelism) == (
        3, 64 * 1024, 4)
    # OWASP Password Storage Cheat Sheet: Argon2id, at least 19 MiB, 2 passes, 1 lane.
    assert production.memory_cost >= passwords.OWASP_MIN_MEMORY_KIB == 19 * 1024
    assert production.time_cost >= passwords.OWASP_MIN_TIME_COST == 2
    assert production.parallelism >= 1


def test_outside_development_the_production_cost_is_used(
        production: str, migrated_db: Callable[[str, str], Database]) -> None:
    settings = load_settings(load_config())
    assert settings.password_hashing == passwords.PRODUCTION
    db = migrated_db("auth", production)
    create_flask_app(db, settings)  # the app installs its settings' cost
    with db.session() as session:
        user = accounts.create_user(session, "prod@example.com", "a-long-password-1")
        stored = extract_parameters(user.password_hash)
        assert accounts.authenticate(session, "prod@example.com", "a-long-password-1")
        assert accounts.authenticate(session, "nobody@example.com", "x" * 12) is None
    assert stored.type is Type.ID
    assert (stored.time_cost, stored.memory_cost, stored.parallelism) == (3, 65536, 4)
    dummy = extract_parameters(passwords.current().dummy_hash)  # unknown accounts
    assert (dummy.time_cost, dummy.memory_cost, dummy.parallelism) == (3, 65536, 4)


def test_without_configuration_the_process_reads_the_production_cost(production: str) -> None:
    passwords.reset()  # e.g. ``charter up`` seeding users in its own process
    assert passwords.current().params == passwords.PRODUCTION


@pytest.mark.parametrize("variable", ["AUTH_ARGON2_TIME_COST", "AUTH_ARGON2_MEMORY_COST",
                                      "AUTH_ARGON2_PARALLELISM"])
def test_a_lower_cost_is_refused_outside_development(production: str, variable: str,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(variable, "1" if variable != "AUTH_ARGON2_MEMORY_COST" else "8192")
    with pytest.raises(ConfigError, match=variable):
        load_config()
    passwords.reset()
    with pytest.raises(ConfigError, match=variable):
        passwords.current()
    with pytest.raises(ConfigError, match="AUTH_ARGON2_MEMORY_COST"):
        passwords.configure(TEST_ARGON2)


def test_a_higher_cost_is_accepted_outside_development(production: str,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AUTH_ARGON2_MEMORY_COST", str(128 * 1024))
    assert load_settings(load_config()).password_hashing == passwords.Argon2Params(
        memory_cost=128 * 1024)


def test_a_lower_cost_is_accepted_in_development(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHARTER_ENV", "development")
    monkeypatch.setenv("AUTH_ARGON2_TIME_COST", "1")
    monkeypatch.setenv("AUTH_ARGON2_MEMORY_COST", "8")
    monkeypatch.setenv("AUTH_ARGON2_PARALLELISM", "1")
    assert load_config().argon2_params() == TEST_ARGON2
    passwords.reset()
    try:
        hashing = passwords.current()
        assert hashing.params == TEST_ARGON2
        stored = extract_parameters(hashing.hasher.hash("a-long-password-1"))
        assert (stored.time_cost, stored.memory_cost, stored.parallelism) == (1, 8, 1)
    finally:
        use_test_hashing()


def test_a_hash_of_another_cost_is_upgraded_on_sign_in(db: Database) -> None:
    """Raising ``AUTH_ARGON2_*`` re-hashes each password at its owner's next sign-in."""
    with db.session() as session:
        accounts.create_user(session, "cheap@example.com", "a-long-password-1")
    higher = passwords.Argon2Params(time_cost=2, memory_cost=16, parallelism=1)
    passwords.configure(higher)
    try:
        with db.session() as session:
            user = accounts.authenticate(session, "cheap@example.com", "a-long-password-1")
            assert user is not None
            assert extract_parameters(user.password_hash).time_cost == 2
    finally:
        use_test_hashing()
