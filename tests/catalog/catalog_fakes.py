"""In-memory adapters of the catalog's ports, for unit tests of the service layer.

:class:`InMemoryUnitOfWork` implements ``UnitOfWork[CatalogRepository]`` with no database
(the shared :class:`tests.support.fakes.InMemoryUnitOfWork`: a write works on a copy that
replaces the state only when the block ends without an exception, so a refused use case
leaves nothing behind, as a rolled-back transaction).
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from charter.db import utcnow
from charter.idempotency import IN_PROGRESS, IdempotencyKeys, Outcome
from charter.messaging.envelope import Envelope
from charter.problems import Conflict, Unprocessable
from services.catalog import domain
from services.catalog.domain import Category, Product, ProductFilter, Reservation, StockLevel
from tests.support.fakes import InMemoryUnitOfWork as SharedUnitOfWork


@dataclass
class CatalogState:
    """Everything the catalog stores, as domain objects (plus idempotency keys)."""

    categories: dict[int, Category] = field(default_factory=dict)
    products: dict[int, Product] = field(default_factory=dict)
    stock: dict[int, StockLevel] = field(default_factory=dict)
    reservations: dict[str, Reservation] = field(default_factory=dict)
    keys: dict[tuple[str, str], tuple[str, int, Any]] = field(default_factory=dict)
    events: list[Envelope] = field(default_factory=list)  # the outbox
    next_id: int = 1

    def new_id(self) -> int:
        self.next_id += 1
        return self.next_id - 1


class InMemoryIdempotencyKeys:
    """:class:`charter.idempotency.IdempotencyKeys` on a :class:`CatalogState`."""

    def __init__(self, state: CatalogState) -> None:
        self.state = state

    def lookup(self, scope: str, key: str, fp: str) -> Outcome | None:
        found = self.state.keys.get((scope, key))
        if found is None:
            return None
        stored_fp, status, body = found
        if stored_fp != fp:
            raise Unprocessable(f"Idempotency-Key {key!r} was already used with a different "
                                "request", title="Idempotency-Key reused")
        if status == IN_PROGRESS:
            raise Conflict(f"Idempotency-Key {key!r} is still in progress")
        return Outcome(status=status, body=copy.deepcopy(body), replayed=True)

    def claim(self, scope: str, key: str, fp: str) -> None:
        self.state.keys[(scope, key)] = (fp, IN_PROGRESS, None)

    def complete(self, scope: str, key: str, status: int, body: Any) -> None:
        fp, _status, _body = self.state.keys[(scope, key)]
        self.state.keys[(scope, key)] = (fp, status, copy.deepcopy(body))


class InMemoryCatalogRepository:
    """:class:`services.catalog.ports.CatalogRepository` on a :class:`CatalogState`.

    Objects handed out are copies: a use case changes the stored state only by saving.
    """

    def __init__(self, state: CatalogState) -> None:
        self.state = state

    @property
    def idempotency(self) -> IdempotencyKeys:
        return InMemoryIdempotencyKeys(self.state)

    # categories
    def category(self, category_id: int) -> Category | None:
        return copy.deepcopy(self.state.categories.get(category_id))

    def category_exists(self, category_id: int) -> bool:
        return category_id in self.state.categories

    def slug_taken(self, slug: str, *, other_than: int | None = None) -> bool:
        return any(c.slug == slug and c.id != other_than
                   for c in self.state.categories.values())

    def categories(self, offset: int, limit: int) -> tuple[list[Category], int]:
        rows = sorted(self.state.categories.values(), key=lambda c: c.id)
        return copy.deepcopy(rows[offset:offset + limit]), len(rows)

    def add_category(self, slug: str, name: str, description: str) -> Category:
        now = utcnow()
        category = Category(self.state.new_id(), slug, name, description, now, now)
        self.state.categories[category.id] = copy.deepcopy(category)
        return category

    def save_category(self, category: Category) -> None:
        category.updated_at = utcnow()
        self.state.categories[category.id] = copy.deepcopy(category)

    def category_has_products(self, category_id: int) -> bool:
        return any(p.category_id == category_id for p in self.state.products.values())

    def delete_category(self, category_id: int) -> None:
        del self.state.categories[category_id]

    # products
    def product(self, product_id: int) -> Product | None:
        return copy.deepcopy(self.state.products.get(product_id))

    def product_exists(self, product_id: int) -> bool:
        return product_id in self.state.products

    def sku_taken(self, sku: str, *, other_than: int | None = None) -> bool:
        return any(p.sku == sku and p.id != other_than for p in self.state.products.values())

    def products(self, flt: ProductFilter, offset: int,
                 limit: int) -> tuple[list[Product], int]:
        def matches(p: Product) -> bool:
            available = self.state.stock[p.id].available if p.id in self.state.stock else 0
            return ((flt.category is None or p.category_id == flt.category)
                    and (not flt.q or flt.q.lower() in p.name.lower())
                    and (flt.min_price is None or p.price.amount >= flt.min_price)
                    and (flt.max_price is None or p.price.amount <= flt.max_price)
                    and (flt.active is None or p.active is flt.active)
                    and (flt.in_stock is None or (available > 0) is flt.in_stock))

        rows = sorted((p for p in self.state.products.values() if matches(p)),
                      key=lambda p: p.id)
        return copy.deepcopy(rows[offset:offset + limit]), len(rows)

    def add_product(self, *, sku: str, name: str, description: str, category_id: int,
                    price: domain.Price, active: bool, on_hand: int = 0) -> Product:
        now = utcnow()
        product = Product(self.state.new_id(), sku, name, description, category_id, price,
                          active, now, now)
        self.state.products[product.id] = copy.deepcopy(product)
        self.state.stock[product.id] = StockLevel(product.id, on_hand, 0, updated_at=now)
        return product

    def save_product(self, product: Product) -> None:
        product.updated_at = utcnow()
        self.state.products[product.id] = copy.deepcopy(product)

    def delete_product(self, product_id: int) -> None:
        del self.state.products[product_id]
        self.state.stock.pop(product_id, None)

    def active_product_ids(self, product_ids: Iterable[int]) -> set[int]:
        return {pid for pid in product_ids
                if pid in self.state.products and self.state.products[pid].active}

    # stock
    def stock(self, product_id: int) -> StockLevel | None:
        return copy.deepcopy(self.state.stock.get(product_id))

    def lock_stock(self, product_ids: Iterable[int]) -> dict[int, StockLevel]:
        return {pid: copy.deepcopy(self.state.stock[pid])
                for pid in sorted(set(product_ids)) if pid in self.state.stock}

    def save_stock(self, levels: Iterable[StockLevel]) -> None:
        for level in levels:
            stored = self.state.stock[level.product_id]
            if (stored.on_hand, stored.reserved) != (level.on_hand, level.reserved):
                level.updated_at = utcnow()
            self.state.stock[level.product_id] = copy.deepcopy(level)

    def add_events(self, *events: Envelope) -> None:
        self.state.events.extend(events)

    # reservations
    def reservation(self, order_id: str, *, lock: bool = False) -> Reservation | None:
        return copy.deepcopy(self.state.reservations.get(order_id))

    def add_reservation(self, reservation: Reservation) -> None:
        reservation.created_at = reservation.updated_at = utcnow()
        self.state.reservations[reservation.order_id] = copy.deepcopy(reservation)

    def save_reservation(self, reservation: Reservation) -> None:
        reservation.updated_at = utcnow()
        self.state.reservations[reservation.order_id] = copy.deepcopy(reservation)


class InMemoryUnitOfWork(SharedUnitOfWork[CatalogState, InMemoryCatalogRepository]):
    """``UnitOfWork[CatalogRepository]`` in memory; ``commits`` counts successful writes."""

    def __init__(self, state: CatalogState | None = None) -> None:
        super().__init__(state or CatalogState(), InMemoryCatalogRepository)
