"""Notifications domain: what a valid message is. Pure Python.

A notification goes to one recipient over one channel:

* ``email`` — the recipient is an email address (``local@domain``; the domain part is
  lower-cased so that filters match however a caller spelled it), a subject is required;
* ``sms`` — the recipient is an E.164 phone number (``+`` and 7 to 15 digits), the text
  is at most :data:`MAX_SMS_BODY` characters (ten concatenated segments); a subject, if
  given, is kept but not sent.

Nothing here may carry a line break into a message header: subjects and recipients with
CR/LF are refused (header injection), and so are control characters in either.
"""

from __future__ import annotations

import enum
import re
import uuid
from dataclasses import dataclass, replace
from datetime import datetime

MAX_BODY = 10_000
MAX_SMS_BODY = 1_600
MAX_SUBJECT = 200
MAX_EMAIL = 254
MAX_REASON = 500  # characters of a failure reason kept

_EMAIL = re.compile(
    r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
    r"@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}$"
)
_PHONE = re.compile(r"^\+[1-9][0-9]{6,14}$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class InvalidNotification(Exception):
    """The message cannot be sent as given (answered 400)."""


class Channel(enum.StrEnum):
    EMAIL = "email"
    SMS = "sms"


class Status(enum.StrEnum):
    PENDING = "pending"  # handed to the provider; outcome not recorded yet
    SENT = "sent"
    FAILED = "failed"


def new_id() -> str:
    """A notification id (a random UUID, so ids reveal nothing about volume)."""
    return str(uuid.uuid4())


def normalise_recipient(channel: Channel, recipient: str) -> str:
    """The recipient in its canonical spelling, or :class:`InvalidNotification`."""
    value = recipient.strip()
    if _CONTROL.search(value):
        raise InvalidNotification("the recipient contains control characters")
    if channel is Channel.EMAIL:
        if len(value) > MAX_EMAIL or not _EMAIL.match(value):
            raise InvalidNotification(f"{recipient!r} is not a valid email address")
        local, _, domain = value.rpartition("@")
        if len(local) > 64:
            raise InvalidNotification("the local part of the email address is too long")
        return f"{local}@{domain.lower()}"
    if not _PHONE.match(value):
        raise InvalidNotification(
            f"{recipient!r} is not an E.164 phone number (e.g. +491701234567)"
        )
    return value


def mask_recipient(recipient: str) -> str:
    """A recipient for log lines: enough to correlate, not enough to identify."""
    if "@" in recipient:
        local, _, domain = recipient.rpartition("@")
        return f"{local[:1]}***@{domain}"
    return f"{recipient[:3]}***{recipient[-2:]}" if len(recipient) > 5 else "***"


@dataclass(frozen=True)
class NotificationRequest:
    """A validated request to send one message."""

    channel: Channel
    recipient: str
    body: str
    subject: str | None = None
    order_id: str | None = None
    template: str | None = None

    @classmethod
    def create(
        cls,
        *,
        channel: str,
        recipient: str,
        body: str,
        subject: str | None = None,
        order_id: str | None = None,
        template: str | None = None,
    ) -> NotificationRequest:
        try:
            kind = Channel(channel)
        except ValueError as exc:
            raise InvalidNotification(f"unknown channel {channel!r}") from exc
        address = normalise_recipient(kind, recipient)
        if not body.strip():
            raise InvalidNotification("the message body is empty")
        if len(body) > MAX_BODY:
            raise InvalidNotification(f"the body is longer than {MAX_BODY} characters")
        if subject is not None:
            if "\r" in subject or "\n" in subject or _CONTROL.search(subject):
                raise InvalidNotification("the subject must be one line of text")
            if len(subject) > MAX_SUBJECT:
                raise InvalidNotification(f"the subject is longer than {MAX_SUBJECT} characters")
        if kind is Channel.EMAIL and not (subject and subject.strip()):
            raise InvalidNotification("an email needs a subject")
        if kind is Channel.SMS and len(body) > MAX_SMS_BODY:
            raise InvalidNotification(f"an SMS is at most {MAX_SMS_BODY} characters")
        return cls(kind, address, body, subject, order_id, template)


@dataclass(frozen=True)
class Notification:
    """The record of one send attempt: ``pending`` while the provider has it, then
    ``sent`` (:meth:`sent`) or ``failed`` with the reason (:meth:`failed`)."""

    id: str
    channel: Channel
    recipient: str
    body: str
    status: Status
    requested_by: str
    created_at: datetime
    subject: str | None = None
    order_id: str | None = None
    template: str | None = None
    idempotency_key: str | None = None
    provider: str | None = None
    provider_reference: str | None = None
    failure_reason: str | None = None
    sent_at: datetime | None = None

    @classmethod
    def pending(cls, request: NotificationRequest, *, key: str, requested_by: str,
                now: datetime) -> Notification:
        """A new record of ``request`` about to be handed to the provider."""
        return cls(id=new_id(), channel=request.channel, recipient=request.recipient,
                   body=request.body, subject=request.subject, order_id=request.order_id,
                   template=request.template, status=Status.PENDING,
                   idempotency_key=key, requested_by=requested_by[:128], created_at=now)

    def sent(self, provider: str, reference: str | None, at: datetime) -> Notification:
        """The provider accepted the message."""
        return replace(self, status=Status.SENT, provider=provider,
                       provider_reference=reference, sent_at=at)

    def failed(self, provider: str | None, reason: str) -> Notification:
        """The provider did not accept the message (``reason`` kept for staff)."""
        return replace(self, status=Status.FAILED, provider=provider,
                       failure_reason=reason[:MAX_REASON])


@dataclass(frozen=True)
class NotificationFilter:
    """What a listing is narrowed to (``None``: any)."""

    recipient: str | None = None
    order_id: str | None = None
    status: str | None = None
    channel: str | None = None
