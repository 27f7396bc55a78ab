"""``ClientCredentialsTokenProvider`` against a tiny local authorization server."""

from __future__ import annotations

import base64
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import parse_qs

import pytest

from charter.problems import ServiceUnavailable
from charter.security.client_credentials import (
    ClientCredentialsTokenProvider,
    TokenRequestFailed,
)
from tests.support.clocks import SettableClock
from tests.support.plugin import Seen, StubServer, free_port, run_threads, wait_until

CLIENT_ID = "cart"
SECRET = "s3cret"


class AuthServer:
    """Issues ``token-1``, ``token-2``… to the right client, ``expires_in`` seconds long."""

    def __init__(self, expires_in: int = 900, delay: float = 0.0) -> None:
        self.expires_in = expires_in
        self.issued = 0
        self.lock = threading.Lock()
        self.server = StubServer(self.respond, delay=delay)

    def respond(self, seen: Seen) -> tuple[int, Any]:
        if seen.method != "POST" or seen.path != "/oauth/token":
            return 404, {"error": "not_found"}
        expected = base64.b64encode(f"{CLIENT_ID}:{SECRET}".encode()).decode()
        if seen.headers.get("authorization") != f"Basic {expected}":
            return 401, {"error": "invalid_client"}
        form = {k: v[0] for k, v in parse_qs(seen.body.decode()).items()}
        if form.get("grant_type") != "client_credentials":
            return 400, {"error": "unsupported_grant_type"}
        with self.lock:
            self.issued += 1
            number = self.issued
        return 200, {
            "access_token": f"token-{number}",
            "token_type": "Bearer",
            "expires_in": self.expires_in,
            "scope": form.get("scope", ""),
        }

    @property
    def token_url(self) -> str:
        return f"{self.server.url}/oauth/token"


@pytest.fixture
def auth_server() -> Iterator[AuthServer]:
    server = AuthServer()
    yield server
    server.server.close()


def provider(server: AuthServer, **kwargs: object) -> ClientCredentialsTokenProvider:
    return ClientCredentialsTokenProvider(
        server.token_url, CLIENT_ID, SECRET, "catalog:read", **kwargs  # type: ignore[arg-type]
    )


def test_fetches_with_basic_auth_and_grant(auth_server: AuthServer) -> None:
    p = provider(auth_server)
    assert p() == "token-1"
    seen = auth_server.server.seen[0]
    assert seen.headers["content-type"] == "application/x-www-form-urlencoded"
    form = parse_qs(seen.body.decode())
    assert form == {"grant_type": ["client_credentials"], "scope": ["catalog:read"]}
    assert SECRET not in seen.body.decode()  # the secret travels only in the Basic header


def test_token_is_cached(auth_server: AuthServer) -> None:
    p = provider(auth_server)
    assert [p() for _ in range(5)] == ["token-1"] * 5
    assert auth_server.issued == 1
    assert p.token() == "token-1"


def test_refreshes_shortly_before_expiry(auth_server: AuthServer) -> None:
    auth_server.expires_in = 300
    clock = SettableClock()
    p = provider(auth_server, clock=clock, refresh_margin=30.0)
    assert p() == "token-1"
    clock.advance(269)  # 31 s left: still cached
    assert p() == "token-1"
    clock.advance(2)  # 29 s left: inside the margin, refreshed
    assert p() == "token-2"
    clock.advance(100)
    assert p() == "token-2"
    assert auth_server.issued == 2


def test_short_lived_tokens_refresh_half_way(auth_server: AuthServer) -> None:
    auth_server.expires_in = 20
    clock = SettableClock()
    p = provider(auth_server, clock=clock, refresh_margin=30.0)
    assert p() == "token-1"
    clock.advance(9)
    assert p() == "token-1"
    clock.advance(2)
    assert p() == "token-2"


def test_real_clock_expiry(auth_server: AuthServer) -> None:
    """Without an injected clock the provider follows real time (refresh half-way: 0.5 s)."""
    auth_server.expires_in = 1
    p = provider(auth_server)
    assert p() == "token-1"
    wait_until(lambda: p() == "token-2", timeout=5, what="a refreshed token")
    assert auth_server.issued == 2


def test_invalidate_forces_a_new_token(auth_server: AuthServer) -> None:
    p = provider(auth_server)
    p()
    p.invalidate()
    assert p() == "token-2"


def test_concurrent_callers_share_one_fetch() -> None:
    server = AuthServer(delay=0.2)
    try:
        p = provider(server)
        assert run_threads(16, lambda _i: p()) == ["token-1"] * 16
        assert server.issued == 1
    finally:
        server.server.close()


def test_wrong_secret_is_a_503_problem(auth_server: AuthServer) -> None:
    p = ClientCredentialsTokenProvider(auth_server.token_url, CLIENT_ID, "wrong", "catalog:read")
    with pytest.raises(TokenRequestFailed) as info:
        p()
    assert isinstance(info.value, ServiceUnavailable)
    assert "wrong" not in str(info.value)


def test_unreachable_server_is_a_503_problem() -> None:
    url = f"http://127.0.0.1:{free_port()}/oauth/token"
    p = ClientCredentialsTokenProvider(url, CLIENT_ID, SECRET, "catalog:read", timeout=0.5)
    with pytest.raises(TokenRequestFailed):
        p()


def test_slow_server_times_out() -> None:
    server = AuthServer(delay=2.0)
    try:
        p = provider(server, timeout=0.3)
        started = time.monotonic()
        with pytest.raises(TokenRequestFailed):
            p()
        assert time.monotonic() - started < 1.5
    finally:
        server.server.close()


@pytest.mark.parametrize(
    "reply",
    [
        {"token_type": "Bearer", "expires_in": 60},
        {"access_token": "x", "token_type": "mac", "expires_in": 60},
        {"access_token": "x", "token_type": "Bearer", "expires_in": "soon"},
    ],
)
def test_invalid_token_responses_are_refused(
    reply: dict[str, object], stub_server: Callable[..., StubServer]
) -> None:
    server = stub_server(lambda seen: (200, reply))
    p = ClientCredentialsTokenProvider(
        f"{server.url}/oauth/token", CLIENT_ID, SECRET, "catalog:read"
    )
    with pytest.raises(TokenRequestFailed):
        p()


def test_repr_hides_the_secret(auth_server: AuthServer) -> None:
    assert SECRET not in repr(provider(auth_server))
