"""Fixtures of the mTLS tests: two PKIs (ours and a foreign one), a TLS catalog; ``tokens``
and the database helpers come from the shared plugin (tests/support/plugin.py)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from charter.cache import TTLCache
from charter.db import Database
from charter.security import mtls
from charter.serve import H11_PROTOCOL, PROTOCOL, uvicorn_tls_config
from charter.testing import TokenFactory
from charterctl import pki
from services.catalog.app import catalog_service, create_app
from tests.support.servers import ThreadServer, free_port


@pytest.fixture(scope="session")
def pki_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return pki.init_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="session")
def foreign_pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Another CA issuing certificates with the very same names."""
    return pki.init_pki(tmp_path_factory.mktemp("foreign-pki"))


@pytest.fixture(autouse=True)
def _mtls_env(pki_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("CHARTER_MTLS", "1")
    monkeypatch.setenv("CHARTER_PKI_DIR", str(pki_dir))
    monkeypatch.delenv("CHARTER_SERVICE", raising=False)
    for name in ("CATALOG", "CART", "ORDERS", "AUTH", "GATEWAY"):
        monkeypatch.delenv(f"{name}_URL", raising=False)
    mtls.clear_cache()
    yield
    mtls.clear_cache()


@pytest.fixture
def bearer(tokens: TokenFactory) -> Callable[..., dict[str, str]]:
    """Headers with a service-client token (the orders client unless ``client`` is given)."""
    def make(scope: str = "catalog:read catalog:reserve", *, client: str = "orders",
             **extra: str) -> dict[str, str]:
        token = tokens.token(sub=client, scope=scope, role="service", client_id=client)
        return {"Authorization": f"Bearer {token}", **extra}
    return make


@pytest.fixture
def catalog_db(tmp_path: Path, migrated_db: Callable[[str, str], Database]) -> Database:
    return migrated_db("catalog", f"sqlite:///{tmp_path / 'catalog.db'}")


@pytest.fixture
def product(catalog_db: Database) -> dict[str, Any]:
    service = catalog_service(catalog_db, TTLCache())
    category = service.create_category("tea", "Tea")
    created = service.create_product("TEA-0001", "Sencha 100 g", category.id, 890, "EUR")
    service.set_stock(created.id, 10)
    return {"id": created.id, "sku": created.sku}


@pytest.fixture
def catalog_app(catalog_db: Database, tokens: TokenFactory) -> Any:
    return create_app(db=catalog_db, verifier=tokens.verifier(), cache=TTLCache())


@pytest.fixture(params=[(PROTOCOL, "auto"), (H11_PROTOCOL, "asyncio")],
                ids=["httptools-uvloop", "h11-asyncio"])
def catalog_server(request: pytest.FixtureRequest, catalog_app: Any, pki_dir: Path,
                   monkeypatch: pytest.MonkeyPatch) -> Iterator[ThreadServer]:
    """The catalog app served over mTLS by uvicorn, with the charter protocol classes."""
    protocol, loop = request.param
    port = free_port()
    monkeypatch.setenv("CATALOG_PORT", str(port))
    options = uvicorn_tls_config("catalog", pki_dir, protocol=protocol)
    with ThreadServer(catalog_app, port, loop=loop, **options) as server:
        yield server


@pytest.fixture
def call_as(catalog_server: ThreadServer, pki_dir: Path
            ) -> Iterator[Callable[[str], httpx.Client]]:
    """An httpx client presenting ``identity``'s certificate to the TLS catalog."""
    clients: list[httpx.Client] = []

    def make(identity: str) -> httpx.Client:
        client = httpx.Client(base_url=f"https://127.0.0.1:{catalog_server.port}",
                              verify=mtls.client_ssl_context(identity, pki_dir), timeout=5)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()
