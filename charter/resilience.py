"""Resilience policies for outbound calls: circuit breaker, bulkhead, retry, metrics.

:class:`charter.http.HttpClient` applies them to every call; this module holds the
per-process state and the Prometheus metrics (see ``docs/resilience.md``).

* **Circuit breaker** — a ``pybreaker.CircuitBreaker`` per dependency (:class:`Breaker`).
  pybreaker's own ``call()`` holds its lock for the whole guarded call, which would
  serialise every concurrent call to a dependency, so :class:`Breaker` asks for
  admission and records the outcome separately (each under a short lock) and feeds the
  outcome through pybreaker, which keeps the counters, states and listeners.
* **Bulkhead** — a bounded semaphore per dependency (:class:`Bulkhead`), acquired
  without waiting: an excess call is rejected at once (no library does this; it is a
  semaphore).
* **Retry** — tenacity (:func:`retrying`): exponential back-off with jitter, a bounded
  number of attempts, and no sleep that would cross the call's overall deadline.

Breaker and bulkhead are per process and per (dependency name, upstream origin); with
several worker processes each worker has its own.
"""

from __future__ import annotations

import contextlib
import enum
import logging
import os
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pybreaker
import tenacity
from prometheus_client import Counter, Gauge

from charter.observability.families import process_service

log = logging.getLogger(__name__)

DEFAULT_FAIL_MAX = 5
DEFAULT_RESET_TIMEOUT = 10.0
DEFAULT_MAX_CONCURRENT = 20

STATE_VALUES = {pybreaker.STATE_CLOSED: 0, pybreaker.STATE_HALF_OPEN: 1,
                pybreaker.STATE_OPEN: 2}

BREAKER_STATE = Gauge(
    "charter_client_breaker_state",
    "Circuit breaker state per dependency (0 closed, 1 half-open, 2 open); with several "
    "workers, the worst state over live workers",
    ["service", "dependency"],
    multiprocess_mode="livemax",
)
BREAKER_TRANSITIONS = Counter(
    "charter_client_breaker_transitions",
    "Circuit breaker state changes per dependency and new state",
    ["service", "dependency", "to"],
)
RETRIES = Counter(
    "charter_client_retries",
    "Retried outbound attempts per dependency",
    ["service", "dependency"],
)
REJECTIONS = Counter(
    "charter_client_rejections",
    "Outbound calls refused without being sent (reason: bulkhead or breaker)",
    ["service", "dependency", "reason"],
)
REQUESTS = Counter(
    "charter_client_requests",
    "Outbound calls per dependency by final outcome (success, client_error, "
    "server_error, unavailable, rejected)",
    ["service", "dependency", "outcome"],
)


class Rejected(Exception):
    """A call refused before it was sent (``reason``: ``breaker`` or ``bulkhead``)."""

    def __init__(self, dependency: str, reason: str, detail: str) -> None:
        super().__init__(f"{dependency}: {detail}")
        self.dependency = dependency
        self.reason = reason
        self.detail = detail


