"""The gateway's rate limit holds per client across worker processes and replicas.

Unit: :class:`RedisRateLimiter` against the real Redis (burst, refill, the in-process
limiter's headers, one budget for two instances, key prefix and expiry) and its fallback
when Redis is unreachable or hangs (no 500, no open door, a metric, one warning). Policy:
``CHARTER_WORKERS > 1`` with the rate limit on and no ``REDIS_URL`` is a configuration
error; :func:`gateway_workers` gives the runner the worker count. End to end: the gateway
under ``uvicorn --workers 2`` with ``REDIS_URL`` lets exactly one burst through, not two.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import socket
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from gateway_support import EchoUpstream

from charter import config, serve
from charter.config import ConfigError
from charter.testing import TokenFactory
from charterctl import runner
from charterctl.registry import COMPONENTS
from services.gateway.app import Gateway
from services.gateway.ratelimit import (
    PREFIX,
    RateLimiter,
    RedisRateLimiter,
    make_limiter,
)
from services.gateway.settings import (
    GatewayConfig,
    GatewaySettings,
    gateway_workers,
    load_config,
)
from tests.support.polling import wait_until
from tests.support.servers import ThreadServer, free_port

pytestmark = pytest.mark.anyio
URL = "/catalog/v1/products"  # needs a token: anonymous requests are 401 until 429


class JWKS:
    """Serves one JSON document at any path (the authorization server's JWKS)."""

    def __init__(self, document: dict[str, Any]) -> None:
        self.body = json.dumps(document).encode()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": self.body})


def closed_port_url() -> str:
    return f"redis://127.0.0.1:{free_port()}/0"


@pytest.fixture
def prefix() -> str:
    """A key prefix of this test's own (other tests may share the Redis database)."""
    return f"{PREFIX}test-{uuid.uuid4().hex[:8]}:"


@pytest.fixture
async def shared(redis_url: str, prefix: str) -> AsyncIterator[Callable[..., RedisRateLimiter]]:
    """``shared(rate, burst)``: a Redis limiter (one per worker/replica), closed after."""
    made: list[RedisRateLimiter] = []

    def make(rate: float, burst: int, **options: Any) -> RedisRateLimiter:
        limiter = RedisRateLimiter(redis_url, rate, burst, RateLimiter(rate, burst),
                                   prefix=prefix, **options)
        made.append(limiter)
        return limiter

    yield make
    for limiter in made:
        await limiter.aclose()


# --- the shared limiter against the real Redis ------------------------------------------
async def test_burst_then_refusal(shared: Callable[..., RedisRateLimiter]) -> None:
    limiter = shared(0.01, 3)
    decisions = [await limiter.take("ip:203.0.113.1") for _ in range(4)]
    assert [d.allowed for d in decisions] == [True, True, True, False]
    refused = decisions[-1]
    assert (refused.limit, refused.remaining, refused.retry_after) == (3, 0, 100)
    assert (await limiter.take("ip:203.0.113.2")).allowed  # another client, its own bucket


async def test_refills_over_time(shared: Callable[..., RedisRateLimiter]) -> None:
    limiter = shared(10.0, 1)  # one request per 100 ms
    assert (await limiter.take("c")).allowed
    assert not (await limiter.take("c")).allowed
    time.sleep(0.15)
    assert (await limiter.take("c")).allowed
    assert not (await limiter.take("c")).allowed


async def test_headers_equal_the_in_process_limiters(
        shared: Callable[..., RedisRateLimiter]) -> None:
    # A slow refill, so the few ms the sequence takes change no header value.
    limiter = shared(0.01, 5)
    local = RateLimiter(0.01, 5, clock=lambda: 0.0)
    for _ in range(8):
        remote, expected = await limiter.take("k"), local.take("k")
        assert remote == expected
        assert remote.headers() == expected.headers()


async def test_two_instances_share_one_budget(
        shared: Callable[..., RedisRateLimiter]) -> None:
    # Two workers (or replicas on hosts whose clocks disagree by an hour): Redis's clock.
    one = shared(0.01, 6, clock=time.monotonic)
    two = shared(0.01, 6, clock=lambda: time.monotonic() + 3600)
    allowed = [(await (one if i % 2 else two).take("k")).allowed for i in range(12)]
    assert allowed.count(True) == 6 and allowed[6:] == [False] * 6


async def test_keys_are_prefixed_and_expire(
        shared: Callable[..., RedisRateLimiter], redis_url: str, prefix: str) -> None:
    limiter = shared(2.0, 10)  # full again after 5 s
    await limiter.take("t:cli:alice")
    client = redis.Redis.from_url(redis_url)
    try:
        assert client.exists(f"{prefix}t:cli:alice")
        assert 5000 < client.pttl(f"{prefix}t:cli:alice") <= 6000
    finally:
        client.close()
    assert prefix.startswith("charter:gateway:rl:")


# --- Redis unavailable: the fallback ------------------------------------------------------
async def test_unreachable_redis_falls_back_to_this_workers_share(
        caplog: pytest.LogCaptureFixture) -> None:
    errors: list[int] = []
    limiter = make_limiter(1.0, 10, closed_port_url(), workers=2,
                           on_error=lambda: errors.append(1))
    assert isinstance(limiter, RedisRateLimiter)
    started = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="services.gateway.ratelimit"):
        decisions = [await limiter.acquire("k") for _ in range(8)]
    await limiter.aclose()
    assert time.monotonic() - started < 1.0  # no wait per request
    # Half the burst (two workers), refused after: neither an error nor an open door.
    assert [d.allowed for d in decisions] == [True] * 5 + [False] * 3
    assert decisions[0].limit == 5
    assert len(errors) == 8  # every decision made in-process is counted
    warnings = [r for r in caplog.records if "rate-limit store" in r.getMessage()]
    assert len(warnings) == 1 and "ConnectionError" in warnings[0].getMessage()
    assert limiter._down_until > 0  # Redis is asked again only after retry_after (1 s)


