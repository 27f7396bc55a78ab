"""Starting and stopping the whole platform (``charter up``) for end-to-end tests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.databases import POSTGRES_ADMIN_URL, drop_databases, require_postgres
from tests.support.polling import wait_until
from tests.support.servers import free_ports

COMPONENTS = ("auth", "catalog", "cart", "orders", "payments", "exchange", "loyalty",
              "notifications", "gateway")
PLAIN_HTTP = ("auth", "gateway")
ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Platform:
    """A running ``charter up`` and the environment it was started with."""

    env: dict[str, str]
    proc: subprocess.Popen[bytes]
    log: Path

    @property
    def mtls(self) -> bool:
        return self.env.get("CHARTER_MTLS", "1") != "0"

    def url(self, component: str) -> str:
        scheme = "https" if self.mtls and component not in PLAIN_HTTP else "http"
        return f"{scheme}://127.0.0.1:{self.env[component.upper() + '_PORT']}"

    def client(self, identity: str = "charter-cli", **kwargs: Any) -> httpx.Client:
        """An HTTP client presenting ``identity``'s certificate (mTLS services)."""
        if not self.mtls:
            return httpx.Client(**kwargs)
        from charter.security.mtls import client_ssl_context

        ctx = client_ssl_context(identity, Path(self.env["CHARTER_VAR_DIR"]) / "pki")
        return httpx.Client(verify=ctx, **kwargs)

    def charter(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "charterctl.cli", *args], env=self.env,
                              capture_output=True, text=True, timeout=60)

    def token(self, client: str = "demo-cli", scope: str | None = None) -> str:
        args = ["token", "--client", client] + (["--scope", scope] if scope else [])
        done = self.charter(*args)
        assert done.returncode == 0, done.stderr
        return done.stdout.strip()


def start(tmp_path: Path, extra_env: dict[str, str] | None = None,
          only: str | None = None) -> Platform:
    """Run ``charter up`` on free ports with its own var dir; wait until it is up."""
    inherited = ("CHARTER_SERVICE", "CHARTER_PKI_DIR", "CHARTER_MTLS")
    env = {k: v for k, v in os.environ.items()
           if not k.endswith("_URL") and k not in inherited}
    env.update({"CHARTER_VAR_DIR": str(tmp_path / "var"), "PYTHONUNBUFFERED": "1"})
    for comp, port in zip(COMPONENTS, free_ports(len(COMPONENTS)), strict=True):
        env[f"{comp.upper()}_PORT"] = str(port)
    env.update(extra_env or {})
    log = tmp_path / "charter-up.log"
    argv = [sys.executable, "-m", "charterctl.cli", "up"] + (["--only", only] if only else [])
    proc = subprocess.Popen(argv, env=env,
                            stdout=log.open("wb"), stderr=subprocess.STDOUT, cwd=ROOT)
    platform = Platform(env, proc, log)

    def up() -> bool:
        if proc.poll() is not None:
            raise AssertionError("charter up exited")
        return "Charter is up" in log.read_text(errors="replace")

    try:
        wait_until(up, timeout=120, interval=0.3, what="charter up")
    except AssertionError as exc:
        proc.kill()
        pytest.fail(f"charter up did not start ({exc}):\n"
                    + log.read_text(errors="replace")[-4000:])
    return platform


def stop(platform: Platform) -> int:
    """Ctrl-C the platform; return its exit code."""
    platform.proc.send_signal(signal.SIGINT)
    try:
        return platform.proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        platform.proc.kill()
        raise


DATABASE_COMPONENTS = tuple(c for c in COMPONENTS if c != "gateway")


def postgres_env(prefix: str) -> tuple[dict[str, str], list[str]]:
    """``DATABASE_URL`` giving each component its own PostgreSQL database, and their names.

    Skips (laptop) or fails (``CI=true``) when the server is unreachable; ``charter up``
    creates the databases, :func:`running` drops them.
    """
    require_postgres()
    prefix = f"{prefix}_{uuid.uuid4().hex[:8]}"
    base = POSTGRES_ADMIN_URL.rsplit("/", 1)[0]
    return ({"DATABASE_URL": f"{base}/{prefix}_{{service}}"},
            [f"{prefix}_{c}" for c in DATABASE_COMPONENTS])


@contextmanager
def running(tmp_path: Path, database: str = "sqlite", *, prefix: str = "charter_e2e",
            extra_env: dict[str, str] | None = None) -> Iterator[Platform]:
    """A started platform on ``database`` ("sqlite" files or "postgres"), stopped after.

    The PostgreSQL databases it created are dropped afterwards.
    """
    env = {"GATEWAY_RATE_LIMIT": "0", **(extra_env or {})}
    databases: list[str] = []
    if database == "postgres":
        db_env, databases = postgres_env(prefix)
        env.update(db_env)
    platform: Platform | None = None
    try:
        platform = start(tmp_path, env)
        yield platform
    finally:
        if platform is not None and platform.proc.poll() is None:
            stop(platform)
        if databases:  # also when start() failed half-way
            drop_databases(databases)