class AttemptFailed(Exception):
    """One attempt failed without an HTTP answer (connection error, timeout)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class _UpstreamFailure(Exception):
    """What a failed outcome looks like to pybreaker."""


class Ticket(enum.Enum):
    """Under which state a call was admitted by a :class:`Breaker`."""

    CLOSED = "closed"
    PROBE = "probe"


def _env_key(dependency: str) -> str:
    return re.sub(r"[^A-Z0-9]", "_", dependency.upper())


@dataclass(frozen=True)
class PolicySettings:
    """Breaker and bulkhead limits for one dependency."""

    fail_max: int = DEFAULT_FAIL_MAX
    reset_timeout: float = DEFAULT_RESET_TIMEOUT
    max_concurrent: int = DEFAULT_MAX_CONCURRENT


def settings_for(dependency: str, *, fail_max: int | None = None,
                 reset_timeout: float | None = None,
                 max_concurrent: int | None = None) -> PolicySettings:
    """Limits for ``dependency``: ``CHARTER_BREAKER_<NAME>=fail_max,reset_s`` and
    ``CHARTER_BULKHEAD_<NAME>=n`` win over the keyword arguments, which win over the
    defaults (5 failures, 10 s, 20 calls). A malformed variable raises ``ValueError``."""
    key = _env_key(dependency)
    base = PolicySettings()
    fail = fail_max if fail_max is not None else base.fail_max
    reset = reset_timeout if reset_timeout is not None else base.reset_timeout
    limit = max_concurrent if max_concurrent is not None else base.max_concurrent
    raw = os.environ.get(f"CHARTER_BREAKER_{key}", "").strip()
    if raw:
        try:
            fail_s, reset_s = (part.strip() for part in raw.split(","))
            fail, reset = int(fail_s), float(reset_s)
        except ValueError as exc:
            raise ValueError(f"CHARTER_BREAKER_{key} must be 'fail_max,reset_seconds', "
                             f"not {raw!r}") from exc
    raw = os.environ.get(f"CHARTER_BULKHEAD_{key}", "").strip()
    if raw:
        try:
            limit = int(raw)
        except ValueError as exc:
            raise ValueError(f"CHARTER_BULKHEAD_{key} must be an integer, not {raw!r}") from exc
    if fail < 1 or reset <= 0 or limit < 1:
        raise ValueError(f"{dependency}: fail_max and max_concurrent must be >= 1 and "
                         "reset_timeout > 0")
    return PolicySettings(fail, reset, limit)


class _Listener(pybreaker.CircuitBreakerListener):
    """Logs, counts and exports every state change of one breaker."""

    def __init__(self, breaker: Breaker) -> None:
        self.breaker = breaker

    def state_change(self, cb: pybreaker.CircuitBreaker,
                     old_state: pybreaker.CircuitBreakerState | None,
                     new_state: pybreaker.CircuitBreakerState) -> None:
        dependency = self.breaker.dependency
        if new_state.name == pybreaker.STATE_OPEN:
            self.breaker.opened_at = time.monotonic()
        BREAKER_STATE.labels(process_service(), dependency).set(
            STATE_VALUES[new_state.name])
        BREAKER_TRANSITIONS.labels(process_service(), dependency, new_state.name).inc()
        log.warning("circuit breaker %s: %s -> %s", dependency,
                    old_state.name if old_state else "none", new_state.name,
                    extra={"dependency": dependency, "breaker_state": new_state.name})


def _fail() -> None:
    raise _UpstreamFailure


def _ok() -> None:
    return None


class Breaker:
    """A pybreaker circuit breaker whose lock is never held during the guarded call.

    :meth:`admit` before sending (raises :class:`Rejected` while open, or while the one
    half-open probe is in flight); :meth:`record` after, with ``failed`` true for
    connection errors, timeouts and 5xx answers. An outcome recorded after the state
    changed under the call (e.g. a slow call finishing after the breaker opened) only
    counts if it is the probe's.
    """

    def __init__(self, dependency: str, fail_max: int, reset_timeout: float) -> None:
        self.dependency = dependency
        self.reset_timeout = reset_timeout
        self.opened_at = 0.0
        self._probe_in_flight = False
        self._lock = threading.Lock()
        self.cb = pybreaker.CircuitBreaker(
            fail_max=fail_max, reset_timeout=reset_timeout, name=dependency,
            listeners=[_Listener(self)], throw_new_error_on_trip=False,
        )
        BREAKER_STATE.labels(process_service(), dependency).set(0)

    @property
    def state(self) -> str:
        """``closed``, ``open`` or ``half-open``."""
        return str(self.cb.current_state)

    def admit(self) -> Ticket:
        """Let a call through, or raise :class:`Rejected` (reason ``breaker``)."""
        with self._lock:
            state = self.cb.current_state
            if state == pybreaker.STATE_CLOSED:
                return Ticket.CLOSED
            if state == pybreaker.STATE_OPEN:
                if time.monotonic() - self.opened_at < self.reset_timeout:
                    raise Rejected(self.dependency, "breaker", "circuit breaker open")
                self.cb.half_open()
            elif self._probe_in_flight:
                raise Rejected(self.dependency, "breaker",
                               "circuit breaker half-open, probe in flight")
            self._probe_in_flight = True
            return Ticket.PROBE

    def record(self, ticket: Ticket, failed: bool | None) -> None:
        """Record a call's outcome; ``failed=None`` only releases the ticket."""
        with self._lock:
            if ticket is Ticket.PROBE:
                self._probe_in_flight = False
            if failed is None:
                return
            expected = (pybreaker.STATE_HALF_OPEN if ticket is Ticket.PROBE
                        else pybreaker.STATE_CLOSED)
            if self.cb.current_state != expected:
                return
            with contextlib.suppress(_UpstreamFailure):
                self.cb.call(_fail if failed else _ok)


