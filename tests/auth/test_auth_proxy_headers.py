"""auth started as ``charter up`` starts it: a spoofed ``X-Forwarded-For`` from 127.0.0.1
does not change the client address the brute-force limits key on.

uvicorn's default (``--proxy-headers``, ``--forwarded-allow-ips 127.0.0.1``) rewrote the
peer from the header before auth's own trusted-proxy logic saw it, so a local client could
pick a fresh address per guess. ``charterctl.runner.command`` starts auth with
``--no-proxy-headers``; the header then counts only from ``AUTH_TRUSTED_PROXIES``.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from charterctl import runner
from charterctl.registry import COMPONENTS
from tests.support.plugin import free_port
from tests.support.servers import wait_until_live

FREE_ATTEMPTS = 5  # AUTH_LOGIN_FREE_ATTEMPTS default: per account + client IP


def start_auth(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
               **extra_env: str) -> Iterator[str]:
    port = free_port()
    monkeypatch.setenv("AUTH_PORT", str(port))
    env = {**os.environ, "CHARTER_ENV": "development", "CHARTER_VAR_DIR": str(tmp_path),
           "AUTH_DATABASE_URL": f"sqlite:///{tmp_path / 'auth.db'}", "AUTH_PORT": str(port),
           # development-mode hashing cost: the unknown-account checks stay fast
           "AUTH_ARGON2_TIME_COST": "1", "AUTH_ARGON2_MEMORY_COST": "8",
           "AUTH_ARGON2_PARALLELISM": "1", "CHARTER_SERVICE": "auth", **extra_env}
    command = runner.command(COMPONENTS["auth"])
    assert "--no-proxy-headers" in command
    proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    base = f"http://127.0.0.1:{port}"

    def output() -> str:
        return proc.stderr.read().decode() if proc.stderr else ""

    try:
        wait_until_live(base, proc, output=output, timeout=60, what="auth to start")
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture
def auth_as_charter_up(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    yield from start_auth(tmp_path, monkeypatch)


@pytest.fixture
def auth_behind_local_proxy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    yield from start_auth(tmp_path, monkeypatch, AUTH_TRUSTED_PROXIES="127.0.0.1/32")


def sign_in(base: str, forwarded_for: str) -> int:
    """One failed sign-in (an unknown account counts like a real one) from 127.0.0.1."""
    headers = {"X-Forwarded-For": forwarded_for}
    with httpx.Client(base_url=base, timeout=10, headers=headers) as browser:
        page = browser.get("/login")
        match = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
        assert match, page.text
        return browser.post("/login", data={"csrf_token": match.group(1), "next": "/",
                                            "email": "nobody@example.com",
                                            "password": "wrong-password-1"}).status_code


def test_spoofed_forwarded_for_does_not_change_the_throttling_key(
        auth_as_charter_up: str) -> None:
    statuses = [sign_in(auth_as_charter_up, f"203.0.113.{i}") for i in range(FREE_ATTEMPTS)]
    assert statuses == [401] * FREE_ATTEMPTS
    # A fresh spoofed address is still 127.0.0.1 to the limits: throttled.
    assert sign_in(auth_as_charter_up, "198.51.100.99") == 429


def test_forwarded_for_counts_when_127_0_0_1_is_a_trusted_proxy(
        auth_behind_local_proxy: str) -> None:
    statuses = [sign_in(auth_behind_local_proxy, "203.0.113.7") for _ in range(FREE_ATTEMPTS)]
    assert statuses == [401] * FREE_ATTEMPTS
    assert sign_in(auth_behind_local_proxy, "203.0.113.7") == 429
    assert sign_in(auth_behind_local_proxy, "198.51.100.99") == 401  # another client
