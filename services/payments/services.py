"""Payments use cases: each unsafe one runs once per Idempotency-Key, in one transaction.

They return domain objects (``api.py`` serialises them); the answer stored with a key is
the JSON snapshot of the payment (:data:`PAYMENT`; :data:`REFUND` for refunds), so a
replay gives back the first answer exactly. The service depends only on ports:
``uow: UnitOfWork[PaymentsRepository]`` (:mod:`charter.unit_of_work`) and a
:class:`PaymentProvider` (:mod:`.ports`).

Every unsafe operation goes through :func:`charter.idempotency.run_once`: the key
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
authorisation is not an error here: it is stored, and its outcome has status 402 with
the declined :class:`Payment` as its body (``api.py`` answers it as a problem).
"""

from __future__ import annotations

import hashlib
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from charter.idempotency import Outcome
from charter.problems import BadGateway, Conflict, Forbidden, NotFound, Problem, Unprocessable
from charter.security.principal import Principal
from charter.snapshots import JsonSnapshot
from charter.unit_of_work import UnitOfWork
from charter.usecases import Page, Refusals, run_once_as, visible

from . import domain
from .domain import Payment, PaymentFilter, PaymentMethod, Refund
from .ports import PaymentProvider, PaymentsRepository, ProviderError

log = logging.getLogger(__name__)

T = TypeVar("T")

PROVIDER_RETRY_AFTER = "1"

PAYMENT = JsonSnapshot[Payment](Payment)
REFUND = JsonSnapshot[tuple[Refund, Payment]](tuple[Refund, Payment])
"""JSON forms of the answers stored with idempotency keys (a payment; a refund and its payment)."""


@dataclass(frozen=True)
class AuthorizeRequest:
    """What a client asks to authorise (the body of ``authorize_payment``)."""

    order_id: str
    amount: int
    currency: str
    card_number: str | None = None
    method: str | None = None
    customer_id: str | None = None
    description: str | None = None


def new_payment_id() -> str:
    return f"pay_{uuid.uuid4().hex}"


def new_refund_id() -> str:
    return f"ref_{uuid.uuid4().hex}"


def provider_failed(exc: ProviderError) -> Problem:
    log.warning("payment provider failed: %s", exc)
    return BadGateway(
        "the payment provider failed; nothing was charged — retry later with the same "
        "Idempotency-Key",
        kind="payment-provider-error",
        headers={"Retry-After": PROVIDER_RETRY_AFTER},
        retriable=True,
    )


def as_problem(exc: domain.PaymentError) -> Problem:
    if isinstance(exc, domain.InvalidTransition):
        return Conflict(str(exc), kind="invalid-payment-state")
    return Unprocessable(str(exc))


business_rules = Refusals(domain.PaymentError, as_problem)
"""``with business_rules():`` answers a refused business rule with its problem."""


def caller_key(principal: Principal) -> str:
    """The caller's part of an idempotency scope (hashed when long)."""
    sub = principal.sub
    return sub if len(sub) <= 64 else hashlib.sha256(sub.encode()).hexdigest()[:32]


