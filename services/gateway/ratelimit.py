"""Per-client token buckets: in-process (:class:`RateLimiter`) or shared in Redis
(:class:`RedisRateLimiter`) by every worker process and replica; :func:`make_limiter`
picks one.

A client is the token's ``client_id`` + ``sub`` when a valid token came with the request,
else the client's IP address. Each bucket holds up to ``burst`` requests and refills at
``rate`` requests per second. In-process: the gateway runs on one event loop and
``take`` never awaits, so no lock is needed — but each worker process has its own
buckets, so with several workers the limit is shared in Redis (one atomic Lua script per
request, Redis's clock). See docs/gateway.md, *Rate limits across workers and replicas*.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Decision:
    """The outcome of one ``take``: allowed or not, and the IETF RateLimit header values."""

    allowed: bool
    limit: int
    remaining: int
    reset: int  # seconds until the bucket is full again
    retry_after: int  # seconds until one request is allowed (0 when allowed)
    window: int  # seconds the full quota spans (burst / rate)

    def headers(self) -> list[tuple[bytes, bytes]]:
        """``RateLimit-Limit``/``-Remaining``/``-Reset``/``-Policy`` (+ ``Retry-After``)."""
        out = [
            (b"ratelimit-limit", str(self.limit).encode()),
            (b"ratelimit-remaining", str(self.remaining).encode()),
            (b"ratelimit-reset", str(self.reset).encode()),
            (b"ratelimit-policy", f"{self.limit};w={self.window}".encode()),
        ]
        if not self.allowed:
            out.append((b"retry-after", str(self.retry_after).encode()))
        return out


def bucket_shape(rate: float, burst: int) -> tuple[float, int, int]:
    """``(rate, burst, window)`` of a token bucket; ``window`` is the seconds the full
    quota spans (``RateLimit-Policy``). Raises ``ValueError`` unless both are positive."""
    if rate <= 0 or burst <= 0:
        raise ValueError("rate and burst must be positive")
    return rate, burst, max(1, math.ceil(burst / rate))


class RateLimiter:
    """Token buckets by client key, bounded in number (least recently used evicted)."""

    def __init__(
        self,
        rate: float,
        burst: int,
        max_clients: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.rate, self.burst, self.window = bucket_shape(rate, burst)
        self._buckets: OrderedDict[str, list[float]] = OrderedDict()  # key -> [tokens, at]
        self._max = max_clients
        self._clock = clock

    def take(self, key: str) -> Decision:
        """Spend one request from ``key``'s bucket if there is one."""
        now = self._clock()
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = [float(self.burst), now]
            self._buckets[key] = bucket
            if len(self._buckets) > self._max:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(key)
            bucket[0] = min(float(self.burst), bucket[0] + (now - bucket[1]) * self.rate)
            bucket[1] = now
        allowed = bucket[0] >= 1.0
        if allowed:
            bucket[0] -= 1.0
        return _decision(allowed, bucket[0], self.burst, self.rate, self.window)

    async def acquire(self, key: str) -> Decision:
        """:meth:`take` for the gateway's async call site (never awaits anything)."""
        return self.take(key)


def _decision(allowed: bool, tokens: float, burst: int, rate: float, window: int) -> Decision:
    """The :class:`Decision` for a bucket left with ``tokens`` after one ``take``."""
    return Decision(
        allowed=allowed,
        limit=burst,
        remaining=int(tokens),
        reset=math.ceil((burst - tokens) / rate),
        retry_after=0 if allowed else max(1, math.ceil((1.0 - tokens) / rate)),
        window=window,
    )


class Limiter(Protocol):
    """What the gateway needs of a rate limiter (in-process or shared)."""

    rate: float
    burst: int

    async def acquire(self, key: str) -> Decision:
        """Spend one request from ``key``'s bucket if there is one."""
        ...


# One token bucket per key, in a hash {tokens, at (µs)}, refilled by Redis's own clock so
# gateways on hosts with skewed clocks agree; the key expires once the bucket would be full.
# ARGV: rate (tokens/s), burst, ttl (ms). Returns {allowed (0/1), tokens (string)}.
BUCKET_SCRIPT = """
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(state[1])
local at = tonumber(state[2])
if tokens == nil or at == nil then
  tokens = burst
else
  local elapsed = now - at
  if elapsed < 0 then elapsed = 0 end
  tokens = math.min(burst, tokens + elapsed * rate / 1000000)
end
local allowed = 0
if tokens >= 1 then
  tokens = tokens - 1
  allowed = 1
end
local left = string.format('%.17g', tokens)
redis.call('HSET', KEYS[1], 'tokens', left, 'at', string.format('%.0f', now))
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return {allowed, left}
"""

PREFIX = "charter:gateway:rl:"


