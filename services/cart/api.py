"""HTTP handlers, named by the operationIds of ``openapi/cart/v1.yaml``.

Connexion has already checked the token, the scopes and the request against the spec.
``user`` is the token's ``sub``: every customer operation acts on that user's cart only.
"""

from __future__ import annotations

from typing import Any

from charter.problems import Forbidden
from charter.service import context

from .domain import Cart, CartItem
from .services import CartService

STAFF_ROLES = frozenset({"staff", "admin"})


def _service() -> CartService:
    service: CartService = context().deps["cart"]
    return service


def item_json(item: CartItem) -> dict[str, Any]:
    """One cart line as the API shows it."""
    return {
        "product_id": item.product_id,
        "sku": item.sku,
        "name": item.name,
        "unit_price": item.unit_price,
        "currency": item.currency,
        "quantity": item.quantity,
        "line_total": item.line_total,
        "availability": item.availability.value,
        "available_quantity": item.available_quantity,
    }


def cart_json(cart: Cart) -> dict[str, Any]:
    """The cart as the API shows it."""
    return {
        "user_id": cart.user_id,
        "items": [item_json(i) for i in cart.items],
        "item_count": cart.item_count,
        "total": cart.total,
        "currency": cart.currency,
        "pricing": cart.pricing.value,
        "updated_at": cart.updated_at.isoformat() if cart.updated_at else None,
    }


def _roles(token_info: dict[str, Any]) -> set[str]:
    role = token_info.get("role") or token_info.get("roles") or []
    return {role} if isinstance(role, str) else {str(r) for r in role}


def get_cart(user: str) -> dict[str, Any]:
    return cart_json(_service().view(user))


def add_item(user: str, body: dict[str, Any]) -> tuple[dict[str, Any], int, dict[str, str]]:
    product_id = int(body["product_id"])
    result = _service().add_item(user, product_id, int(body["quantity"]))
    if result.created:
        return cart_json(result.cart), 201, {"Location": f"/v1/cart/items/{product_id}"}
    return cart_json(result.cart), 200, {}


def set_item_quantity(user: str, product_id: int, body: dict[str, Any]) -> dict[str, Any]:
    return cart_json(_service().set_quantity(user, product_id, int(body["quantity"])))


def remove_item(user: str, product_id: int) -> tuple[str, int]:
    _service().remove_item(user, product_id)
    return "", 204


def clear_cart(user: str) -> tuple[str, int]:
    _service().clear(user)
    return "", 204


def get_user_cart(user_id: str, token_info: dict[str, Any]) -> dict[str, Any]:
    if not _roles(token_info) & STAFF_ROLES:
        raise Forbidden("only staff and admin may read another customer's cart")
    return cart_json(_service().view(user_id))
