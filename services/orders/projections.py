"""The orders service's projections, for ``charter projections rebuild|status orders``."""

from __future__ import annotations

from charter.db import Database
from charter.eventstore.projections import Projection

from .store import OrdersProjection


def projections(db: Database) -> list[Projection]:
    """The read model of orders (``orders``, ``order_lines``), rebuilt from the events."""
    return [OrdersProjection()]
