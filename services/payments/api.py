"""HTTP handlers, one per operationId of ``openapi/payments/v1.yaml``; thin by design.

Connexion has already checked the token, the scopes and the request against the spec.
``token_info`` (the verified claims) becomes a :class:`Principal` for ownership checks.
"""

from __future__ import annotations

import json
from typing import Any

from flask import request

from charter.idempotency import Outcome
from charter.problems import PROBLEM_JSON
from charter.security.principal import Principal
from charter.service import context

from .services import PaymentsService

BASE = "/v1"


def _svc() -> PaymentsService:
    service: PaymentsService = context().deps["payments"]
    return service


def _key() -> str:
    # Required and pattern-checked by the spec; Connexion does not pass headers as args.
    return request.headers["Idempotency-Key"]


def _answer(outcome: Outcome, location: str | None = None) -> Any:
    headers: dict[str, str] = {}
    if location:
        headers["Location"] = location
    if outcome.replayed:
        headers["Idempotent-Replayed"] = "true"
    if outcome.status >= 400:  # a stored problem (a declined authorisation)
        headers["Content-Type"] = PROBLEM_JSON
    return outcome.body, outcome.status, headers


def _optional_body(body: Any) -> dict[str, Any]:
    """An optional JSON body as a dict (``{}`` when absent).

    Without a ``Content-Type`` header Connexion still validates the body as JSON (its
    default media type) but hands the handler the raw bytes (or the spec's default ``{}``
    as bytes); they are valid JSON by then.
    """
    if isinstance(body, bytes | str):
        text = body.decode() if isinstance(body, bytes) else body
        body = json.loads(text) if text.strip() else None
    return dict(body) if isinstance(body, dict) else {}


def authorize_payment(body: dict[str, Any], token_info: dict[str, Any]) -> Any:
    outcome = _svc().authorize(Principal.from_token_info(token_info), _key(), body)
    payment = outcome.body if outcome.status == 201 else outcome.body["payment"]
    return _answer(outcome, f"{BASE}/payments/{payment['id']}")


def list_payments(
    token_info: dict[str, Any],
    page: int = 1,
    page_size: int = 20,
    order_id: str | None = None,
    customer_id: str | None = None,
    status: str | None = None,
) -> Any:
    return _svc().list(Principal.from_token_info(token_info), order_id=order_id,
                       customer_id=customer_id, status=status, page=page,
                       page_size=page_size)


def get_payment(payment_id: str, token_info: dict[str, Any]) -> Any:
    return _svc().get(Principal.from_token_info(token_info), payment_id)


def capture_payment(payment_id: str, token_info: dict[str, Any], body: Any = None) -> Any:
    amount = _optional_body(body).get("amount")
    return _answer(_svc().capture(Principal.from_token_info(token_info), payment_id, _key(),
                                  amount))


def void_payment(payment_id: str, token_info: dict[str, Any]) -> Any:
    return _answer(_svc().void(Principal.from_token_info(token_info), payment_id, _key()))


def refund_payment(payment_id: str, token_info: dict[str, Any], body: Any = None) -> Any:
    data = _optional_body(body)
    return _answer(_svc().refund(Principal.from_token_info(token_info), payment_id, _key(),
                                 data.get("amount"), data.get("reason")))
