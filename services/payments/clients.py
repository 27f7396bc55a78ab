"""The payment provider adapter: :class:`SimulatedProvider`, the default implementation of
:class:`.ports.PaymentProvider`.

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

import threading
import uuid
from dataclasses import dataclass, field

from .domain import PaymentMethod
from .ports import Authorization, ProviderError
from .settings import PaymentsConfig

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


def decline_above_from_env() -> int:
    """``PAYMENTS_DECLINE_ABOVE`` (minor units, default 1 000 000)."""
    return PaymentsConfig.parse().payments_decline_above


@dataclass
class ProviderCall:
    """One call the simulated provider received (for tests and the demo)."""

    operation: str
    idempotency_key: str
    amount: int | None = None
    reference: str | None = None


@dataclass
class SimulatedProvider:
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
