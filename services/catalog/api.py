"""HTTP handlers, one per operationId of ``openapi/catalog/v1.yaml``; thin by design.

Connexion has already checked the token, the scopes and the request against the spec;
handlers read the arguments, call the service layer and turn the domain objects it
returns into the JSON the spec describes (the ``*_json`` functions below).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from flask import request

from charter.clock import rfc3339
from charter.idempotency import Outcome
from charter.service import context
from charter.usecases import page_json

from .domain import Category, Product, ProductFilter, Reservation, StockLevel
from .services import CatalogService

BASE = "/v1"
Json = dict[str, Any]


# serialisation ---------------------------------------------------------------------
def iso(ts: datetime | None) -> str:
    """RFC 3339 in UTC with a ``Z`` (stored objects always carry their timestamps)."""
    assert ts is not None, "a stored object without a timestamp"
    return rfc3339(ts)


def category_json(category: Category) -> Json:
    return {
        "id": category.id,
        "slug": category.slug,
        "name": category.name,
        "description": category.description,
        "created_at": iso(category.created_at),
        "updated_at": iso(category.updated_at),
    }


def product_json(product: Product) -> Json:
    return {
        "id": product.id,
        "sku": product.sku,
        "name": product.name,
        "description": product.description,
        "category_id": product.category_id,
        "price": product.price.amount,
        "currency": product.price.currency,
        "active": product.active,
        "created_at": iso(product.created_at),
        "updated_at": iso(product.updated_at),
    }


def stock_json(level: StockLevel) -> Json:
    return {
        "product_id": level.product_id,
        "on_hand": level.on_hand,
        "reserved": level.reserved,
        "available": level.available,
        "updated_at": iso(level.updated_at),
    }


def reservation_json(reservation: Reservation) -> Json:
    return {
        "order_id": reservation.order_id,
        "status": str(reservation.status),
        "items": [{"product_id": ln.product_id, "quantity": ln.quantity}
                  for ln in reservation.lines],
        "created_at": iso(reservation.created_at),
        "updated_at": iso(reservation.updated_at),
    }


def _svc() -> CatalogService:
    service: CatalogService = context().deps["catalog"]
    return service


def _idempotency_key() -> str:
    # Required and pattern-checked by the spec; Connexion does not pass headers as args.
    return request.headers["Idempotency-Key"]


def _answer(outcome: Outcome, location: str | None = None) -> Any:
    """A keyed reservation operation's answer (its body is a :class:`Reservation`)."""
    headers: dict[str, str] = {}
    if location:
        headers["Location"] = location
    if outcome.replayed:
        headers["Idempotent-Replayed"] = "true"
    return reservation_json(outcome.body), outcome.status, headers


# categories ------------------------------------------------------------------------
def list_categories(page: int = 1, page_size: int = 20) -> Any:
    return page_json(_svc().list_categories(page, page_size), category_json)


def get_category(category_id: int) -> Any:
    return category_json(_svc().get_category(category_id))


def create_category(body: dict[str, Any]) -> Any:
    category = _svc().create_category(**body)
    return category_json(category), 201, {"Location": f"{BASE}/categories/{category.id}"}


def update_category(category_id: int, body: dict[str, Any]) -> Any:
    return category_json(_svc().update_category(category_id, **body))


def delete_category(category_id: int) -> Any:
    _svc().delete_category(category_id)
    return None, 204


# products --------------------------------------------------------------------------
def list_products(
    page: int = 1,
    page_size: int = 20,
    category: int | None = None,
    q: str | None = None,
    min_price: int | None = None,
    max_price: int | None = None,
    in_stock: bool | None = None,
    active: bool | None = None,
) -> Any:
    flt = ProductFilter(category=category, q=q, min_price=min_price, max_price=max_price,
                        in_stock=in_stock, active=active)
    return page_json(_svc().list_products(flt, page, page_size), product_json)


def get_product(product_id: int) -> Any:
    return product_json(_svc().get_product(product_id))


def create_product(body: dict[str, Any]) -> Any:
    product = _svc().create_product(**body)
    return product_json(product), 201, {"Location": f"{BASE}/products/{product.id}"}


def update_product(product_id: int, body: dict[str, Any]) -> Any:
    return product_json(_svc().update_product(product_id, **body))


def delete_product(product_id: int) -> Any:
    _svc().delete_product(product_id)
    return None, 204


# stock -----------------------------------------------------------------------------
def get_stock(product_id: int) -> Any:
    return stock_json(_svc().get_stock(product_id))


def set_stock(product_id: int, body: dict[str, Any]) -> Any:
    return stock_json(_svc().set_stock(product_id, body["on_hand"]))


def adjust_stock(product_id: int, body: dict[str, Any]) -> Any:
    return stock_json(_svc().adjust_stock(product_id, body["delta"], body.get("reason")))


# reservations ----------------------------------------------------------------------
def create_reservation(body: dict[str, Any]) -> Any:
    outcome = _svc().create_reservation(_idempotency_key(), body["order_id"], body["items"])
    return _answer(outcome, f"{BASE}/reservations/{body['order_id']}")


def get_reservation(order_id: str) -> Any:
    return reservation_json(_svc().get_reservation(order_id))


def commit_reservation(order_id: str) -> Any:
    return _answer(_svc().commit_reservation(_idempotency_key(), order_id))


def release_reservation(order_id: str) -> Any:
    return _answer(_svc().release_reservation(_idempotency_key(), order_id))


def return_reservation(order_id: str) -> Any:
    return _answer(_svc().return_reservation(_idempotency_key(), order_id))
