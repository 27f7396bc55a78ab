"""Catalog tables (SQLAlchemy 2) and :class:`SqlCatalogRepository`, the SQL adapter of
:class:`.ports.CatalogRepository`.

``metadata`` is the catalog's own (Alembic compares against it); it also carries the
shared idempotency-key table. No ORM row leaves this module: the repository hands out
and takes back :mod:`.domain` objects, and a constraint the database enforces against a
concurrent writer (``IntegrityError``) leaves it as
:class:`charter.unit_of_work.WriteConflict`. Locking: writers run in ``uow.write()`` —
on SQLite that takes the database write lock up front (``BEGIN IMMEDIATE``, one writer
at a time, waiting up to the busy timeout), on PostgreSQL rows are locked with
``SELECT … FOR UPDATE`` in product-id order, so two reservations never deadlock and
never oversell. The ``CHECK`` constraints on ``stock`` are a last line of defence.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    ForeignKey,
    Integer,
    Row,
    String,
    Text,
    bindparam,
    delete,
    func,
    select,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from charter.db import UtcDateTime, service_metadata, utcnow, write_conflicts
from charter.idempotency_store import KeyedSqlRepository, idempotency_table
from charter.messaging.envelope import Envelope
from charter.messaging.outbox import Outbox, add_outbox_table

from . import domain
from .domain import Category, Product, ProductFilter, Reservation, StockLevel


class CatalogBase(DeclarativeBase):
    """Declarative base of the catalog service only (its own metadata)."""

    metadata = service_metadata()


metadata = CatalogBase.metadata


class CategoryRow(CatalogBase):
    __tablename__ = "categories"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    slug: Mapped[str] = mapped_column(String(64), unique=True, nullable=False)
    name: Mapped[str] = mapped_column(String(200), nullable=False)
    description: Mapped[str] = mapped_column(Text, nullable=False, default="")
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, nullable=False)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime, nullable=False)


class ProductRow(CatalogBase):
    __tablename__ = "products"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    sku: Mapped[str] = mapped_column(String(64), unique=True, nullable=False)
    name: Mapped[str] = mapped_column(String(200), nullable=False, index=True)
    description: Mapped[str] = mapped_column(Text, nullable=False, default="")
    category_id: Mapped[int] = mapped_column(
        ForeignKey("categories.id", ondelete="RESTRICT"), nullable=False, index=True
    )
    price: Mapped[int] = mapped_column(BigInteger, nullable=False)
    currency: Mapped[str] = mapped_column(String(3), nullable=False)
    active: Mapped[bool] = mapped_column(Boolean, nullable=False, default=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, nullable=False)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime, nullable=False)

    __table_args__ = (CheckConstraint("price >= 0", name="price"),)


class StockRow(CatalogBase):
    __tablename__ = "stock"

    product_id: Mapped[int] = mapped_column(
        ForeignKey("products.id", ondelete="CASCADE"), primary_key=True
    )
    on_hand: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    reserved: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime, nullable=False)

    __table_args__ = (
        CheckConstraint("on_hand >= 0", name="on_hand"),
        CheckConstraint("reserved >= 0", name="reserved"),
        CheckConstraint("reserved <= on_hand", name="not_oversold"),
    )


class ReservationRow(CatalogBase):
    __tablename__ = "reservations"

    order_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    status: Mapped[str] = mapped_column(String(16), nullable=False)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, nullable=False)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime, nullable=False)


class ReservationItemRow(CatalogBase):
    """A line of a reservation. ``product_id`` has no foreign key: history outlives products."""

    __tablename__ = "reservation_items"

    order_id: Mapped[str] = mapped_column(
        ForeignKey("reservations.order_id", ondelete="CASCADE"), primary_key=True
    )
    product_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    quantity: Mapped[int] = mapped_column(Integer, nullable=False)

    __table_args__ = (CheckConstraint("quantity >= 1", name="quantity"),)


idempotency_keys = idempotency_table(metadata)
outbox = Outbox(add_outbox_table(metadata))
"""The catalog's transactional outbox (``catalog.StockChanged``, ``catalog.LowStock``)."""


def _category(row: CategoryRow) -> Category:
    return Category(id=row.id, slug=row.slug, name=row.name, description=row.description,
                    created_at=row.created_at, updated_at=row.updated_at)


_PRODUCT_BY_ID = select(*ProductRow.__table__.columns).where(
    ProductRow.__table__.c.id == bindparam("product_id"))
# The reservation path's reads, built once with bound parameters (building a statement
# and its cache key per call cost more than running it on SQLite).
_LOCK_STOCK = (select(StockRow)
               .where(StockRow.product_id.in_(bindparam("b_ids", expanding=True)))
               .order_by(StockRow.product_id)
               .with_for_update()
               .execution_options(populate_existing=True))
