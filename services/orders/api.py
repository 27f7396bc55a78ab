"""HTTP handlers, one per operationId of ``openapi/orders/v1.yaml``; thin by design.

Connexion has already checked the token, the scopes and the request against the spec;
``token_info`` holds the verified claims. Handlers build the :class:`Caller`, call the
service layer and shape the response.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from flask import request

from charter.problems import Conflict, Problem, Unprocessable
from charter.service import context
from charter.usecases import page_json

from .domain import Order, RejectionCode
from .services import Answer, Caller, OrderService, PlaceRequest, Rejected

BASE = "/v1"
RETRY_AFTER_SECONDS = 2


def _svc() -> OrderService:
    service: OrderService = context().deps["orders"]
    return service


def _caller(token_info: dict[str, Any]) -> Caller:
    return Caller.from_token_info(token_info, request.headers.get("Authorization"))


def _idempotency_key() -> str:
    # Required and pattern-checked by the spec; Connexion does not pass headers as args.
    return request.headers["Idempotency-Key"]


def iso(ts: datetime) -> str:
    """RFC 3339 in UTC with a ``Z``."""
    return ts.astimezone(UTC).isoformat().replace("+00:00", "Z")


def order_json(order: Order) -> dict[str, Any]:
    """The order as the API shows it."""
    return {
        "id": order.id,
        "customer_id": order.customer_id,
        "status": order.status.value,
        "source": order.source.value,
        "items": [
            {
                "product_id": line.product_id,
                "sku": line.sku,
                "name": line.name,
                "unit_price": line.unit_price,
                "quantity": line.quantity,
                "line_total": line.line_total,
            }
            for line in order.lines
        ],
        "item_count": order.item_count,
        "total": order.total,
        "currency": order.currency,
        "reason": order.reason,
        "shortages": order.shortages,
        "payment_id": order.payment_id,
        "loyalty_status": _value(order.loyalty_status),
        "notification_status": _value(order.notification_status),
        "release_status": _value(order.release_status),
        "created_at": iso(order.created_at),
        "updated_at": iso(order.updated_at),
    }


def _value(x: Any) -> Any:
    return None if x is None else x.value


def location(order: Order) -> str:
    return f"{BASE}/orders/{order.id}"


def _answer(answer: Answer, *, with_location: bool = False) -> Any:
    headers: dict[str, str] = {}
    if with_location:
        headers["Location"] = location(answer.order)
    if answer.status == 202:
        headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
    if answer.replayed:
        headers["Idempotent-Replayed"] = "true"
    return order_json(answer.order), answer.status, headers


def rejection_problem(rejected: Rejected) -> Problem:
    """The problem answered for a placement that ended ``rejected``."""
    order = rejected.order
    headers = {"Location": location(order)}
    if rejected.replayed:
        headers["Idempotent-Replayed"] = "true"
    extensions: dict[str, Any] = {"order_id": order.id, "order_status": order.status.value}
    if order.rejection_code is RejectionCode.INSUFFICIENT_STOCK:
        return Conflict(
            f"order {order.id} was rejected: {order.reason}",
            kind="insufficient-stock",
            headers=headers,
            shortages=order.shortages or [],
            **extensions,
        )
    return Unprocessable(
        f"order {order.id} was rejected: {order.reason}",
        kind="product-not-for-sale",
        headers=headers,
        **extensions,
    )


# -- operations -------------------------------------------------------------------------
def place_order(body: dict[str, Any], token_info: dict[str, Any]) -> Any:
    try:
        answer = _svc().place(_caller(token_info), _idempotency_key(), PlaceRequest.from_body(body))
    except Rejected as rejected:
        raise rejection_problem(rejected) from None
    return _answer(answer, with_location=True)


def list_orders(
    token_info: dict[str, Any],
    page: int = 1,
    page_size: int = 20,
    status: str | None = None,
    customer_id: str | None = None,
) -> Any:
    found = _svc().list_page(_caller(token_info).principal, status=status,
                             customer_id=customer_id, page=page, page_size=page_size)
    return page_json(found, order_json)


def get_order(order_id: str, token_info: dict[str, Any]) -> Any:
    return order_json(_svc().get(_caller(token_info), order_id))


def cancel_order(order_id: str, token_info: dict[str, Any]) -> Any:
    return _answer(_svc().cancel(_caller(token_info), order_id, _idempotency_key()))


def confirm_order(order_id: str, body: dict[str, Any], token_info: dict[str, Any]) -> Any:
    answer = _svc().confirm(_caller(token_info), order_id, body["payment_id"],
                            _idempotency_key())
    return _answer(answer)
