"""How many uvicorn worker processes ``charter up`` gives each component.

``CHARTER_WORKERS`` asks for a count: an integer ≥ 1, or ``auto`` (the default) for the
cores this process may run on. Each component then gets:

* **auth: 1.** Its brute-force counters (``auth.throttle.MemoryStore`` without Redis) and
  its Argon2 concurrency gate are per process, and the first start creates the signing
  key (two workers could create two). It is off the hot path: tokens are verified locally.
* **gateway:** ``services.gateway.settings.gateway_workers(requested)`` — the requested
  count when its rate limit is shared in Redis or off, else 1 (in-process buckets are
  exact only in one process).
* **every other service:** the requested count.

The runner passes the count as ``--workers N`` and as ``CHARTER_WORKERS=N`` in the
child's environment (what :func:`charter.cache.make_cache` and the gateway read).
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager

from charter.config import ConfigError

ENV = "CHARTER_WORKERS"
AUTO = "auto"
SINGLE_PROCESS = frozenset({"auth"})


def available_cores() -> int:
    """The cores this process may run on (its CPU affinity; ``os.cpu_count()`` elsewhere)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not Linux
        return max(1, os.cpu_count() or 1)


def parse(value: str | None, cores: int) -> int:
    """``CHARTER_WORKERS``'s value as a count: unset, empty or ``auto`` → ``cores``.

    Raises :class:`charter.config.ConfigError` for anything but ``auto`` or an integer ≥ 1.
    """
    text = (value or "").strip().lower()
    if text in ("", AUTO):
        return max(1, cores)
    try:
        count = int(text)
    except ValueError:
        count = 0
    if count < 1:
        raise ConfigError(f"{ENV} must be an integer ≥ 1 or 'auto', not {value!r}")
    return count


def requested(environ: Mapping[str, str] | None = None, cores: int | None = None) -> int:
    """The count ``CHARTER_WORKERS`` asks for (read raw: ``auto`` is not a number)."""
    env = os.environ if environ is None else environ
    return parse(env.get(ENV), available_cores() if cores is None else cores)


@contextmanager
def environment(overrides: Mapping[str, str]) -> Iterator[None]:
    """``os.environ`` with ``overrides`` applied, restored afterwards (settings checks)."""
    saved = {k: os.environ.get(k) for k in overrides}
    os.environ.update(overrides)
    try:
        yield
    finally:
        for key, old in saved.items():
            if old is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = old


GatewayPolicy = Callable[[int], int]


def gateway_policy() -> GatewayPolicy:
    """``services.gateway.settings.gateway_workers`` (imported when asked: the runner
    loads component settings lazily)."""
    policy: GatewayPolicy = importlib.import_module("services.gateway.settings").gateway_workers
    return policy


def component_workers(name: str, count: int,
                      gateway: GatewayPolicy | None = None) -> int:
    """The worker processes component ``name`` runs when ``count`` are requested.

    ``gateway`` is the gateway's policy (:func:`gateway_policy`); ``None`` → 1.
    """
    if count < 1:
        raise ValueError("count must be at least 1")
    if name in SINGLE_PROCESS:
        return 1
    if name == "gateway":
        if gateway is None:
            return 1
        # The gateway's settings parse CHARTER_WORKERS as a number: give it the count.
        with environment({ENV: str(count)}):
            return max(1, min(count, gateway(count)))
    return count


def workers_for(name: str, environ: Mapping[str, str] | None = None) -> int:
    """:func:`component_workers` for ``name`` with the count ``CHARTER_WORKERS`` asks for."""
    policy = gateway_policy() if name == "gateway" else None
    return component_workers(name, requested(environ), policy)
