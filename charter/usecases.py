"""Pieces every service layer shares: pages, refused business rules, snapshot-keyed writes.

Pure Python plus :mod:`charter.idempotency` (no ORM, no framework), so a ``services.py``
that uses them loads no SQLAlchemy:

* :class:`Page` — one page of a listing (``offset`` for the repository; ``api.py`` writes
  it with :func:`page_json`);
* :class:`Refusals` — a domain error raised inside ``with business_rules():`` becomes the
  service's problem (each service maps its own errors);
* :func:`visible` — a customer-scoped resource, or the same 404 whether it is missing or
  someone else's (an answer that reveals nothing about other customers);
* :func:`run_once_as` — :func:`charter.idempotency.run_once` whose stored answer is the
  :class:`~charter.snapshots.JsonSnapshot` of a domain object, handed back rebuilt (so a
  replay gives the first answer exactly, serialised by ``api.py``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any, Generic, TypeVar

from charter.idempotency import HasIdempotencyKeys, Outcome, run_once
from charter.problems import NotFound, Problem
from charter.security.principal import Principal
from charter.snapshots import JsonSnapshot
from charter.unit_of_work import UnitOfWork

T = TypeVar("T")
E = TypeVar("E", bound=Exception)
K = TypeVar("K", bound=HasIdempotencyKeys)


@dataclass(frozen=True)
class Page(Generic[T]):
    """One page of a listing: the items and how many there are in all."""

    items: list[T]
    page: int
    page_size: int
    total: int

    @staticmethod
    def offset(page: int, page_size: int) -> int:
        """How many items come before page ``page`` (pages count from 1)."""
        return (page - 1) * page_size


def page_json(page: Page[T], item_json: Callable[[T], Any]) -> dict[str, Any]:
    """The spec's page object (``items``, ``page``, ``page_size``, ``total``)."""
    return {"items": [item_json(item) for item in page.items], "page": page.page,
            "page_size": page.page_size, "total": page.total}


class Refusals(Generic[E]):
    """``with refusals():`` turns a domain error ``E`` into the problem ``as_problem`` gives.

    A service declares it once (``business_rules = Refusals(domain.DomainError,
    as_problem)``); which problem answers which refusal stays the service's own decision.
    """

    def __init__(self, errors: type[E], as_problem: Callable[[E], Problem]) -> None:
        self.errors = errors
        self.as_problem = as_problem

    @contextmanager
    def __call__(self) -> Iterator[None]:
        try:
            yield
        except self.errors as exc:
            raise self.as_problem(exc) from exc


def visible(principal: Principal, value: T | None, owner: Callable[[T], str],
            missing: str) -> T:
    """``value`` if ``principal`` may see it (its own, or any for the privileged).

    A missing resource and someone else's get the same 404 (detail ``missing``), so an
    answer never tells whether another customer's resource exists.
    """
    if value is None or not principal.can_access(owner(value)):
        raise NotFound(missing)
    return value


def run_once_as(uow: UnitOfWork[K], snapshot: JsonSnapshot[T], *, scope: str, key: str,
                request: Any, action: Callable[[K], tuple[int, T]]) -> Outcome:
    """:func:`~charter.idempotency.run_once` keeping the answer as ``snapshot`` of a T.

    ``action`` returns ``(status, domain object)``; the JSON snapshot is what is stored,
    and the returned outcome's ``body`` is the domain object again (fresh or replayed).
    """

    def stored(repos: K) -> tuple[int, Any]:
        status, result = action(repos)
        return status, snapshot.dump(result)

    outcome = run_once(uow, scope=scope, key=key, request=request, action=stored)
    return replace(outcome, body=snapshot.load(outcome.body))
