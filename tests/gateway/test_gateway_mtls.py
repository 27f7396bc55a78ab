"""The gateway calls mTLS services over https with its own client certificate."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from gateway_support import EchoUpstream

from charter import serve as charter_serve
from charter.security import mtls
from charterctl import pki
from services.gateway.app import Gateway
from services.gateway.settings import GatewaySettings
from tests.support.servers import ThreadServer

pytestmark = pytest.mark.anyio
URL = "/catalog/v1/products"


@pytest.fixture
def pki_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    directory = tmp_path / "pki"
    pki.init_pki(directory, identities=["catalog", "gateway"])
    monkeypatch.setenv("CHARTER_PKI_DIR", str(directory))
    mtls.clear_cache()
    yield directory
    mtls.clear_cache()


@pytest.fixture
def tls_echo(pki_dir: Path, asgi_server: Callable[..., ThreadServer]) -> EchoUpstream:
    upstream = EchoUpstream()
    server = asgi_server(upstream, **charter_serve.uvicorn_tls_config("catalog", pki_dir,
                                                                      force=True))
    upstream.url = server.url
    return upstream


async def test_forwarded_over_mutual_tls_as_the_gateway(
        make_gateway: Callable[..., Gateway], tls_echo: EchoUpstream,
        bearer: Callable[..., dict[str, str]]) -> None:
    assert tls_echo.url.startswith("https://")
    gateway = make_gateway(upstreams={"catalog": tls_echo.url})
    async with httpx.AsyncClient(transport=httpx.ASGITransport(gateway),
                                 base_url="http://gw") as http:
        r = await http.get(URL, headers=bearer("catalog:read"))
        assert r.status_code == 200, r.text
        assert r.json()["tls_identity"] == "gateway"
    await gateway.upstreams.aclose()


async def test_missing_gateway_certificate_is_503(
        make_gateway: Callable[..., Gateway], tls_echo: EchoUpstream, pki_dir: Path,
        bearer: Callable[..., dict[str, str]]) -> None:
    for name in ("gateway.pem", "gateway-key.pem"):
        (pki_dir / name).unlink()
    mtls.clear_cache()
    gateway = make_gateway(GatewaySettings(rate_limit=0),
                           upstreams={"catalog": tls_echo.url})
    async with httpx.AsyncClient(transport=httpx.ASGITransport(gateway),
                                 base_url="http://gw") as http:
        r = await http.get(URL, headers=bearer("catalog:read"))
    assert r.status_code == 503
    assert r.headers["content-type"] == "application/problem+json"
    assert tls_echo.seen == []
