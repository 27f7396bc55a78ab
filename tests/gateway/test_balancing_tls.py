"""DNS-discovered mTLS instances: the gateway connects to the address but verifies (and
sends as SNI and ``Host``) the service's name, the name its certificate is issued for."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import httpx
import pytest
from gateway_support import EchoUpstream

from charter import serve as charter_serve
from charter.security import mtls
from charterctl import pki
from services.gateway.settings import GatewaySettings
from services.gateway.upstreams import Upstreams
from tests.support.servers import ThreadServer

pytestmark = pytest.mark.anyio
SETTINGS = GatewaySettings(rate_limit=0, upstream_timeout=5.0, health_interval=0.05,
                           dns_refresh=0.05)


@pytest.fixture
def tls_catalog(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                asgi_server: Callable[..., ThreadServer]) -> Iterator[tuple[EchoUpstream, int]]:
    directory = tmp_path / "pki"
    pki.init_pki(directory, identities=["catalog", "gateway"])
    monkeypatch.setenv("CHARTER_PKI_DIR", str(directory))
    mtls.clear_cache()
    upstream = EchoUpstream()
    server = asgi_server(upstream, **charter_serve.uvicorn_tls_config("catalog", directory,
                                                                      force=True))
    yield upstream, server.port
    mtls.clear_cache()


async def forward_once(name: str, port: int, client: str) -> httpx.Response:
    """A request through DNS discovery of ``https://<name>:<port>`` → 127.0.0.1."""
    settings = replace(SETTINGS, upstream_client=client)
    ups = Upstreams(["catalog"], settings, {"catalog": f"https://{name}:{port}"},
                    resolver=lambda host: ["127.0.0.1"] if host == name else [])
    await ups.start()
    try:
        balancer = ups.balancer("catalog")
        for _ in range(200):
            if f"127.0.0.1:{port}" in balancer.instances:
                break
            await asyncio.sleep(0.01)
        response = await ups.forward("catalog", "GET", "/v1/products", [], None)
        await response.aread()
        await response.aclose()
        return response
    finally:
        await ups.aclose()


@pytest.mark.parametrize("client", ["aiohttp", "httpcore"])
async def test_dns_instance_is_verified_by_the_service_name(
        tls_catalog: tuple[EchoUpstream, int], monkeypatch: pytest.MonkeyPatch,
        client: str) -> None:
    echo, port = tls_catalog
    monkeypatch.setenv("CATALOG_DISCOVERY", "dns")
    r = await forward_once("catalog", port, client)
    assert r.status_code == 200
    assert echo.last["tls_identity"] == "gateway"
    assert echo.last["headers"]["host"] == f"catalog:{port}"
    # the same address under a name the certificate does not carry is refused
    with pytest.raises(httpx.ConnectError, match="(?i)certificate|hostname"):
        await forward_once("payments", port, client)
