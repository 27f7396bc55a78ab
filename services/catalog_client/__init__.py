"""A typed client of catalog's published v1 API, shared by cart and orders.

Not a service: it owns no data and serves nothing; it is the one place that knows how
catalog's v1 answers map to Python (frozen dataclasses in :mod:`.models`, errors as
:class:`CatalogUnavailable`) and how to call it (:class:`HttpCatalogClient`, through
:class:`charter.http.HttpClient`). Services may import it; it imports no service.

Ports and service layers import :mod:`services.catalog_client.models` only; app
factories build :class:`HttpCatalogClient`.
"""

from __future__ import annotations

from .client import HttpCatalogClient
from .models import (
    CatalogUnavailable,
    Product,
    ReserveOutcome,
    ReserveResult,
    Stock,
    TransitionOutcome,
    TransitionResult,
)

__all__ = [
    "CatalogUnavailable",
    "HttpCatalogClient",
    "Product",
    "ReserveOutcome",
    "ReserveResult",
    "Stock",
    "TransitionOutcome",
    "TransitionResult",
]
