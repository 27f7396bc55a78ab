"""Per-client token buckets (in-process; each worker process limits on its own).

A client is the token's ``client_id`` + ``sub`` when a valid token came with the request,
else the client's IP address. Each bucket holds up to ``burst`` requests and refills at
``rate`` requests per second. The gateway runs on one event loop and ``take`` never
awaits, so no lock is needed.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass


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


class RateLimiter:
    """Token buckets by client key, bounded in number (least recently used evicted)."""

    def __init__(
        self,
        rate: float,
        burst: int,
        max_clients: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if rate <= 0 or burst <= 0:
            raise ValueError("rate and burst must be positive")
        self.rate = rate
        self.burst = burst
        self.window = max(1, math.ceil(burst / rate))
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
        tokens = bucket[0]
        return Decision(
            allowed=allowed,
            limit=self.burst,
            remaining=int(tokens),
            reset=math.ceil((self.burst - tokens) / self.rate),
            retry_after=0 if allowed else max(1, math.ceil((1.0 - tokens) / self.rate)),
            window=self.window,
        )
