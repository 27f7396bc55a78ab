"""Readiness: each dependency's state in the ``/health/ready`` body.

A check is a callable per dependency (database, broker, Redis, the rate source, …): it
returns when the dependency is up, raises :class:`Degraded` when the service still answers
without it (a cache bypassed, stale rates served) and raises anything else when it is down.
:func:`readiness` runs them all and builds the body; the service is ready unless one is
down. See ``docs/observability.md``, *Readiness*.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

log = logging.getLogger(__name__)

ReadinessCheck = Callable[[], None]


class Degraded(Exception):
    """Raised by a readiness check: the dependency fails but the service still answers
    (``/health/ready`` stays 200 and reports it ``degraded`` with this fixed ``reason``)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def readiness(service: str, checks: Mapping[str, ReadinessCheck]) -> tuple[dict[str, Any], bool]:
    """Run every check: the ``/health/ready`` body and whether the service is ready.

    ``checks`` maps each dependency to ``ok``, ``degraded`` (still ready) or ``failed``
    (the contract since the first release); ``dependencies`` gives each one's state as an
    object, ``{"status": "up" | "degraded" | "down"}`` plus a fixed ``reason`` when
    degraded. The body names the dependency only; what went wrong goes to the log.
    """
    states: dict[str, str] = {}
    dependencies: dict[str, dict[str, str]] = {}
    ok = True
    for name, check in checks.items():
        try:
            check()
            states[name], dependencies[name] = "ok", {"status": "up"}
        except Degraded as exc:
            states[name] = "degraded"
            dependencies[name] = {"status": "degraded", "reason": exc.reason}
            log.info("%s degraded: %s: %s", service, name, exc.reason)
        except Exception as exc:  # any other failure means not ready
            ok = False
            states[name], dependencies[name] = "failed", {"status": "down"}
            log.warning("%s not ready: %s check failed: %s: %s", service, name,
                        type(exc).__name__, exc)
    body = {"status": "ok" if ok else "unavailable", "service": service, "checks": states,
            "dependencies": dependencies}
    return body, ok
