"""Payments domain: payment methods, amounts and the payment state machine. Pure Python.

No framework, database or provider imports: the service layer loads a :class:`Payment`
through the repository (``store.py``), asks it to change, calls the provider with what the
domain decided, and stores the result; ``api.py`` turns it into JSON.

State machine (every other move raises :class:`InvalidTransition`)::

    authorized ──capture(≤ amount)──▶ captured ──refund──▶ partially_refunded ──refund──▶ refunded
        │                                  └────────────refund (everything)──────────────▶ refunded
        └──void──▶ voided
    declined (final: the provider refused the authorisation)

Amounts are integers in the currency's minor unit; a capture takes at most the authorised
amount (once; the rest of the hold is released), refunds add up to at most the captured
amount.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass, field
from datetime import datetime

_CURRENCY = re.compile(r"^[A-Z]{3}$")
_CARD = re.compile(r"^[0-9]{12,19}$")
_TOKEN = re.compile(r"^tok_[A-Za-z0-9_]{1,60}$")

MAX_AMOUNT = 100_000_000_000  # minor units; the spec's maximum


class PaymentError(Exception):
    """A business rule refused the request."""


class InvalidPaymentMethod(PaymentError):
    """Not exactly one method, a malformed card number, a failed Luhn check, a bad token."""


class InvalidAmount(PaymentError):
    """An amount that is not positive, too large, or more than the payment allows."""


class InvalidTransition(PaymentError):
    """The payment is not in a state that allows this operation."""


class PaymentStatus(enum.StrEnum):
    AUTHORIZED = "authorized"
    DECLINED = "declined"
    CAPTURED = "captured"
    PARTIALLY_REFUNDED = "partially_refunded"
    REFUNDED = "refunded"
    VOIDED = "voided"


REFUNDABLE = frozenset({PaymentStatus.CAPTURED, PaymentStatus.PARTIALLY_REFUNDED})


def luhn_valid(number: str) -> bool:
    """The Luhn (mod 10) check of a string of digits."""
    if not number.isdigit():
        return False
    total = 0
    for position, char in enumerate(reversed(number)):
        digit = int(char)
        if position % 2 == 1:
            digit *= 2
            if digit > 9:
                digit -= 9
        total += digit
    return total % 10 == 0


def card_brand(number: str) -> str:
    """The card scheme guessed from the number's prefix (``unknown`` if none matches)."""
    if number.startswith("4"):
        return "visa"
    if number[:2] in {"34", "37"}:
        return "amex"
    if 51 <= int(number[:2]) <= 55 or 2221 <= int(number[:4]) <= 2720:
        return "mastercard"
    if number.startswith(("6011", "65")):
        return "discover"
    return "unknown"


@dataclass(frozen=True)
class MethodSummary:
    """The stored trace of a payment method (card brand and last 4 digits, or the token)."""

    kind: str  # "card" | "token"
    brand: str | None = None
    last4: str | None = None
    token: str | None = None


@dataclass(frozen=True)
class PaymentFilter:
    """What a payment listing asks for (every criterion optional, all must hold)."""

    customer_id: str | None = None
    order_id: str | None = None
    status: str | None = None


@dataclass
class Refund:
    """Money given back on a captured payment."""

    id: str
    payment_id: str
    amount: int
    reason: str | None
    provider_reference: str
    created_at: datetime | None = None


