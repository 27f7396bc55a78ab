"""What the loyalty use cases need from outside: :class:`LoyaltyRepository`.

The service layer gets one through a unit of work (``UnitOfWork[LoyaltyRepository]``,
:mod:`charter.unit_of_work`); ``store.SqlLoyaltyRepository`` implements it on SQLAlchemy
and ``tests/loyalty/loyalty_fakes.py`` in memory. Everything crossing this port is a
:mod:`.domain` object. A write the database refuses because a concurrent transaction got
there first (an entry a unique index already holds) raises
:class:`charter.unit_of_work.WriteConflict`.
"""

from __future__ import annotations

from typing import Protocol

from .domain import Account, Award, Entry, EntryType, Redemption


class LoyaltyRepository(Protocol):
    """Accounts and the append-only ledger inside one unit of work."""

    # accounts
    def account(self, customer_id: str) -> Account | None:
        """The customer's account, if they ever had points."""
        ...

    def lock_account(self, customer_id: str) -> Account:
        """The customer's account, created if missing, locked until the unit of work ends."""
        ...

    def save_balance(self, account: Account) -> None:
        """Store the account's new balance (locked by :meth:`lock_account`)."""
        ...

    # entries
    def award(self, order_id: str) -> Award | None:
        """The order's award (with its reversal, if any)."""
        ...

    def redemption(self, customer_id: str, order_id: str) -> Redemption | None:
        """The customer's redemption for ``order_id`` (with its reversal, if any)."""
        ...

    def redemption_owners(self, order_id: str) -> list[str]:
        """Customers holding a redemption for ``order_id``."""
        ...

    def add(self, entry: Entry) -> Entry:
        """Record ``entry`` (given its id and time); ``WriteConflict`` if one was first."""
        ...

    def history(self, customer_id: str, offset: int, limit: int,
                type_: EntryType | None = None) -> tuple[list[Entry], int]:
        """The customer's entries, newest first, and how many there are in all."""
        ...

    # consistency
    def inconsistent_accounts(self) -> list[tuple[str, int, int, int | None]]:
        """``(customer, cached balance, sum of entries, last balance_after)`` of every
        account whose cache disagrees with its ledger (empty: all agree)."""
        ...


class LedgerLookups:
    """How awards and redemptions are read from ledger entries, on top of one query.

    A repository implements ``_entries`` (the entries of one order and type, optionally of
    one customer, oldest first); the rules that turn entries into an :class:`Award` or a
    :class:`Redemption` live here once, for the SQL store and the in-memory fake alike.
    """

    def _entries(self, order_id: str, type_: EntryType,
                 customer_id: str | None = None) -> list[Entry]:
        raise NotImplementedError

    def _one(self, order_id: str, type_: EntryType, customer_id: str) -> Entry | None:
        found = self._entries(order_id, type_, customer_id)
        return found[0] if found else None

    def award(self, order_id: str) -> Award | None:
        """The order's award (with its reversal, if any)."""
        found = self._entries(order_id, EntryType.AWARD)
        if not found:
            return None
        return Award(found[0], self._one(order_id, EntryType.AWARD_REVERSAL,
                                         found[0].customer_id))

    def redemption(self, customer_id: str, order_id: str) -> Redemption | None:
        """The customer's redemption for ``order_id`` (with its reversal, if any)."""
        entry = self._one(order_id, EntryType.REDEMPTION, customer_id)
        if entry is None:
            return None
        return Redemption(entry, self._one(order_id, EntryType.REDEMPTION_REVERSAL,
                                           customer_id))

    def redemption_owners(self, order_id: str) -> list[str]:
        """Customers holding a redemption for ``order_id`` (for privileged callers)."""
        return [e.customer_id for e in self._entries(order_id, EntryType.REDEMPTION)]