async def test_a_hanging_redis_costs_at_most_the_timeout() -> None:
    with socket.socket() as silent:  # accepts connections (backlog), never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        url = f"redis://127.0.0.1:{silent.getsockname()[1]}/0"
        limiter = RedisRateLimiter(url, 1.0, 2, RateLimiter(1.0, 2), timeout=0.2)
        started = time.monotonic()
        first = await limiter.take("k")
        assert time.monotonic() - started < 1.0
        assert first.allowed and first.limit == 2
        await limiter.aclose()


async def test_fallback_then_back_to_redis(
        shared: Callable[..., RedisRateLimiter], monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    now = [0.0]
    limiter = shared(0.01, 4, clock=lambda: now[0], retry_after=1.0)
    assert (await limiter.take("k")).remaining == 3  # Redis: 3 left
    working = limiter._script

    async def broken(**_: Any) -> Any:
        raise redis.exceptions.ConnectionError("Redis went away")

    monkeypatch.setattr(limiter, "_script", broken)
    with caplog.at_level(logging.INFO, logger="services.gateway.ratelimit"):
        assert (await limiter.take("k")).remaining == 3  # the fallback's own bucket
        monkeypatch.setattr(limiter, "_script", working)
        assert (await limiter.take("k")).remaining == 2  # still the fallback (< 1 s)
        now[0] += 1.0
        assert (await limiter.take("k")).remaining == 2  # Redis again: its bucket had 3
    messages = [r.getMessage() for r in caplog.records]
    assert any("answers again" in m for m in messages)


async def test_all_connections_busy_falls_back_without_tripping(
        shared: Callable[..., RedisRateLimiter]) -> None:
    errors: list[int] = []
    limiter = shared(0.01, 3, max_connections=1, timeout=0.05,
                     on_error=lambda: errors.append(1))
    assert (await limiter.take("k")).remaining == 2
    await limiter._slots.acquire()  # the one connection is busy
    started = time.monotonic()
    assert (await limiter.take("k")).remaining == 2  # the fallback's bucket
    assert 0.04 < time.monotonic() - started < 0.5
    limiter._slots.release()
    assert (await limiter.take("k")).remaining == 1  # Redis at once: no breaker tripped
    assert errors == [1]


async def test_many_concurrent_takes_share_the_pool(
        shared: Callable[..., RedisRateLimiter]) -> None:
    errors: list[int] = []
    limiter = shared(0.01, 50, max_connections=4, on_error=lambda: errors.append(1))
    decisions = await asyncio.gather(*(limiter.take("k") for _ in range(80)))
    assert [d.allowed for d in decisions].count(True) == 50 and errors == []


async def test_gateway_answers_without_redis_and_counts_it(
        make_gateway: Callable[..., Gateway]) -> None:
    gateway = make_gateway(GatewaySettings(rate_limit=0.01, rate_burst=4,
                                           redis_url=closed_port_url(), workers=2))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(gateway),
                                 base_url="http://gw") as http:
        statuses = [(await http.get(URL)).status_code for _ in range(3)]
        metrics = (await http.get("/metrics")).text
    await gateway.upstreams.aclose()
    assert statuses == [401, 401, 429]  # burst 4 over two workers: 2 here
    assert 'charter_gateway_rate_limit_backend_errors_total{service="gateway"} 3.0' in metrics


