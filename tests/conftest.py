"""Root of the test suite: development mode for every test, and the shared plugin.

The fixtures every folder shares (PostgreSQL and Redis with the skip-or-fail rule, tokens,
the token matrix, stub servers…) live in :mod:`tests.support.plugin`; see docs/testing.md.
"""

from __future__ import annotations

import os

import pytest

pytest_plugins = ["tests.support.plugin"]

# The suite runs in development mode (random development secrets, SQLite defaults). Set at
# import time so session fixtures and the servers tests start inherit it; tests of
# production behaviour set CHARTER_ENV=production themselves (monkeypatch).
os.environ["CHARTER_ENV"] = "development"
# Fixed development credentials the tests log in with (in development mode an unset one
# would be random); every one of them is in charter.config.KNOWN_DEV_SECRETS.
DEV_TEST_SECRETS = {
    "DEMO_ALICE_PASSWORD": "alice-password-1",
    "DEMO_STAFF_PASSWORD": "staff-password-1",
    "DEMO_ADMIN_PASSWORD": "admin-password-1",
    "DEMO_CLI_SECRET": "demo-cli-secret",
}
os.environ.update(DEV_TEST_SECRETS)
# The portal's public URL (problem type URIs): required outside development mode, so the
# tests of production behaviour that set every other required variable start too.
os.environ.setdefault("CHARTER_PUBLIC_URL", "https://portal.charter.test")


@pytest.fixture(autouse=True)
def _isolated_var_dir(tmp_path_factory: pytest.TempPathFactory,
                      monkeypatch: pytest.MonkeyPatch) -> None:
    """Development mode, with every test's files out of the developer's ``var/``."""
    if "CHARTER_VAR_DIR" not in os.environ:
        monkeypatch.setenv("CHARTER_VAR_DIR", str(tmp_path_factory.mktemp("var")))
    monkeypatch.setenv("CHARTER_ENV", "development")
    for name, value in DEV_TEST_SECRETS.items():
        monkeypatch.setenv(name, value)
