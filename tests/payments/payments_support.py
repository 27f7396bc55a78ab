"""Helpers of the payments tests (importable: tests/payments is on sys.path): cards,
bodies and a caller with its token.

Databases, ``run_threads``, ``assert_problem`` and tokens come from the shared plugin
(docs/testing.md).
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import func, select

from charter.db import Database, SqlUnitOfWork
from charter.testing import TokenFactory
from services.payments.services import PaymentsService
from services.payments.store import payments

GOOD_CARD = "4242424242424242"
DECLINED_CARD = "4000000000000002"
NO_FUNDS_CARD = "4000000000009995"
ERROR_CARD = "4000000000000119"
WRITE = "payments:write"
READ = "payments:read"
BOTH = f"{READ} {WRITE}"


def new_key() -> str:
    return f"key-{uuid.uuid4().hex}"


def payment_body(**changes: Any) -> dict[str, Any]:
    """A valid authorisation body (``None`` values remove a field)."""
    body: dict[str, Any] = {"order_id": "ord-1", "amount": 4980, "currency": "EUR",
                            "card_number": GOOD_CARD}
    body.update(changes)
    return {k: v for k, v in body.items() if v is not None}


class Caller:
    """A bearer token for one identity, and helpers to call the payments API with it."""

    def __init__(self, client: Any, tokens: TokenFactory, sub: str, role: str | None,
                 scope: str = BOTH) -> None:
        self.client = client
        self.sub = sub
        claims: dict[str, Any] = {} if role is None else {"role": role}
        self.token = tokens.token(sub=sub, scope=scope, **claims)

    def headers(self, key: str | None = None) -> dict[str, str]:
        headers = {"Authorization": f"Bearer {self.token}"}
        if key is not None:
            headers["Idempotency-Key"] = key
        return headers

    def authorize(self, key: str | None = None, **changes: Any) -> Any:
        return self.client.post("/v1/payments", json=payment_body(**changes),
                                headers=self.headers(key or new_key()))

    def post(self, path: str, body: Any = None, key: str | None = None) -> Any:
        kwargs: dict[str, Any] = {"headers": self.headers(key or new_key())}
        if body is not None:
            kwargs["json"] = body
        return self.client.post(path, **kwargs)

    def capture(self, payment_id: str, body: Any = None, key: str | None = None) -> Any:
        return self.post(f"/v1/payments/{payment_id}/capture", body, key)

    def void(self, payment_id: str, key: str | None = None) -> Any:
        return self.post(f"/v1/payments/{payment_id}/void", None, key)

    def refund(self, payment_id: str, body: Any = None, key: str | None = None) -> Any:
        return self.post(f"/v1/payments/{payment_id}/refunds", body, key)

    def get(self, payment_id: str) -> Any:
        return self.client.get(f"/v1/payments/{payment_id}", headers=self.headers())

    def list(self, **params: Any) -> Any:
        return self.client.get("/v1/payments", headers=self.headers(), params=params)


def count_payments(service: PaymentsService) -> int:
    with database_of(service).session() as session:
        return int(session.scalar(select(func.count()).select_from(payments)) or 0)


def database_of(service: PaymentsService) -> Database:
    """The database behind a service wired by ``app.payments_service``."""
    assert isinstance(service.uow, SqlUnitOfWork)
    return service.uow.db
