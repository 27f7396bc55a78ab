"""Orders persistence: SQLAlchemy 2 Core tables and the repository (the adapter of
:class:`services.orders.ports.OrderRepository`) mapping rows to the domain.

The tables live in the service's own :data:`metadata` (with the shared idempotency-key
table), so the orders' Alembic history only ever sees orders tables. Writers run in a
write unit of work (:meth:`charter.db.SqlUnitOfWork.write`, which calls
:func:`charter.db.begin_write` first) and load the order with
:meth:`SqlOrderRepository.get` ``lock=True``: on SQLite that is the database write lock
(``BEGIN IMMEDIATE``), on PostgreSQL a row lock (``SELECT … FOR UPDATE``), so two requests
changing one order are serialised and each decides on the current state. A unique
violation (an idempotency key claimed concurrently) leaves here as
:class:`charter.unit_of_work.WriteConflict`.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    CheckConstraint,
    Column,
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
    Text,
    func,
    insert,
    or_,
    select,
    update,
)

from charter.db import (
    NAMING_CONVENTION_FK_REFERRED,
    UtcDateTime,
    service_metadata,
    write_conflicts,
)
from charter.idempotency_store import KeyedSqlRepository, idempotency_table

from .domain import (
    FollowUp,
    Order,
    OrderEvent,
    OrderLine,
    OrderStatus,
    RejectionCode,
    Source,
)
from .ports import OrderFilter

metadata = service_metadata(NAMING_CONVENTION_FK_REFERRED)

orders = Table(
    "orders",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("customer_id", String(128), nullable=False),
    Column("customer_email", String(320), nullable=True),
    Column("status", String(16), nullable=False),
    Column("source", String(8), nullable=False),
    Column("currency", String(3), nullable=False),
    Column("total", BigInteger, nullable=False),
    Column("reason", Text, nullable=True),
    Column("rejection_code", String(32), nullable=True),
    Column("shortages", JSON, nullable=True),
    Column("payment_id", String(64), nullable=True),
    Column("loyalty_status", String(16), nullable=True),
    Column("notification_status", String(16), nullable=True),
    Column("release_status", String(16), nullable=True),
    Column("payment_status", String(16), nullable=True),
    Column("loyalty_reversal_status", String(16), nullable=True),
    Column("created_at", UtcDateTime(), nullable=False),
    Column("updated_at", UtcDateTime(), nullable=False),
    CheckConstraint("total >= 0", name="total_positive"),
    Index("ix_orders_customer_created", "customer_id", "created_at"),
    Index("ix_orders_status_updated", "status", "updated_at"),
)

order_lines = Table(
    "order_lines",
    metadata,
    Column(
        "order_id",
        String(36),
        ForeignKey("orders.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("product_id", BigInteger, primary_key=True),
    Column("position", Integer, nullable=False),
    Column("sku", String(128), nullable=False),
    Column("name", String(300), nullable=False),
    Column("unit_price", BigInteger, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("quantity", Integer, nullable=False),
    CheckConstraint("quantity >= 1", name="quantity_positive"),
    CheckConstraint("unit_price >= 0", name="unit_price_positive"),
)

order_events = Table(
    "order_events",
    metadata,
    Column("order_id", String(36), ForeignKey("orders.id", ondelete="CASCADE"),
           primary_key=True),
    Column("sequence", Integer, primary_key=True),
    Column("type", String(64), nullable=False),
    Column("occurred_at", UtcDateTime(), nullable=False),
    Column("data", JSON, nullable=False),
)

idempotency_keys = idempotency_table(metadata)

# What recovery looks for (see OrderService.resume_pending).
OPEN_FOLLOW_UPS = (FollowUp.PENDING.value, FollowUp.PENDING_RETRY.value)


def _enum(kind: Any, value: str | None) -> Any:
    return kind(value) if value is not None else None


class SqlOrderRepository(KeyedSqlRepository):
    """:class:`services.orders.ports.OrderRepository` on the SQLAlchemy session of one unit
    of work (``SqlUnitOfWork(db, SqlOrderRepository)``).

    Its idempotency keys come from :class:`charter.idempotency_store.KeyedSqlRepository`
    (the app factory builds the helper once, with the service's clock:
    ``keyed_unit_of_work``).
    """

    keys_table = idempotency_keys

    # -- writes --------------------------------------------------------------------------
    def add(self, order: Order) -> None:
        with write_conflicts():
            self._insert(order)

    def _insert(self, order: Order) -> None:
        self.session.execute(insert(orders).values(id=order.id, **self._values(order)))
        self.session.execute(
            insert(order_lines),
            [
                {
                    "order_id": order.id,
                    "product_id": line.product_id,
                    "position": position,
                    "sku": line.sku,
                    "name": line.name,
                    "unit_price": line.unit_price,
                    "currency": line.currency,
                    "quantity": line.quantity,
                }
                for position, line in enumerate(order.lines, start=1)
            ],
        )
        self._append_events(order)

    def _append_events(self, order: Order) -> None:
        """Store the order's new events after its last one (the order row is locked)."""
        if not order.new_events:
            return
        last = self.session.execute(
            select(func.max(order_events.c.sequence)).where(order_events.c.order_id == order.id)
        ).scalar_one()
        start = int(last or 0) + 1
        self.session.execute(insert(order_events), [
            {"order_id": order.id, "sequence": start + i, "type": e.type,
             "occurred_at": e.occurred_at, "data": e.data}
            for i, e in enumerate(order.new_events)
        ])
        order.new_events.clear()

    def save(self, order: Order) -> None:
        """Store the order's state (its lines never change after placement)."""
        self.session.execute(
            update(orders).where(orders.c.id == order.id).values(**self._values(order))
        )
        self._append_events(order)

    @staticmethod
    def _values(order: Order) -> dict[str, Any]:
        def value(x: Any) -> Any:
            return x.value if x is not None and hasattr(x, "value") else x

        return {
            "customer_id": order.customer_id,
            "customer_email": order.customer_email,
            "status": order.status.value,
            "source": order.source.value,
            "currency": order.currency,
            "total": order.total,
            "reason": order.reason,
            "rejection_code": value(order.rejection_code),
            "shortages": order.shortages,
            "payment_id": order.payment_id,
            "loyalty_status": value(order.loyalty_status),
            "notification_status": value(order.notification_status),
            "release_status": value(order.release_status),
            "payment_status": order.payment_status,
            "loyalty_reversal_status": value(order.loyalty_reversal_status),
            "created_at": order.created_at,
            "updated_at": order.updated_at,
        }

    # -- reads ---------------------------------------------------------------------------
    def get(self, order_id: str, *, lock: bool = False) -> Order | None:
        """The order (``lock``: ``SELECT … FOR UPDATE``), ``None`` if it does not exist."""
        query = select(orders).where(orders.c.id == order_id)
        if lock:
            query = query.with_for_update()
        row = self.session.execute(query).mappings().first()
        if row is None:
            return None
        return self._order(row, self._lines([order_id]).get(order_id, []))

    def page(self, flt: OrderFilter, offset: int, limit: int) -> tuple[list[Order], int]:
        """One page, newest first, and the total count."""
        conditions = []
        if flt.customer_id is not None:
            conditions.append(orders.c.customer_id == flt.customer_id)
        if flt.status is not None:
            conditions.append(orders.c.status == flt.status)
        total = int(
            self.session.execute(
                select(func.count()).select_from(orders).where(*conditions)
            ).scalar_one()
        )
        rows = list(
            self.session.execute(
                select(orders)
                .where(*conditions)
                .order_by(orders.c.created_at.desc(), orders.c.id)
                .offset(offset)
                .limit(limit)
            ).mappings()
        )
        lines = self._lines([row["id"] for row in rows])
        return [self._order(row, lines.get(row["id"], [])) for row in rows], total

    def page_after(self, flt: OrderFilter, cursor: tuple[datetime, str] | None,
                   limit: int) -> list[Order]:
        """Up to ``limit`` orders, newest first, after ``cursor`` (created_at, id)."""
        conditions = []
        if flt.customer_id is not None:
            conditions.append(orders.c.customer_id == flt.customer_id)
        if flt.status is not None:
            conditions.append(orders.c.status.in_(flt.statuses()))
        if cursor is not None:
            created, last_id = cursor
            conditions.append(or_(orders.c.created_at < created,
                                  (orders.c.created_at == created) & (orders.c.id > last_id)))
        rows = list(self.session.execute(
            select(orders).where(*conditions)
            .order_by(orders.c.created_at.desc(), orders.c.id).limit(limit)
        ).mappings())
        lines = self._lines([row["id"] for row in rows])
        return [self._order(row, lines.get(row["id"], [])) for row in rows]

    def events(self, order_id: str, after: int, limit: int) -> list[OrderEvent]:
        """The order's events with ``sequence > after``, oldest first."""
        rows = self.session.execute(
            select(order_events)
            .where(order_events.c.order_id == order_id, order_events.c.sequence > after)
            .order_by(order_events.c.sequence).limit(limit)
        ).mappings()
        return [OrderEvent(r["type"], r["occurred_at"], dict(r["data"] or {}), int(r["sequence"]))
                for r in rows]

    def needing_recovery(self, before: datetime, limit: int) -> list[str]:
        """Ids of orders with unfinished work, last changed at or before ``before``.

        Pending reservations, started confirmations, stock releases, confirmation
        follow-ups (loyalty, notification) and loyalty reversals that have not completed.
        """
        rows = self.session.execute(
            select(orders.c.id)
            .where(
                orders.c.updated_at <= before,
                or_(
                    orders.c.status == OrderStatus.PENDING.value,
                    (orders.c.status == OrderStatus.RESERVED.value)
                    & orders.c.payment_id.is_not(None),
                    (orders.c.status == OrderStatus.CANCELLED.value)
                    & or_(orders.c.release_status.in_(OPEN_FOLLOW_UPS),
                          orders.c.loyalty_reversal_status.in_(OPEN_FOLLOW_UPS)),
                    (orders.c.status == OrderStatus.CONFIRMED.value)
                    & or_(
                        orders.c.loyalty_status.in_(OPEN_FOLLOW_UPS),
                        orders.c.notification_status.in_(OPEN_FOLLOW_UPS),
                        orders.c.payment_status == "authorized",  # v2: capture due
                    ),
                ),
            )
            .order_by(orders.c.updated_at, orders.c.id)
            .limit(limit)
        )
        return [str(r[0]) for r in rows]

    def _lines(self, order_ids: Sequence[str]) -> dict[str, list[OrderLine]]:
        if not order_ids:
            return {}
        found: dict[str, list[OrderLine]] = {}
        rows = self.session.execute(
            select(order_lines)
            .where(order_lines.c.order_id.in_(list(order_ids)))
            .order_by(order_lines.c.order_id, order_lines.c.position)
        ).mappings()
        for row in rows:
            found.setdefault(row["order_id"], []).append(
                OrderLine(
                    product_id=int(row["product_id"]),
                    sku=row["sku"],
                    name=row["name"],
                    unit_price=int(row["unit_price"]),
                    currency=row["currency"],
                    quantity=int(row["quantity"]),
                )
            )
        return found

    @staticmethod
    def _order(row: Any, lines: list[OrderLine]) -> Order:
        return Order(
            id=row["id"],
            customer_id=row["customer_id"],
            lines=lines,
            currency=row["currency"],
            created_at=row["created_at"],
            updated_at=row["updated_at"],
            status=OrderStatus(row["status"]),
            source=Source(row["source"]),
            customer_email=row["customer_email"],
            reason=row["reason"],
            rejection_code=_enum(RejectionCode, row["rejection_code"]),
            shortages=row["shortages"],
            payment_id=row["payment_id"],
            loyalty_status=_enum(FollowUp, row["loyalty_status"]),
            notification_status=_enum(FollowUp, row["notification_status"]),
            release_status=_enum(FollowUp, row["release_status"]),
            payment_status=row["payment_status"],
            loyalty_reversal_status=_enum(FollowUp, row["loyalty_reversal_status"]),
        )
