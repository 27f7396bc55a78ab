"""Argon2id password hashing with configurable cost (``AUTH_ARGON2_*``).

Production cost is argon2-cffi's default, RFC 9106's "second recommended option"
(``argon2.profiles.RFC_9106_LOW_MEMORY``: Argon2id, 64 MiB, 3 passes, 4 lanes), which is
above OWASP's minimum (Argon2id, 19 MiB, 2 passes, 1 lane). A lower cost (faster tests,
a slow laptop) is accepted only in development mode: :func:`problems` reports it
otherwise, and :func:`configure` refuses it.

One :class:`PasswordHashing` is current per process: chosen from the environment on
first use (auth's process and ``charter up``'s seeding alike), or set by
:func:`configure` (``auth.app.create_flask_app`` with the app's settings).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from argon2 import PasswordHasher, Type
from argon2.profiles import RFC_9106_LOW_MEMORY

from charter import config

# OWASP Password Storage Cheat Sheet, Argon2id minimum: m = 19 MiB, t = 2, p = 1.
OWASP_MIN_MEMORY_KIB = 19 * 1024
OWASP_MIN_TIME_COST = 2


@dataclass(frozen=True)
class Argon2Params:
    """The cost of one Argon2id hash: passes, memory (KiB) and lanes."""

    time_cost: int = RFC_9106_LOW_MEMORY.time_cost
    memory_cost: int = RFC_9106_LOW_MEMORY.memory_cost
    parallelism: int = RFC_9106_LOW_MEMORY.parallelism

    def below(self, floor: Argon2Params) -> list[str]:
        """Names of the variables (``AUTH_ARGON2_*``) whose value is below ``floor``'s."""
        return [f"AUTH_ARGON2_{name.upper()}" for name in ("time_cost", "memory_cost",
                                                            "parallelism")
                if getattr(self, name) < getattr(floor, name)]


PRODUCTION = Argon2Params()


def problems(params: Argon2Params, *, development: bool) -> list[str]:
    """Why ``params`` may not be used (empty in development mode or at production cost)."""
    if development:
        return []
    return [f"{name} is below the production cost ({_describe(PRODUCTION)}); a lower "
            "cost is allowed only in development mode" for name in params.below(PRODUCTION)]


def _describe(params: Argon2Params) -> str:
    return (f"time_cost={params.time_cost}, memory_cost={params.memory_cost} KiB, "
            f"parallelism={params.parallelism}")


class PasswordHashing:
    """An Argon2id hasher at one cost, with a dummy hash of the same cost (verified for
    unknown accounts so that their answers take as long as real ones)."""

    def __init__(self, params: Argon2Params) -> None:
        self.params = params
        self.hasher = PasswordHasher(time_cost=params.time_cost,
                                     memory_cost=params.memory_cost,
                                     parallelism=params.parallelism, type=Type.ID)
        self._dummy: str | None = None

    @property
    def dummy_hash(self) -> str:
        """A hash of a throw-away password at this cost (made on first use)."""
        if self._dummy is None:
            self._dummy = self.hasher.hash("charter-dummy-password")
        return self._dummy


_lock = threading.Lock()
_current: PasswordHashing | None = None


def configure(params: Argon2Params) -> PasswordHashing:
    """Make ``params`` this process's hashing cost (:class:`charter.config.ConfigError`
    when it is below production cost outside development mode)."""
    global _current
    found = problems(params, development=config.is_development())
    if found:
        raise config.ConfigError("auth: " + "; ".join(found))
    with _lock:
        if _current is None or _current.params != params:
            _current = PasswordHashing(params)
        return _current


def current() -> PasswordHashing:
    """This process's hashing (from ``AUTH_ARGON2_*`` on first use)."""
    hashing = _current
    if hashing is not None:
        return hashing
    from auth.settings import AuthConfig  # settings imports this module

    return configure(AuthConfig.parse().argon2_params())


def reset() -> None:
    """Forget the configured hashing: the next use reads ``AUTH_ARGON2_*`` again."""
    global _current
    with _lock:
        _current = None
