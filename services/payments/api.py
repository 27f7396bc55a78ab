"""HTTP handlers, one per operationId of ``openapi/payments/v1.yaml``; thin by design.

Connexion has already checked the token, the scopes and the request against the spec.
``token_info`` (the verified claims) becomes a :class:`Principal`; the service layer
decides what that caller may see and do. Handlers turn the domain objects it returns into
the JSON the spec describes (the ``*_json`` functions below).
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from flask import request

from charter import problem_types
from charter.clock import rfc3339
from charter.idempotency import Outcome
from charter.problems import PROBLEM_JSON, type_uri
from charter.security.principal import Principal
from charter.service import context
from charter.usecases import page_json

from .domain import Payment, Refund
from .services import AuthorizeRequest, PaymentsService

BASE = "/v1"
DECLINED = "payment-declined"  # the registered problem type (charter.problem_types)
Json = dict[str, Any]


# serialisation ---------------------------------------------------------------------
def iso(ts: datetime | None) -> str:
    """RFC 3339 in UTC with a ``Z`` (stored objects always carry their timestamps)."""
    assert ts is not None, "a stored object without a timestamp"
    return rfc3339(ts)


def refund_json(refund: Refund, currency: str) -> Json:
    return {
        "id": refund.id,
        "payment_id": refund.payment_id,
        "amount": refund.amount,
        "currency": currency,
        "reason": refund.reason,
        "provider_reference": refund.provider_reference,
        "created_at": iso(refund.created_at),
    }


def payment_json(payment: Payment) -> Json:
    method = payment.method
    assert method is not None, "a stored payment without its method"
    return {
        "id": payment.id,
        "order_id": payment.order_id,
        "customer_id": payment.customer_id,
        "amount": payment.amount,
        "currency": payment.currency,
        "status": str(payment.status),
        "captured_amount": payment.captured_amount,
        "refunded_amount": payment.refunded_amount,
        "refundable_amount": payment.refundable_amount,
        "payment_method": {"type": method.kind, "brand": method.brand, "last4": method.last4,
                           "token": method.token},
        "description": payment.description,
        "decline_code": payment.decline_code,
        "decline_message": payment.decline_message,
        "provider": payment.provider,
        "provider_reference": payment.provider_reference,
        "capture_reference": payment.capture_reference,
        "void_reference": payment.void_reference,
        "refunds": [refund_json(r, payment.currency) for r in payment.refunds],
        "created_at": iso(payment.created_at),
        "updated_at": iso(payment.updated_at),
    }


def declined_json(payment: Payment) -> Json:
    """The 402 problem document of a declined authorisation."""
    code = payment.decline_code or "declined"
    return {
        "type": type_uri(DECLINED),
        "title": problem_types.get(DECLINED).title,
        "status": 402,
        "detail": f"the payment provider declined the payment: {code}",
        "decline_code": code,
        "payment_id": payment.id,
        "payment": payment_json(payment),
    }


def _svc() -> PaymentsService:
    service: PaymentsService = context().deps["payments"]
    return service


def _key() -> str:
    # Required and pattern-checked by the spec; Connexion does not pass headers as args.
    return request.headers["Idempotency-Key"]


def _answer(outcome: Outcome, body: Json, location: str | None = None) -> Any:
    headers: dict[str, str] = {}
    if location:
        headers["Location"] = location
    if outcome.replayed:
        headers["Idempotent-Replayed"] = "true"
    if outcome.status >= 400:  # a problem (a declined authorisation)
        headers["Content-Type"] = PROBLEM_JSON
    return body, outcome.status, headers


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
    outcome = _svc().authorize(Principal.from_token_info(token_info), _key(),
                               AuthorizeRequest(**body))
    payment: Payment = outcome.body
    answer = payment_json(payment) if outcome.status == 201 else declined_json(payment)
    return _answer(outcome, answer, f"{BASE}/payments/{payment.id}")


def list_payments(
    token_info: dict[str, Any],
    page: int = 1,
    page_size: int = 20,
    order_id: str | None = None,
    customer_id: str | None = None,
    status: str | None = None,
) -> Any:
    found = _svc().list(Principal.from_token_info(token_info), order_id=order_id,
                        customer_id=customer_id, status=status, page=page,
                        page_size=page_size)
    return page_json(found, payment_json)


def get_payment(payment_id: str, token_info: dict[str, Any]) -> Any:
    return payment_json(_svc().get(Principal.from_token_info(token_info), payment_id))


def capture_payment(payment_id: str, token_info: dict[str, Any], body: Any = None) -> Any:
    amount = _optional_body(body).get("amount")
    outcome = _svc().capture(Principal.from_token_info(token_info), payment_id, _key(), amount)
    return _answer(outcome, payment_json(outcome.body))


def void_payment(payment_id: str, token_info: dict[str, Any]) -> Any:
    outcome = _svc().void(Principal.from_token_info(token_info), payment_id, _key())
    return _answer(outcome, payment_json(outcome.body))


def refund_payment(payment_id: str, token_info: dict[str, Any], body: Any = None) -> Any:
    data = _optional_body(body)
    outcome = _svc().refund(Principal.from_token_info(token_info), payment_id, _key(),
                            data.get("amount"), data.get("reason"))
    refund, payment = outcome.body
    return _answer(outcome, {**refund_json(refund, payment.currency),
                             "payment": payment_json(payment)})