class RedisRateLimiter:
    """Token buckets shared in Redis by every worker and replica (one Lua script a request).

    Same buckets, same :class:`Decision` as :class:`RateLimiter`. At most
    ``max_connections`` scripts run at once per process; a request that waits longer than
    ``timeout`` for a turn, or whose script fails (Redis down, or slower than ``timeout``),
    is decided by ``fallback`` — an in-process limiter with this process's share of the
    limit. A failure (not a wait) also sends the next ``retry_after`` seconds of requests
    to the fallback without asking Redis. Each fallback decision calls ``on_error`` (a
    metric); a warning is logged at most every ``warn_every`` seconds. Never an
    exception, never an open door.
    """

    def __init__(
        self,
        url: str,
        rate: float,
        burst: int,
        fallback: RateLimiter,
        *,
        prefix: str = PREFIX,
        timeout: float = 0.25,
        max_connections: int = 64,
        retry_after: float = 1.0,
        warn_every: float = 60.0,
        on_error: Callable[[], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.rate, self.burst, self.window = bucket_shape(rate, burst)
        import redis.asyncio as aioredis  # only with REDIS_URL

        self.fallback = fallback
        self.prefix = prefix
        self.on_error = on_error
        self._ttl_ms = str(math.ceil(burst / rate * 1000) + 1000)  # full again, then gone
        self._rate = repr(float(rate))
        self._burst = str(burst)
        # One pool per process (the gateway builds one limiter); connections are made on
        # first use, on the serving loop; the semaphore keeps within the pool.
        pool = aioredis.BlockingConnectionPool.from_url(
            url, max_connections=max_connections, timeout=timeout,
            socket_timeout=timeout, socket_connect_timeout=timeout,
        )
        self.client = aioredis.Redis(connection_pool=pool)
        self._script = self.client.register_script(BUCKET_SCRIPT)
        self._slots = asyncio.Semaphore(max_connections)
        self._errors: tuple[type[BaseException], ...] = (
            aioredis.RedisError, OSError, TimeoutError)
        self._timeout = timeout
        self._retry_after = retry_after
        self._warn_every = warn_every
        self._clock = clock
        self._down_until = 0.0  # Redis is not asked before this (monotonic)
        self._warned_at = -math.inf
        self._unannounced = False  # a warning was logged; say when Redis answers again
        self._fallbacks = 0  # since the last warning

    async def take(self, key: str) -> Decision:
        """Spend one request from ``key``'s shared bucket (the fallback's when Redis fails)."""
        now = self._clock()
        if now < self._down_until:
            return self._fall_back(key, now, None)
        if self._slots.locked():  # every connection busy: wait a little for a turn
            try:
                async with asyncio.timeout(self._timeout):
                    await self._slots.acquire()
            except TimeoutError:
                return self._fall_back(key, now, "busy: all connections in use")
        else:
            await self._slots.acquire()
        try:
            allowed, tokens = await self._script(
                keys=[self.prefix + key], args=[self._rate, self._burst, self._ttl_ms])
            left = float(tokens)
        except self._errors as exc:
            self._down_until = now + self._retry_after
            return self._fall_back(key, now, f"{type(exc).__name__}: {exc}")
        finally:
            self._slots.release()
        if self._unannounced:
            self._unannounced = False
            log.info("rate-limit store (Redis) answers again; shared buckets in use")
        return _decision(bool(allowed), left, self.burst, self.rate, self.window)

    acquire = take

    def _fall_back(self, key: str, now: float, why: str | None) -> Decision:
        """Decide in-process; count it; warn (rate-limited) with ``why`` when given."""
        self._fallbacks += 1
        if self.on_error is not None:
            self.on_error()
        if why is not None and now - self._warned_at >= self._warn_every:
            log.warning(
                "rate-limit store (Redis) failed (%s); %d request(s) limited in-process at "
                "%g/s, burst %d, since the last warning", why, self._fallbacks,
                self.fallback.rate, self.fallback.burst)
            self._warned_at = now
            self._unannounced = True
            self._fallbacks = 0
        return self.fallback.take(key)

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self.client.aclose()


def make_limiter(
    rate: float, burst: int, redis_url: str | None, workers: int = 1,
    on_error: Callable[[], None] | None = None,
) -> Limiter | None:
    """The gateway's limiter: ``None`` when ``rate <= 0``; shared in Redis when
    ``redis_url`` is set (its fallback gets ``1/workers`` of the limit); else in-process."""
    if rate <= 0:
        return None
    if not redis_url:
        return RateLimiter(rate, burst)
    share = max(1, workers)
    fallback = RateLimiter(rate / share, max(1, burst // share))
    return RedisRateLimiter(redis_url, rate, burst, fallback, on_error=on_error)
