"""Orders persistence: the event store (the truth), the read model (a projection), and the
repository (the adapter of :class:`services.orders.ports.OrderRepository`).

Orders are event-sourced: an order is its stream in ``events`` (``stream_id`` = the order
id), rebuilt by replaying it (:meth:`services.orders.domain.Order.from_events`); a write
appends the aggregate's new events with the version it was loaded at, so a stale writer
gets :class:`charter.eventstore.ConcurrencyConflict` (a :class:`WriteConflict`), never a
lost update. The ``orders`` and ``order_lines`` tables are the read model that lists and
recovery query: the repository updates them in the same transaction as the append (read
your writes), and :class:`OrdersProjection` rebuilds them from the events alone
(``charter projections rebuild orders``). ``order_contacts`` keeps what is personal (the
e-mail) outside the events, so it can be erased.

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
    Boolean,
    CheckConstraint,
    Column,
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
    Text,
    bindparam,
    false,
    func,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.orm import Session

from charter.db import (
    NAMING_CONVENTION_FK_REFERRED,
    UtcDateTime,
    service_metadata,
    utcnow,
    write_conflicts,
)
from charter.eventstore.store import EventMetadata, EventStore, NewEvent, RecordedEvent
from charter.eventstore.tables import add_event_store_tables
from charter.idempotency_store import KeyedSqlRepository, idempotency_table
from charter.messaging.envelope import Envelope
from charter.messaging.inbox import Inbox, add_inbox_table
from charter.messaging.outbox import Outbox, add_outbox_table
from charter.observability.logs import correlation_id, saga_id

from . import metrics
from .domain import (
    DomainEvent,
    FollowUp,
    Order,
    OrderEvent,
    OrderLine,
    OrderStatus,
    RejectionCode,
    Source,
    public_event,
)
from .ports import OrderFilter

metadata = service_metadata(NAMING_CONVENTION_FK_REFERRED)

orders = Table(
    "orders",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("customer_id", String(128), nullable=False),
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
    Column("checkout", Boolean, nullable=False, default=False, server_default=false()),
    Column("stock_returned", String(16), nullable=True),
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

order_contacts = Table(
    "order_contacts",
    metadata,
    Column("order_id", String(36), primary_key=True),
    Column("email", String(320), nullable=True),
    Column("payment_method", String(64), nullable=True),
)
"""What is personal or secret about an order (never in an event): the customer's e-mail
and the checkout's payment token; erasable on its own."""

event_tables = add_event_store_tables(metadata)
event_store = EventStore(event_tables)
PROJECTION = "orders"
outbox = Outbox(add_outbox_table(metadata))
inbox = Inbox(add_inbox_table(metadata))
"""The replies orders consumed (``services.orders.messaging``), by message id."""
"""What orders publishes (``OrderConfirmed``, ``OrderCancelled``), written in the same
transaction as the events that caused it; the relay sends it (``charter.messaging``)."""

idempotency_keys = idempotency_table(metadata)

# The statements every checkout runs several times, built once with bound parameters
# (building a statement and its cache key per call cost more than running it on SQLite).
_INSERT_ORDER = insert(orders)
_INSERT_LINES = insert(order_lines)
_UPDATE_ORDER = update(orders).where(orders.c.id == bindparam("b_order"))
_CONTACT = (select(order_contacts.c.email, order_contacts.c.payment_method)
            .where(order_contacts.c.order_id == bindparam("b_order")))
_PAYMENT_METHOD = (select(order_contacts.c.payment_method)
                   .where(order_contacts.c.order_id == bindparam("b_order")))
_LOCK_ORDER = select(orders.c.id).where(orders.c.id == bindparam("b_order")).with_for_update()
_checkpoints = event_tables.checkpoints
_MOVE_CHECKPOINT = (update(_checkpoints)
                    .where(_checkpoints.c.name == PROJECTION,
                           _checkpoints.c.position < bindparam("b_position"))
                    .values(position=bindparam("b_position"),
                            updated_at=bindparam("b_updated_at")))

# What recovery looks for (see OrderService.resume_pending).
OPEN_FOLLOW_UPS = (FollowUp.PENDING.value, FollowUp.PENDING_RETRY.value)


