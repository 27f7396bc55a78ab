"""Payments use cases: each unsafe one runs once per Idempotency-Key, in one transaction.

Every unsafe operation goes through :meth:`charter.idempotency.Idempotency.run`: the key
is claimed, the domain decides, the provider is called (with an idempotency key derived
from the client's), the new state and the answer are stored — all in one transaction. A
repeated key replays the stored answer without calling the provider; two concurrent
requests with one key are serialised by the key's unique index (PostgreSQL) or the
write lock (SQLite), so only one reaches the provider. If the provider fails, everything
rolls back (claim included) and the client may retry with the same key.

Idempotency scopes: ``payments.authorize:<caller>`` (keys are the caller's own, so two
callers never see each other's answers) and ``payments.<op>:<payment_id>`` for the
operations on one payment (whose ownership is checked before anything is replayed).

Who may act: everyone sees only payments they may access (:class:`Principal`: customers
their own, staff/admins/services all; otherwise 404). Capture, void and refund are for
staff, admins, services, and the caller who authorised the payment — a customer cannot
refund a payment the orders service made for them (403).

Errors: refused transitions are 409, refused amounts or methods 422, someone else's or an
unknown payment 404, a provider failure 502 with ``Retry-After``. A declined
authorisation is not an error here: it is stored and answered with 402 (see
:func:`declined_problem`).
"""

from __future__ import annotations

import hashlib
import logging
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from sqlalchemy.engine import RowMapping
from sqlalchemy.orm import Session

from charter.idempotency import Idempotency, Outcome
from charter.problems import (
    BadGateway,
    Conflict,
    Forbidden,
    NotFound,
    Problem,
    Unprocessable,
)
from charter.security.principal import Principal

from . import domain
from .ports import PaymentProvider, ProviderError
from .store import (
    PaymentFilter,
    PaymentsRepository,
    aware,
    begin_write,
    idempotency_keys,
)

log = logging.getLogger(__name__)

Doc = dict[str, Any]

DECLINED_TYPE = "https://charter.example/problems/payment-declined"
PROVIDER_RETRY_AFTER = "1"


def iso(ts: datetime) -> str:
    return aware(ts).isoformat().replace("+00:00", "Z")


def new_payment_id() -> str:
    return f"pay_{uuid.uuid4().hex}"


def new_refund_id() -> str:
    return f"ref_{uuid.uuid4().hex}"


def refund_doc(row: RowMapping, currency: str) -> Doc:
    return {
        "id": row["id"],
        "payment_id": row["payment_id"],
        "amount": int(row["amount"]),
        "currency": currency,
        "reason": row["reason"],
        "provider_reference": row["provider_reference"],
        "created_at": iso(row["created_at"]),
    }


def payment_doc(row: RowMapping, refund_rows: list[RowMapping]) -> Doc:
    status = domain.PaymentStatus(row["status"])
    captured, refunded = int(row["captured_amount"]), int(row["refunded_amount"])
    return {
        "id": row["id"],
        "order_id": row["order_id"],
        "customer_id": row["customer_id"],
        "amount": int(row["amount"]),
        "currency": row["currency"],
        "status": str(status),
        "captured_amount": captured,
        "refunded_amount": refunded,
        "refundable_amount": captured - refunded if status in domain.REFUNDABLE else 0,
        "payment_method": {
            "type": row["method_type"],
            "brand": row["card_brand"],
            "last4": row["card_last4"],
            "token": row["method_token"],
        },
        "description": row["description"],
        "decline_code": row["decline_code"],
        "decline_message": row["decline_message"],
        "provider": row["provider"],
        "provider_reference": row["provider_reference"],
        "capture_reference": row["capture_reference"],
        "void_reference": row["void_reference"],
        "refunds": [refund_doc(r, row["currency"]) for r in refund_rows],
        "created_at": iso(row["created_at"]),
        "updated_at": iso(row["updated_at"]),
    }


def declined_problem(payment: Doc) -> Doc:
    """The 402 problem document of a declined authorisation (stored for replays)."""
    code = payment["decline_code"] or "declined"
    return {
        "type": DECLINED_TYPE,
        "title": "Payment declined",
        "status": 402,
        "detail": f"the payment provider declined the payment: {code}",
        "decline_code": code,
        "payment_id": payment["id"],
        "payment": payment,
    }


