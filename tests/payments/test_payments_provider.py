"""The simulated provider: decline rules, errors, its own idempotency, injected failures."""

from __future__ import annotations

import pytest

from charter.config import ConfigError
from services.payments.clients import (
    DEFAULT_DECLINE_ABOVE,
    SimulatedProvider,
    decline_above_from_env,
)
from services.payments.domain import PaymentMethod
from services.payments.ports import Authorization, ProviderError


def card(number: str) -> PaymentMethod:
    return PaymentMethod.parse(number, None)


def token(name: str) -> PaymentMethod:
    return PaymentMethod.parse(None, name)


def authorize(provider: SimulatedProvider, method: PaymentMethod, amount: int = 1000,
              key: str = "k1") -> Authorization:
    return provider.authorize(amount=amount, currency="EUR", method=method,
                              idempotency_key=key)


@pytest.mark.parametrize(("method", "code"), [
    (card("4000000000000002"), "card_declined"),
    (card("4000000000009995"), "insufficient_funds"),
    (token("tok_card_declined"), "card_declined"),
    (token("tok_insufficient_funds"), "insufficient_funds"),
])
def test_decline_cards_and_tokens(method: PaymentMethod, code: str) -> None:
    provider = SimulatedProvider(decline_above=10_000)
    result = authorize(provider, method)
    assert not result.approved and result.decline_code == code
    assert result.reference.startswith("sim_auth_")
    assert provider.charges == 0


@pytest.mark.parametrize("method", [card("4000000000000119"), token("tok_provider_error")])
def test_error_card_raises_provider_error(method: PaymentMethod) -> None:
    provider = SimulatedProvider()
    with pytest.raises(ProviderError):
        authorize(provider, method)
    assert provider.charges == 0


def test_amount_above_the_threshold_is_declined() -> None:
    provider = SimulatedProvider(decline_above=5000)
    assert authorize(provider, card("4242424242424242"), 5000, "a").approved
    over = authorize(provider, card("4242424242424242"), 5001, "b")
    assert not over.approved and over.decline_code == "limit_exceeded"


def test_threshold_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PAYMENTS_DECLINE_ABOVE", raising=False)
    assert decline_above_from_env() == DEFAULT_DECLINE_ABOVE == 1_000_000
    monkeypatch.setenv("PAYMENTS_DECLINE_ABOVE", "250")
    assert SimulatedProvider().decline_above == 250
    monkeypatch.setenv("PAYMENTS_DECLINE_ABOVE", "lots")
    with pytest.raises(ConfigError):
        decline_above_from_env()
    monkeypatch.setenv("PAYMENTS_DECLINE_ABOVE", "-1")
    with pytest.raises(ConfigError):
        decline_above_from_env()


def test_same_key_returns_the_first_result_and_charges_once() -> None:
    provider = SimulatedProvider()
    first = authorize(provider, card("4242424242424242"), key="same")
    again = authorize(provider, card("4242424242424242"), key="same")
    assert first == again and provider.charges == 1 and len(provider.calls) == 2
    other = authorize(provider, card("4242424242424242"), key="other")
    assert other != first and provider.charges == 2


def test_capture_void_refund_return_references_and_dedupe() -> None:
    provider = SimulatedProvider()
    ref = provider.capture(reference="sim_auth_x", amount=10, currency="EUR",
                           idempotency_key="c")
    assert ref.startswith("sim_cap_")
    assert provider.capture(reference="sim_auth_x", amount=10, currency="EUR",
                            idempotency_key="c") == ref
    assert provider.void(reference="sim_auth_y", idempotency_key="v").startswith("sim_void_")
    assert provider.refund(reference=ref, amount=5, currency="EUR",
                           idempotency_key="r").startswith("sim_ref_")
    assert [c.operation for c in provider.calls] == ["capture", "capture", "void", "refund"]


def test_injected_failures() -> None:
    provider = SimulatedProvider()
    provider.fail_next(2)
    for _ in range(2):
        with pytest.raises(ProviderError):
            authorize(provider, card("4242424242424242"))
    assert authorize(provider, card("4242424242424242")).approved