# --- selection and the worker policy -------------------------------------------------------
def test_selection() -> None:
    assert make_limiter(0, 10, "redis://127.0.0.1:6379/0") is None
    assert isinstance(make_limiter(5, 10, None, workers=4), RateLimiter)
    assert isinstance(make_limiter(5, 10, "redis://127.0.0.1:6379/0"), RedisRateLimiter)


def test_settings_from_env_carry_redis_and_workers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_URL", "redis://:hunter2-secret@127.0.0.1:6379/3")
    monkeypatch.setenv("CHARTER_WORKERS", "3")
    settings = GatewaySettings.from_env()
    assert (settings.redis_url, settings.workers) == \
        ("redis://:hunter2-secret@127.0.0.1:6379/3", 3)
    assert "hunter2" not in repr(settings)


@pytest.mark.parametrize("mode", ["development", "production"])
def test_several_workers_without_redis_is_a_config_error(
        monkeypatch: pytest.MonkeyPatch, mode: str) -> None:
    monkeypatch.setenv("CHARTER_ENV", mode)
    monkeypatch.setenv("CHARTER_WORKERS", "2")
    monkeypatch.setenv("GATEWAY_RATE_LIMIT", "5")
    monkeypatch.delenv("REDIS_URL", raising=False)
    with pytest.raises(ConfigError) as caught:
        load_config()
    message = str(caught.value)
    assert "CHARTER_WORKERS=2" in message
    assert "set REDIS_URL" in message and "CHARTER_WORKERS=1" in message


