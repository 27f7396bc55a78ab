"""Fixtures of provider verification: the platform PKI (a fresh CA and certificates)."""

from __future__ import annotations

from pathlib import Path

import pytest

from charterctl import pki


@pytest.fixture(scope="session")
def pki_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A development PKI for this run: the platform CA and every component's certificate."""
    return pki.init_pki(tmp_path_factory.mktemp("pact-pki"))