def _enum(kind: Any, value: str | None) -> Any:
    return kind(value) if value is not None else None


def domain_event(stored: RecordedEvent) -> DomainEvent:
    """A stored event as the aggregate replays it."""
    return DomainEvent(stored.type, stored.metadata.occurred_at, dict(stored.data))


def _row_values(order: Order) -> dict[str, Any]:
    def value(x: Any) -> Any:
        return x.value if x is not None and hasattr(x, "value") else x

    return {
        "customer_id": order.customer_id,
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
        "checkout": order.checkout,
        "stock_returned": value(order.stock_returned),
        "created_at": order.created_at,
        "updated_at": order.updated_at,
    }


def integration_events(order: Order, new: Sequence[DomainEvent]) -> list[Envelope]:
    """The events other services hear about (ids and amounts only, nothing personal)."""
    found: list[Envelope] = []
    for event in new:
        if event.type not in ("OrderConfirmed", "OrderCancelled"):
            continue
        data: dict[str, Any] = {
            "order_id": order.id, "customer_id": order.customer_id,
            "total": {"amount_minor": order.total, "currency": order.currency},
            "item_count": order.item_count,
        }
        if event.type == "OrderConfirmed":
            data["payment_id"] = event.data["payment_id"]
        else:
            data["code"] = event.data.get("code")
            data["after_confirmation"] = bool(event.data.get("refunded"))
        found.append(Envelope.new(event.type, data, source="orders",
                                  occurred_at=event.occurred_at,
                                  correlation_id=correlation_id.get(),
                                  saga_id=saga_id.get() or order.id))
    return found


def write_read_model(session: Session, order: Order, *, new: bool) -> None:
    """The order's row (and, when ``new``, its lines) in the read model."""
    if not new:
        session.execute(_UPDATE_ORDER, {"b_order": order.id, **_row_values(order)})
        return
    session.execute(_INSERT_ORDER, {"id": order.id, **_row_values(order)})
    session.execute(_INSERT_LINES, [
        {"order_id": order.id, "product_id": line.product_id, "position": position,
         "sku": line.sku, "name": line.name, "unit_price": line.unit_price,
         "currency": line.currency, "quantity": line.quantity}
        for position, line in enumerate(order.lines, start=1)
    ])


def move_checkpoint(session: Session, position: int) -> None:
    """The read model now holds every event up to ``position`` (appends are serialised by
    the event store, so inline updates arrive in position order)."""
    checkpoints = event_tables.checkpoints
    moved = session.execute(_MOVE_CHECKPOINT, {"b_position": position,
                                               "b_updated_at": utcnow()})
    if moved.rowcount:  # type: ignore[attr-defined]
        return
    current = session.execute(
        select(checkpoints.c.position).where(checkpoints.c.name == PROJECTION)
    ).scalar_one_or_none()
    if current is None:
        session.execute(insert(checkpoints).values(name=PROJECTION, position=position,
                                                   updated_at=utcnow()))


