"""HTTP handlers, one per operationId of ``openapi/loyalty/v1.yaml``; thin by design.

Connexion has already checked the token, the scopes and the request against the spec.
Each handler turns its arguments into a use-case call (:mod:`.services` decides who may
do what) and serialises the domain objects it gets back.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from urllib.parse import quote

from charter.clock import rfc3339
from charter.security.principal import Principal
from charter.service import context
from charter.usecases import Page, page_json

from . import metrics
from .domain import Account, Award, Entry, EntryType, Redemption
from .services import LoyaltyService, Result

BASE = "/v1"

TokenInfo = dict[str, Any]
Doc = dict[str, Any]


def _svc() -> LoyaltyService:
    service: LoyaltyService = context().deps["loyalty"]
    return service


def _caller(token_info: TokenInfo) -> Principal:
    return Principal.from_token_info(token_info)


# serialisation -------------------------------------------------------------------------
def iso(ts: datetime | None) -> str | None:
    """RFC 3339 in UTC with a ``Z`` (``None`` stays ``None``)."""
    return None if ts is None else rfc3339(ts)


def entry_doc(entry: Entry) -> Doc:
    """One ledger entry as the history shows it (``points`` is the signed change)."""
    doc: Doc = {
        "id": entry.id,
        "customer_id": entry.customer_id,
        "type": str(entry.type),
        "points": entry.points,
        "order_id": entry.order_id,
        "amount": entry.amount,
        "currency": entry.currency,
        "balance_after": entry.balance_after,
        "created_at": iso(entry.created_at),
    }
    if entry.type is EntryType.AWARD_REVERSAL:
        doc["shortfall"] = entry.shortfall
    return doc


def award_doc(award: Award) -> Doc:
    e, r = award.entry, award.reversal
    return {
        "order_id": e.order_id,
        "customer_id": e.customer_id,
        "status": award.status,
        "points": e.points,
        "amount": e.amount,
        "currency": e.currency,
        "balance_after": e.balance_after,
        "created_at": iso(e.created_at),
        "reversal": None if r is None else {
            "points": -r.points,
            "shortfall": r.shortfall,
            "balance_after": r.balance_after,
            "created_at": iso(r.created_at),
        },
    }


def redemption_doc(redemption: Redemption) -> Doc:
    e, r = redemption.entry, redemption.reversal
    return {
        "order_id": e.order_id,
        "customer_id": e.customer_id,
        "status": redemption.status,
        "points": redemption.points,
        "balance_after": e.balance_after,
        "created_at": iso(e.created_at),
        "reversal": None if r is None else {
            "points": r.points,
            "balance_after": r.balance_after,
            "created_at": iso(r.created_at),
        },
    }


def balance_doc(account: Account) -> Doc:
    return {"customer_id": account.customer_id, "balance": account.balance,
            "updated_at": iso(account.updated_at)}


def page_doc(page: Page[Entry]) -> Doc:
    return page_json(page, entry_doc)


def _award_answer(result: Result[Award]) -> Any:
    return _answer(award_doc(result.value), result.created,
                   f"{BASE}/awards/{quote(result.value.entry.order_id)}")


def _redemption_answer(result: Result[Redemption], principal: Principal) -> Any:
    entry = result.value.entry
    location = f"{BASE}/redemptions/{quote(entry.order_id)}"
    if principal.is_privileged:  # they name whose redemption it is
        location += f"?customer_id={quote(entry.customer_id)}"
    return _answer(redemption_doc(result.value), result.created, location)


def _answer(doc: Doc, created: bool, location: str) -> Any:
    if created:
        return doc, 201, {"Location": location}
    return doc, 200, {"Location": location, "Idempotent-Replayed": "true"}


# the caller's own points -------------------------------------------------------------
def get_balance(token_info: TokenInfo) -> Any:
    return balance_doc(_svc().balance(_caller(token_info)))


def get_history(token_info: TokenInfo, page: int = 1, page_size: int = 20,
                type_: str | None = None) -> Any:
    return page_doc(_svc().history(_caller(token_info), None, page, page_size, type_))


# anyone's points (staff / services; a customer only their own id) --------------------
def get_customer_balance(customer_id: str, token_info: TokenInfo) -> Any:
    return balance_doc(_svc().balance(_caller(token_info), customer_id))


def get_customer_history(customer_id: str, token_info: TokenInfo, page: int = 1,
                         page_size: int = 20, type_: str | None = None) -> Any:
    return page_doc(_svc().history(_caller(token_info), customer_id, page, page_size, type_))


# awards (internal: orders) ------------------------------------------------------------
def create_award(body: dict[str, Any], token_info: TokenInfo) -> Any:
    result = _svc().award(
        _caller(token_info), body["customer_id"], body["order_id"], amount=body.get("amount"),
        currency=body.get("currency"), points=body.get("points"))
    if result.created:  # committed by now (the use case's own unit of work)
        metrics.count_awarded(result.value.entry.points)
    return _award_answer(result)


def get_award(order_id: str, token_info: TokenInfo) -> Any:
    return award_doc(_svc().get_award(_caller(token_info), order_id))


def reverse_award(order_id: str, token_info: TokenInfo) -> Any:
    return _award_answer(_svc().reverse_award(_caller(token_info), order_id))


# redemptions -------------------------------------------------------------------------
def create_redemption(body: dict[str, Any], token_info: TokenInfo) -> Any:
    principal = _caller(token_info)
    result = _svc().redeem(principal, body["order_id"], body["points"],
                           body.get("customer_id"))
    return _redemption_answer(result, principal)


def get_redemption(order_id: str, token_info: TokenInfo,
                   customer_id: str | None = None) -> Any:
    return redemption_doc(_svc().get_redemption(_caller(token_info), order_id, customer_id))


def reverse_redemption(order_id: str, token_info: TokenInfo,
                       customer_id: str | None = None) -> Any:
    principal = _caller(token_info)
    return _redemption_answer(
        _svc().reverse_redemption(principal, order_id, customer_id), principal)
