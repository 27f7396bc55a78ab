"""The payment provider port (:class:`PaymentProvider`) and the simulated adapter.

The service layer talks to a provider only through this port. Every call carries an
idempotency key derived from the client's ``Idempotency-Key``, so a provider that
deduplicates (as real ones do, and as :class:`SimulatedProvider` does) never acts twice
even if the service were to call it twice. A provider that fails raises
:class:`ProviderError` (retriable: nothing was charged or changed).

:class:`SimulatedProvider` decides deterministically (see :data:`DECLINE_CARDS`):

* card ``4000000000000002`` / method ``tok_card_declined`` → declined ``card_declined``;
* card ``4000000000009995`` / method ``tok_insufficient_funds`` → ``insufficient_funds``;
* card ``4000000000000119`` / method ``tok_provider_error`` → :class:`ProviderError`;
* an amount above ``decline_above`` (env ``PAYMENTS_DECLINE_ABOVE``, default 1 000 000
  minor units) → declined ``limit_exceeded``;
* anything else is approved.

:meth:`SimulatedProvider.fail_next` injects failures for tests and chaos runs.
"""

from __future__ import annotations

import abc
import threading
import uuid
from dataclasses import dataclass, field

from charter import config

from .domain import PaymentMethod

DEFAULT_DECLINE_ABOVE = 1_000_000

DECLINE_CARDS: dict[str, tuple[str, str]] = {
    "4000000000000002": ("card_declined", "The card was declined."),
    "4000000000009995": ("insufficient_funds", "The card has insufficient funds."),
}
DECLINE_TOKENS: dict[str, tuple[str, str]] = {
    "tok_card_declined": DECLINE_CARDS["4000000000000002"],
    "tok_insufficient_funds": DECLINE_CARDS["4000000000009995"],
}
ERROR_CARDS = frozenset({"4000000000000119"})
ERROR_TOKENS = frozenset({"tok_provider_error"})


class ProviderError(Exception):
    """The provider failed (unreachable, timed out, internal error); nothing happened."""


@dataclass(frozen=True)
class Authorization:
    """The provider's answer to an authorisation request."""

    approved: bool
    reference: str
    decline_code: str | None = None
    message: str | None = None


class PaymentProvider(abc.ABC):
    """The port: what the payments service asks of a payment provider."""

    name: str = "provider"

    @abc.abstractmethod
    def authorize(
        self, *, amount: int, currency: str, method: PaymentMethod, idempotency_key: str
    ) -> Authorization:
        """Hold ``amount``; approved or declined. Raises :class:`ProviderError`."""

    @abc.abstractmethod
    def capture(self, *, reference: str, amount: int, currency: str,
                idempotency_key: str) -> str:
        """Take ``amount`` of the authorisation ``reference``; returns the capture reference."""

    @abc.abstractmethod
    def void(self, *, reference: str, idempotency_key: str) -> str:
        """Release the authorisation ``reference``; returns the void reference."""

    @abc.abstractmethod
    def refund(self, *, reference: str, amount: int, currency: str,
               idempotency_key: str) -> str:
        """Give back ``amount`` of a captured payment; returns the refund reference."""


def decline_above_from_env() -> int:
    """``PAYMENTS_DECLINE_ABOVE`` (minor units, default 1 000 000)."""
    raw = config.env("PAYMENTS_DECLINE_ABOVE")
    if raw is None:
        return DEFAULT_DECLINE_ABOVE
    try:
        value = int(raw)
    except ValueError as exc:
        raise config.ConfigError("PAYMENTS_DECLINE_ABOVE must be an integer") from exc
    if value < 0:
        raise config.ConfigError("PAYMENTS_DECLINE_ABOVE must not be negative")
    return value


@dataclass
class ProviderCall:
    """One call the simulated provider received (for tests and the demo)."""

    operation: str
    idempotency_key: str
    amount: int | None = None
    reference: str | None = None


@dataclass
class SimulatedProvider(PaymentProvider):
    """An in-process provider with deterministic decline rules; thread-safe.

    Repeating a call with the same idempotency key returns the first result (like a real
    provider); ``calls`` records every call received, ``charges`` only the distinct
    approved authorisations.
    """

    decline_above: int = field(default_factory=decline_above_from_env)
    name: str = "simulated"
    calls: list[ProviderCall] = field(default_factory=list)
    charges: int = 0
    _results: dict[str, object] = field(default_factory=dict, repr=False)
    _failures: int = field(default=0, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def fail_next(self, count: int = 1) -> None:
        """Make the next ``count`` calls raise :class:`ProviderError`."""
        with self._lock:
            self._failures = count

    def calls_of(self, operation: str) -> list[ProviderCall]:
        with self._lock:
            return [c for c in self.calls if c.operation == operation]

    def _begin(self, call: ProviderCall) -> object | None:
        """Record the call; the earlier result for its key, or raise an injected failure."""
        self.calls.append(call)
        if self._failures > 0:
            self._failures -= 1
            raise ProviderError("simulated provider failure (injected)")
        return self._results.get(f"{call.operation}:{call.idempotency_key}")

    def _remember(self, call: ProviderCall, result: object) -> None:
        self._results[f"{call.operation}:{call.idempotency_key}"] = result

    @staticmethod
    def _reference(prefix: str) -> str:
        return f"sim_{prefix}_{uuid.uuid4().hex[:24]}"

    def authorize(
        self, *, amount: int, currency: str, method: PaymentMethod, idempotency_key: str
    ) -> Authorization:
        call = ProviderCall("authorize", idempotency_key, amount=amount)
        with self._lock:
            earlier = self._begin(call)
            if isinstance(earlier, Authorization):
                return earlier
            if method.card_number in ERROR_CARDS or method.token in ERROR_TOKENS:
                raise ProviderError("simulated provider error for test card / token")
            decline = DECLINE_CARDS.get(method.card_number or "") or DECLINE_TOKENS.get(
                method.token or ""
            )
            if decline is None and amount > self.decline_above:
                decline = ("limit_exceeded",
                           f"The amount is above the limit of {self.decline_above}.")
            if decline is not None:
                result = Authorization(False, self._reference("auth"), decline[0], decline[1])
            else:
                result = Authorization(True, self._reference("auth"))
                self.charges += 1
            self._remember(call, result)
            return result

    def _simple(self, operation: str, prefix: str, key: str, reference: str,
                amount: int | None = None) -> str:
        call = ProviderCall(operation, key, amount=amount, reference=reference)
        with self._lock:
            earlier = self._begin(call)
            if isinstance(earlier, str):
                return earlier
            result = self._reference(prefix)
            self._remember(call, result)
            return result

    def capture(self, *, reference: str, amount: int, currency: str,
                idempotency_key: str) -> str:
        return self._simple("capture", "cap", idempotency_key, reference, amount)

    def void(self, *, reference: str, idempotency_key: str) -> str:
        return self._simple("void", "void", idempotency_key, reference)

    def refund(self, *, reference: str, amount: int, currency: str,
               idempotency_key: str) -> str:
        return self._simple("refund", "ref", idempotency_key, reference, amount)