def test_workers_allowed_with_redis_or_without_rate_limit(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHARTER_WORKERS", "4")
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:6379/0")
    assert load_config().charter_workers == 4
    monkeypatch.delenv("REDIS_URL")
    monkeypatch.setenv("GATEWAY_RATE_LIMIT", "0")
    assert load_config().charter_workers == 4
    monkeypatch.setenv("CHARTER_WORKERS", "0")
    with pytest.raises(ConfigError, match="CHARTER_WORKERS"):
        load_config()


def test_gateway_workers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("REDIS_URL", raising=False)
    monkeypatch.delenv("GATEWAY_RATE_LIMIT", raising=False)
    assert gateway_workers(8) == 1  # embedded: one async process, exact buckets
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:6379/0")
    assert gateway_workers(8) == 8
    monkeypatch.delenv("REDIS_URL")
    monkeypatch.setenv("GATEWAY_RATE_LIMIT", "0")
    assert gateway_workers(8) == 8
    assert gateway_workers(0) == 1
    assert gateway_workers(6, GatewayConfig.parse()) == 6


# --- end to end: uvicorn --workers 2 ----------------------------------------------------
def gateway_command(workers: int) -> list[str]:
    """``charter up``'s command line for the gateway, with ``workers`` worker processes."""
    return [*runner.command(COMPONENTS["gateway"]), "--workers", str(workers)]


def gateway_env(echo: EchoUpstream, tokens: TokenFactory, jwks: ThreadServer,
                **extra: str) -> dict[str, str]:
    # Without PROMETHEUS_MULTIPROC_DIR each worker's /metrics counts its own requests.
    dropped = ("REDIS_URL", "CHARTER_WORKERS", "PROMETHEUS_MULTIPROC_DIR")
    env = {k: v for k, v in os.environ.items() if k not in dropped}
    env.update({
        "AUTH_ISSUER": tokens.issuer,
        "AUTH_JWKS_URL": f"{jwks.url}/.well-known/jwks.json",
        "CATALOG_URL": echo.url,
        "CHARTER_MTLS": "0",
        "GATEWAY_UPSTREAM_TIMEOUT": "2",
        **serve.service_env("gateway"),
        **extra,
    })
    return env


@pytest.fixture
def two_workers(echo: EchoUpstream, tokens: TokenFactory, tmp_path: Path, redis_url: str,
                asgi_server: Callable[..., ThreadServer],
                monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The gateway under ``uvicorn --workers 2``, buckets in the test Redis: its URL."""
    port = free_port()
    monkeypatch.setenv("GATEWAY_PORT", str(port))
    monkeypatch.delenv("CHARTER_HOST", raising=False)
    env = gateway_env(echo, tokens, asgi_server(JWKS(tokens.jwks())), REDIS_URL=redis_url,
                      CHARTER_WORKERS="2", GATEWAY_RATE_LIMIT=str(RATE),
                      GATEWAY_RATE_BURST=str(BURST))
    log_path = tmp_path / "gateway.log"
    with log_path.open("wb") as log_file:
        proc = subprocess.Popen(gateway_command(2), cwd=config.ROOT, env=env,
                                stdout=log_file, stderr=subprocess.STDOUT)
        url = f"http://127.0.0.1:{port}"

        def live() -> bool:
            assert proc.poll() is None, log_path.read_text()
            try:
                return httpx.get(f"{url}/health/live", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        try:
            wait_until(live, timeout=30, interval=0.1, what="the gateway to start")
            time.sleep(0.5)  # the second worker too (each answers /health/live alone)
            yield url
        finally:
            proc.terminate()
            proc.wait(timeout=10)


RATE, BURST, SENT = 1.0, 10, 40


def served_totals(url: str, scrapes: int = 30) -> set[int]:
    """Requests to ``list_products`` counted by whichever worker answered each scrape."""
    totals = set()
    pattern = re.compile(r'charter_gateway_requests_total\{[^}]*operation="list_products"[^}]*\} '
                         r"([0-9.]+)")
    for _ in range(scrapes):  # a new connection each time: either worker may answer
        text = httpx.get(f"{url}/metrics", timeout=5).text
        totals.add(int(sum(float(v) for v in pattern.findall(text))))
    return totals


def test_two_workers_share_one_budget(two_workers: str) -> None:
    url = two_workers

    def anonymous(_: int) -> httpx.Response:  # a fresh connection per request
        return httpx.get(f"{url}{URL}", timeout=5)

    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=8) as pool:
        answers = list(pool.map(anonymous, range(SENT)))
    elapsed = time.monotonic() - started
    statuses = [r.status_code for r in answers]
    assert set(statuses) <= {401, 429}, statuses
    passed = SENT - statuses.count(429)
    # One bucket: the burst plus what refilled meanwhile (per-worker buckets: 2 x burst).
    assert BURST <= passed <= BURST + int(RATE * elapsed), (passed, elapsed)
    assert passed < 2 * BURST
    assert {r.headers["ratelimit-limit"] for r in answers} == {str(BURST)}  # Redis's, not
    # the fallback's half; and both workers served some requests (neither counted all).
    totals = served_totals(url)
    assert totals and max(totals) < SENT and min(totals) > 0, totals
    metrics = httpx.get(f"{url}/metrics", timeout=5).text
    assert 'charter_gateway_rate_limit_backend_errors_total{service="gateway"} 0.0' in metrics


def test_embedded_gateway_refuses_several_workers_without_redis(
        echo: EchoUpstream, tokens: TokenFactory, tmp_path: Path,
        asgi_server: Callable[..., ThreadServer], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GATEWAY_PORT", str(free_port()))
    monkeypatch.delenv("CHARTER_HOST", raising=False)
    env = gateway_env(echo, tokens, asgi_server(JWKS(tokens.jwks())),
                      CHARTER_ENV="development", CHARTER_WORKERS="2",
                      GATEWAY_RATE_LIMIT="5")
    # Under ``--workers 2`` the configuration error stops uvicorn (exit 3, its
    # STARTUP_FAILURE: charter.serve.fails_fast) instead of a loop of worker restarts.
    done = subprocess.run(gateway_command(2), cwd=config.ROOT, env=env, timeout=60,
                          capture_output=True, text=True)
    output = done.stdout + done.stderr
    # uvicorn's parent then stops (its own exit status is 0 in uvicorn 0.54).
    assert "failed to start, stopping the parent process" in output, output
    assert output.count("configuration error") <= 2  # once per worker, no restarts
    assert "CHARTER_WORKERS=2 with rate limiting on" in output
    assert "set REDIS_URL" in output and "CHARTER_WORKERS=1" in output
    monkeypatch.setenv("CHARTER_WORKERS", "2")
    monkeypatch.setenv("GATEWAY_RATE_LIMIT", "5")
    monkeypatch.delenv("REDIS_URL", raising=False)
    assert gateway_workers(os.cpu_count() or 2) == 1
