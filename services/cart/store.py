"""Cart persistence: SQLAlchemy 2 Core tables and the repository (the adapter of
:class:`services.cart.ports.CartRepository`) mapping rows to the domain.

The tables live in their own :data:`metadata` (not ``charter.db.Base``) so the cart's
Alembic history only ever sees cart tables. Only the quantity and the last known catalog
data (sku, name, price, currency) are stored; availability is never stored, it is asked
of the catalog on each read.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    ForeignKey,
    Integer,
    String,
    Table,
    delete,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from charter.db import (
    NAMING_CONVENTION_FK_REFERRED,
    UtcDateTime,
    service_metadata,
    utcnow,
)

from .domain import MAX_QUANTITY, Cart, CartItem

metadata = service_metadata(NAMING_CONVENTION_FK_REFERRED)

carts = Table(
    "carts",
    metadata,
    Column("user_id", String(128), primary_key=True),
    Column("created_at", UtcDateTime(), nullable=False),
    Column("updated_at", UtcDateTime(), nullable=False),
)

cart_items = Table(
    "cart_items",
    metadata,
    Column(
        "user_id",
        String(128),
        ForeignKey("carts.user_id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("product_id", BigInteger, primary_key=True),
    Column("position", Integer, nullable=False),
    Column("sku", String(128), nullable=False),
    Column("name", String(300), nullable=False),
    Column("unit_price", BigInteger, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("quantity", Integer, nullable=False),
    Column("priced_at", UtcDateTime(), nullable=False),
    CheckConstraint(f"quantity BETWEEN 1 AND {MAX_QUANTITY}", name="quantity_range"),
    CheckConstraint("unit_price >= 0", name="unit_price_positive"),
)


class SqlCartRepository:
    """:class:`services.cart.ports.CartRepository` on the SQLAlchemy session of one unit
    of work (``SqlUnitOfWork(db, SqlCartRepository)``)."""

    def __init__(self, session: Session) -> None:
        self.session = session

    def lock(self, user_id: str) -> None:
        """Create the cart row if needed and take its write lock for this transaction.

        Writing first (before any read) serialises concurrent changes to one cart: a row
        lock on PostgreSQL, the database write lock on SQLite. Without it two concurrent
        "add 1" requests could both read quantity 1 and both write 2.
        """
        now = utcnow()
        touched = self.session.execute(
            update(carts).where(carts.c.user_id == user_id).values(updated_at=now)
        )
        if touched.rowcount:  # type: ignore[attr-defined]
            return
        try:
            with self.session.begin_nested():
                self.session.execute(
                    insert(carts).values(user_id=user_id, created_at=now, updated_at=now)
                )
        except IntegrityError:  # created concurrently: lock the row it created
            self.session.execute(
                update(carts).where(carts.c.user_id == user_id).values(updated_at=now)
            )

    def load(self, user_id: str) -> Cart:
        """The user's cart (empty if it was never created)."""
        updated_at = self.session.execute(
            select(carts.c.updated_at).where(carts.c.user_id == user_id)
        ).scalar_one_or_none()
        rows = self.session.execute(
            select(cart_items)
            .where(cart_items.c.user_id == user_id)
            .order_by(cart_items.c.position, cart_items.c.product_id)
        ).mappings()
        items = [
            CartItem(
                product_id=int(row["product_id"]),
                sku=row["sku"],
                name=row["name"],
                unit_price=int(row["unit_price"]),
                currency=row["currency"],
                quantity=int(row["quantity"]),
            )
            for row in rows
        ]
        return Cart(user_id=user_id, items=items, updated_at=updated_at)

    def save(self, cart: Cart) -> None:
        """Make the stored lines equal to ``cart.items`` (call :meth:`lock` first)."""
        now = utcnow()
        stored = {
            int(row.product_id): int(row.position)
            for row in self.session.execute(
                select(cart_items.c.product_id, cart_items.c.position).where(
                    cart_items.c.user_id == cart.user_id
                )
            )
        }
        wanted = {item.product_id for item in cart.items}
        gone = set(stored) - wanted
        if gone:
            self.session.execute(
                delete(cart_items).where(
                    cart_items.c.user_id == cart.user_id, cart_items.c.product_id.in_(gone)
                )
            )
        next_position = max(stored.values(), default=0) + 1
        for item in cart.items:
            values = {
                "sku": item.sku,
                "name": item.name,
                "unit_price": item.unit_price,
                "currency": item.currency,
                "quantity": item.quantity,
                "priced_at": now,
            }
            if item.product_id in stored:
                self.session.execute(
                    update(cart_items)
                    .where(
                        cart_items.c.user_id == cart.user_id,
                        cart_items.c.product_id == item.product_id,
                    )
                    .values(**values)
                )
            else:
                self.session.execute(
                    insert(cart_items).values(
                        user_id=cart.user_id,
                        product_id=item.product_id,
                        position=next_position,
                        **values,
                    )
                )
                next_position += 1
        self.session.execute(
            update(carts).where(carts.c.user_id == cart.user_id).values(updated_at=now)
        )
        cart.updated_at = now

    def remember_prices(self, user_id: str, items: Iterable[CartItem]) -> None:
        """Store freshly read catalog data of lines that still exist (quantities untouched)."""
        now = utcnow()
        for item in items:
            self.session.execute(
                update(cart_items)
                .where(
                    cart_items.c.user_id == user_id,
                    cart_items.c.product_id == item.product_id,
                )
                .values(
                    sku=item.sku,
                    name=item.name,
                    unit_price=item.unit_price,
                    currency=item.currency,
                    priced_at=now,
                )
            )

    def clear(self, user_id: str) -> int:
        """Delete every line of the user's cart; returns how many there were."""
        result = self.session.execute(delete(cart_items).where(cart_items.c.user_id == user_id))
        self.session.execute(
            update(carts).where(carts.c.user_id == user_id).values(updated_at=utcnow())
        )
        return int(result.rowcount)  # type: ignore[attr-defined]

    def count_lines(self, user_id: str) -> int:
        """How many lines the user's cart holds."""
        return int(
            self.session.execute(
                select(func.count()).select_from(cart_items).where(cart_items.c.user_id == user_id)
            ).scalar_one()
        )