_RESERVATION = select(ReservationRow).where(ReservationRow.order_id == bindparam("b_order"))
_RESERVATION_LOCKED = (_RESERVATION.with_for_update()
                       .execution_options(populate_existing=True))
_RESERVATION_ITEMS = (select(ReservationItemRow)
                      .where(ReservationItemRow.order_id == bindparam("b_order"))
                      .order_by(ReservationItemRow.product_id))


def _product(row: ProductRow | Row[Any]) -> Product:
    return Product(id=row.id, sku=row.sku, name=row.name, description=row.description,
                   category_id=row.category_id, price=domain.Price(row.price, row.currency),
                   active=row.active, created_at=row.created_at, updated_at=row.updated_at)


def _level(row: StockRow) -> StockLevel:
    return StockLevel(row.product_id, row.on_hand, row.reserved, updated_at=row.updated_at)


class SqlCatalogRepository(KeyedSqlRepository):
    """:class:`.ports.CatalogRepository` inside one Session (the unit of work's transaction).

    Its idempotency keys come from :class:`charter.idempotency_store.KeyedSqlRepository`
    (``app.catalog_service`` builds the helper once: ``keyed_unit_of_work``).
    """

    keys_table = idempotency_keys

    def _flush(self) -> None:
        with write_conflicts():
            self.session.flush()

    # categories -------------------------------------------------------------------
    def category(self, category_id: int) -> Category | None:
        row = self.session.get(CategoryRow, category_id)
        return None if row is None else _category(row)

    def category_exists(self, category_id: int) -> bool:
        return self.session.get(CategoryRow, category_id) is not None

    def slug_taken(self, slug: str, *, other_than: int | None = None) -> bool:
        """Whether a category (other than ``other_than``) already uses ``slug``."""
        query = select(CategoryRow.id).where(CategoryRow.slug == slug)
        if other_than is not None:
            query = query.where(CategoryRow.id != other_than)
        return self.session.scalar(query.limit(1)) is not None

    def category_by_slug(self, slug: str) -> Category | None:
        row = self.session.scalars(select(CategoryRow).where(CategoryRow.slug == slug)).first()
        return None if row is None else _category(row)

    def categories(self, offset: int, limit: int) -> tuple[list[Category], int]:
        total = self.session.scalar(select(func.count()).select_from(CategoryRow)) or 0
        rows = self.session.scalars(
            select(CategoryRow).order_by(CategoryRow.id).offset(offset).limit(limit)
        )
        return [_category(r) for r in rows], total

    def add_category(self, slug: str, name: str, description: str) -> Category:
        now = utcnow()
        row = CategoryRow(slug=slug, name=name, description=description,
                          created_at=now, updated_at=now)
        self.session.add(row)
        self._flush()
        return _category(row)

    def save_category(self, category: Category) -> None:
        """Store the category's fields; its ``updated_at`` becomes now."""
        category.updated_at = utcnow()
        row = self.session.get_one(CategoryRow, category.id)
        row.slug, row.name, row.description = category.slug, category.name, category.description
        row.updated_at = category.updated_at
        self._flush()

    def category_has_products(self, category_id: int) -> bool:
        found = self.session.scalar(
            select(ProductRow.id).where(ProductRow.category_id == category_id).limit(1)
        )
        return found is not None

    def delete_category(self, category_id: int) -> None:
        self.session.delete(self.session.get_one(CategoryRow, category_id))
        self._flush()

    # products ---------------------------------------------------------------------
    def product(self, product_id: int) -> Product | None:
        # The hottest read of the platform: a Core select of the row (session.execute
        # still autoflushes pending changes) costs well under half of ORM ``get`` with
        # its identity map and instance loading (docs/performance.md).
        row = self.session.execute(_PRODUCT_BY_ID, {"product_id": product_id}).one_or_none()
        return None if row is None else _product(row)

    def product_exists(self, product_id: int) -> bool:
        return self.session.get(ProductRow, product_id) is not None

    def sku_taken(self, sku: str, *, other_than: int | None = None) -> bool:
        """Whether a product (other than ``other_than``) already uses ``sku``."""
        query = select(ProductRow.id).where(ProductRow.sku == sku)
        if other_than is not None:
            query = query.where(ProductRow.id != other_than)
        return self.session.scalar(query.limit(1)) is not None

    def products(self, flt: ProductFilter, offset: int, limit: int) -> tuple[list[Product], int]:
        query = select(ProductRow)
        if flt.category is not None:
            query = query.where(ProductRow.category_id == flt.category)
        if flt.q:
            query = query.where(
                func.lower(ProductRow.name).contains(flt.q.lower(), autoescape=True)
            )
        if flt.min_price is not None:
            query = query.where(ProductRow.price >= flt.min_price)
        if flt.max_price is not None:
            query = query.where(ProductRow.price <= flt.max_price)
        if flt.active is not None:
            query = query.where(ProductRow.active.is_(flt.active))
        if flt.in_stock is not None:
            query = query.join(StockRow, StockRow.product_id == ProductRow.id)
            available = StockRow.on_hand - StockRow.reserved
            query = query.where(available > 0 if flt.in_stock else available <= 0)
        total = self.session.scalar(select(func.count()).select_from(query.subquery())) or 0
        rows = self.session.scalars(query.order_by(ProductRow.id).offset(offset).limit(limit))
        return [_product(r) for r in rows], total

    def add_product(
        self,
        *,
        sku: str,
        name: str,
        description: str,
        category_id: int,
        price: domain.Price,
        active: bool,
        on_hand: int = 0,
    ) -> Product:
        """A new product with its stock record (``on_hand`` units, none reserved)."""
        now = utcnow()
        row = ProductRow(sku=sku, name=name, description=description, category_id=category_id,
                         price=price.amount, currency=price.currency, active=active,
                         created_at=now, updated_at=now)
        self.session.add(row)
        self._flush()
        self.session.add(StockRow(product_id=row.id, on_hand=on_hand, reserved=0,
                                  updated_at=now))
        self._flush()
        return _product(row)

    def save_product(self, product: Product) -> None:
        """Store the product's fields; its ``updated_at`` becomes now."""
        product.updated_at = utcnow()
        row = self.session.get_one(ProductRow, product.id)
        row.sku, row.name, row.description = product.sku, product.name, product.description
        row.category_id, row.active = product.category_id, product.active
        row.price, row.currency = product.price.amount, product.price.currency
        row.updated_at = product.updated_at
        self._flush()

    def delete_product(self, product_id: int) -> None:
        self.session.execute(delete(StockRow).where(StockRow.product_id == product_id))
        self.session.delete(self.session.get_one(ProductRow, product_id))
        self._flush()

    def active_product_ids(self, product_ids: Iterable[int]) -> set[int]:
        ids = set(product_ids)
        found = self.session.scalars(
            select(ProductRow.id).where(ProductRow.id.in_(ids), ProductRow.active.is_(True))
        )
        return set(found)

    # stock ------------------------------------------------------------------------
    def stock(self, product_id: int) -> StockLevel | None:
        row = self.session.get(StockRow, product_id)
        return None if row is None else _level(row)

    def lock_stock(self, product_ids: Iterable[int]) -> dict[int, StockLevel]:
        """Stock levels locked for update, taken in product-id order (no deadlocks)."""
        ids = sorted(set(product_ids))
        rows = self.session.scalars(_LOCK_STOCK, {"b_ids": ids})
        return {row.product_id: _level(row) for row in rows}

    def save_stock(self, levels: Iterable[StockLevel]) -> None:
        """Store changed levels (locked by :meth:`lock_stock`); their ``updated_at`` moves."""
        for level in levels:
            row = self.session.get_one(StockRow, level.product_id)
            if (row.on_hand, row.reserved) != (level.on_hand, level.reserved):
                row.on_hand, row.reserved = level.on_hand, level.reserved
                row.updated_at = utcnow()
            level.updated_at = row.updated_at
        self._flush()

    def add_events(self, *events: Envelope) -> None:
        """Write ``events`` to the outbox in this unit of work's transaction."""
        outbox.add(self.session, *events)

    # reservations -----------------------------------------------------------------
    def reservation(self, order_id: str, *, lock: bool = False) -> Reservation | None:
        """The reservation of ``order_id`` with its lines (row locked when ``lock``)."""
        params = {"b_order": order_id}
        row = self.session.scalars(_RESERVATION_LOCKED if lock else _RESERVATION,
                                   params).first()
        if row is None:
            return None
        items = self.session.scalars(_RESERVATION_ITEMS, params)
        return Reservation(
            order_id=row.order_id,
            lines=[domain.ReservationLine(i.product_id, i.quantity) for i in items],
            status=domain.ReservationStatus(row.status),
            created_at=row.created_at,
            updated_at=row.updated_at,
        )

    def add_reservation(self, reservation: Reservation) -> None:
        """Store a new reservation and its lines; its timestamps become now."""
        now = utcnow()
        reservation.created_at = reservation.updated_at = now
        self.session.add(ReservationRow(order_id=reservation.order_id,
                                        status=str(reservation.status),
                                        created_at=now, updated_at=now))
        self._flush()
        self.session.add_all(
            ReservationItemRow(order_id=reservation.order_id, product_id=line.product_id,
                               quantity=line.quantity)
            for line in reservation.lines
        )
        self._flush()

    def save_reservation(self, reservation: Reservation) -> None:
        """Store the reservation's status; its ``updated_at`` becomes now."""
        reservation.updated_at = utcnow()
        row = self.session.get_one(ReservationRow, reservation.order_id)
        row.status, row.updated_at = str(reservation.status), reservation.updated_at
        self._flush()
