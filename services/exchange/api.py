"""HTTP handlers, one per operationId of ``openapi/exchange/v1.yaml``, and the JSON shapes.

Connexion has already checked the token, the scope and the query against the spec; the
query parameter ``from`` arrives as ``from_`` (``pythonic_params``). The service answers
with domain objects (:mod:`.domain`); the ``*_json`` functions write them as the spec's
JSON, and a stale answer gets a ``Warning`` header.
"""

from __future__ import annotations

from typing import Any

from charter.clock import rfc3339
from charter.service import context

from .domain import Conversion, Freshness, Quote, RateList, format_rate
from .services import STALE_WARNING, ExchangeService


def _svc() -> ExchangeService:
    service: ExchangeService = context().deps["exchange"]
    return service


def freshness_json(freshness: Freshness) -> dict[str, Any]:
    """The freshness fields every answer carries."""
    return {"as_of": rfc3339(freshness.as_of), "source": freshness.source,
            "stale": freshness.stale, "age": freshness.age}


def quote_json(quote: Quote) -> dict[str, Any]:
    """A ``Rate`` of the spec."""
    return {"from": quote.source, "to": quote.target, "rate": format_rate(quote.rate),
            **freshness_json(quote.freshness)}


def rate_list_json(rates: RateList) -> dict[str, Any]:
    """A ``RateTable`` of the spec (every rate from one currency)."""
    return {"from": rates.source,
            "rates": {code: format_rate(rate) for code, rate in rates.rates.items()},
            **freshness_json(rates.freshness)}


def conversion_json(conversion: Conversion) -> dict[str, Any]:
    """A ``Conversion`` of the spec."""
    return {"from": conversion.source, "to": conversion.target, "amount": conversion.amount,
            "converted_amount": conversion.converted_amount,
            "rate": format_rate(conversion.rate), "rounding": "half_even",
            **freshness_json(conversion.freshness)}


def _answer(doc: dict[str, Any], freshness: Freshness) -> Any:
    headers = {"Warning": STALE_WARNING} if freshness.stale else {}
    return doc, 200, headers


def get_rates(from_: str, to: str | None = None) -> Any:
    service = _svc()
    if to is not None:
        quote = service.rate(from_, to)
        return _answer(quote_json(quote), quote.freshness)
    rates = service.rates(from_)
    return _answer(rate_list_json(rates), rates.freshness)


def convert_amount(from_: str, to: str, amount: int) -> Any:
    conversion = _svc().convert(from_, to, amount)
    return _answer(conversion_json(conversion), conversion.freshness)
