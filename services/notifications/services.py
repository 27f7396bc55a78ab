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

Only staff, admins and platform services read or send notifications (decided here:
customers are refused even with a token that carries the scope).

If the process dies between 2 and 3 the record stays ``pending`` and the key stays
claimed: a retry gets 409, never a second message (at-most-once per key); staff see the
``pending`` record in the listing.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any, TypeVar

from charter.clock import utcnow
from charter.idempotency import Outcome, fingerprint
from charter.problems import BadGateway, BadRequest, Conflict, NotFound, ServiceUnavailable
from charter.security.principal import Principal
from charter.unit_of_work import UnitOfWork, WriteConflict
from charter.usecases import Page

from .domain import InvalidNotification, Notification, NotificationFilter, NotificationRequest
from .ports import Message, NotificationProvider, NotificationRepository, ProviderError

log = logging.getLogger(__name__)

T = TypeVar("T")
SCOPE = "notifications.send"
RETRY_AFTER_SECONDS = "30"


@dataclass(frozen=True)
class Sent:
    """The notification a send answers with; ``replayed`` when an earlier request sent it."""

    notification: Notification
    replayed: bool = False


@contextmanager
def valid_input() -> Iterator[None]:
    """Turn an invalid message into 400."""
    try:
        yield
    except InvalidNotification as exc:
        raise BadRequest(str(exc), kind="invalid-notification") from exc


class NotificationService:
    """The notification use cases over a unit of work (records and idempotency keys,
    :class:`NotificationRepository`) and a provider."""

    def __init__(self, uow: UnitOfWork[NotificationRepository],
                 provider: NotificationProvider) -> None:
        self.uow = uow
        self.provider = provider

    # reads ---------------------------------------------------------------------------
    def get(self, principal: Principal, notification_id: str) -> Notification:
        """One notification record (staff and services only)."""
        principal.require_privileged()
        with self.uow.read() as repo:
            found = repo.get(notification_id)
        if found is None:
            raise NotFound(f"notification {notification_id} does not exist")
        return found

    def list(self, principal: Principal, flt: NotificationFilter, page: int = 1,
             page_size: int = 20) -> Page[Notification]:
        """Notification records, newest first (staff and services only)."""
        principal.require_privileged()
        if flt.recipient is not None:
            flt = replace(flt, recipient=flt.recipient.strip())
        with self.uow.read() as repo:
            items, total = repo.list(flt, Page.offset(page, page_size), page_size)
        return Page(items, page, page_size, total)

    # send ----------------------------------------------------------------------------
    def send(self, principal: Principal, key: str, body: dict[str, Any]) -> Sent:
        """Send the message described by ``body`` once for ``key``; see the module doc."""
        principal.require_privileged()
        with valid_input():
            request = NotificationRequest.create(
                channel=body["channel"], recipient=body["recipient"], body=body["body"],
                subject=body.get("subject"), order_id=body.get("order_id"),
                template=body.get("template"),
            )
        claimed = self._claim(key, fingerprint(body), request,
                              principal.client_id or principal.sub)
        if isinstance(claimed, Outcome):
            return Sent(self._replayed(claimed), replayed=True)
        message = Message(id=claimed.id, channel=request.channel,
                          recipient=request.recipient, body=request.body,
                          subject=request.subject, order_id=request.order_id,
                          template=request.template)
        try:
            result = self.provider.send(message)
        except ProviderError as exc:
            self._fail(key, claimed.failed(exc.provider, exc.reason))
            raise self._provider_problem(claimed.id, exc) from exc
        except Exception as exc:  # a bug in an adapter must not leave the key claimed
            log.exception("provider crashed on notification %s", claimed.id)
            self._fail(key, claimed.failed(None, f"provider error: {type(exc).__name__}"))
            raise BadGateway("the notification provider failed", notification_id=claimed.id,
                             kind="notification-not-sent") from exc
        sent = claimed.sent(result.provider, result.reference, result.sent_at)
        with self.uow.write() as repo:
            repo.save_outcome(sent)
            # the answer is the record itself: a replay reads it back (it never changes)
            repo.idempotency.complete(SCOPE, key, 201, {"id": sent.id})
        return Sent(sent)

    def _replayed(self, outcome: Outcome) -> Notification:
        with self.uow.read() as repo:
            found = repo.get(str(outcome.body["id"]))
        if found is None:  # pragma: no cover - records are never deleted
            raise NotFound("the notification of this Idempotency-Key no longer exists")
        return found

    def _claim(self, key: str, fp: str, request: NotificationRequest,
               requested_by: str) -> Outcome | Notification:
        """The stored answer for ``key``, or a new ``pending`` record."""
        try:
            with self.uow.write() as repo:
                stored = repo.idempotency.lookup(SCOPE, key, fp)
                if stored is not None:
                    return stored
                repo.idempotency.claim(SCOPE, key, fp)
                pending = Notification.pending(request, key=key, requested_by=requested_by,
                                               now=utcnow())
                repo.add(pending)
                return pending
        except WriteConflict as exc:  # a concurrent first use of the key won the claim
            with self.uow.read() as repo:
                stored = repo.idempotency.lookup(SCOPE, key, fp)
            if stored is not None:
                return stored
            raise Conflict(f"a request with Idempotency-Key {key!r} is being processed",
                           kind="request-in-progress") from exc

    def _fail(self, key: str, failed: Notification) -> None:
        log.warning("notification %s not sent: %s", failed.id, failed.failure_reason,
                    extra={"notification_id": failed.id, "provider": failed.provider})
        with self.uow.write() as repo:
            repo.save_outcome(failed)
            repo.release_claim(SCOPE, key)

    @staticmethod
    def _provider_problem(notification_id: str, exc: ProviderError) -> Exception:
        # The provider's reason is logged (and kept on the record for staff); the 5xx
        # body stays generic (charter.problems).
        detail = f"the {exc.provider} provider did not accept the message: {exc.reason}"
        if exc.permanent:
            return BadGateway(detail, kind="notification-not-sent",
                              notification_id=notification_id)
        return ServiceUnavailable(detail, kind="notification-provider-unavailable",
                                  headers={"Retry-After": RETRY_AFTER_SECONDS},
                                  notification_id=notification_id)