class PaymentsService:
    """The payments use cases over one unit of work and one provider."""

    SCOPE = "payments"

    def __init__(self, uow: UnitOfWork[PaymentsRepository], provider: PaymentProvider) -> None:
        self.uow = uow
        self.provider = provider

    # helpers ---------------------------------------------------------------------------
    def _idempotent(self, scope: str, key: str, request: Any, snapshot: JsonSnapshot[T],
                    action: Callable[[PaymentsRepository], tuple[int, T]]) -> Outcome:
        """Run ``action`` once per key in one write transaction; the body is its result."""
        return run_once_as(self.uow, snapshot, scope=f"{self.SCOPE}.{scope}", key=key,
                           request=request, action=action)

    def _visible(self, principal: Principal, payment_id: str) -> Payment:
        """The payment, or 404 if it does not exist or is someone else's."""
        with self.uow.read() as repo:
            payment = repo.get(payment_id)
        return visible(principal, payment, lambda p: p.customer_id,
                       f"payment {payment_id} does not exist")

    def _check_actionable(self, principal: Principal, payment_id: str) -> None:
        """Refuse unless the caller may capture, void or refund the payment.

        Staff, admins and platform services may act on any payment; anyone else only on
        a payment they authorised themselves. A payment the orders service made on a
        customer's behalf is visible to the customer but not theirs to refund (403).
        """
        payment = self._visible(principal, payment_id)
        if not principal.is_privileged and payment.created_by != principal.sub:
            raise Forbidden(
                f"payment {payment_id} was made on your behalf (order {payment.order_id}); "
                "only staff or the orders service may capture, void or refund it"
            )

    @staticmethod
    def _locked(repo: PaymentsRepository, payment_id: str) -> Payment:
        payment = repo.get(payment_id, lock=True)
        if payment is None:  # pragma: no cover - payments are never deleted
            raise NotFound(f"payment {payment_id} does not exist")
        return payment

    @staticmethod
    def customer_for(principal: Principal, requested: str | None) -> str:
        """Whom a new payment belongs to: the caller, or (privileged callers) ``requested``."""
        if requested is None or requested == principal.sub:
            return principal.sub
        if principal.is_privileged:
            return requested
        raise Forbidden("only staff, admins and platform services may pay for another customer")

    # unsafe operations -----------------------------------------------------------------
    def authorize(self, principal: Principal, key: str, request: AuthorizeRequest) -> Outcome:
        """Authorise a payment: 201 authorized, or 402 declined (both stored).

        The outcome's body is the :class:`Payment` (the first answer on a replay).
        """
        customer_id = self.customer_for(principal, request.customer_id)
        with business_rules():
            method = PaymentMethod.parse(request.card_number, request.method)
            amount = domain.check_amount(request.amount)
            currency = domain.check_currency(request.currency)
        scope = f"authorize:{caller_key(principal)}"
        fingerprinted = {k: v for k, v in vars(request).items() if v is not None}

        def action(repo: PaymentsRepository) -> tuple[int, Payment]:
            try:
                answer = self.provider.authorize(
                    amount=amount, currency=currency, method=method,
                    idempotency_key=f"{scope}:{key}",
                )
            except ProviderError as exc:
                raise provider_failed(exc) from exc
            payment = Payment(
                id=new_payment_id(), order_id=request.order_id, customer_id=customer_id,
                amount=amount, currency=currency,
                status=(domain.PaymentStatus.AUTHORIZED if answer.approved
                        else domain.PaymentStatus.DECLINED),
                created_by=principal.sub, method=method.summary(),
                description=request.description, provider=self.provider.name,
                provider_reference=answer.reference, decline_code=answer.decline_code,
                decline_message=answer.message,
            )
            repo.add(payment)
            if answer.approved:
                log.info("payment %s authorised for order %s", payment.id, payment.order_id)
                return 201, payment
            log.info("payment %s declined (%s)", payment.id, answer.decline_code)
            return 402, payment

        return self._idempotent(scope, key, fingerprinted, PAYMENT, action)

    def capture(self, principal: Principal, payment_id: str, key: str,
                amount: int | None = None) -> Outcome:
        """authorized → captured (``amount`` ≤ authorised; default all)."""
        self._check_actionable(principal, payment_id)

        def action(repo: PaymentsRepository) -> tuple[int, Payment]:
            payment = self._locked(repo, payment_id)
            with business_rules():
                taken = payment.capture(amount)
            try:
                payment.capture_reference = self.provider.capture(
                    reference=payment.provider_reference, amount=taken,
                    currency=payment.currency,
                    idempotency_key=f"capture:{payment_id}:{key}",
                )
            except ProviderError as exc:
                raise provider_failed(exc) from exc
            repo.save(payment)
            return 200, payment

        return self._idempotent(f"capture:{payment_id}", key, {"amount": amount}, PAYMENT,
                                action)

    def void(self, principal: Principal, payment_id: str, key: str) -> Outcome:
        """authorized → voided."""
        self._check_actionable(principal, payment_id)

        def action(repo: PaymentsRepository) -> tuple[int, Payment]:
            payment = self._locked(repo, payment_id)
            with business_rules():
                payment.void()
            try:
                payment.void_reference = self.provider.void(
                    reference=payment.provider_reference,
                    idempotency_key=f"void:{payment_id}:{key}",
                )
            except ProviderError as exc:
                raise provider_failed(exc) from exc
            repo.save(payment)
            return 200, payment

        return self._idempotent(f"void:{payment_id}", key, {}, PAYMENT, action)

    def refund(self, principal: Principal, payment_id: str, key: str,
               amount: int | None = None, reason: str | None = None) -> Outcome:
        """Refund ``amount`` (default: everything refundable) of a captured payment.

        The outcome's body is ``(refund, payment)``.
        """
        self._check_actionable(principal, payment_id)

        def action(repo: PaymentsRepository) -> tuple[int, tuple[Refund, Payment]]:
            payment = self._locked(repo, payment_id)
            with business_rules():
                given = payment.refund(amount)
            try:
                reference = self.provider.refund(
                    reference=payment.capture_reference or payment.provider_reference,
                    amount=given, currency=payment.currency,
                    idempotency_key=f"refund:{payment_id}:{key}",
                )
            except ProviderError as exc:
                raise provider_failed(exc) from exc
            refund = Refund(new_refund_id(), payment_id, given, reason, reference)
            repo.save(payment)
            repo.add_refund(refund)
            payment.refunds.append(refund)
            return 201, (refund, payment)

        return self._idempotent(f"refund:{payment_id}", key,
                                {"amount": amount, "reason": reason}, REFUND, action)

    # reads -----------------------------------------------------------------------------
    def get(self, principal: Principal, payment_id: str) -> Payment:
        """The payment, or 404 if it does not exist or is someone else's."""
        return self._visible(principal, payment_id)

    def list(self, principal: Principal, *, order_id: str | None = None,
             customer_id: str | None = None, status: str | None = None,
             page: int = 1, page_size: int = 20) -> Page[Payment]:
        """Customers see their own payments; privileged callers everyone's."""
        if not principal.is_privileged:
            if customer_id is not None and customer_id != principal.sub:
                raise Forbidden("customers may list only their own payments")
            customer_id = principal.sub
        flt = PaymentFilter(customer_id=customer_id, order_id=order_id, status=status)
        with self.uow.read() as repo:
            items, total = repo.page(flt, Page.offset(page, page_size), page_size)
        return Page(items, page, page_size, total)
