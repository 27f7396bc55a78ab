"""Notifications' consumer: order confirmations and cancellations, welcome messages and
low-stock alerts, sent from the platform's events.

``SUBSCRIPTIONS`` declares the queue ``notifications.events``; :class:`EventNotifications`
is its handler. Sending talks to a provider (SMTP) that no database transaction can
include, so a message is handled in three steps, as the HTTP send is
(:mod:`services.notifications.services`):

1. one transaction: claim the message id in the inbox and record the notification
   ``pending`` (a duplicate delivery stops here);
2. send through the provider, outside any transaction;
3. one transaction: record ``sent`` and put ``notifications.NotificationSent`` in the
   outbox. A provider that is unreachable records ``failed``, releases the claim and
   raises, so the broker retries (a new record next time); one that refuses for good
   (a permanent error) records ``failed`` and the message is acked.

A crash between 1 and 3 leaves the record ``pending`` and the id claimed: the message is
not sent again (at most once, as the HTTP send), and staff see it in the listing.

Events carry no personal data, so the recipient is resolved at send time: a customer by
``recipients(customer_id)`` (default :func:`platform_address`), staff by
``NOTIFICATIONS_STAFF_ADDRESS`` (in development mode ``staff@charter.local`` if unset;
outside it an unset address sends a low-stock alert to the DLQ, never to a guess).
See ``docs/messaging.md``, *Consumers*.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete

from charter.clock import utcnow
from charter.config import ConfigError
from charter.db import Database
from charter.messaging.broker import Subscription
from charter.messaging.consumer import PoisonMessage, checked
from charter.messaging.envelope import Envelope

from .domain import InvalidNotification, Notification, NotificationRequest
from .events import notification_sent
from .ports import Message, NotificationProvider, ProviderError
from .store import SqlNotificationRepository, inbox, outbox

log = logging.getLogger(__name__)

QUEUE = "notifications.events"
CONFIRMED = "orders.OrderConfirmed"
CANCELLED = "orders.OrderCancelled"
REGISTERED = "auth.UserRegistered"
LOW_STOCK = "catalog.LowStock"
SUBSCRIPTIONS: tuple[Subscription, ...] = (
    Subscription(QUEUE, (CONFIRMED, CANCELLED, REGISTERED, LOW_STOCK)),
)
CONSUMER = "notifications.events"
"""The inbox name of the handler (``<service>.<handler>``)."""

CUSTOMER_MAIL_DOMAIN = "customers.charter.local"

Recipients = Callable[[str], str]
"""A customer id (token ``sub``) → their e-mail address."""

REASONS = {
    "insufficient_stock": "an item is out of stock",
    "product_unavailable": "an item is no longer available",
    "payment_declined": "the payment was declined",
    "payment_failed": "the payment could not be processed",
    "cancelled_by_customer": "you cancelled it",
    "cancelled_by_staff": "our staff cancelled it",
}


def platform_address(customer_id: str) -> str:
    """The platform address of a customer, ``<id>@customers.charter.local`` (the rule of
    orders' ``recipient()``): where mail goes until a contact directory exists."""
    local = re.sub(r"[^A-Za-z0-9._+\-]", "-", customer_id).strip(".") or "customer"
    return f"{local[:64]}@{CUSTOMER_MAIL_DOMAIN}"


def money(total: dict[str, Any]) -> str:
    """``{"amount_minor": 12345, "currency": "EUR"}`` → ``123.45 EUR``."""
    amount, currency = int(total["amount_minor"]), str(total["currency"])
    return f"{amount // 100}.{amount % 100:02d} {currency}"


@dataclass(frozen=True)
class Draft:
    """What one event asks to send: its kind (``NotificationSent.kind``) and message."""

    kind: str
    request: NotificationRequest


def order_confirmed(data: dict[str, Any], recipient: str) -> Draft:
    order_id = data["order_id"]
    body = (f"Thank you for your order {order_id}.\n\n"
            f"Items: {data['item_count']}\nTotal: {money(data['total'])}\n")
    return _draft("order_confirmed", recipient, f"Your order {order_id} is confirmed", body,
                  order_id)


def order_cancelled(data: dict[str, Any], recipient: str) -> Draft:
    order_id, code = data["order_id"], data["code"]
    reason = REASONS.get(code, code.replace("_", " ")) if code else "no reason was given"
    money_line = (f"The payment of {money(data['total'])} is refunded."
                  if data["after_confirmation"] else "No payment was taken.")
    body = f"Your order {order_id} was cancelled: {reason}.\n\n{money_line}\n"
    return _draft("order_cancelled", recipient, f"Your order {order_id} was cancelled", body,
                  order_id)


def welcome(data: dict[str, Any], recipient: str) -> Draft:
    body = "Welcome to Charter! Your account is ready.\n"
    return _draft("welcome", recipient, "Welcome to Charter", body, None)


def low_stock(data: dict[str, Any], staff: str) -> Draft:
    product = data["product_id"]
    body = (f"Product {product} is low on stock: {data['available']} available "
            f"(threshold {data['threshold']}).\n")
    return _draft("low_stock", staff, f"Low stock: product {product}", body, None)


def _draft(kind: str, recipient: str, subject: str, body: str, order_id: str | None) -> Draft:
    try:
        request = NotificationRequest.create(channel="email", recipient=recipient, body=body,
                                             subject=subject, order_id=order_id,
                                             template=kind)
    except InvalidNotification as exc:  # e.g. a directory gave a bad address
        raise PoisonMessage(f"cannot build the {kind} message: {exc}") from exc
    return Draft(kind, request)


class EventNotifications:
    """The handler of ``notifications.events``: ``EventNotifications(db, provider)(env)``.

    ``staff_address`` defaults to the settings' (``NOTIFICATIONS_STAFF_ADDRESS``);
    ``recipients`` resolves customers (default :func:`platform_address`).
    """

    def __init__(self, db: Database, provider: NotificationProvider, *,
                 staff_address: str | None = None,
                 recipients: Recipients = platform_address) -> None:
        self.db = db
        self.provider = provider
        self._staff = staff_address
        self.recipients = recipients

    def staff_address(self) -> str:
        """Where staff alerts go (from the settings). Unset outside development mode:
        :class:`PoisonMessage`, so the alert waits in the DLQ (``charter dlq replay``
        once it is set) instead of going to a guessed address."""
        if self._staff is None:
            from .settings import NotificationsConfig
            try:
                self._staff = NotificationsConfig.parse().staff_address()
            except ConfigError as exc:
                raise PoisonMessage(str(exc)) from exc
        return self._staff

    def draft(self, envelope: Envelope) -> Draft:
        """The message an event asks for; :class:`PoisonMessage` if it is not one of ours
        or breaks its contract."""
        key = envelope.routing_key
        if key not in SUBSCRIPTIONS[0].bindings:
            raise PoisonMessage(f"{QUEUE} does not take {key}")
        data = checked(envelope)
        if key == CONFIRMED:
            return order_confirmed(data, self.recipients(data["customer_id"]))
        if key == CANCELLED:
            return order_cancelled(data, self.recipients(data["customer_id"]))
        if key == REGISTERED:
            return welcome(data, self.recipients(data["user_id"]))
        return low_stock(data, self.staff_address())

    def __call__(self, envelope: Envelope) -> None:
        """Handle one event (see the module doc); raises to have the broker retry."""
        draft = self.draft(envelope)
        pending = self._claim(envelope, draft)
        if pending is None:
            log.info("duplicate %s %s ignored", envelope.routing_key, envelope.id)
            return
        request = draft.request
        message = Message(id=pending.id, channel=request.channel, recipient=request.recipient,
                          body=request.body, subject=request.subject,
                          order_id=request.order_id, template=request.template)
        try:
            result = self.provider.send(message)
        except ProviderError as exc:
            self._failed(envelope, pending.failed(exc.provider, exc.reason),
                         release=not exc.permanent)
            if exc.permanent:
                log.error("%s %s for message %s refused for good: %s", draft.kind,
                          pending.id, envelope.id, exc.reason)
                return
            raise
        except Exception as exc:
            self._failed(envelope, pending.failed(None, f"provider error: "
                                                  f"{type(exc).__name__}"), release=True)
            raise
        sent = pending.sent(result.provider, result.reference, result.sent_at)
        with self.db.write() as session:
            SqlNotificationRepository(session).save_outcome(sent)
            outbox.add(session, reply(envelope, notification_sent(sent.id, draft.kind,
                                                                  request.order_id)))

    def _claim(self, envelope: Envelope, draft: Draft) -> Notification | None:
        with self.db.write() as session:
            if not inbox.claim(session, CONSUMER, envelope.id):
                return None
            pending = Notification.pending(draft.request, key=f"event:{envelope.id}",
                                           requested_by=f"event:{envelope.routing_key}",
                                           now=utcnow())
            SqlNotificationRepository(session).add(pending)
            return pending

    def _failed(self, envelope: Envelope, failed: Notification, *, release: bool) -> None:
        log.warning("notification %s (message %s) not sent: %s", failed.id, envelope.id,
                    failed.failure_reason)
        with self.db.write() as session:
            SqlNotificationRepository(session).save_outcome(failed)
            if release:  # the redelivery tries again, as a new record
                table = inbox.table
                session.execute(delete(table).where(table.c.consumer == CONSUMER,
                                                    table.c.message_id == envelope.id))


def reply(incoming: Envelope, event: Envelope) -> Envelope:
    """``event`` as caused by ``incoming`` (same correlation, saga and trace)."""
    return incoming.caused(event.type, event.data, source=event.source)
