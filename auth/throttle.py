"""Brute-force and abuse limits of the authorization server.

* **Back-off, not lock-out.** Failed sign-ins (``/login``) and failed client
  authentications (``/oauth/token``) are counted per *account + client IP*, per *client
  IP* (any account) and per *account* (any IP). Each counter allows a number of free
  failures, then refuses further attempts for a delay that doubles with every failure
  (capped), and forgets everything after a quiet window. A refused attempt does no
  password work and is not counted. A success clears the account + IP counter. The
  per-account counter has a high threshold and a short cap, so an attacker spraying from
  many addresses slows a user down but cannot lock them out.
* **Client IP.** The direct peer, unless it is a configured trusted proxy
  (``AUTH_TRUSTED_PROXIES``): then the nearest untrusted address of ``X-Forwarded-For`` /
  ``Forwarded`` (:class:`charter.security.client_ip.TrustedProxies`, shared with the
  gateway; parsed once per :class:`Throttle` as ``Throttle.proxies``).
* **Argon2 work is bounded** per process by :class:`HashingGate` (a semaphore): a request
  that cannot get a slot within a short wait is answered 503 instead of queueing memory.
* **Storage.** In-process (:class:`MemoryStore`) by default; Redis (:class:`RedisStore`)
  when ``REDIS_URL`` is set, so every worker shares the counters. Keys never hold an
  e-mail address: accounts are keyed by an HMAC of the normalised name.
* **Clock.** Injected (``clock``), so tests advance time instead of sleeping.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol

from charter.security.client_ip import IPNetwork, TrustedProxies

Clock = Callable[[], float]


@dataclass(frozen=True)
class Backoff:
    """Exponential back-off: ``free`` failures, then ``base * 2**n`` seconds, at most
    ``cap``; failures are forgotten ``window`` seconds after the last one."""

    free: int
    base: float = 1.0
    cap: float = 900.0
    window: float = 3600.0

    def delay(self, failures: int) -> float:
        """Seconds to wait after ``failures`` consecutive failures."""
        if failures < self.free:
            return 0.0
        return float(min(self.cap, self.base * 2 ** min(failures - self.free, 62)))


@dataclass(frozen=True)
class ThrottleSettings:
    """Limits (see the module docstring); every field has a variable in the README."""

    trusted_proxies: tuple[IPNetwork, ...] = ()
    account_ip: Backoff = field(default_factory=lambda: Backoff(free=5))
    ip: Backoff = field(default_factory=lambda: Backoff(free=50))
    account: Backoff = field(default_factory=lambda: Backoff(free=100, cap=60.0))
    hashing_concurrency: int = 4
    hashing_wait: float = 2.0
    redis_url: str | None = None


# --- storage -----------------------------------------------------------------------------


class FailureStore(Protocol):
    """Failure counters: ``(count, time of the last failure)`` per key."""

    def get(self, key: str) -> tuple[int, float] | None:
        """The counter, or ``None``."""

    def add_failure(self, key: str, now: float, window: float, ttl: int) -> int:
        """Count one failure at ``now`` (restarting after ``window`` of quiet)."""

    def clear(self, key: str) -> None:
        """Forget the counter."""


class MemoryStore:
    """Counters in this process (embedded mode, tests)."""

    def __init__(self) -> None:
        self._data: dict[str, tuple[int, float]] = {}
        self._lock = threading.Lock()

    def get(self, key: str) -> tuple[int, float] | None:
        with self._lock:
            return self._data.get(key)

    def add_failure(self, key: str, now: float, window: float, ttl: int) -> int:
        with self._lock:
            count, last = self._data.get(key, (0, now))
            count = count + 1 if now - last <= window else 1
            self._data[key] = (count, now)
            if len(self._data) > 100_000:  # bounded memory: drop counters gone quiet
                self._data = {k: v for k, v in self._data.items() if now - v[1] <= window}
            return count

    def clear(self, key: str) -> None:
        with self._lock:
            self._data.pop(key, None)


_ADD_FAILURE = """
local c = redis.call('HGET', KEYS[1], 'c')
local l = redis.call('HGET', KEYS[1], 'l')
local now = tonumber(ARGV[1])
if c and l and now - tonumber(l) <= tonumber(ARGV[2]) then c = tonumber(c) + 1 else c = 1 end
redis.call('HSET', KEYS[1], 'c', c, 'l', ARGV[1])
redis.call('EXPIRE', KEYS[1], ARGV[3])
return c
"""


class RedisStore:
    """Counters in Redis, shared by every worker (one atomic script per failure)."""

    def __init__(self, url: str, prefix: str = "charter:auth:throttle:") -> None:
        import redis

        self._redis = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
        self._prefix = prefix
        self._add = self._redis.register_script(_ADD_FAILURE)

    def get(self, key: str) -> tuple[int, float] | None:
        raw: Any = self._redis.hmget(self._prefix + key, ["c", "l"])
        if raw[0] is None or raw[1] is None:
            return None
        return int(raw[0]), float(raw[1])

    def add_failure(self, key: str, now: float, window: float, ttl: int) -> int:
        return int(self._add(keys=[self._prefix + key], args=[repr(now), window, ttl]))

    def clear(self, key: str) -> None:
        self._redis.delete(self._prefix + key)

    def ping(self) -> None:
        """Raise unless Redis answers (auth's readiness check ``redis``)."""
        self._redis.ping()


# --- the throttle ------------------------------------------------------------------------


class Throttle:
    """Decides whether an attempt may proceed and records its outcome."""

    def __init__(self, settings: ThrottleSettings, secret: str,
                 store: FailureStore | None = None, clock: Clock = time.time) -> None:
        self.settings = settings
        self.clock = clock
        self.proxies = TrustedProxies(settings.trusted_proxies)
        self._secret = secret.encode()
        if store is None:
            store = RedisStore(settings.redis_url) if settings.redis_url else MemoryStore()
        self.store = store

    def pseudonym(self, account: str) -> str:
        """A stable, non-reversible name for an account (keys and audit logs)."""
        digest = hmac.new(self._secret, account.encode(), hashlib.sha256).hexdigest()
        return digest[:24]

    def _counters(self, kind: str, account: str, ip: str) -> list[tuple[str, Backoff]]:
        who = self.pseudonym(account)
        return [
            (f"{kind}:acct-ip:{who}:{ip}", self.settings.account_ip),
            (f"{kind}:ip:{ip}", self.settings.ip),
            (f"{kind}:acct:{who}", self.settings.account),
        ]

    def retry_after(self, kind: str, account: str, ip: str) -> int:
        """Whole seconds to wait before ``account`` may try again from ``ip`` (0: now)."""
        now = self.clock()
        wait = 0.0
        for key, policy in self._counters(kind, account, ip):
            state = self.store.get(key)
            if state is None or now - state[1] > policy.window:
                continue
            wait = max(wait, state[1] + policy.delay(state[0]) - now)
        return math.ceil(wait) if wait > 0 else 0

    def failed(self, kind: str, account: str, ip: str, account_counters: bool = True) -> int:
        """Record a failure; returns the failures now counted for ``account`` + ``ip``
        (or for ``ip`` alone when ``account_counters`` is false)."""
        now = self.clock()
        counted = 0
        for key, policy in self._counters(kind, account, ip):
            if not account_counters and ":acct" in key:
                continue
            ttl = int(policy.window + policy.cap) + 1
            count = self.store.add_failure(key, now, policy.window, ttl)
            counted = counted or count
        return counted

    def succeeded(self, kind: str, account: str, ip: str) -> None:
        """A success clears the account + IP counter (the others decay on their own)."""
        self.store.clear(self._counters(kind, account, ip)[0][0])


class Busy(RuntimeError):
    """No password-hashing slot became free in time."""


class HashingGate:
    """At most ``limit`` Argon2 computations at once in this process."""

    def __init__(self, limit: int, wait: float) -> None:
        self._slots = threading.BoundedSemaphore(max(1, limit))
        self.wait = wait

    @contextmanager
    def slot(self) -> Iterator[None]:
        """Hold a slot, or raise :class:`Busy` after ``wait`` seconds."""
        if not self._slots.acquire(timeout=self.wait):
            raise Busy("password hashing is saturated")
        try:
            yield
        finally:
            self._slots.release()
