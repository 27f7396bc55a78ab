"""What the catalog's use cases need from outside: :class:`CatalogRepository`.

The service layer gets one through a unit of work (``UnitOfWork[CatalogRepository]``,
:mod:`charter.unit_of_work`); ``store.SqlCatalogRepository`` implements it on SQLAlchemy
and ``tests/catalog/catalog_fakes.py`` in memory. Everything crossing this port is a
:mod:`.domain` object. A write the database refuses because a concurrent transaction got
there first (a unique SKU or slug, an order's reservation) raises
:class:`charter.unit_of_work.WriteConflict`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

from charter.idempotency import IdempotencyKeys
from charter.messaging.envelope import Envelope

from . import domain
from .domain import Category, Product, ProductFilter, Reservation, StockLevel


class CatalogRepository(Protocol):
    """Categories, products, stock and reservations inside one unit of work."""

    @property
    def idempotency(self) -> IdempotencyKeys:
        """The idempotency keys of the same transaction (keyed reservation operations)."""
        ...

    # categories
    def category(self, category_id: int) -> Category | None: ...
    def category_exists(self, category_id: int) -> bool: ...
    def slug_taken(self, slug: str, *, other_than: int | None = None) -> bool:
        """Whether a category (other than ``other_than``) already uses ``slug``."""
        ...
    def categories(self, offset: int, limit: int) -> tuple[list[Category], int]:
        """One page of categories (by id) and how many there are in all."""
        ...
    def add_category(self, slug: str, name: str, description: str) -> Category: ...
    def save_category(self, category: Category) -> None:
        """Store the category's fields; its ``updated_at`` becomes now."""
        ...
    def category_has_products(self, category_id: int) -> bool: ...
    def delete_category(self, category_id: int) -> None: ...

    # products
    def product(self, product_id: int) -> Product | None: ...
    def product_exists(self, product_id: int) -> bool: ...
    def sku_taken(self, sku: str, *, other_than: int | None = None) -> bool:
        """Whether a product (other than ``other_than``) already uses ``sku``."""
        ...
    def products(self, flt: ProductFilter, offset: int,
                 limit: int) -> tuple[list[Product], int]:
        """One page of matching products (by id) and how many match in all."""
        ...
    def add_product(self, *, sku: str, name: str, description: str, category_id: int,
                    price: domain.Price, active: bool, on_hand: int = 0) -> Product:
        """A new product with its stock record (``on_hand`` units, none reserved)."""
        ...
    def save_product(self, product: Product) -> None:
        """Store the product's fields; its ``updated_at`` becomes now."""
        ...
    def delete_product(self, product_id: int) -> None:
        """Delete the product and its stock record."""
        ...
    def active_product_ids(self, product_ids: Iterable[int]) -> set[int]:
        """Which of ``product_ids`` exist and are for sale."""
        ...

    # stock
    def stock(self, product_id: int) -> StockLevel | None: ...
    def lock_stock(self, product_ids: Iterable[int]) -> dict[int, StockLevel]:
        """Stock levels locked for update until the unit of work ends (no deadlocks)."""
        ...
    def save_stock(self, levels: Iterable[StockLevel]) -> None:
        """Store changed levels; the ``updated_at`` of a changed one moves."""
        ...
    def add_events(self, *events: Envelope) -> None:
        """Write events to the outbox: they commit or roll back with this unit of work."""
        ...

    # reservations
    def reservation(self, order_id: str, *, lock: bool = False) -> Reservation | None:
        """The reservation of ``order_id`` with its lines (locked for update when ``lock``)."""
        ...
    def add_reservation(self, reservation: Reservation) -> None:
        """Store a new reservation and its lines; its timestamps become now."""
        ...
    def save_reservation(self, reservation: Reservation) -> None:
        """Store the reservation's status; its ``updated_at`` becomes now."""
        ...