def provider_failed(exc: ProviderError) -> Problem:
    log.warning("payment provider failed: %s", exc)
    return BadGateway(
        "the payment provider failed; nothing was charged — retry later with the same "
        "Idempotency-Key",
        title="Payment provider error",
        headers={"Retry-After": PROVIDER_RETRY_AFTER},
        retriable=True,
    )


def as_problem(exc: domain.PaymentError) -> Problem:
    if isinstance(exc, domain.InvalidTransition):
        return Conflict(str(exc), title="Invalid payment state")
    return Unprocessable(str(exc))


@contextmanager
def business_rules() -> Iterator[None]:
    try:
        yield
    except domain.PaymentError as exc:
        raise as_problem(exc) from exc


def caller_key(principal: Principal) -> str:
    """The caller's part of an idempotency scope (hashed when long)."""
    sub = principal.sub
    return sub if len(sub) <= 64 else hashlib.sha256(sub.encode()).hexdigest()[:32]


class PaymentsService:
    """The payments use cases over one database and one provider."""

    SCOPE = "payments"

    def __init__(self, db: Any, provider: PaymentProvider) -> None:
        self.db = db
        self.provider = provider
        self.idempotency = Idempotency(idempotency_keys)

    # helpers ---------------------------------------------------------------------------
    def _idempotent(self, scope: str, key: str, request: Any,
                    action: Callable[[Session], tuple[int, Any]]) -> Outcome:
        return self.idempotency.run(
            self.db.session,
            scope=f"{self.SCOPE}.{scope}",
            key=key,
            request=request,
            action=action,
            begin=begin_write,
        )

    @staticmethod
    def _doc(repo: PaymentsRepository, payment_id: str) -> Doc:
        row = repo.row(payment_id)
        assert row is not None
        return payment_doc(row, repo.refunds_of([payment_id])[payment_id])

    def _visible_row(self, principal: Principal, payment_id: str) -> RowMapping:
        """The payment's row, or 404 if it does not exist or is someone else's."""
        with self.db.session() as session:
            row = PaymentsRepository(session).row(payment_id)
        if row is None or not principal.can_access(row["customer_id"]):
            raise NotFound(f"payment {payment_id} does not exist")
        return row

    def _actionable_row(self, principal: Principal, payment_id: str) -> RowMapping:
        """The row of a payment the caller may capture, void or refund.

        Staff, admins and platform services may act on any payment; anyone else only on
        a payment they authorised themselves. A payment the orders service made on a
        customer's behalf is visible to the customer but not theirs to refund (403).
        """
        row = self._visible_row(principal, payment_id)
        if not principal.is_privileged and row["created_by"] != principal.sub:
            raise Forbidden(
                f"payment {payment_id} was made on your behalf (order {row['order_id']}); "
                "only staff or the orders service may capture, void or refund it"
            )
        return row

    @staticmethod
    def _locked(repo: PaymentsRepository, payment_id: str) -> tuple[RowMapping, domain.Payment]:
        row = repo.row(payment_id, lock=True)
        if row is None:  # pragma: no cover - payments are never deleted
            raise NotFound(f"payment {payment_id} does not exist")
        return row, repo.to_domain(row)

    @staticmethod
    def customer_for(principal: Principal, requested: str | None) -> str:
        """Whom a new payment belongs to: the caller, or (privileged callers) ``requested``."""
        if requested is None or requested == principal.sub:
            return principal.sub
        if principal.is_privileged:
            return requested
        raise Forbidden("only staff, admins and platform services may pay for another customer")

    # unsafe operations -----------------------------------------------------------------
    def authorize(self, principal: Principal, key: str, body: Mapping[str, Any]) -> Outcome:
        """Authorise a payment: 201 authorized, or 402 declined (both stored)."""
        customer_id = self.customer_for(principal, body.get("customer_id"))
        with business_rules():
            method = domain.PaymentMethod.parse(body.get("card_number"), body.get("method"))
            amount = domain.check_amount(body["amount"])
            currency = domain.check_currency(body["currency"])
        scope = f"authorize:{caller_key(principal)}"

        def action(session: Session) -> tuple[int, Any]:
            try:
                answer = self.provider.authorize(
                    amount=amount, currency=currency, method=method,
                    idempotency_key=f"{scope}:{key}",
                )
            except ProviderError as exc:
                raise provider_failed(exc) from exc
            status = (domain.PaymentStatus.AUTHORIZED if answer.approved
                      else domain.PaymentStatus.DECLINED)
            payment = domain.Payment(id=new_payment_id(), order_id=body["order_id"],
                                     customer_id=customer_id, amount=amount,
                                     currency=currency, status=status)
            repo = PaymentsRepository(session)
            repo.add(payment, method=method, created_by=principal.sub,
                     description=body.get("description"),
                     provider=self.provider.name, provider_reference=answer.reference,
                     decline_code=answer.decline_code, decline_message=answer.message)
            doc = self._doc(repo, payment.id)
            if answer.approved:
                log.info("payment %s authorised for order %s", payment.id, payment.order_id)
                return 201, doc
            log.info("payment %s declined (%s)", payment.id, answer.decline_code)
            return 402, declined_problem(doc)

        return self._idempotent(scope, key, dict(body), action)

    def capture(self, principal: Principal, payment_id: str, key: str,
                amount: int | None = None) -> Outcome:
        """authorized → captured (``amount`` ≤ authorised; default all)."""
        self._actionable_row(principal, payment_id)

        def action(session: Session) -> tuple[int, Any]:
            repo = PaymentsRepository(session)
            row, payment = self._locked(repo, payment_id)
            with business_rules():
                taken = payment.capture(amount)
            try:
                reference = self.provider.capture(
                    reference=row["provider_reference"], amount=taken,
                    currency=payment.currency,
                    idempotency_key=f"capture:{payment_id}:{key}",
                )
            except ProviderError as exc:
                raise provider_failed(exc) from exc
            repo.save(payment, capture_reference=reference)
            return 200, self._doc(repo, payment_id)

        return self._idempotent(f"capture:{payment_id}", key, {"amount": amount}, action)

    def void(self, principal: Principal, payment_id: str, key: str) -> Outcome:
        """authorized → voided."""
        self._actionable_row(principal, payment_id)

        def action(session: Session) -> tuple[int, Any]:
            repo = PaymentsRepository(session)
            row, payment = self._locked(repo, payment_id)
            with business_rules():
                payment.void()
            try:
                reference = self.provider.void(
                    reference=row["provider_reference"],
                    idempotency_key=f"void:{payment_id}:{key}",
                )
            except ProviderError as exc:
                raise provider_failed(exc) from exc
            repo.save(payment, void_reference=reference)
            return 200, self._doc(repo, payment_id)

        return self._idempotent(f"void:{payment_id}", key, {}, action)

    def refund(self, principal: Principal, payment_id: str, key: str,
               amount: int | None = None, reason: str | None = None) -> Outcome:
        """Refund ``amount`` (default: everything refundable) of a captured payment."""
        self._actionable_row(principal, payment_id)

        def action(session: Session) -> tuple[int, Any]:
            repo = PaymentsRepository(session)
            row, payment = self._locked(repo, payment_id)
            with business_rules():
                given = payment.refund(amount)
            try:
                reference = self.provider.refund(
                    reference=row["capture_reference"] or row["provider_reference"],
                    amount=given, currency=payment.currency,
                    idempotency_key=f"refund:{payment_id}:{key}",
                )
            except ProviderError as exc:
                raise provider_failed(exc) from exc
            repo.save(payment)
            refund_row = repo.add_refund(new_refund_id(), payment_id, given, reason, reference)
            doc = refund_doc(refund_row, payment.currency)
            doc["payment"] = self._doc(repo, payment_id)
            return 201, doc

        return self._idempotent(f"refund:{payment_id}", key,
                                {"amount": amount, "reason": reason}, action)

    # reads -----------------------------------------------------------------------------
    def get(self, principal: Principal, payment_id: str) -> Doc:
        row = self._visible_row(principal, payment_id)
        with self.db.session() as session:
            refund_rows = PaymentsRepository(session).refunds_of([payment_id])[payment_id]
        return payment_doc(row, refund_rows)

    def list(self, principal: Principal, *, order_id: str | None = None,
             customer_id: str | None = None, status: str | None = None,
             page: int = 1, page_size: int = 20) -> Doc:
        """Customers see their own payments; privileged callers everyone's."""
        if not principal.is_privileged:
            if customer_id is not None and customer_id != principal.sub:
                raise Forbidden("customers may list only their own payments")
            customer_id = principal.sub
        flt = PaymentFilter(customer_id=customer_id, order_id=order_id, status=status)
        with self.db.session() as session:
            repo = PaymentsRepository(session)
            rows, total = repo.page(flt, (page - 1) * page_size, page_size)
            refund_rows = repo.refunds_of([r["id"] for r in rows])
        items = [payment_doc(r, refund_rows[r["id"]]) for r in rows]
        return {"items": items, "page": page, "page_size": page_size, "total": total}
