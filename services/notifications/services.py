"""Notification use cases: send once per Idempotency-Key, list and read the records.

Sending talks to a provider over the network, so it cannot sit inside one database
transaction; it runs in three steps instead:

1. *claim* (one short transaction): replay the stored answer if the key was used before
   (422 if with a different body, 409 while that first request is still in flight);
   otherwise claim the key (``charter.idempotency``) and record the notification as
   ``pending``. Two concurrent first uses of a key: only one claim survives the unique
   index, the other answers from the winner's row (409 while it is in flight).
2. *send* through the provider, outside any transaction.
3. *finish* (one short transaction): ``sent`` → the answer (201) is stored with the key,
   so every retry replays it and the message is never sent twice; ``failed`` → the
   reason is recorded, the claim is released (a retry with the same key tries again,
   as a new record), and the caller gets 502 (provider refused) or 503 (provider
   unreachable) with the ``notification_id``.

If the process dies between 2 and 3 the record stays ``pending`` and the key stays
claimed: a retry gets 409, never a second message (at-most-once per key); staff see the
``pending`` record in the listing.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import delete
from sqlalchemy.exc import IntegrityError

from charter.db import Database
from charter.idempotency import IN_PROGRESS, Idempotency, Outcome, fingerprint
from charter.problems import BadGateway, BadRequest, Conflict, NotFound, ServiceUnavailable

from . import domain
from .domain import InvalidNotification, NotificationRequest, Status
from .ports import Message, NotificationProvider, ProviderError
from .store import (
    NotificationFilter,
    NotificationRepository,
    NotificationRow,
    begin_write,
    idempotency_keys,
    utcnow,
)

log = logging.getLogger(__name__)

Doc = dict[str, Any]
SCOPE = "notifications.send"
RETRY_AFTER_SECONDS = "30"


def iso(ts: datetime | None) -> str | None:
    """RFC 3339 in UTC with a ``Z`` (SQLite hands back naive datetimes: they are UTC)."""
    if ts is None:
        return None
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=UTC)
    return ts.astimezone(UTC).isoformat().replace("+00:00", "Z")


def notification_doc(row: NotificationRow) -> Doc:
    return {
        "id": row.id,
        "channel": row.channel,
        "recipient": row.recipient,
        "subject": row.subject,
        "body": row.body,
        "order_id": row.order_id,
        "template": row.template,
        "status": row.status,
        "provider": row.provider,
        "provider_reference": row.provider_reference,
        "failure_reason": row.failure_reason,
        "created_at": iso(row.created_at),
        "sent_at": iso(row.sent_at),
    }


def page_doc(items: list[Doc], page: int, page_size: int, total: int) -> Doc:
    return {"items": items, "page": page, "page_size": page_size, "total": total}


@contextmanager
def valid_input() -> Iterator[None]:
    try:
        yield
    except InvalidNotification as exc:
        raise BadRequest(str(exc), title="Invalid notification") from exc


class NotificationService:
    """The notification use cases over one database and one provider."""

    def __init__(self, db: Database, provider: NotificationProvider) -> None:
        self.db = db
        self.provider = provider
        self.idempotency = Idempotency(idempotency_keys)

    # reads ---------------------------------------------------------------------------
    def get(self, notification_id: str) -> Doc:
        with self.db.session() as session:
            row = NotificationRepository(session).get(notification_id)
            if row is None:
                raise NotFound(f"notification {notification_id} does not exist")
            return notification_doc(row)

    def list(self, flt: NotificationFilter, page: int = 1, page_size: int = 20) -> Doc:
        if flt.recipient is not None:
            flt = NotificationFilter(flt.recipient.strip(), flt.order_id, flt.status,
                                     flt.channel)
        with self.db.session() as session:
            rows, total = NotificationRepository(session).list(
                flt, (page - 1) * page_size, page_size)
            return page_doc([notification_doc(r) for r in rows], page, page_size, total)

    # send ----------------------------------------------------------------------------
    def send(self, key: str, body: dict[str, Any], requested_by: str) -> Outcome:
        """Send the message described by ``body`` once for ``key``; see the module doc."""
        with valid_input():
            request = NotificationRequest.create(
                channel=body["channel"], recipient=body["recipient"], body=body["body"],
                subject=body.get("subject"), order_id=body.get("order_id"),
                template=body.get("template"),
            )
        fp = fingerprint(body)
        claimed = self._claim(key, fp, request, requested_by)
        if isinstance(claimed, Outcome):
            return claimed
        message = Message(id=claimed, channel=request.channel, recipient=request.recipient,
                          body=request.body, subject=request.subject,
                          order_id=request.order_id, template=request.template)
        try:
            result = self.provider.send(message)
        except ProviderError as exc:
            self._fail(key, claimed, exc.provider, exc.reason)
            raise self._provider_problem(claimed, exc) from exc
        except Exception as exc:  # a bug in an adapter must not leave the key claimed
            log.exception("provider crashed on notification %s", claimed)
            self._fail(key, claimed, None, f"provider error: {type(exc).__name__}")
            raise BadGateway("the notification provider failed", notification_id=claimed,
                             title="Notification not sent") from exc
        with self.db.session() as session:
            begin_write(session)
            row = self._row(session, claimed)
            row.status = str(Status.SENT)
            row.provider = result.provider
            row.provider_reference = result.reference
            row.sent_at = result.sent_at
            session.flush()
            doc = notification_doc(row)
            self.idempotency.complete(session, SCOPE, key, 201, doc)
        return Outcome(status=201, body=doc)

    def _claim(self, key: str, fp: str, request: NotificationRequest,
               requested_by: str) -> Outcome | str:
        """The stored answer for ``key``, or the id of a new ``pending`` record."""
        try:
            with self.db.session() as session:
                begin_write(session)
                stored = self.idempotency.lookup(session, SCOPE, key, fp)
                if stored is not None:
                    return stored
                self.idempotency.claim(session, SCOPE, key, fp)
                row = NotificationRepository(session).add(NotificationRow(
                    id=domain.new_id(), channel=str(request.channel),
                    recipient=request.recipient, subject=request.subject, body=request.body,
                    order_id=request.order_id, template=request.template,
                    status=str(Status.PENDING), idempotency_key=key,
                    requested_by=requested_by[:128], created_at=utcnow(),
                ))
                return row.id
        except IntegrityError as exc:  # a concurrent first use of the key won the claim
            with self.db.session() as session:
                stored = self.idempotency.lookup(session, SCOPE, key, fp)
            if stored is not None:
                return stored
            raise Conflict(f"a request with Idempotency-Key {key!r} is being processed",
                           title="Request in progress") from exc

    def _fail(self, key: str, notification_id: str, provider: str | None,
              reason: str) -> None:
        log.warning("notification %s not sent: %s", notification_id, reason,
                    extra={"notification_id": notification_id, "provider": provider})
        t = idempotency_keys
        with self.db.session() as session:
            begin_write(session)
            row = self._row(session, notification_id)
            row.status = str(Status.FAILED)
            row.provider = provider
            row.failure_reason = reason[:500]
            session.execute(delete(t).where(t.c.scope == SCOPE, t.c.key == key,
                                            t.c.status == IN_PROGRESS))

    @staticmethod
    def _row(session: Any, notification_id: str) -> NotificationRow:
        row = NotificationRepository(session).get(notification_id)
        if row is None:  # pragma: no cover - the claim created it
            raise NotFound(f"notification {notification_id} vanished")
        return row

    @staticmethod
    def _provider_problem(notification_id: str, exc: ProviderError) -> Exception:
        detail = f"the {exc.provider} provider did not accept the message: {exc.reason}"
        if exc.permanent:
            return BadGateway(detail, title="Notification not sent",
                              notification_id=notification_id)
        return ServiceUnavailable(detail, title="Notification provider unavailable",
                                  headers={"Retry-After": RETRY_AFTER_SECONDS},
                                  notification_id=notification_id)
