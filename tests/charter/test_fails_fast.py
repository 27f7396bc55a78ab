"""``charter.serve.fails_fast``: a configuration error stops uvicorn instead of a restart loop."""

from __future__ import annotations

import pytest

from charter import serve
from charter.config import ConfigError


def test_a_configuration_error_exits_with_uvicorns_startup_failure(
        capsys: pytest.CaptureFixture[str]) -> None:
    @serve.fails_fast
    def factory() -> object:
        raise ConfigError("catalog cannot start:\n  - CATALOG_DATABASE_URL is not set")

    with pytest.raises(SystemExit) as stopped:
        factory()
    assert stopped.value.code == serve.STARTUP_FAILURE == 3
    assert "CATALOG_DATABASE_URL is not set" in capsys.readouterr().err


def test_other_errors_and_results_pass_through() -> None:
    app = object()
    assert serve.fails_fast(lambda: app)() is app

    @serve.fails_fast
    def broken() -> object:
        raise RuntimeError("bug")

    with pytest.raises(RuntimeError, match="bug"):
        broken()


def test_every_platform_factory_fails_fast() -> None:
    import importlib

    for module in ("auth.app", "services.gateway.app", "services.catalog.app",
                   "services.cart.app", "services.orders.app", "services.payments.app",
                   "services.exchange.app", "services.loyalty.app",
                   "services.notifications.app"):
        factory = importlib.import_module(module).create_asgi
        assert getattr(factory, "__wrapped__", None) is not None, module
