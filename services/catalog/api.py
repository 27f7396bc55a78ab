"""HTTP handlers, one per operationId of ``openapi/catalog/v1.yaml``; thin by design.

Connexion has already checked the token, the scopes and the request against the spec;
handlers read the arguments, call the service layer and shape the response.
"""

from __future__ import annotations

from typing import Any

from flask import request

from charter.idempotency import Outcome
from charter.service import context

from .services import CatalogService
from .store import ProductFilter

BASE = "/v1"


def _svc() -> CatalogService:
    service: CatalogService = context().deps["catalog"]
    return service


def _idempotency_key() -> str:
    # Required and pattern-checked by the spec; Connexion does not pass headers as args.
    return request.headers["Idempotency-Key"]


def _answer(outcome: Outcome, location: str | None = None) -> Any:
    headers: dict[str, str] = {}
    if location:
        headers["Location"] = location
    if outcome.replayed:
        headers["Idempotent-Replayed"] = "true"
    return outcome.body, outcome.status, headers


# categories ------------------------------------------------------------------------
def list_categories(page: int = 1, page_size: int = 20) -> Any:
    return _svc().list_categories(page, page_size)


def get_category(category_id: int) -> Any:
    return _svc().get_category(category_id)


def create_category(body: dict[str, Any]) -> Any:
    doc = _svc().create_category(body)
    return doc, 201, {"Location": f"{BASE}/categories/{doc['id']}"}


def update_category(category_id: int, body: dict[str, Any]) -> Any:
    return _svc().update_category(category_id, body)


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
    return _svc().list_products(flt, page, page_size)


def get_product(product_id: int) -> Any:
    return _svc().get_product(product_id)


def create_product(body: dict[str, Any]) -> Any:
    doc = _svc().create_product(body)
    return doc, 201, {"Location": f"{BASE}/products/{doc['id']}"}


def update_product(product_id: int, body: dict[str, Any]) -> Any:
    return _svc().update_product(product_id, body)


def delete_product(product_id: int) -> Any:
    _svc().delete_product(product_id)
    return None, 204


# stock -----------------------------------------------------------------------------
def get_stock(product_id: int) -> Any:
    return _svc().get_stock(product_id)


def set_stock(product_id: int, body: dict[str, Any]) -> Any:
    return _svc().set_stock(product_id, body["on_hand"])


def adjust_stock(product_id: int, body: dict[str, Any]) -> Any:
    return _svc().adjust_stock(product_id, body["delta"], body.get("reason"))


# reservations ----------------------------------------------------------------------
def create_reservation(body: dict[str, Any]) -> Any:
    outcome = _svc().create_reservation(_idempotency_key(), body["order_id"], body["items"])
    return _answer(outcome, f"{BASE}/reservations/{body['order_id']}")


def get_reservation(order_id: str) -> Any:
    return _svc().get_reservation(order_id)


def commit_reservation(order_id: str) -> Any:
    return _answer(_svc().commit_reservation(_idempotency_key(), order_id))


def release_reservation(order_id: str) -> Any:
    return _answer(_svc().release_reservation(_idempotency_key(), order_id))
