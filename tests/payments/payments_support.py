"""Helpers shared by the payments tests (importable: tests/payments is on sys.path)."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from typing import Any

from sqlalchemy import func, select

from charter import migrations
from charter.db import Database, SqlUnitOfWork
from charter.problems import Problem
from charter.security.principal import Principal
from charter.testing import TokenFactory
from services.payments.app import MIGRATIONS_DIR, payments_service
from services.payments.clients import SimulatedProvider
from services.payments.services import AuthorizeRequest, PaymentsService
from services.payments.store import idempotency_keys, payments

GOOD_CARD = "4242424242424242"
DECLINED_CARD = "4000000000000002"
NO_FUNDS_CARD = "4000000000009995"
ERROR_CARD = "4000000000000119"
WRITE = "payments:write"
READ = "payments:read"
BOTH = f"{READ} {WRITE}"


def migrated(url: str) -> Database:
    """A database at ``url`` brought to the newest payments revision."""
    migrations.upgrade("payments", MIGRATIONS_DIR, url)
    return Database(url)


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


def run_threads(count: int, work: Callable[[int], Any]) -> list[Any]:
    """Run ``work(i)`` in ``count`` threads released together; results or exceptions."""
    barrier = threading.Barrier(count)
    results: list[Any] = [None] * count

    def target(i: int) -> None:
        barrier.wait()
        try:
            results[i] = work(i)
        except BaseException as exc:
            results[i] = exc

    threads = [threading.Thread(target=target, args=(i,)) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    return results


def assert_problem(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, f"{response.status_code} {response.text}"
    assert response.headers["content-type"].startswith("application/problem+json")
    doc: dict[str, Any] = response.json()
    assert doc["status"] == status
    return doc


def count_payments(service: PaymentsService) -> int:
    with database_of(service).session() as session:
        return int(session.scalar(select(func.count()).select_from(payments)) or 0)


def new_service(url: str) -> tuple[PaymentsService, SimulatedProvider]:
    provider = SimulatedProvider(decline_above=1_000_000)
    return payments_service(migrated(url), provider), provider


def database_of(service: PaymentsService) -> Database:
    """The database behind a service wired by ``app.payments_service``."""
    assert isinstance(service.uow, SqlUnitOfWork)
    return service.uow.db


def check_concurrent_same_key(service: PaymentsService, provider: SimulatedProvider,
                              threads: int = 12) -> None:
    """``threads`` identical requests with one key: one authorisation, one answer."""
    principal = Principal(sub="alice", role="customer", scopes=frozenset())
    body = payment_body()
    results = run_threads(threads, lambda _i: service.authorize(principal, "race-key-01",
                                                                 AuthorizeRequest(**body)))
    errors = [r for r in results if isinstance(r, BaseException)]
    assert not errors, errors
    assert len({r.body.id for r in results}) == 1
    assert sum(1 for r in results if not r.replayed) == 1
    assert len(provider.calls_of("authorize")) == 1 and provider.charges == 1
    assert count_payments(service) == 1
    with database_of(service).session() as session:
        assert session.scalar(select(func.count()).select_from(idempotency_keys)) == 1


def check_concurrent_captures(service: PaymentsService, provider: SimulatedProvider,
                              threads: int = 10) -> None:
    """Concurrent captures of one payment with different keys: one wins, the rest 409."""
    principal = Principal(sub="alice", role="customer", scopes=frozenset())
    pid = service.authorize(principal, "auth-key-01", AuthorizeRequest(**payment_body())).body.id
    results = run_threads(threads, lambda i: service.capture(principal, pid, f"cap-key-{i:03d}"))
    won = [r for r in results if not isinstance(r, BaseException)]
    lost = [r for r in results if isinstance(r, BaseException)]
    assert len(won) == 1, results
    assert all(isinstance(e, Problem) and e.status == 409 for e in lost), lost
    assert len(provider.calls_of("capture")) == 1


def check_concurrent_refunds(service: PaymentsService, threads: int = 10) -> None:
    """Concurrent partial refunds never exceed the captured amount."""
    principal = Principal(sub="alice", role="customer", scopes=frozenset())
    pid = service.authorize(principal, "auth-key-02",
                            AuthorizeRequest(**payment_body(amount=1000))).body.id
    service.capture(principal, pid, "cap-key-main", 500)
    results = run_threads(threads, lambda i: service.refund(principal, pid, f"ref-key-{i:03d}",
                                                            100))
    won = [r for r in results if not isinstance(r, BaseException)]
    lost = [r for r in results if isinstance(r, BaseException)]
    assert len(won) == 5, results
    assert all(isinstance(e, Problem) and e.status in (409, 422) for e in lost), lost
    assert service.get(principal, pid).refunded_amount == 500