@dataclass(frozen=True)
class PaymentMethod:
    """How the customer pays: a card (number kept only in memory) or a provider token."""

    kind: str  # "card" | "token"
    card_number: str | None = field(default=None, repr=False)
    token: str | None = None

    @property
    def brand(self) -> str | None:
        return card_brand(self.card_number) if self.card_number else None

    @property
    def last4(self) -> str | None:
        return self.card_number[-4:] if self.card_number else None

    def summary(self) -> MethodSummary:
        """What is kept of the method: never the card number, only its brand and last 4."""
        return MethodSummary(self.kind, brand=self.brand, last4=self.last4, token=self.token)

    @classmethod
    def parse(cls, card_number: str | None, method: str | None) -> PaymentMethod:
        """Exactly one of a Luhn-valid card number (12–19 digits) and a ``tok_…`` token."""
        if (card_number is None) == (method is None):
            raise InvalidPaymentMethod("give exactly one of card_number and method")
        if card_number is not None:
            if not _CARD.match(card_number):
                raise InvalidPaymentMethod("card_number must be 12 to 19 digits")
            if not luhn_valid(card_number):
                raise InvalidPaymentMethod("card_number fails the Luhn check")
            return cls("card", card_number=card_number)
        assert method is not None
        if not _TOKEN.match(method):
            raise InvalidPaymentMethod("method must look like tok_<letters, digits, _>")
        return cls("token", token=method)


def check_amount(amount: int) -> int:
    """``amount`` if it is a positive whole number of minor units within the limit."""
    if isinstance(amount, bool) or not isinstance(amount, int):
        raise InvalidAmount("amount must be an integer number of minor units")
    if not 1 <= amount <= MAX_AMOUNT:
        raise InvalidAmount(f"amount must be between 1 and {MAX_AMOUNT}")
    return amount


def check_currency(currency: str) -> str:
    if not _CURRENCY.match(currency):
        raise InvalidAmount(f"{currency!r} is not an ISO 4217 currency code")
    return currency


@dataclass
class Payment:
    """One payment and the money that moved on it."""

    id: str
    order_id: str
    customer_id: str
    amount: int
    currency: str
    status: PaymentStatus = PaymentStatus.AUTHORIZED
    captured_amount: int = 0
    refunded_amount: int = 0
    created_by: str = ""
    method: MethodSummary | None = None
    description: str | None = None
    provider: str = ""
    provider_reference: str = ""
    capture_reference: str | None = None
    void_reference: str | None = None
    decline_code: str | None = None
    decline_message: str | None = None
    refunds: list[Refund] = field(default_factory=list)
    created_at: datetime | None = None
    updated_at: datetime | None = None

    def __post_init__(self) -> None:
        check_amount(self.amount)
        check_currency(self.currency)
        if not 0 <= self.captured_amount <= self.amount:
            raise InvalidAmount("captured amount outside 0..amount")
        if not 0 <= self.refunded_amount <= self.captured_amount:
            raise InvalidAmount("refunded amount outside 0..captured amount")

    @property
    def refundable_amount(self) -> int:
        """What can still be refunded (0 unless captured)."""
        if self.status not in REFUNDABLE:
            return 0
        return self.captured_amount - self.refunded_amount

    def _refuse(self, verb: str) -> InvalidTransition:
        return InvalidTransition(f"cannot {verb} payment {self.id}: it is {self.status}")

    def capture(self, amount: int | None = None) -> int:
        """authorized → captured; returns the captured amount (default: all of it)."""
        if self.status != PaymentStatus.AUTHORIZED:
            raise self._refuse("capture")
        taken = self.amount if amount is None else check_amount(amount)
        if taken > self.amount:
            raise InvalidAmount(
                f"cannot capture {taken}: only {self.amount} {self.currency} is authorised"
            )
        self.captured_amount = taken
        self.status = PaymentStatus.CAPTURED
        return taken

    def void(self) -> None:
        """authorized → voided (the hold is released; nothing was taken)."""
        if self.status != PaymentStatus.AUTHORIZED:
            raise self._refuse("void")
        self.status = PaymentStatus.VOIDED

    def refund(self, amount: int | None = None) -> int:
        """Give back ``amount`` (default: everything refundable); returns it."""
        if self.status not in REFUNDABLE:
            raise self._refuse("refund")
        refundable = self.refundable_amount
        given = refundable if amount is None else check_amount(amount)
        if given > refundable:
            raise InvalidAmount(
                f"cannot refund {given}: only {refundable} {self.currency} is refundable"
            )
        self.refunded_amount += given
        self.status = (
            PaymentStatus.REFUNDED
            if self.refunded_amount == self.captured_amount
            else PaymentStatus.PARTIALLY_REFUNDED
        )
        return given
