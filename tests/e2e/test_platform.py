"""End to end: ``charter up`` as a subprocess, tokens from auth over HTTP, real calls.

Runs twice: on the embedded defaults (SQLite files) and on the real PostgreSQL server
(one database per service, created by ``charter up`` itself and dropped afterwards).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.conftest import POSTGRES_ADMIN_URL, unavailable

pytestmark = pytest.mark.e2e

COMPONENTS = ("auth", "catalog", "cart")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Platform:
    env: dict[str, str]
    proc: subprocess.Popen[bytes]
    log: Path

    def url(self, component: str) -> str:
        return f"http://127.0.0.1:{self.env[component.upper() + '_PORT']}"

    def charter(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "charter.cli", *args], env=self.env,
                              capture_output=True, text=True, timeout=60)

    def token(self, client: str = "demo-cli", scope: str | None = None) -> str:
        args = ["token", "--client", client] + (["--scope", scope] if scope else [])
        done = self.charter(*args)
        assert done.returncode == 0, done.stderr
        return done.stdout.strip()


def _drop_databases(names: list[str]) -> None:
    from sqlalchemy import create_engine, text

    admin = create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        for name in names:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def _start(tmp_path: Path, extra_env: dict[str, str]) -> Platform:
    env = {k: v for k, v in os.environ.items() if not k.endswith("DATABASE_URL")}
    env.update({"CHARTER_VAR_DIR": str(tmp_path / "var"), "PYTHONUNBUFFERED": "1"})
    for comp in COMPONENTS:
        env[f"{comp.upper()}_PORT"] = str(_free_port())
    env.update(extra_env)
    log = tmp_path / "charter-up.log"
    proc = subprocess.Popen([sys.executable, "-m", "charter.cli", "up"], env=env,
                            stdout=log.open("wb"), stderr=subprocess.STDOUT,
                            cwd=Path(__file__).resolve().parents[2])
    platform = Platform(env, proc, log)
    deadline = time.monotonic() + 120
    while "Charter is up" not in log.read_text(errors="replace"):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail("charter up did not start:\n" + log.read_text(errors="replace")[-4000:])
        time.sleep(0.3)
    return platform


def _stop(platform: Platform) -> int:
    platform.proc.send_signal(signal.SIGINT)
    try:
        return platform.proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        platform.proc.kill()
        raise


@pytest.fixture(params=["sqlite", "postgres"])
def platform(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Platform]:
    extra: dict[str, str] = {}
    databases: list[str] = []
    if request.param == "postgres":
        from sqlalchemy import create_engine, text

        try:
            engine = create_engine(POSTGRES_ADMIN_URL)
            with engine.connect() as conn:
                conn.execute(text("SELECT 1"))
            engine.dispose()
        except Exception as exc:
            unavailable("PostgreSQL", exc)
        prefix = f"charter_e2e_{uuid.uuid4().hex[:8]}"
        databases = [f"{prefix}_{c}" for c in COMPONENTS]
        base = POSTGRES_ADMIN_URL.rsplit("/", 1)[0]
        extra["DATABASE_URL"] = f"{base}/{prefix}_{{service}}"
    platform = _start(tmp_path, extra)
    try:
        yield platform
    finally:
        if platform.proc.poll() is None:
            _stop(platform)
        if databases:
            _drop_databases(databases)


def test_token_then_catalog_and_cart(platform: Platform) -> None:
    catalog, cart = platform.url("catalog"), platform.url("cart")

    assert httpx.get(f"{catalog}/v1/products").status_code == 401

    token = platform.token("demo-cli")
    headers = {"Authorization": f"Bearer {token}", "X-Correlation-Id": "e2e-check-1"}
    r = httpx.get(f"{catalog}/v1/products", headers=headers, params={"page_size": 5})
    assert r.status_code == 200, r.text
    assert r.headers["x-correlation-id"] == "e2e-check-1"
    page = r.json()
    assert page["total"] >= 50 and len(page["items"]) == 5
    product = page["items"][0]

    r = httpx.post(f"{cart}/v1/cart/items", headers=headers,
                   json={"product_id": product["id"], "quantity": 2})
    assert r.status_code in (200, 201), r.text
    r = httpx.get(f"{cart}/v1/cart", headers=headers)
    assert r.status_code == 200, r.text
    body = r.json()
    line = next(i for i in body["items"] if str(i["product_id"]) == str(product["id"]))
    assert line["quantity"] == 2
    assert line["unit_price"] == product["price"]

    narrow = platform.token("demo-cli", scope="catalog:read")
    r = httpx.get(f"{cart}/v1/cart", headers={"Authorization": f"Bearer {narrow}"})
    assert r.status_code == 403

    r = httpx.get(f"{platform.url('auth')}/.well-known/jwks.json")
    assert r.status_code == 200 and r.json()["keys"]

    assert _stop(platform) == 0
    for comp in COMPONENTS:
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"{platform.url(comp)}/health/live", timeout=2)
