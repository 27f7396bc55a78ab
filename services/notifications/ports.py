"""The provider port: what the use cases need from whatever delivers a message.

A provider takes a :class:`Message` and either returns a :class:`ProviderResult` (the
message was accepted for delivery) or raises :class:`ProviderError`. ``permanent`` says
whether trying again could help: a refused recipient or a rejected login is permanent
(answered 502), an unreachable or busy server is not (503). Adapters live in
:mod:`services.notifications.providers`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from .domain import Channel


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
