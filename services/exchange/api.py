"""HTTP handlers, one per operationId of ``openapi/exchange/v1.yaml``; thin by design.

Connexion has already checked the token, the scope and the query against the spec; the
query parameter ``from`` arrives as ``from_`` (``pythonic_params``).
"""

from __future__ import annotations

from typing import Any

from charter.service import context

from .services import STALE_WARNING, ExchangeService


def _svc() -> ExchangeService:
    service: ExchangeService = context().deps["exchange"]
    return service


def _answer(doc: dict[str, Any]) -> Any:
    headers = {"Warning": STALE_WARNING} if doc["stale"] else {}
    return doc, 200, headers


def get_rates(from_: str, to: str | None = None) -> Any:
    service = _svc()
    return _answer(service.rate(from_, to) if to is not None else service.rates(from_))


def convert_amount(from_: str, to: str, amount: int) -> Any:
    return _answer(_svc().convert(from_, to, amount))
