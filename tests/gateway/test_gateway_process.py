"""The gateway as ``charter up`` runs it: ``uvicorn --factory services.gateway.app:create_asgi``
with ``charterctl.runner.command``'s options (``--no-proxy-headers`` among them).

Configuration only from the environment; the JWKS comes from a real HTTP endpoint; the
access log is one JSON line per request with api, operation, status, duration and
correlation id — and never the token. A spoofed ``X-Forwarded-For`` from 127.0.0.1 picks
no rate-limit bucket: uvicorn's default (``--proxy-headers``, ``--forwarded-allow-ips
127.0.0.1``) rewrote the peer from it before the gateway saw it; now the header counts only
from ``GATEWAY_TRUSTED_PROXIES``.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from gateway_support import EchoUpstream

from charter import config, serve
from charter.testing import TokenFactory
from charterctl import runner
from charterctl.registry import COMPONENTS
from tests.support.polling import wait_until
from tests.support.servers import ThreadServer, free_port


class JWKS:
    """Serves one JSON document at any path (the authorization server's JWKS)."""

    def __init__(self, document: dict[str, Any]) -> None:
        self.body = json.dumps(document).encode()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": self.body})


def start_gateway(echo: EchoUpstream, tokens: TokenFactory, tmp_path: Any,
                  asgi_server: Callable[..., ThreadServer], monkeypatch: pytest.MonkeyPatch,
                  **extra_env: str) -> Iterator[tuple[str, Any]]:
    """The gateway started with ``charter up``'s command line (``runner.command``)."""
    jwks = asgi_server(JWKS(tokens.jwks()))
    port = free_port()
    monkeypatch.setenv("GATEWAY_PORT", str(port))
    monkeypatch.delenv("CHARTER_HOST", raising=False)
    env = dict(os.environ)
    env.update({
        "AUTH_ISSUER": tokens.issuer,
        "AUTH_JWKS_URL": f"{jwks.url}/.well-known/jwks.json",
        "CATALOG_URL": echo.url,
        "CHARTER_MTLS": "0",
        "GATEWAY_RATE_LIMIT": "0.001",  # next to nothing refills during a test
        "GATEWAY_RATE_BURST": "7",
        "GATEWAY_UPSTREAM_TIMEOUT": "2",
        **serve.service_env("gateway"),
        **extra_env,
    })
    command = runner.command(COMPONENTS["gateway"])
    assert "--no-proxy-headers" in command  # the gateway finds the client itself
    log_path = tmp_path / "gateway.log"
    with log_path.open("wb") as log_file:
        proc = subprocess.Popen(command, cwd=config.ROOT, env=env, stdout=log_file,
                                stderr=subprocess.STDOUT)
        url = f"http://127.0.0.1:{port}"

        def live() -> bool:
            assert proc.poll() is None, log_path.read_text()
            try:
                return httpx.get(f"{url}/health/live", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        try:
            wait_until(live, timeout=30, interval=0.1, what="the gateway to start")
            yield url, log_path
        finally:
            proc.terminate()
            proc.wait(timeout=10)


@pytest.fixture
def gateway_process(echo: EchoUpstream, tokens: TokenFactory, tmp_path: Any,
                    asgi_server: Callable[..., ThreadServer],
                    monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, Any]]:
    yield from start_gateway(echo, tokens, tmp_path, asgi_server, monkeypatch)


@pytest.fixture
def gateway_behind_local_proxy(echo: EchoUpstream, tokens: TokenFactory, tmp_path: Any,
                               asgi_server: Callable[..., ThreadServer],
                               monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, Any]]:
    yield from start_gateway(echo, tokens, tmp_path, asgi_server, monkeypatch,
                             GATEWAY_TRUSTED_PROXIES="127.0.0.1/32")


def test_started_by_uvicorn_factory(gateway_process: tuple[str, Any], tokens: TokenFactory,
                                   echo: EchoUpstream) -> None:
    url, log_path = gateway_process
    token = tokens.token(scope="catalog:read")
    with httpx.Client(base_url=url, timeout=5) as http:
        ready = http.get("/health/ready")
        assert ready.status_code == 200, ready.text
        r = http.get("/catalog/v1/products", headers={
            "Authorization": f"Bearer {token}", "X-Correlation-Id": "proc-test-1"})
        assert r.status_code == 200, r.text
        assert r.headers["ratelimit-limit"] == "7"
        assert echo.last["headers"]["x-correlation-id"] == "proc-test-1"
        assert http.get("/catalog/v1/products").status_code == 401
        assert "Charter" in http.get("/").text

    def access_lines() -> list[dict[str, Any]]:
        found = []
        for line in log_path.read_text().splitlines():
            try:
                entry = json.loads(line) if line.startswith("{") else {}
            except ValueError:  # a line still being written
                continue
            if entry.get("correlation_id") == "proc-test-1":
                found.append(entry)
        return found

    wait_until(access_lines, timeout=5, what="the access log line")
    access = access_lines()
    assert len(access) == 1, access
    entry = access[0]
    assert entry["service"] == "gateway"
    assert (entry["api"], entry["operation"], entry["status"]) == \
        ("catalog", "list_products", 200)
    assert entry["duration_ms"] > 0 and len(entry["trace_id"]) == 32
    assert token not in log_path.read_text()
    assert token.split(".")[2] not in log_path.read_text()


def anonymous(url: str, forwarded_for: str) -> int:
    """One request without a token (rate-limited by client address) from 127.0.0.1."""
    return httpx.get(f"{url}/catalog/v1/products", timeout=5,
                     headers={"X-Forwarded-For": forwarded_for}).status_code


def test_spoofed_forwarded_for_does_not_change_the_bucket(
        gateway_process: tuple[str, Any], tokens: TokenFactory, echo: EchoUpstream) -> None:
    url, _ = gateway_process
    statuses = [anonymous(url, f"203.0.113.{i}") for i in range(7)]
    assert statuses == [401] * 7
    assert anonymous(url, "198.51.100.99") == 429  # still 127.0.0.1 to the limiter
    token = tokens.token(scope="catalog:read")
    r = httpx.get(f"{url}/catalog/v1/products", timeout=5, headers={
        "Authorization": f"Bearer {token}", "X-Forwarded-For": "198.51.100.99"})
    assert r.status_code == 200, r.text
    assert echo.last["headers"]["x-forwarded-for"] == "127.0.0.1"  # the chain not passed on


def test_forwarded_for_counts_when_127_0_0_1_is_a_trusted_proxy(
        gateway_behind_local_proxy: tuple[str, Any], tokens: TokenFactory,
        echo: EchoUpstream) -> None:
    url, _ = gateway_behind_local_proxy
    statuses = [anonymous(url, "203.0.113.7") for _ in range(8)]
    assert statuses == [401] * 7 + [429]
    assert anonymous(url, "198.51.100.99") == 401  # another client behind the proxy
    token = tokens.token(scope="catalog:read")
    r = httpx.get(f"{url}/catalog/v1/products", timeout=5, headers={
        "Authorization": f"Bearer {token}", "X-Forwarded-For": "198.51.100.99"})
    assert r.status_code == 200, r.text
    assert echo.last["headers"]["x-forwarded-for"] == "198.51.100.99, 127.0.0.1"
