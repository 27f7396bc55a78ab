"""The unit-of-work port every service layer depends on (no ORM, no framework).

A use case opens one unit of work and gets the service's repositories bound to it:

    with self.uow.write() as repo:      # one transaction; the write lock taken first
        order = repo.get(order_id)
        order.cancel()
        repo.save(order)                # committed when the block ends, rolled back on error

``read()`` is the same for queries. The service layer knows only this protocol and its own
repository protocol (in the service's ``ports.py``); ``app.py`` passes the SQLAlchemy
implementation (:class:`charter.db.SqlUnitOfWork`) and tests may pass an in-memory one.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Protocol, TypeVar

R_co = TypeVar("R_co", covariant=True)


class UnitOfWork(Protocol[R_co]):
    """Transactions that hand out the repositories ``R_co`` bound to them."""

    def read(self) -> AbstractContextManager[R_co]:
        """A read transaction (queries see one consistent state)."""
        ...

    def write(self) -> AbstractContextManager[R_co]:
        """A write transaction: commit on success, roll back on any exception."""
        ...


class WriteConflict(Exception):
    """A write the database refused because a concurrent transaction got there first.

    Stores raise it in place of their driver's error (a unique or check constraint, e.g.
    SQLAlchemy's ``IntegrityError``), so a service layer never sees the ORM; the unit of
    work it escapes from is rolled back.
    """
