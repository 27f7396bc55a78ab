"""The registry of RFC 9457 problem types: one stable ``type`` URI per kind of problem.

Every problem+json body Charter answers carries ``type: <public URL>/problems/<slug>``,
where ``<slug>`` names an entry of :data:`TYPES` and ``<public URL>`` is
``CHARTER_PUBLIC_URL`` (:meth:`charter.config.CharterSettings.public_url`). The gateway's
portal serves a page per slug from this registry, ``docs/problems.md`` is rendered from it
(``python -m charter.problem_types > docs/problems.md``; a test keeps the two equal), and
each spec lists the slugs its API can answer in ``x-problem-types``.

Clients decide on the slug (:func:`slug_of`), never on the human ``title``: a title may be
reworded, a slug never changes once published (add a new kind instead).

Hand-written because no kept library holds a problem-type catalogue: this is data plus a
few lookups.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from charter import config

PATH = "/problems/"
SERVICES = ("catalog", "cart", "orders", "payments", "exchange", "loyalty", "notifications")
_EVERY = (*SERVICES,)


@dataclass(frozen=True)
class ProblemType:
    """One kind of problem: its slug (the last segment of the ``type`` URI), HTTP status,
    fixed title, what it means, what a client should do, and which components answer it."""

    slug: str
    status: int
    title: str
    description: str
    action: str
    answered_by: tuple[str, ...]


class UnknownProblemType(LookupError):
    """A slug that is not in the registry (a programming error: register it)."""


def _t(slug: str, status: int, title: str, description: str, action: str,
       answered_by: Iterable[str]) -> ProblemType:
    return ProblemType(slug, status, title, description, action, tuple(answered_by))


_REGISTERED: tuple[ProblemType, ...] = (
    # -- generic kinds (the framework, the gateway, every service) ----------------------
    _t("validation-error", 400, "Bad Request",
       "The request does not match the API's contract: a parameter, header or body field "
       "is missing, has the wrong type or format, or breaks a declared bound; or the body "
       "is not valid JSON (or not UTF-8).",
       "Fix the request as `detail` says, using the operation's schema in the API "
       "reference; do not retry it unchanged.",
       (*_EVERY, "gateway", "auth")),
    _t("bad-request", 400, "Bad Request",
       "The request is well-formed but lacks something the operation needs in this "
       "context (e.g. `customer_id` when staff act for a customer).",
       "Read `detail`, complete the request and send it again.",
       ("loyalty", "orders")),
    _t("unauthorized", 401, "Unauthorized",
       "No access token was sent, or it is invalid, expired or revoked. The "
       "`WWW-Authenticate` header says which (RFC 6750).",
       "Get a new access token from the authorization server and retry.",
       (*_EVERY, "gateway")),
    _t("insufficient-scope", 403, "Forbidden",
       "The access token is valid but lacks a scope the operation requires; `detail` and "
       "the `WWW-Authenticate` challenge name the required scopes.",
       "Ask for a token with the named scopes (a client registered for them, or a user "
       "whose role grants them).",
       (*_EVERY, "gateway")),
    _t("forbidden", 403, "Forbidden",
       "The caller is authenticated and has the scope, but may not act on this resource "
       "(another customer's data, an internal operation called from outside the platform, "
       "an operation reserved to staff).",
       "Do not retry; act only on your own resources or ask someone with the right role.",
       (*_EVERY, "gateway")),
    _t("not-found", 404, "Not Found",
       "No such resource, or it is not visible to the caller (resources of other customers "
       "are reported as missing).",
       "Check the identifier; do not retry unchanged.",
       (*_EVERY, "gateway", "auth")),
    _t("method-not-allowed", 405, "Method Not Allowed",
       "The path exists but does not support this HTTP method; the `Allow` header lists "
       "the methods it does.",
       "Use one of the methods in `Allow`.",
       (*_EVERY, "gateway", "auth")),
    _t("not-acceptable", 406, "Not Acceptable",
       "The `Accept` header asks for a media type the operation cannot produce.",
       "Accept `application/json` (and `application/problem+json` for errors).",
       (*_EVERY, "auth")),
    _t("conflict", 409, "Conflict",
       "The request conflicts with the current state of the resource (a duplicate name, "
       "a resource still in use, a concurrent change).",
       "Read the resource again, resolve the conflict `detail` names, then retry.",
       (*_EVERY,)),
    _t("concurrent-update", 409, "Concurrent request",
       "Another request changed the same resource at the same time; this one was rolled "
       "back and changed nothing.",
       "Retry the request (with the same `Idempotency-Key` where the operation takes one).",
       ("catalog", "payments", "orders", "loyalty", "notifications")),
    _t("request-in-progress", 409, "Request in progress",
       "A request with the same `Idempotency-Key` is still being processed.",
       "Wait briefly and retry with the same `Idempotency-Key`: you will get the first "
       "request's answer.",
       ("catalog", "payments", "orders", "loyalty", "notifications")),
    _t("api-version-sunset", 410, "API version sunset",
       "This API version has passed its sunset date and no longer answers (see the "
       "deprecation policy); the `Link` header names the successor version.",
       "Move to the successor version named by `Link: rel=\"successor-version\"`.",
       ("orders", "gateway")),
    _t("content-too-large", 413, "Content Too Large",
       "The request body is larger than the platform accepts.",
       "Send a smaller body (split the request).",
       ("gateway", "auth")),
    _t("unsupported-media-type", 415, "Unsupported Media Type",
       "The request body's `Content-Type` is not one the operation accepts.",
       "Send `Content-Type: application/json`.",
       (*_EVERY,)),
    _t("unprocessable", 422, "Unprocessable Content",
       "The request is valid against the schema but breaks a business rule; `detail` says "
       "which.",
       "Change the request as `detail` says; retrying it unchanged gives the same answer.",
       (*_EVERY,)),
    _t("idempotency-key-reused", 422, "Idempotency-Key reused",
       "The `Idempotency-Key` was already used for a different request (another body or "
       "path).",
       "Use a fresh `Idempotency-Key` for each distinct request; reuse a key only to retry "
       "the very same request.",
       ("catalog", "payments", "orders", "loyalty", "notifications")),
    _t("rate-limited", 429, "Too Many Requests",
       "The client sent more requests than its rate limit allows; the `RateLimit` and "
       "`Retry-After` headers say when to come back.",
       "Wait `Retry-After` seconds, then retry; spread requests out.",
       ("gateway", "auth")),
    _t("request-header-fields-too-large", 431, "Request Header Fields Too Large",
       "The request's header fields together are larger than the gateway accepts "
       "(`GATEWAY_MAX_HEADER_BYTES`, counted as sent: `name: value` and line end per "
       "field); nothing was forwarded and no token was checked.",
       "Send fewer or smaller headers (oversized cookies or tokens are the usual cause), "
       "then retry.",
       ("gateway",)),
    _t("internal-error", 500, "Internal Server Error",
       "The server failed unexpectedly. Nothing about the failure is published; it is "
       "logged under the body's `correlation_id`.",
       "Retry later; if it persists, report it quoting `correlation_id`.",
       (*_EVERY, "gateway", "auth")),
    _t("not-implemented", 501, "Not Implemented",
       "The operation is declared in the API but not implemented by this deployment.",
       "Do not retry; report it quoting `correlation_id`.",
       (*_EVERY,)),
    _t("bad-gateway", 502, "Bad Gateway",
       "The gateway could not reach the service behind it, or the service broke off its "
       "answer.",
       "Retry later (idempotent requests, or with the same `Idempotency-Key`).",
       ("gateway",)),
    _t("service-unavailable", 503, "Service Unavailable",
       "The service cannot answer right now (overloaded, starting, or not configured).",
       "Retry after `Retry-After` seconds when given, otherwise with backoff.",
       (*_EVERY, "gateway", "auth")),
    _t("upstream-unavailable", 503, "Service Unavailable",
       "A service this operation depends on could not answer (unreachable, timed out, "
       "failing, or answered outside its contract). Nothing was changed unless `detail` "
       "says otherwise.",
       "Retry later with backoff (with the same `Idempotency-Key` where the operation "
       "takes one).",
       ("cart", "orders", "payments", "exchange", "loyalty", "notifications")),
    _t("gateway-timeout", 504, "Gateway Timeout",
       "The service behind the gateway did not answer in time; the request may or may "
       "not have been carried out.",
       "Retry idempotent requests, or non-idempotent ones with the same `Idempotency-Key`.",
       ("gateway",)),
    # -- catalog ------------------------------------------------------------------------
    _t("insufficient-stock", 409, "Insufficient stock",
       "Not enough units are available for one or more products; `shortages` (or "
       "`available`) says how many of each can be had.",
       "Lower the quantities to what is available, or try again later.",
       ("catalog", "cart", "orders")),
    _t("reservation-exists", 409, "Reservation exists",
       "The order already has a stock reservation (made under another `Idempotency-Key`).",
       "Read the reservation (`GET /reservations/{order_id}`) instead of creating it again.",
       ("catalog",)),
    _t("invalid-reservation-state", 409, "Invalid reservation state",
       "The reservation cannot make this transition (e.g. committing a released "
       "reservation, or returning one that was never committed).",
       "Read the reservation's status; only a held reservation can be committed or "
       "released, and only a committed one returned (`held → committed | released`, "
       "`committed → returned`).",
       ("catalog",)),
    _t("duplicate-sku", 409, "Duplicate SKU",
       "Another product already has this SKU.",
       "Choose a unique SKU, or update the existing product.",
       ("catalog",)),
    _t("unknown-product", 422, "Unknown product",
       "A product named in the request does not exist (or is not for sale); `product_id` "
       "names it.",
       "Remove the product from the request or correct its id.",
       ("catalog", "orders")),
    # -- cart and orders ----------------------------------------------------------------
    _t("product-not-for-sale", 422, "Product not for sale",
       "A product in the request (or in the cart) exists but is not for sale any more; "
       "`product_id` (and `product_ids`) name it.",
       "Remove the product and retry.",
       ("cart", "orders")),
    _t("empty-cart", 422, "Empty cart",
       "An order was placed from the cart, but the cart holds no items.",
       "Add items to the cart first, or place the order with explicit items.",
       ("orders",)),
    _t("cart-not-accessible", 403, "Cart not accessible",
       "Placing an order from the cart needs the caller's own token with the `cart:read` "
       "and `cart:write` scopes; the cart refused it.",
       "Use a token with those scopes, issued to the customer whose cart it is.",
       ("orders",)),
    _t("invalid-order-state", 409, "Invalid order state",
       "The order cannot make this transition in its current status (`order_status` when "
       "given), e.g. confirming a cancelled order or confirming with another payment.",
       "Read the order and act according to its status.",
       ("orders",)),
    _t("reservation-not-held", 409, "Reservation not held",
       "The catalog no longer holds the order's stock (the reservation expired or was "
       "released), so the order cannot be confirmed.",
       "Place a new order.",
       ("orders",)),
    _t("refund-refused", 409, "Refund refused",
       "The order is confirmed and paid, but the payments service refused to void or "
       "refund its payment, so the order was not cancelled.",
       "Read the payment; staff may refund it by hand, then retry the cancel.",
       ("orders",)),
    _t("unknown-payment", 422, "Unknown payment",
       "The payment named in the request does not exist.",
       "Authorise a payment for the order first and send its id.",
       ("orders",)),
    _t("payment-mismatch", 422, "Payment mismatch",
       "The payment belongs to another order or customer, or its amount or currency "
       "differs from the order's total.",
       "Authorise a payment for exactly this order, customer and total.",
       ("orders",)),
    _t("payment-not-usable", 409, "Payment not usable",
       "The payment is not authorised or captured (e.g. voided, refunded or declined); "
       "`payment_status` gives its status.",
       "Authorise a new payment and confirm with it.",
       ("orders",)),
    # -- payments -----------------------------------------------------------------------
    _t("payment-declined", 402, "Payment declined",
       "The payment provider declined the authorisation; `decline_code` says why and "
       "`payment` holds the declined payment.",
       "Ask the customer for another payment method; retrying the same one will be "
       "declined again.",
       ("payments",)),
    _t("invalid-payment-state", 409, "Invalid payment state",
       "The payment cannot make this transition in its current status (e.g. capturing a "
       "voided payment, refunding more than was captured).",
       "Read the payment and act according to its status.",
       ("payments",)),
    _t("payment-provider-error", 502, "Payment provider error",
       "The payment provider failed; nothing was charged.",
       "Retry later with the same `Idempotency-Key`.",
       ("payments",)),
    # -- exchange -----------------------------------------------------------------------
    _t("unknown-currency", 404, "Unknown currency",
       "The currency code is not one the exchange service has rates for; `currency` names "
       "it.",
       "Use a currency listed by `GET /rates`.",
       ("exchange",)),
    _t("no-exchange-rates", 503, "No exchange rates",
       "The exchange-rate source is unavailable and no rate was ever known, so nothing "
       "(not even a stale rate) can be served.",
       "Retry after `Retry-After` seconds.",
       ("exchange",)),
    # -- loyalty ------------------------------------------------------------------------
    _t("insufficient-points", 422, "Insufficient points",
       "The customer's balance is lower than the points to redeem; `balance` and "
       "`requested` give both.",
       "Redeem at most `balance` points.",
       ("loyalty",)),
    _t("order-entry-exists", 409, "Order already has this entry",
       "The order already has a different award or redemption of this kind.",
       "Read the order's entry instead of recording it again.",
       ("loyalty",)),
    # -- notifications ------------------------------------------------------------------
    _t("invalid-notification", 400, "Invalid notification",
       "The notification cannot be sent as given (e.g. a recipient that does not fit the "
       "channel).",
       "Fix the recipient or channel as `detail` says.",
       ("notifications",)),
    _t("notification-not-sent", 502, "Notification not sent",
       "The provider refused the message for good; `notification_id` names the failed "
       "notification.",
       "Do not retry the same message; check the recipient.",
       ("notifications",)),
    _t("notification-provider-unavailable", 503, "Notification provider unavailable",
       "The email/SMS provider is down; the message was not sent.",
       "Retry after `Retry-After` seconds with the same `Idempotency-Key`.",
       ("notifications",)),
    # -- auth ---------------------------------------------------------------------------
    _t("invalid-registration", 400, "Invalid registration",
       "The registration request cannot be accepted (e.g. an unknown role).",
       "Correct the request as `detail` says.",
       ("auth",)),
    _t("invalid-email", 422, "Invalid email address",
       "The email address is not a valid address.",
       "Send a valid email address.",
       ("auth",)),
    _t("weak-password", 422, "Password too weak",
       "The password does not meet the password policy (length, not a common password).",
       "Choose a longer, less common password.",
       ("auth",)),
    _t("email-taken", 409, "Email already registered",
       "An account with this email address exists.",
       "Sign in instead, or register with another address.",
       ("auth",)),
)

TYPES: dict[str, ProblemType] = {t.slug: t for t in _REGISTERED}
assert len(TYPES) == len(_REGISTERED), "duplicate problem type slug"

# The kind answered for a bare HTTP status (framework errors, Problem(status=…)).
_BY_STATUS: dict[int, str] = {
    400: "validation-error", 401: "unauthorized", 403: "forbidden", 404: "not-found",
    405: "method-not-allowed", 406: "not-acceptable", 409: "conflict",
    410: "api-version-sunset", 413: "content-too-large", 415: "unsupported-media-type",
    422: "unprocessable", 429: "rate-limited", 431: "request-header-fields-too-large",
    500: "internal-error",
    501: "not-implemented", 502: "bad-gateway", 503: "service-unavailable",
    504: "gateway-timeout",
}


def get(slug: str) -> ProblemType:
    """The registered kind ``slug`` (:class:`UnknownProblemType` if it is not registered)."""
    try:
        return TYPES[slug]
    except KeyError:
        raise UnknownProblemType(f"problem type {slug!r} is not registered in "
                                 "charter.problem_types") from None


def for_status(status: int) -> ProblemType:
    """The generic kind for an HTTP ``status`` (other 4xx: validation-error; 5xx:
    internal-error)."""
    slug = _BY_STATUS.get(status)
    if slug is None:
        slug = "validation-error" if status < 500 else "internal-error"
    return TYPES[slug]


def base_url() -> str:
    """The public base URL the type URIs start with (``CHARTER_PUBLIC_URL``)."""
    return config.settings().public_url()


def uri(slug: str, base: str | None = None) -> str:
    """The absolute ``type`` URI of ``slug`` (``<public URL>/problems/<slug>``)."""
    return f"{(base if base is not None else base_url()).rstrip('/')}{PATH}{get(slug).slug}"


def slug_of(problem: Mapping[str, Any] | str | None) -> str | None:
    """The registered slug of a problem document (or of its ``type`` URI), else ``None``.

    Any base URL is accepted (each environment has its own); what decides is the last
    path segment after ``/problems/``. This is what clients compare — never ``title``.
    """
    value = problem.get("type") if isinstance(problem, Mapping) else problem
    if not isinstance(value, str) or PATH not in value:
        return None
    slug = value.rsplit(PATH, 1)[1].split("?", 1)[0].split("#", 1)[0]
    return slug if slug in TYPES else None


def answered_by(component: str) -> list[str]:
    """The slugs ``component`` can answer, in registry order."""
    return [t.slug for t in _REGISTERED if component in t.answered_by]


def for_api(service: str, *, deprecated: bool = False) -> list[str]:
    """The slugs an API served by ``service`` can answer, through the gateway included:
    what its spec declares in ``x-problem-types`` (``api-version-sunset`` only for a
    deprecated version)."""
    sunset = "api-version-sunset"
    return [t.slug for t in _REGISTERED
            if (service in t.answered_by or "gateway" in t.answered_by)
            and (t.slug != sunset or deprecated)]


def render_markdown() -> str:
    """``docs/problems.md``: every kind with its status, meaning and what to do."""
    lines = [
        "# Problem types",
        "",
        "<!-- Generated from charter/problem_types.py: "
        "python -m charter.problem_types > docs/problems.md -->",
        "",
        "Every error Charter answers is an RFC 9457 `application/problem+json` document "
        "whose `type` is `<public URL>/problems/<slug>` (the portal page of the kind, "
        "`CHARTER_PUBLIC_URL`). Clients decide on the slug, never on `title` or on the "
        "status alone.",
        "",
        "| slug | status | title | answered by |",
        "|---|---|---|---|",
    ]
    for t in _REGISTERED:
        lines.append(f"| [`{t.slug}`](#{t.slug}) | {t.status} | {t.title} | "
                     f"{', '.join(t.answered_by)} |")
    for t in _REGISTERED:
        lines += ["", f"## {t.slug}", "", f"`{t.status} {t.title}` — `{PATH}{t.slug}`", "",
                  t.description, "", f"**What to do:** {t.action}"]
    return "\n".join(lines) + "\n"


def main() -> None:
    """Print ``docs/problems.md``."""
    sys.stdout.write(render_markdown())


if __name__ == "__main__":
    main()