class Bulkhead:
    """At most ``limit`` concurrent calls; :meth:`acquire` never waits."""

    def __init__(self, dependency: str, limit: int) -> None:
        self.dependency = dependency
        self.limit = limit
        self._slots = threading.BoundedSemaphore(limit)

    def acquire(self) -> None:
        """Take a slot or raise :class:`Rejected` (reason ``bulkhead``) at once."""
        if not self._slots.acquire(blocking=False):
            raise Rejected(self.dependency, "bulkhead",
                           f"too many concurrent calls (bulkhead of {self.limit} full)")

    def release(self) -> None:
        """Give a slot back."""
        self._slots.release()


@dataclass
class Policy:
    """The breaker and bulkhead of one dependency in this process."""

    dependency: str
    settings: PolicySettings
    breaker: Breaker
    bulkhead: Bulkhead


_policies: dict[tuple[str, str], Policy] = {}
_policies_lock = threading.Lock()


def policy_for(dependency: str, origin: str = "", *, fail_max: int | None = None,
               reset_timeout: float | None = None,
               max_concurrent: int | None = None) -> Policy:
    """The process-wide policy of ``dependency`` at ``origin`` (``scheme://host:port``).

    Created on first use with :func:`settings_for`; later callers share it (their limits
    are ignored).
    """
    key = (dependency, origin)
    policy = _policies.get(key)
    if policy is not None:
        return policy
    limits = settings_for(dependency, fail_max=fail_max, reset_timeout=reset_timeout,
                          max_concurrent=max_concurrent)
    with _policies_lock:
        policy = _policies.get(key)
        if policy is None:
            policy = Policy(dependency, limits,
                            Breaker(dependency, limits.fail_max, limits.reset_timeout),
                            Bulkhead(dependency, limits.max_concurrent))
            _policies[key] = policy
    return policy


def reset_policies() -> None:
    """Forget every breaker and bulkhead (tests)."""
    with _policies_lock:
        _policies.clear()


def reject(rejected: Rejected) -> None:
    """Count and log a call refused by a breaker or bulkhead."""
    REJECTIONS.labels(process_service(), rejected.dependency, rejected.reason).inc()
    REQUESTS.labels(process_service(), rejected.dependency, "rejected").inc()
    log.info("%s: call refused: %s", rejected.dependency, rejected.detail,
             extra={"dependency": rejected.dependency, "reason": rejected.reason})


def retrying(
    dependency: str,
    *,
    attempts: int,
    deadline: float,
    backoff: float,
    sleep: Callable[[float], None] = time.sleep,
    retry_result: Callable[[Any], bool] = lambda _result: False,
    discard_result: Callable[[Any], None] = lambda _result: None,
) -> tenacity.Retrying:
    """A tenacity policy: up to ``attempts`` attempts, retrying :class:`AttemptFailed`
    and results for which ``retry_result`` is true, waiting ``backoff · 2^(n-1)`` plus up
    to ``backoff`` of jitter, and never sleeping past ``deadline`` seconds from the start.

    When it stops, the last result is returned (or the last exception raised);
    ``discard_result`` is called on a result about to be retried (e.g. to close it).
    """

    def before_sleep(state: tenacity.RetryCallState) -> None:
        outcome = state.outcome
        if outcome is None:  # pragma: no cover - tenacity always sets it here
            return
        if outcome.failed:
            reason = str(outcome.exception())
        else:
            result = outcome.result()
            reason = f"status {getattr(result, 'status_code', '?')}"
            discard_result(result)
        RETRIES.labels(process_service(), dependency).inc()
        log.warning("%s: attempt %d/%d failed (%s), retrying in %.3f s", dependency,
                    state.attempt_number, attempts, reason, state.upcoming_sleep,
                    extra={"dependency": dependency, "attempt": state.attempt_number})

    def give_up(state: tenacity.RetryCallState) -> Any:
        assert state.outcome is not None
        return state.outcome.result()  # the last answer, or the last error raised

    return tenacity.Retrying(
        stop=tenacity.stop_after_attempt(max(1, attempts))
        | tenacity.stop_before_delay(deadline),
        wait=tenacity.wait_exponential_jitter(initial=backoff, max=max(deadline, backoff),
                                              jitter=backoff),
        retry=tenacity.retry_if_exception_type(AttemptFailed)
        | tenacity.retry_if_result(retry_result),
        sleep=sleep,
        before_sleep=before_sleep,
        retry_error_callback=give_up,
    )
