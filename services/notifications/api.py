"""HTTP handlers, one per operationId of ``openapi/notifications/v1.yaml``; thin by design.

Connexion has already checked the token, the scopes and the request against the spec.
Every operation is for staff, admins and platform services only
(:meth:`Principal.require_privileged`): customers never read or send notifications,
even with a token that carries the scope.
"""

from __future__ import annotations

from typing import Any

from flask import request

from charter.security.principal import Principal
from charter.service import context

from .services import NotificationService
from .store import NotificationFilter

BASE = "/v1"

TokenInfo = dict[str, Any]


def _svc() -> NotificationService:
    service: NotificationService = context().deps["notifications"]
    return service


def _privileged(token_info: TokenInfo) -> Principal:
    principal = Principal.from_token_info(token_info)
    principal.require_privileged()
    return principal


def send_notification(body: dict[str, Any], token_info: TokenInfo) -> Any:
    principal = _privileged(token_info)
    # Required and pattern-checked by the spec; Connexion does not pass headers as args.
    key = request.headers["Idempotency-Key"]
    outcome = _svc().send(key, body, requested_by=principal.client_id or principal.sub)
    headers = {"Location": f"{BASE}/notifications/{outcome.body['id']}"}
    if outcome.replayed:
        headers["Idempotent-Replayed"] = "true"
    return outcome.body, outcome.status, headers


def list_notifications(
    token_info: TokenInfo,
    page: int = 1,
    page_size: int = 20,
    recipient: str | None = None,
    order_id: str | None = None,
    status: str | None = None,
    channel: str | None = None,
) -> Any:
    _privileged(token_info)
    flt = NotificationFilter(recipient=recipient, order_id=order_id, status=status,
                             channel=channel)
    return _svc().list(flt, page, page_size)


def get_notification(notification_id: str, token_info: TokenInfo) -> Any:
    _privileged(token_info)
    return _svc().get(notification_id)
