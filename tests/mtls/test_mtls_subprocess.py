"""The exact uvicorn command line `charter up` uses, in a subprocess, over mutual TLS."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from charter import config
from charter.security import mtls
from charter.serve import main, probe, service_env, uvicorn_tls_args
from charter.testing import TokenFactory
from tests.support.polling import wait_until
from tests.support.servers import free_port

HERE = Path(__file__).parent


@pytest.fixture
def served_catalog(tmp_path: Path, tokens: TokenFactory, catalog_db: Any,
                   product: dict[str, Any], monkeypatch: pytest.MonkeyPatch
                   ) -> Iterator[str]:
    port = free_port()
    monkeypatch.setenv("CATALOG_PORT", str(port))
    jwks = tmp_path / "jwks.json"
    jwks.write_text(json.dumps(tokens.jwks()))
    env = {
        **os.environ,
        **service_env("catalog"),
        "CATALOG_DATABASE_URL": str(catalog_db.engine.url),
        "MTLS_TEST_JWKS": str(jwks),
        "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]),
    }
    cmd = [sys.executable, "-m", "uvicorn", "--factory", "mtls_app:create_asgi",
           "--host", "127.0.0.1", "--port", str(port), "--no-access-log",
           "--log-level", "warning", *uvicorn_tls_args("catalog")]
    proc = subprocess.Popen(cmd, env=env)
    url = config.service_url("catalog")
    try:
        # What the runner's readiness poll has to do: present a certificate (charter-cli).
        def ready() -> bool:
            assert proc.poll() is None, f"uvicorn exited with {proc.returncode}"
            return probe(f"{url}/health/ready", timeout=1)

        wait_until(ready, timeout=30, interval=0.2, what="the catalog to become ready")
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_runner_command_line_serves_with_mtls(
        served_catalog: str, bearer: Callable[..., dict[str, str]],
        product: dict[str, Any]) -> None:
    url = served_catalog
    assert url.startswith("https://")
    body = {"order_id": "order-9", "items": [{"product_id": product["id"], "quantity": 1}]}
    with httpx.Client(base_url=url, verify=mtls.client_ssl_context("cart")) as cart:
        refused = cart.post("/v1/reservations", json=body,
                            headers=bearer(**{"Idempotency-Key": "key-sub-0001"}))
        assert refused.status_code == 403, refused.text
        assert refused.headers["content-type"].startswith("application/problem+json")
        assert cart.get(f"/v1/products/{product['id']}", headers=bearer()).status_code == 200
    with httpx.Client(base_url=url, verify=mtls.client_ssl_context("orders")) as orders:
        created = orders.post("/v1/reservations", json=body,
                              headers=bearer(**{"Idempotency-Key": "key-sub-0002"}))
        assert created.status_code == 201, created.text
    with httpx.Client(verify=str(Path(os.environ["CHARTER_PKI_DIR"]) / "ca.pem")) as anon, \
            pytest.raises(httpx.TransportError):
        anon.get(f"{url}/health/live")


def test_probe_command(served_catalog: str) -> None:
    ready = f"{served_catalog}/health/ready"
    assert main(["probe", ready]) == 0
    assert main(["probe", ready, "orders"]) == 0
    assert main(["probe", ready, "no-such-identity"]) == 1  # no certificate: no answer
    assert main(["probe", f"{served_catalog}/nowhere"]) == 1
    assert main(["probe"]) == 2
