"""What catalog's published v1 API answers, as frozen dataclasses and typed errors.

Pure Python (no HTTP): the ports of cart and orders use these types, their service layers
never see the HTTP adapter (:mod:`services.catalog_client.client`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from charter.problems import UpstreamUnavailable


class CatalogUnavailable(UpstreamUnavailable):
    """The catalog could not answer: unreachable, timed out, 5xx, refused our token, or
    sent an answer that does not match its spec. Answered as 503."""

    title = "Service Unavailable"


@dataclass(frozen=True)
class Product:
    """A catalog product (``GET /v1/products/{id}``), as much as a client needs."""

    id: int
    sku: str
    name: str
    price: int
    currency: str
    active: bool


@dataclass(frozen=True)
class Stock:
    """A product's stock level (``GET /v1/products/{id}/stock``)."""

    on_hand: int
    reserved: int
    available: int


class ReserveOutcome(StrEnum):
    """How ``POST /v1/reservations`` ended."""

    HELD = "held"  # the catalog holds every item for the order
    SHORTAGE = "shortage"  # at least one product is short (nothing held)
    REFUSED = "refused"  # a product is unknown or not for sale (nothing held)


@dataclass(frozen=True)
class ReserveResult:
    """The outcome of a reservation, with the shortages or refused products."""

    outcome: ReserveOutcome
    detail: str = ""
    shortages: list[dict[str, int]] = field(default_factory=list)
    product_ids: list[int] = field(default_factory=list)


class TransitionOutcome(StrEnum):
    """How a commit or release of a reservation ended."""

    DONE = "done"  # committed / released (now or earlier)
    NOT_FOUND = "not_found"  # the catalog holds no reservation for the order
    CONFLICT = "conflict"  # the reservation is in the other final state


@dataclass(frozen=True)
class TransitionResult:
    """The outcome of a commit or release."""

    outcome: TransitionOutcome
    detail: str = ""
