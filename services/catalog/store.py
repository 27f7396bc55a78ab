"""Catalog tables (SQLAlchemy 2) and the repository the service layer works through.

``metadata`` is the catalog's own (Alembic compares against it); it also carries the
shared idempotency-key table. Locking: writers call :func:`begin_write` first — on SQLite
that takes the database write lock up front (``BEGIN IMMEDIATE``, one writer at a time,
waiting up to the busy timeout), on PostgreSQL rows are locked with ``SELECT … FOR UPDATE``
in product-id order, so two reservations never deadlock and never oversell. The
``CHECK`` constraints on ``stock`` are a last line of defence.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Integer,
    String,
    Text,
    delete,
    func,
    select,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from charter.db import service_metadata
from charter.idempotency import idempotency_table

from . import domain


class CatalogBase(DeclarativeBase):
    """Declarative base of the catalog service only (its own metadata)."""

    metadata = service_metadata()


metadata = CatalogBase.metadata


def utcnow() -> datetime:
    return datetime.now(UTC)


class CategoryRow(CatalogBase):
    __tablename__ = "categories"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    slug: Mapped[str] = mapped_column(String(64), unique=True, nullable=False)
    name: Mapped[str] = mapped_column(String(200), nullable=False)
    description: Mapped[str] = mapped_column(Text, nullable=False, default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)


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
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)

    __table_args__ = (CheckConstraint("price >= 0", name="price"),)


class StockRow(CatalogBase):
    __tablename__ = "stock"

    product_id: Mapped[int] = mapped_column(
        ForeignKey("products.id", ondelete="CASCADE"), primary_key=True
    )
    on_hand: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    reserved: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)

    __table_args__ = (
        CheckConstraint("on_hand >= 0", name="on_hand"),
        CheckConstraint("reserved >= 0", name="reserved"),
        CheckConstraint("reserved <= on_hand", name="not_oversold"),
    )


class ReservationRow(CatalogBase):
    __tablename__ = "reservations"

    order_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    status: Mapped[str] = mapped_column(String(16), nullable=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)


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


def begin_write(session: Session) -> None:
    """Start a write transaction: on SQLite take the write lock now (``BEGIN IMMEDIATE``).

    A deferred SQLite transaction that reads and then writes fails with ``SQLITE_BUSY``
    (busy timeout not honoured) when another writer committed in between; taking the lock
    first serialises writers and makes every read in the transaction current.
    """
    if session.get_bind().dialect.name == "sqlite":
        session.execute(text("BEGIN IMMEDIATE"))


@dataclass(frozen=True)
class ProductFilter:
    category: int | None = None
    q: str | None = None
    min_price: int | None = None
    max_price: int | None = None
    in_stock: bool | None = None
    active: bool | None = None


class CatalogRepository:
    """Queries and changes, inside the caller's session (unit of work)."""

    def __init__(self, session: Session) -> None:
        self.session = session

    # categories -------------------------------------------------------------------
    def category(self, category_id: int) -> CategoryRow | None:
        return self.session.get(CategoryRow, category_id)

    def category_by_slug(self, slug: str) -> CategoryRow | None:
        return self.session.scalars(select(CategoryRow).where(CategoryRow.slug == slug)).first()

    def categories(self, offset: int, limit: int) -> tuple[Sequence[CategoryRow], int]:
        total = self.session.scalar(select(func.count()).select_from(CategoryRow)) or 0
        rows = self.session.scalars(
            select(CategoryRow).order_by(CategoryRow.id).offset(offset).limit(limit)
        ).all()
        return rows, total

    def add_category(self, slug: str, name: str, description: str) -> CategoryRow:
        now = utcnow()
        row = CategoryRow(slug=slug, name=name, description=description,
                          created_at=now, updated_at=now)
        self.session.add(row)
        self.session.flush()
        return row

    def category_has_products(self, category_id: int) -> bool:
        found = self.session.scalar(
            select(ProductRow.id).where(ProductRow.category_id == category_id).limit(1)
        )
        return found is not None

    def delete_category(self, row: CategoryRow) -> None:
        self.session.delete(row)
        self.session.flush()

    # products ---------------------------------------------------------------------
    def product(self, product_id: int) -> ProductRow | None:
        return self.session.get(ProductRow, product_id)

    def product_by_sku(self, sku: str) -> ProductRow | None:
        return self.session.scalars(select(ProductRow).where(ProductRow.sku == sku)).first()

    def products(
        self, flt: ProductFilter, offset: int, limit: int
    ) -> tuple[Sequence[ProductRow], int]:
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
        return rows.all(), total

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
    ) -> ProductRow:
        now = utcnow()
        row = ProductRow(sku=sku, name=name, description=description, category_id=category_id,
                         price=price.amount, currency=price.currency, active=active,
                         created_at=now, updated_at=now)
        self.session.add(row)
        self.session.flush()
        self.session.add(StockRow(product_id=row.id, on_hand=on_hand, reserved=0,
                                  updated_at=now))
        self.session.flush()
        return row

    def delete_product(self, row: ProductRow) -> None:
        self.session.execute(delete(StockRow).where(StockRow.product_id == row.id))
        self.session.delete(row)
        self.session.flush()

    # stock ------------------------------------------------------------------------
    def stock(self, product_id: int) -> StockRow | None:
        return self.session.get(StockRow, product_id)

    def lock_stock(self, product_ids: Iterable[int]) -> dict[int, StockRow]:
        """Stock rows locked for update, taken in product-id order (no deadlocks)."""
        ids = sorted(set(product_ids))
        rows = self.session.scalars(
            select(StockRow)
            .where(StockRow.product_id.in_(ids))
            .order_by(StockRow.product_id)
            .with_for_update()
            .execution_options(populate_existing=True)
        ).all()
        return {row.product_id: row for row in rows}

    def active_product_ids(self, product_ids: Iterable[int]) -> set[int]:
        ids = set(product_ids)
        found = self.session.scalars(
            select(ProductRow.id).where(ProductRow.id.in_(ids), ProductRow.active.is_(True))
        )
        return set(found)

    @staticmethod
    def to_level(row: StockRow) -> domain.StockLevel:
        return domain.StockLevel(row.product_id, row.on_hand, row.reserved)

    @staticmethod
    def apply_level(row: StockRow, level: domain.StockLevel) -> None:
        if (row.on_hand, row.reserved) != (level.on_hand, level.reserved):
            row.on_hand = level.on_hand
            row.reserved = level.reserved
            row.updated_at = utcnow()

    # reservations -----------------------------------------------------------------
    def reservation(self, order_id: str, *, lock: bool = False) -> ReservationRow | None:
        query = select(ReservationRow).where(ReservationRow.order_id == order_id)
        if lock:
            query = query.with_for_update().execution_options(populate_existing=True)
        return self.session.scalars(query).first()

    def reservation_lines(self, order_id: str) -> list[domain.ReservationLine]:
        rows = self.session.scalars(
            select(ReservationItemRow)
            .where(ReservationItemRow.order_id == order_id)
            .order_by(ReservationItemRow.product_id)
        )
        return [domain.ReservationLine(r.product_id, r.quantity) for r in rows]

    def add_reservation(self, reservation: domain.Reservation) -> ReservationRow:
        now = utcnow()
        row = ReservationRow(order_id=reservation.order_id, status=str(reservation.status),
                             created_at=now, updated_at=now)
        self.session.add(row)
        self.session.flush()
        self.session.add_all(
            ReservationItemRow(order_id=reservation.order_id, product_id=line.product_id,
                               quantity=line.quantity)
            for line in reservation.lines
        )
        self.session.flush()
        return row
