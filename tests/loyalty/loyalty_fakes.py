"""In-memory adapters of the loyalty port, for unit tests of the service layer.

:class:`InMemoryLoyaltyUnitOfWork` implements ``UnitOfWork[LoyaltyRepository]`` without a
database: a write works on a copy of the state that replaces it only when the block ends
without an exception (a refused use case leaves nothing behind, as a rolled-back
transaction); one lock serialises writes, as the SQL adapter's account lock does. The
unique keys of the ledger are enforced as the tables' indexes do, by raising
:class:`charter.unit_of_work.WriteConflict`.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace

from charter.db import utcnow
from charter.unit_of_work import WriteConflict
from services.loyalty.domain import Account, Entry, EntryType
from services.loyalty.ports import LedgerLookups

AWARD_TYPES = (EntryType.AWARD, EntryType.AWARD_REVERSAL)


@dataclass
class LoyaltyState:
    """Everything loyalty stores: accounts and the ledger (domain objects)."""

    accounts: dict[str, Account] = field(default_factory=dict)
    entries: list[Entry] = field(default_factory=list)


class InMemoryLoyaltyRepository(LedgerLookups):
    """:class:`services.loyalty.ports.LoyaltyRepository` on a :class:`LoyaltyState`.

    Objects handed out are copies: a use case changes the state only through the port.
    """

    def __init__(self, state: LoyaltyState) -> None:
        self.state = state

    # accounts
    def account(self, customer_id: str) -> Account | None:
        return copy.deepcopy(self.state.accounts.get(customer_id))

    def lock_account(self, customer_id: str) -> Account:
        if customer_id not in self.state.accounts:
            self.state.accounts[customer_id] = Account(customer_id, 0, utcnow())
        return copy.deepcopy(self.state.accounts[customer_id])

    def save_balance(self, account: Account) -> None:
        self.state.accounts[account.customer_id] = replace(account, updated_at=utcnow())

    # entries
    def _entries(self, order_id: str, type_: EntryType,
                 customer_id: str | None = None) -> list[Entry]:
        return [e for e in self.state.entries if e.order_id == order_id and e.type is type_
                and (customer_id is None or e.customer_id == customer_id)]

    def add(self, entry: Entry) -> Entry:
        taken = self._entries(entry.order_id, entry.type,
                              None if entry.type in AWARD_TYPES else entry.customer_id)
        if taken:  # the unique indexes of ledger_entries
            raise WriteConflict(f"{entry.type} of order {entry.order_id} already recorded")
        recorded = entry.recorded(len(self.state.entries) + 1, utcnow())
        self.state.entries.append(recorded)
        return recorded

    def history(self, customer_id: str, offset: int, limit: int,
                type_: EntryType | None = None) -> tuple[list[Entry], int]:
        mine = [e for e in reversed(self.state.entries) if e.customer_id == customer_id
                and (type_ is None or e.type is type_)]
        return mine[offset:offset + limit], len(mine)

    def inconsistent_accounts(self) -> list[tuple[str, int, int, int | None]]:
        bad = []
        for customer_id, account in sorted(self.state.accounts.items()):
            mine = [e for e in self.state.entries if e.customer_id == customer_id]
            total = sum(e.points for e in mine)
            last = mine[-1].balance_after if mine else None
            if account.balance != total or account.balance != (last or 0):
                bad.append((customer_id, account.balance, total, last))
        return bad


class InMemoryLoyaltyUnitOfWork:
    """A :class:`charter.unit_of_work.UnitOfWork` over :class:`InMemoryLoyaltyRepository`.

    ``commits`` and ``rollbacks`` count how write units of work ended.
    """

    def __init__(self, state: LoyaltyState | None = None) -> None:
        self.state = state or LoyaltyState()
        self.commits = 0
        self.rollbacks = 0
        self._writer = threading.Lock()

    @contextmanager
    def read(self) -> Iterator[InMemoryLoyaltyRepository]:
        yield InMemoryLoyaltyRepository(copy.deepcopy(self.state))

    @contextmanager
    def write(self) -> Iterator[InMemoryLoyaltyRepository]:
        with self._writer:
            working = copy.deepcopy(self.state)
            try:
                yield InMemoryLoyaltyRepository(working)
            except BaseException:
                self.rollbacks += 1
                raise
            self.state = working
            self.commits += 1