class OrdersProjection:
    """The read model (``orders``, ``order_lines``) as a projection of the event store.

    The repository keeps it current inline; this class is what rebuilds it from zero
    (``charter projections rebuild orders``): each event replays its order's stream up
    to that event and writes the row as it stood then.
    """

    name = PROJECTION

    def reset(self, session: Session) -> None:
        session.execute(order_lines.delete())
        session.execute(orders.delete())

    def apply(self, session: Session, event: RecordedEvent) -> None:
        history = [e for e in event_store.load(session, event.stream_id)
                   if e.version <= event.version]
        order = Order.from_events(event.stream_id, [domain_event(e) for e in history])
        exists = session.execute(select(orders.c.id).where(orders.c.id == order.id)
                                 ).first() is not None
        write_read_model(session, order, new=not exists)


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
        """Store a new order: its first events, its read-model row, its contact."""
        with write_conflicts():
            self._append(order)
            write_read_model(self.session, order, new=True)
            self._save_contact(order)

    def save(self, order: Order) -> None:
        """Append the order's new events (a stale order: ``ConcurrencyConflict``) and
        update its read model in the same transaction."""
        if not self._append(order):
            self._save_contact(order)
            return
        write_read_model(self.session, order, new=False)
        self._save_contact(order)

    def _append(self, order: Order) -> bool:
        if not order.new_events:
            return False
        cid, saga = correlation_id.get(), saga_id.get()
        recorded = event_store.append(
            self.session, order.id, order.stored_version,
            [NewEvent(e.type, e.data, EventMetadata(occurred_at=e.occurred_at,
                                                    correlation_id=cid, saga_id=saga))
             for e in order.new_events])
        published = integration_events(order, order.new_events)
        if published:
            outbox.add(self.session, *published)
        metrics.on_append(self.session, order, order.new_events)  # counted once committed
        order.stored_version = order.version
        order.new_events.clear()
        move_checkpoint(self.session, recorded[-1].position)
        return True

    def _save_contact(self, order: Order) -> None:
        if not (order.customer_email or order.payment_method):
            return
        current = (order.customer_email, order.payment_method)
        if order.stored_contact == current:  # as loaded: nothing to write (or to read)
            return
        order.stored_contact = current
        values = {"email": order.customer_email, "payment_method": order.payment_method}
        found = self.session.execute(_CONTACT, {"b_order": order.id}).mappings().first()
        if found is None:
            self.session.execute(insert(order_contacts).values(order_id=order.id, **values))
        elif dict(found) != values:
            self.session.execute(update(order_contacts)
                                 .where(order_contacts.c.order_id == order.id)
                                 .values(**{k: v for k, v in values.items() if v is not None}))

    def payment_method(self, order_id: str) -> str | None:
        """The provider token a checkout pays with (kept outside the events)."""
        return self.session.execute(_PAYMENT_METHOD, {"b_order": order_id}).scalar_one_or_none()

    # -- reads ---------------------------------------------------------------------------
    def get(self, order_id: str, *, lock: bool = False) -> Order | None:
        """The order rebuilt from its events, ``None`` if it does not exist.

        ``lock``: its read-model row ``SELECT … FOR UPDATE`` first (PostgreSQL; SQLite's
        write transaction already holds the database lock), so writers of one order queue
        up instead of failing on the version check.
        """
        if lock and self.session.get_bind().dialect.name != "sqlite":
            # (SQLite: the write transaction already holds the database's write lock)
            self.session.execute(_LOCK_ORDER, {"b_order": order_id})
        stored = event_store.load(self.session, order_id)
        if not stored:
            return None
        order = Order.from_events(order_id, [domain_event(e) for e in stored])
        contact = self.session.execute(_CONTACT, {"b_order": order_id}).first()
        if contact is not None:
            order.customer_email, order.payment_method = contact
            order.stored_contact = (order.customer_email, order.payment_method)
        return order

    def events(self, order_id: str, after: int, limit: int) -> list[OrderEvent]:
        """The order's audit trail after version ``after``, oldest first."""
        stored = event_store.load(self.session, order_id, after_version=after)
        return [public_event(domain_event(e), e.version) for e in stored[:limit]]

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

    def needing_recovery(self, before: datetime, limit: int) -> list[str]:
        """Ids of orders with unfinished work, last changed at or before ``before``.

        Pending reservations, started confirmations, checkouts on their way, and the
        compensations of cancelled orders (release, return, void) not done yet. The
        follow-ups of a confirmation are the participants' (driven by events).
        """
        rows = self.session.execute(
            select(orders.c.id)
            .where(
                orders.c.updated_at <= before,
                or_(
                    orders.c.status == OrderStatus.PENDING.value,
                    (orders.c.status == OrderStatus.RESERVED.value)
                    & orders.c.payment_id.is_not(None),
                    (orders.c.status == OrderStatus.RESERVED.value) & orders.c.checkout,
                    (orders.c.status == OrderStatus.CANCELLED.value)
                    & or_(orders.c.release_status.in_(OPEN_FOLLOW_UPS),
                          orders.c.stock_returned.in_(OPEN_FOLLOW_UPS),
                          orders.c.payment_status.in_(("requested", "authorized"))),
                    # confirmed before its capture (orders confirmed by older versions)
                    (orders.c.status == OrderStatus.CONFIRMED.value)
                    & (orders.c.payment_status == "authorized"),
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
