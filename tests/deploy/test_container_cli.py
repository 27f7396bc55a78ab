"""``charter serve`` and ``charter health`` (the image's entrypoint and health check)
without starting a server: fail closed, and the URL the check probes."""

from __future__ import annotations

import pytest

from charterctl import cli, container
from tests.support.servers import free_port


def test_serve_refuses_to_start_without_production_settings(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("CHARTER_ENV", "production")
    for name in ("DATABASE_URL", "CATALOG_DATABASE_URL", "AUTH_ISSUER", "CHARTER_PKI_DIR"):
        monkeypatch.delenv(name, raising=False)
    assert cli.main(["serve", "catalog"]) == 2
    err = capsys.readouterr().err
    assert "charter serve catalog: refusing to start" in err
    for variable in ("AUTH_ISSUER", "CATALOG_DATABASE_URL or DATABASE_URL", "CHARTER_PKI_DIR"):
        assert variable in err


def test_serve_rejects_an_unknown_component() -> None:
    with pytest.raises(SystemExit, match="unknown component"):
        cli.main(["serve", "catalgo"])


def test_health_probes_the_local_port_with_mtls_where_the_component_uses_it(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CATALOG_PORT", "9101")
    monkeypatch.setenv("CHARTER_MTLS", "1")
    assert container.health_url("catalog") == "https://127.0.0.1:9101/health/live"
    assert container.health_url("catalog", ready=True) == "https://127.0.0.1:9101/health/ready"
    assert container.health_url("gateway").startswith("http://127.0.0.1:")
    monkeypatch.setenv("CHARTER_MTLS", "0")
    assert container.health_url("catalog").startswith("http://")


def test_health_fails_when_nothing_answers(monkeypatch: pytest.MonkeyPatch,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("GATEWAY_PORT", str(free_port()))
    assert cli.main(["health", "gateway", "--timeout", "0.5"]) == 1
    assert "did not answer 200" in capsys.readouterr().err
    monkeypatch.delenv("CHARTER_SERVICE", raising=False)
    assert cli.main(["health"]) == 2
