"""The instances of one upstream service and which one gets the next request.

Choice: **least outstanding requests of two** (Envoy's ``LEAST_REQUEST`` with two
choices), with the two taken at a round-robin cursor over the instances in rotation
instead of at random: the one with fewer requests awaiting an answer wins, a tie goes to
the cursor's, so under even load it is plain round robin and a slow or stuck instance is
skipped. O(1) per request (two attribute reads), no lock: each gateway worker process
balances on its own state.

An instance is *in rotation* when its active health checks pass, it is not ejected and
it is still in the service's DNS answer. Passive ejection: a refused or unreachable
connection ejects at once (nothing listens there), ``eject_after`` consecutive other
connection-level failures (connect timeout, reset before any answer, timeout) too; the
ejection lasts ``eject_base`` seconds, doubled on each further ejection up to
``eject_max``, then the instance is readmitted when an active check passes. With no
instance in rotation every known instance is tried (panic mode, as Envoy): refusing
everything would be a certain outage, a dead instance fails fast, and the retry goes
to another. docs/gateway.md, *Load balancing and failover*.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from .discovery import Endpoint

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Policy:
    """Health-check and ejection thresholds (``GATEWAY_*`` settings)."""

    eject_after: int = 3
    eject_base: float = 2.0
    eject_max: float = 30.0
    healthy_threshold: int = 1
    unhealthy_threshold: int = 2


class _NullSeries:
    """Metrics of an instance when nobody collects them (an ``Upstreams`` on its own)."""

    def inc(self, _amount: float = 1) -> None:
        return None

    def set(self, _value: float) -> None:
        return None

    def __getattr__(self, _name: str) -> Any:
        return self

    def __call__(self, *_args: Any) -> None:
        return None


NULL_SERIES: Any = _NullSeries()

# kind of failure → ejects at once
_IMMEDIATE = frozenset({"connect"})


class Instance:
    """One instance of a service: its connection pools and its balancing state."""

    __slots__ = ("draining", "ejected_until", "ejections", "endpoint",
                 "failures", "fresh", "hc_fail", "hc_pass", "healthy", "in_rotation",
                 "key", "outstanding", "readmitted_at", "series", "transport")

    def __init__(self, endpoint: Endpoint, transport: httpx.AsyncBaseTransport,
                 series: Any, healthy: bool = True) -> None:
        self.endpoint = endpoint
        self.key = endpoint.key
        self.transport = transport
        self.fresh: httpx.AsyncBaseTransport | None = None  # no keep-alive: stale retries
        self.series = series
        self.outstanding = 0  # requests awaiting their answer's headers
        self.failures = 0  # consecutive connection-level failures
        self.ejections = 0  # consecutive ejections (the back-off's exponent)
        self.ejected_until: float | None = None
        self.readmitted_at = 0.0
        self.healthy = healthy  # the active checks' verdict
        self.hc_pass = 0
        self.hc_fail = 0
        self.draining = False  # left the DNS answer: no new requests
        self.in_rotation = False

    def __repr__(self) -> str:
        return f"Instance({self.key})"


class Balancer:
    """The instances of service ``api`` and the choice among them."""

    def __init__(self, api: str, policy: Policy, *, dns_urls: Sequence[str] = (),
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.api = api
        self.policy = policy
        self.dns_urls = tuple(dns_urls)  # re-resolved by the health checker when set
        self.clock = clock
        self.instances: dict[str, Instance] = {}
        self.rotation: list[Instance] = []
        self._fallback: list[Instance] = []  # panic mode: every instance not draining
        self._cursor = 0
        self.next_refresh = 0.0
        self.dns_ok = True  # the last resolution answered (warnings once per streak)

    # --- the set of instances ------------------------------------------------------
    def add(self, instance: Instance) -> None:
        """Know ``instance`` (in rotation when it is healthy)."""
        self.instances[instance.key] = instance
        self._rebuild()
        instance.series.healthy.set(1 if instance.in_rotation else 0)

    def drain(self, key: str) -> Instance | None:
        """Take the instance out of rotation for good (it left the DNS answer)."""
        instance = self.instances.get(key)
        if instance is not None and not instance.draining:
            instance.draining = True
            log.info("upstream instance %s of %s drained: no longer in the DNS answer",
                     key, self.api, extra={"api": self.api, "instance": key})
            self._rebuild()
        return instance

    def undrain(self, key: str) -> None:
        """A draining instance is back in the DNS answer: it stays."""
        instance = self.instances.get(key)
        if instance is not None and instance.draining:
            instance.draining = False
            self._rebuild()

    def drained(self) -> list[Instance]:
        """Draining instances with nothing outstanding, forgotten now (to be closed)."""
        done = [i for i in self.instances.values() if i.draining and i.outstanding == 0]
        for instance in done:
            del self.instances[instance.key]
        return done

    def _rebuild(self) -> None:
        previous = {i.key for i in self.rotation}
        for instance in self.instances.values():
            instance.in_rotation = (instance.healthy and not instance.draining
                                    and instance.ejected_until is None)
        self.rotation = [i for i in self.instances.values() if i.in_rotation]
        self._fallback = [i for i in self.instances.values() if not i.draining]
        for instance in self.instances.values():
            if instance.in_rotation != (instance.key in previous):
                instance.series.healthy.set(1 if instance.in_rotation else 0)

    def healthy_count(self) -> int:
        """Instances in rotation."""
        return len(self.rotation)

    # --- the choice ----------------------------------------------------------------
    def pick(self) -> Instance:
        """The instance for the next request (raises IndexError when none is known)."""
        rotation = self.rotation or self._fallback
        n = len(rotation)
        if n == 1:
            return rotation[0]
        i = self._cursor = (self._cursor + 1) % n
        first = rotation[i]
        second = rotation[(i + 1) % n]
        return second if second.outstanding < first.outstanding else first

    def pick_other(self, failed: Instance) -> Instance | None:
        """Another instance for the retry of a request that failed on ``failed``:
        in rotation if any, else any not draining (panic), else None."""
        for pool in (self.rotation, self._fallback):
            others = [i for i in pool if i is not failed]
            if others:
                return min(others, key=lambda i: i.outstanding)
        return None

    # --- passive checks (the request path) -----------------------------------------
    def failed(self, instance: Instance, kind: str) -> None:
        """A request to ``instance`` failed at the connection level (``kind``)."""
        instance.series.failure(kind)
        instance.failures += 1
        if instance.ejected_until is not None and instance.ejected_until > self.clock():
            return  # already out (a request chosen in panic mode, or in flight)
        if kind in _IMMEDIATE or instance.failures >= self.policy.eject_after:
            self._eject(instance, kind)

    def _eject(self, instance: Instance, reason: str) -> None:
        now = self.clock()
        policy = self.policy
        if now - instance.readmitted_at > policy.eject_max:
            instance.ejections = 0  # behaved for a whole cap: start the back-off over
        instance.ejections += 1
        seconds = min(policy.eject_base * 2 ** (instance.ejections - 1), policy.eject_max)
        instance.ejected_until = now + seconds  # then readmitted by a passing check
        instance.series.ejection()
        log.warning("upstream instance %s of %s ejected for %.1f s: %s (%d consecutive "
                    "failures)", instance.key, self.api, seconds, reason, instance.failures,
                    extra={"api": self.api, "instance": instance.key, "reason": reason})
        self._rebuild()

    # --- active checks (the health checker) ----------------------------------------
    def check_passed(self, instance: Instance) -> None:
        """``instance`` answered its health check with 200."""
        instance.hc_fail = 0
        instance.hc_pass += 1
        was = instance.in_rotation
        until = instance.ejected_until
        if until is not None and until > self.clock():
            return  # still backing off
        changed = False
        if not instance.healthy and instance.hc_pass >= self.policy.healthy_threshold:
            instance.healthy = True
            changed = True
        if until is not None:
            instance.ejected_until = None
            instance.failures = 0
            instance.readmitted_at = self.clock()
            changed = True
        if changed:
            self._rebuild()
            if instance.in_rotation and not was:
                log.info("upstream instance %s of %s back in rotation (health check "
                         "passed)", instance.key, self.api,
                         extra={"api": self.api, "instance": instance.key})

    def check_failed(self, instance: Instance, why: str) -> None:
        """``instance`` failed its health check (``why``: status or error kind)."""
        instance.hc_pass = 0
        instance.hc_fail += 1
        if instance.healthy and instance.hc_fail >= self.policy.unhealthy_threshold:
            instance.healthy = False
            self._rebuild()
            log.warning("upstream instance %s of %s out of rotation: health check "
                        "failed %d times (%s)", instance.key, self.api, instance.hc_fail,
                        why, extra={"api": self.api, "instance": instance.key,
                                    "reason": why})

    def sample(self) -> None:
        """Export each instance's outstanding requests (called by the health checker)."""
        for instance in self.instances.values():
            instance.series.outstanding.set(instance.outstanding)

    def all(self) -> list[Instance]:
        """Every known instance (draining ones included)."""
        return list(self.instances.values())


async def close_instance(instance: Instance) -> None:
    """Close the pools of an instance that is gone."""
    for transport in {id(t): t for t in (instance.transport, instance.fresh)
                      if t is not None}.values():
        with contextlib.suppress(Exception):
            await transport.aclose()
