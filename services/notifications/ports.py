"""What the notification use cases need from outside: a provider and a repository.

:class:`NotificationRepository` keeps the records and the idempotency keys; the service
layer gets one through a unit of work (``UnitOfWork[NotificationRepository]``,
:mod:`charter.unit_of_work`), ``store.SqlNotificationRepository`` implements it on
SQLAlchemy. A claim of a key that a concurrent request holds raises
:class:`charter.unit_of_work.WriteConflict`.

:class:`NotificationProvider` delivers messages. A provider takes a :class:`Message` and
either returns a :class:`ProviderResult` (the message was accepted for delivery) or
raises :class:`ProviderError`. ``permanent`` says whether trying again could help: a
refused recipient or a rejected login is permanent (answered 502), an unreachable or
busy server is not (503). Adapters live in :mod:`services.notifications.clients`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from charter.idempotency import IdempotencyKeys

from .domain import Channel, Notification, NotificationFilter


@dataclass(frozen=True)
class Message:
    """One message to deliver."""

    id: str
    channel: Channel
    recipient: str
    body: str
    subject: str | None = None
    order_id: str | None = None
    template: str | None = None


@dataclass(frozen=True)
class ProviderResult:
    """The provider accepted the message."""

    provider: str
    sent_at: datetime
    reference: str | None = None  # the provider's id for the message (e.g. Message-ID)


class ProviderError(Exception):
    """The provider did not accept the message."""

    def __init__(self, provider: str, reason: str, *, permanent: bool) -> None:
        super().__init__(reason)
        self.provider = provider
        self.reason = reason
        self.permanent = permanent


class NotificationProvider(Protocol):
    """Delivers messages (the port)."""

    name: str

    def send(self, message: Message) -> ProviderResult:
        """Deliver ``message`` or raise :class:`ProviderError`."""
        ...


class NotificationRepository(Protocol):
    """Notification records and idempotency keys inside one unit of work."""

    @property
    def idempotency(self) -> IdempotencyKeys:
        """The idempotency keys of the same transaction."""
        ...

    def add(self, notification: Notification) -> None:
        """Record a new notification."""
        ...

    def save_outcome(self, notification: Notification) -> None:
        """Store the outcome of a send (status, provider, reference, reason, time)."""
        ...

    def release_claim(self, scope: str, key: str) -> None:
        """Forget an in-progress claim of ``key``, so a retry of it runs again."""
        ...

    def get(self, notification_id: str) -> Notification | None:
        """One record, if it exists."""
        ...

    def list(self, flt: NotificationFilter, offset: int, limit: int
             ) -> tuple[list[Notification], int]:
        """Matching records, newest first, and how many match in all."""
        ...
