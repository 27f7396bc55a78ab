"""HTTP handlers, one per operationId of ``openapi/notifications/v1.yaml``; thin by design.

Connexion has already checked the token, the scopes and the request against the spec.
Each handler turns its arguments into a use-case call (:mod:`.services` decides who may
do what: staff, admins and platform services only) and serialises the domain objects it
gets back.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from flask import request

from charter.clock import rfc3339
from charter.security.principal import Principal
from charter.service import context
from charter.usecases import page_json

from .domain import Notification, NotificationFilter
from .services import NotificationService

BASE = "/v1"

TokenInfo = dict[str, Any]
Doc = dict[str, Any]


def _svc() -> NotificationService:
    service: NotificationService = context().deps["notifications"]
    return service


def iso(ts: datetime | None) -> str | None:
    """RFC 3339 in UTC with a ``Z`` (``None`` stays ``None``)."""
    return None if ts is None else rfc3339(ts)


def notification_doc(n: Notification) -> Doc:
    return {
        "id": n.id,
        "channel": str(n.channel),
        "recipient": n.recipient,
        "subject": n.subject,
        "body": n.body,
        "order_id": n.order_id,
        "template": n.template,
        "status": str(n.status),
        "provider": n.provider,
        "provider_reference": n.provider_reference,
        "failure_reason": n.failure_reason,
        "created_at": iso(n.created_at),
        "sent_at": iso(n.sent_at),
    }


def send_notification(body: dict[str, Any], token_info: TokenInfo) -> Any:
    # Required and pattern-checked by the spec; Connexion does not pass headers as args.
    key = request.headers["Idempotency-Key"]
    sent = _svc().send(Principal.from_token_info(token_info), key, body)
    headers = {"Location": f"{BASE}/notifications/{sent.notification.id}"}
    if sent.replayed:
        headers["Idempotent-Replayed"] = "true"
    return notification_doc(sent.notification), 201, headers


def list_notifications(
    token_info: TokenInfo,
    page: int = 1,
    page_size: int = 20,
    recipient: str | None = None,
    order_id: str | None = None,
    status: str | None = None,
    channel: str | None = None,
) -> Any:
    flt = NotificationFilter(recipient=recipient, order_id=order_id, status=status,
                             channel=channel)
    listing = _svc().list(Principal.from_token_info(token_info), flt, page, page_size)
    return page_json(listing, notification_doc)


def get_notification(notification_id: str, token_info: TokenInfo) -> Any:
    found = _svc().get(Principal.from_token_info(token_info), notification_id)
    return notification_doc(found)
