"""What the payments service needs from outside: its repository (:class:`PaymentsRepository`,
reached through a unit of work, :mod:`charter.unit_of_work`) and a payment provider
(:class:`PaymentProvider`).

``store.SqlPaymentsRepository`` implements the repository on SQLAlchemy; a write the
database refuses because a concurrent transaction got there first raises
:class:`charter.unit_of_work.WriteConflict`.

The service layer talks to a provider only through this port. Every call carries an
idempotency key derived from the client's ``Idempotency-Key``, so a provider that
deduplicates (as real ones do, and as the simulated adapter in ``clients.py`` does) never
acts twice even if the service were to call it twice. A provider that fails raises
:class:`ProviderError` (retriable: nothing was charged or changed).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from charter.idempotency import IdempotencyKeys

from .domain import Payment, PaymentFilter, PaymentMethod, Refund


class PaymentsRepository(Protocol):
    """Payments and their refunds inside one unit of work."""

    @property
    def idempotency(self) -> IdempotencyKeys:
        """The idempotency keys of the same transaction (every unsafe operation)."""
        ...

    def get(self, payment_id: str, *, lock: bool = False) -> Payment | None:
        """The payment with its refunds (locked for update when ``lock``)."""
        ...

    def page(self, flt: PaymentFilter, offset: int, limit: int) -> tuple[list[Payment], int]:
        """One page of matching payments, newest first, and how many match in all."""
        ...

    def add(self, payment: Payment) -> None:
        """Store a new payment; its timestamps become now."""
        ...

    def save(self, payment: Payment) -> None:
        """Store the payment's state and references; its ``updated_at`` becomes now."""
        ...

    def add_refund(self, refund: Refund) -> None:
        """Store a new refund; its ``created_at`` becomes now."""
        ...


class ProviderError(Exception):
    """The provider failed (unreachable, timed out, internal error); nothing happened."""


@dataclass(frozen=True)
class Authorization:
    """The provider's answer to an authorisation request."""

    approved: bool
    reference: str
    decline_code: str | None = None
    message: str | None = None


class PaymentProvider(Protocol):
    """The port: what the payments service asks of a payment provider."""

    name: str

    def authorize(
        self, *, amount: int, currency: str, method: PaymentMethod, idempotency_key: str
    ) -> Authorization:
        """Hold ``amount``; approved or declined. Raises :class:`ProviderError`."""

    def capture(self, *, reference: str, amount: int, currency: str,
                idempotency_key: str) -> str:
        """Take ``amount`` of the authorisation ``reference``; returns the capture reference."""

    def void(self, *, reference: str, idempotency_key: str) -> str:
        """Release the authorisation ``reference``; returns the void reference."""

    def refund(self, *, reference: str, amount: int, currency: str,
               idempotency_key: str) -> str:
        """Give back ``amount`` of a captured payment; returns the refund reference."""
