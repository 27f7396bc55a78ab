"""Starting and stopping the whole platform (``charter up``) for end-to-end tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import POSTGRES_ADMIN_URL

COMPONENTS = ("auth", "catalog", "cart", "orders", "payments", "exchange", "loyalty",
              "notifications", "gateway")
PLAIN_HTTP = ("auth", "gateway")
ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


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


def drop_databases(names: list[str]) -> None:
    """Drop PostgreSQL databases a test created."""
    from sqlalchemy import create_engine, text

    admin = create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        for name in names:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def start(tmp_path: Path, extra_env: dict[str, str] | None = None,
          only: str | None = None) -> Platform:
    """Run ``charter up`` on free ports with its own var dir; wait until it is up."""
    inherited = ("CHARTER_SERVICE", "CHARTER_PKI_DIR", "CHARTER_MTLS")
    env = {k: v for k, v in os.environ.items()
           if not k.endswith("_URL") and k not in inherited}
    env.update({"CHARTER_VAR_DIR": str(tmp_path / "var"), "PYTHONUNBUFFERED": "1"})
    for comp in COMPONENTS:
        env[f"{comp.upper()}_PORT"] = str(free_port())
    env.update(extra_env or {})
    log = tmp_path / "charter-up.log"
    argv = [sys.executable, "-m", "charterctl.cli", "up"] + (["--only", only] if only else [])
    proc = subprocess.Popen(argv, env=env,
                            stdout=log.open("wb"), stderr=subprocess.STDOUT, cwd=ROOT)
    platform = Platform(env, proc, log)
    deadline = time.monotonic() + 120
    while "Charter is up" not in log.read_text(errors="replace"):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail("charter up did not start:\n" + log.read_text(errors="replace")[-4000:])
        time.sleep(0.3)
    return platform


def stop(platform: Platform) -> int:
    """Ctrl-C the platform; return its exit code."""
    platform.proc.send_signal(signal.SIGINT)
    try:
        return platform.proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        platform.proc.kill()
        raise
