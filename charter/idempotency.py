"""Idempotency keys: a retried request replays its first answer instead of acting twice.

A service keeps the keys in its own database (the table comes from
:func:`charter.idempotency_store.idempotency_table`, in its first migration), hands them
out through its repository as :class:`IdempotencyKeys`, and runs each keyed use case
through :func:`run_once` over its unit of work::

    outcome = run_once(self.uow, scope="catalog.create_reservation", key=key,
                       request=body, action=lambda repo: (201, do_the_work(repo)))

``run_once`` uses one write transaction for the lookup, the business change and the stored answer,
so they commit (or roll back) together:

* same ``(scope, key)`` and the same request fingerprint → the stored status and body are
  replayed (``outcome.replayed``), nothing runs again;
* same ``(scope, key)`` with a different request → :class:`charter.problems.Unprocessable`;
* otherwise the action runs and its answer is stored.

The key is *claimed* (inserted as in progress) before the action runs. Two concurrent
first uses of one key both miss the lookup; the unique constraint on ``(scope, key)``
lets only one claim survive: on PostgreSQL the second insert waits for the first
transaction and then fails (the store raises :class:`charter.unit_of_work.WriteConflict`);
the loser rolls back (its business
change included, if any), re-reads the winner's row and replays it, or answers 422
(different request) or 409 (no stored answer to replay). Only successful answers are
stored: an action that raises rolls everything back, claim included, so a retry after a
failure is evaluated afresh.

This module is the port and loads no ORM: a service layer (which works through a unit of
work, :mod:`charter.unit_of_work`, and never holds a Session) reaches the keys through its
repositories as :class:`IdempotencyKeys` and calls :func:`run_once`, the protocol over
``uow.write()`` / ``uow.read()``. The SQL side — the table, :class:`Idempotency` (the same
protocol over Sessions, with :meth:`~Idempotency.lookup`, :meth:`~Idempotency.claim` /
:meth:`~Idempotency.complete` and :meth:`~Idempotency.store` for callers that manage
their own transaction), the adapter :class:`SessionIdempotencyKeys`, the purge — is in
:mod:`charter.idempotency_store` (import it from there: only adapters and app factories
need it).

Retention (docs/architecture.md, "Idempotency keys"): a key is kept for
``IDEMPOTENCY_RETENTION_DAYS`` (default 7, at least 1) after its first use. An expired key
is treated as never seen: the store's lookup deletes it and answers ``None``, so a
request with that key runs afresh (even if its body differs). Expired rows are deleted by
the store's ``Purger`` — a daemon thread each service's app factory starts (every
``IDEMPOTENCY_PURGE_INTERVAL`` seconds, default 3600; 0 turns it off) — and by
``charter db purge``. Deleting expired rows is idempotent, so any number of workers may
purge at once.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol, TypeVar

from charter import config
from charter.problems import Conflict
from charter.unit_of_work import UnitOfWork, WriteConflict

__all__ = [
    "DEFAULT_PURGE_INTERVAL", "DEFAULT_RETENTION", "IN_PROGRESS", "MIN_RETENTION",
    "PURGE_INTERVAL_VAR", "RETENTION_VAR", "TABLE_NAME", "Clock", "HasIdempotencyKeys",
    "IdempotencyKeys", "Outcome",
    "canonical_json", "fingerprint",
    "purge_interval_from_env", "retention_from_env", "run_once",
]

log = logging.getLogger(__name__)

TABLE_NAME = "idempotency_keys"
IN_PROGRESS = 0  # status of a claimed key whose transaction has not finished

RETENTION_VAR = "IDEMPOTENCY_RETENTION_DAYS"
PURGE_INTERVAL_VAR = "IDEMPOTENCY_PURGE_INTERVAL"
DEFAULT_RETENTION = timedelta(days=7)
MIN_RETENTION = timedelta(days=1)
DEFAULT_PURGE_INTERVAL = 3600.0

Clock = Callable[[], datetime]


def retention_from_env() -> timedelta:
    """``IDEMPOTENCY_RETENTION_DAYS`` (default 7); less than 1 day is refused.

    The floor keeps the retention above every retry and recovery window of the platform
    (see docs/architecture.md, "Idempotency keys").
    """
    raw = config.env(RETENTION_VAR)
    if raw is None or raw.strip() == "":
        return DEFAULT_RETENTION
    try:
        days = float(raw)
    except ValueError as exc:
        raise config.ConfigError(f"{RETENTION_VAR} must be a number of days") from exc
    if not math.isfinite(days) or timedelta(days=days) < MIN_RETENTION:
        raise config.ConfigError(
            f"{RETENTION_VAR} must be at least {MIN_RETENTION.days} day(s): keys must outlive "
            "every retry and recovery window"
        )
    return timedelta(days=days)


def purge_interval_from_env() -> float:
    """``IDEMPOTENCY_PURGE_INTERVAL`` seconds between purges (default 3600; 0 = never)."""
    raw = config.env(PURGE_INTERVAL_VAR)
    if raw is None or raw.strip() == "":
        return DEFAULT_PURGE_INTERVAL
    try:
        value = float(raw)
    except ValueError as exc:
        raise config.ConfigError(f"{PURGE_INTERVAL_VAR} must be a number of seconds") from exc
    if not math.isfinite(value) or value < 0:
        raise config.ConfigError(f"{PURGE_INTERVAL_VAR} must be 0 or a positive number")
    return value


def canonical_json(value: Any) -> str:
    """One spelling per JSON value: sorted keys, no spaces, UTF-8 kept."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def fingerprint(request: Any) -> str:
    """sha256 (hex) of the canonical JSON of a request body (and whatever else identifies it)."""
    return hashlib.sha256(canonical_json(request).encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Outcome:
    """The answer to give: freshly computed, or replayed from the first use of the key."""

    status: int
    body: Any
    replayed: bool = False


# The same protocol for service layers that work through a unit of work ----------------
class IdempotencyKeys(Protocol):
    """The port: the idempotency keys of one unit of work (no Session, no ORM).

    ``lookup`` raises :class:`charter.problems.Unprocessable` (key used for another
    request) or :class:`charter.problems.Conflict` (still in progress); ``claim`` raises
    :class:`charter.unit_of_work.WriteConflict` when a concurrent request claimed the key.
    """

    def lookup(self, scope: str, key: str, fp: str) -> Outcome | None:
        """The stored answer for ``(scope, key)`` (see :meth:`Idempotency.lookup`)."""
        ...

    def claim(self, scope: str, key: str, fp: str) -> None:
        """Insert the key as in progress before acting."""
        ...

    def complete(self, scope: str, key: str, status: int, body: Any) -> None:
        """Record the answer of the claimed key."""
        ...


class HasIdempotencyKeys(Protocol):
    """Repositories that carry the unit of work's idempotency keys."""

    @property
    def idempotency(self) -> IdempotencyKeys:
        """The keys, bound to the same transaction as the repositories."""
        ...


K = TypeVar("K", bound=HasIdempotencyKeys)


def run_once(uow: UnitOfWork[K], *, scope: str, key: str, request: Any,
             action: Callable[[K], tuple[int, Any]]) -> Outcome:
    """Run ``action`` once per ``(scope, key)`` in one ``uow.write()`` (see the module docstring).

    The same protocol as :meth:`Idempotency.run`: the stored answer is replayed; otherwise
    the key is claimed, ``action(repositories)`` runs and its ``(status, JSON body)`` is
    stored, all in one transaction. When the transaction loses a race
    (:class:`WriteConflict`: the same key, or a row the action writes) it is rolled back
    and the winner's answer replayed, or 409 if there is none to replay.
    """
    fp = fingerprint(request)
    try:
        with uow.write() as repos:
            stored = repos.idempotency.lookup(scope, key, fp)
            if stored is not None:
                return stored
            repos.idempotency.claim(scope, key, fp)
            status, body = action(repos)
            repos.idempotency.complete(scope, key, status, body)
            return Outcome(status=status, body=body)
    except WriteConflict as exc:
        with uow.read() as repos:
            stored = repos.idempotency.lookup(scope, key, fp)
        if stored is not None:
            log.info("idempotency race on %s/%s: replaying the winner", scope, key)
            return stored
        raise Conflict(
            "a concurrent request changed the same resource; retry the request",
            kind="concurrent-update",
        ) from exc
