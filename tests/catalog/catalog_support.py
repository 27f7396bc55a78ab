"""The catalog tests' seeded data (importable: tests/catalog is on sys.path).

Databases, races, problems and tokens come from the shared plugin (docs/testing.md).
"""

from __future__ import annotations

from typing import Any

from services.catalog import api
from services.catalog.services import CatalogService


def seed_small(service: CatalogService) -> dict[str, Any]:
    """A small catalog built through the service layer, as the API shows it (JSON).

    ``empty_category`` has no products (deletable); ``product`` has 10 on hand and nothing
    reserved (deletable); ``held_product`` has 10 on hand, 2 held by order ``order-held``;
    ``spare`` has 5 on hand for new reservations.
    """
    empty = api.category_json(service.create_category(slug="empty", name="Empty"))
    coffee = api.category_json(service.create_category(slug="coffee", name="Coffee"))
    product = api.product_json(service.create_product(
        sku="COF-0001", name="Espresso Blend 1 kg", category_id=coffee["id"], price=2490,
        currency="EUR"))
    held = api.product_json(service.create_product(
        sku="COF-0002", name="Decaf 500 g", category_id=coffee["id"], price=1390,
        currency="EUR"))
    spare = api.product_json(service.create_product(
        sku="COF-0003", name="Kenya AA 250 g", category_id=coffee["id"], price=1290,
        currency="EUR"))
    for p in (product, held):
        service.set_stock(p["id"], 10)
    service.set_stock(spare["id"], 5)
    service.create_reservation("seed-key-0001", "order-held",
                               [{"product_id": held["id"], "quantity": 2}])
    return {"empty_category": empty, "category": coffee, "product": product,
            "held_product": held, "spare": spare, "order_id": "order-held"}
