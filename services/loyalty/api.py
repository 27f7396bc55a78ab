"""HTTP handlers, one per operationId of ``openapi/loyalty/v1.yaml``; thin by design.

Connexion has already checked the token, the scopes and the request against the spec.
Ownership comes from :class:`charter.security.principal.Principal`: a customer sees only
their own balance, history, awards and redemptions (another customer's order is 404,
another customer's explicit ``/customers/{id}`` path is 403); staff, admins and platform
services see everyone's. Awards and reversals are for staff and services only (403 for
customers, even with ``loyalty:write``).
"""

from __future__ import annotations

from typing import Any

from charter.problems import BadRequest, Forbidden, NotFound
from charter.security.principal import Principal
from charter.service import context

from . import domain
from .services import LoyaltyService, Result, business_rules

BASE = "/v1"

TokenInfo = dict[str, Any]


def _svc() -> LoyaltyService:
    service: LoyaltyService = context().deps["loyalty"]
    return service


def _answer(result: Result, location: str) -> Any:
    if result.created:
        return result.doc, 201, {"Location": location}
    return result.doc, 200, {"Location": location, "Idempotent-Replayed": "true"}


def _own_customer(principal: Principal, customer_id: str) -> None:
    if not principal.can_access(customer_id):
        raise Forbidden("a customer may only read their own points")


def _visible(principal: Principal, doc: dict[str, Any], what: str) -> dict[str, Any]:
    if not principal.can_access(doc["customer_id"]):
        raise NotFound(f"order {doc['order_id']!r} has no {what}")
    return doc


# the caller's own points -------------------------------------------------------------
def get_balance(token_info: TokenInfo) -> Any:
    return _svc().balance(Principal.from_token_info(token_info).sub)


def get_history(token_info: TokenInfo, page: int = 1, page_size: int = 20,
                type_: str | None = None) -> Any:
    sub = Principal.from_token_info(token_info).sub
    return _svc().history(sub, page, page_size, type_)


# anyone's points (staff / services; a customer only their own id) --------------------
def get_customer_balance(customer_id: str, token_info: TokenInfo) -> Any:
    _own_customer(Principal.from_token_info(token_info), customer_id)
    return _svc().balance(customer_id)


def get_customer_history(customer_id: str, token_info: TokenInfo, page: int = 1,
                         page_size: int = 20, type_: str | None = None) -> Any:
    _own_customer(Principal.from_token_info(token_info), customer_id)
    return _svc().history(customer_id, page, page_size, type_)


# awards (internal: orders) ------------------------------------------------------------
def create_award(body: dict[str, Any], token_info: TokenInfo) -> Any:
    Principal.from_token_info(token_info).require_privileged()
    with business_rules():
        request = domain.AwardRequest(
            customer_id=body["customer_id"],
            order_id=body["order_id"],
            amount=body.get("amount"),
            currency=body.get("currency"),
            points=body.get("points"),
        )
    result = _svc().award(request)
    return _answer(result, f"{BASE}/awards/{request.order_id}")


def get_award(order_id: str, token_info: TokenInfo) -> Any:
    return _visible(Principal.from_token_info(token_info), _svc().get_award(order_id), "award")


def reverse_award(order_id: str, token_info: TokenInfo) -> Any:
    Principal.from_token_info(token_info).require_privileged()
    return _answer(_svc().reverse_award(order_id), f"{BASE}/awards/{order_id}")


# redemptions -------------------------------------------------------------------------
def create_redemption(body: dict[str, Any], token_info: TokenInfo) -> Any:
    principal = Principal.from_token_info(token_info)
    customer_id = body.get("customer_id")
    if customer_id is None:
        if principal.is_privileged:
            raise BadRequest("customer_id is required when staff or a service redeems")
        customer_id = principal.sub
    elif not principal.can_access(customer_id):
        raise Forbidden("a customer may only redeem their own points")
    result = _svc().redeem(customer_id, body["order_id"], body["points"])
    return _answer(result, f"{BASE}/redemptions/{body['order_id']}")


def get_redemption(order_id: str, token_info: TokenInfo) -> Any:
    principal = Principal.from_token_info(token_info)
    return _visible(principal, _svc().get_redemption(order_id), "redemption")


def reverse_redemption(order_id: str, token_info: TokenInfo) -> Any:
    Principal.from_token_info(token_info).require_privileged()
    return _answer(_svc().reverse_redemption(order_id), f"{BASE}/redemptions/{order_id}")
