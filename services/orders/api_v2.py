"""HTTP handlers of ``openapi/orders/v2.yaml`` (one per operationId); thin, like v1's.

v2 shows the same orders as v1 in the successor contract: money as ``{amount_minor,
currency}``, three statuses (``pending`` → ``confirmed`` | ``cancelled``) with a
``progress`` and a ``reason``, cursor pagination and the audit trail.
"""

from __future__ import annotations

from typing import Any

from flask import request

from charter import prefer
from charter.clock import rfc3339
from charter.service import context

from .checkout import CheckoutService
from .domain import Order, OrderEvent, OrderStatus, RejectionCode
from .services import Answer, Caller, PlaceRequest

BASE = "/v2"
MAX_WAIT = 5.0
"""Seconds a checkout answer may wait for the saga (``Prefer: wait=N``, N capped here;
well inside the gateway's upstream timeout)."""

STATUS = {
    OrderStatus.PENDING: "pending",
    OrderStatus.RESERVED: "pending",
    OrderStatus.CONFIRMED: "confirmed",
    OrderStatus.REJECTED: "cancelled",
    OrderStatus.CANCELLED: "cancelled",
}


def _svc() -> CheckoutService:
    service: CheckoutService = context().deps["orders"]
    return service


def _caller(token_info: dict[str, Any]) -> Caller:
    return Caller.from_token_info(token_info, request.headers.get("Authorization"))


def _idempotency_key() -> str:
    return request.headers["Idempotency-Key"]  # required and checked by the spec


def money(amount: int, currency: str) -> dict[str, Any]:
    return {"amount_minor": amount, "currency": currency}


def progress(order: Order) -> str:
    """Where the checkout of ``order`` is (the spec's ``Progress``)."""
    if order.status is OrderStatus.RESERVED:
        return "payment_authorized" if order.confirming else "stock_reserved"
    if order.status is OrderStatus.PENDING:
        return "placed"
    return "confirmed" if order.status is OrderStatus.CONFIRMED else "cancelled"


def reason(order: Order) -> dict[str, Any] | None:
    """Why a cancelled order was cancelled (v1 cancellations carry no code)."""
    if STATUS[order.status] != "cancelled":
        return None
    code = order.rejection_code or RejectionCode.CANCELLED_BY_CUSTOMER
    return {"code": code.value, "detail": (order.reason or "cancelled")[:500]}


def order_json(order: Order) -> dict[str, Any]:
    """The order as v2 shows it."""
    payment = None
    if order.payment_status not in (None, "requested") and order.payment_id is not None:
        payment = {"id": order.payment_id, "status": order.payment_status,
                   "amount": money(*order.amount_due)}
    return {
        "id": order.id,
        "customer_id": order.customer_id,
        "status": STATUS[order.status],
        "progress": progress(order),
        "reason": reason(order),
        "items": [
            {"product_id": line.product_id, "sku": line.sku, "name": line.name,
             "quantity": line.quantity,
             "unit_price": money(line.unit_price, order.currency),
             "line_total": money(line.line_total, order.currency)}
            for line in order.lines
        ],
        "item_count": order.item_count,
        "total": money(order.total, order.currency),
        "payment": payment,
        "created_at": rfc3339(order.created_at),
        "updated_at": rfc3339(order.updated_at),
    }


def event_json(event: OrderEvent) -> dict[str, Any]:
    return {"sequence": event.sequence, "type": event.type,
            "occurred_at": rfc3339(event.occurred_at), "data": event.data}


def _answer(answer: Answer, *, with_location: bool = False, waited: float = 0.0) -> Any:
    headers: dict[str, str] = {}
    if with_location:
        headers["Location"] = f"{BASE}/orders/{answer.order.id}"
    if answer.waited:
        headers["Preference-Applied"] = prefer.applied(waited)
    if answer.replayed:
        headers["Idempotent-Replayed"] = "true"
    return order_json(answer.order), answer.status, headers


# -- operations -------------------------------------------------------------------------
def place_order(body: dict[str, Any], token_info: dict[str, Any]) -> Any:
    method = str(body["payment_method"]["token"])
    wait = prefer.wait_seconds(request.headers.get("Prefer"), limit=MAX_WAIT)
    answer = _svc().checkout(_caller(token_info), _idempotency_key(),
                             PlaceRequest.from_body(body), method, wait=wait)
    return _answer(answer, with_location=True, waited=wait)


def list_orders(token_info: dict[str, Any], cursor: str | None = None, limit: int = 20,
                status: str | None = None, customer_id: str | None = None) -> Any:
    found = _svc().list_after(_caller(token_info).principal, status=status,
                              customer_id=customer_id, cursor=cursor, limit=limit)
    return {"items": [order_json(o) for o in found.orders], "next_cursor": found.next_cursor}


def get_order(order_id: str, token_info: dict[str, Any]) -> Any:
    return order_json(_svc().read(_caller(token_info), order_id))


def list_order_events(order_id: str, token_info: dict[str, Any], after: int = 0,
                      limit: int = 20) -> Any:
    found = _svc().events(_caller(token_info), order_id, after, limit)
    return {"items": [event_json(e) for e in found.events], "next_after": found.next_after}


def cancel_order(order_id: str, token_info: dict[str, Any]) -> Any:
    return _answer(_svc().cancel_and_refund(_caller(token_info), order_id,
                                            _idempotency_key()))
