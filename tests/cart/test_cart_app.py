"""The production factory wires the configured database, catalog URL and timeout."""

from __future__ import annotations

import pytest

from services.cart import app as cart_app
from services.cart.services import CartService
from services.catalog_client.client import HttpCatalogClient
from tests.support.plugin import free_port


def test_create_asgi_uses_the_environment(
    monkeypatch: pytest.MonkeyPatch, db_url: str
) -> None:
    configured: list[str] = []
    monkeypatch.setattr(cart_app, "configure_logging", configured.append)
    dead = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("CART_DATABASE_URL", db_url)
    monkeypatch.setenv("CATALOG_URL", "http://catalog.internal:8101/")
    monkeypatch.setenv("CATALOG_TIMEOUT", "0.7")
    monkeypatch.setenv("AUTH_URL", dead)
    monkeypatch.setenv("CHARTER_ENV", "embedded")
    app = cart_app.create_asgi()
    assert configured == ["cart"]
    ctx = app.app.extensions["charter"]
    assert ctx.db.url == db_url
    catalog = ctx.deps["catalog"]
    assert isinstance(catalog, HttpCatalogClient)
    assert isinstance(ctx.deps["cart"], CartService)
    assert catalog.base_url == "http://catalog.internal:8101"
    assert catalog.http.timeout == 0.7
    with app.test_client() as client:
        assert client.get("/health/ready").status_code == 200
        assert client.get("/v1/cart").status_code == 401
    ctx.db.dispose()


def test_migrations_dir_is_the_packaged_one() -> None:
    assert (cart_app.MIGRATIONS_DIR / "env.py").is_file()
    assert (cart_app.MIGRATIONS_DIR / "script.py.mako").is_file()
    assert list((cart_app.MIGRATIONS_DIR / "versions").glob("*.py"))
