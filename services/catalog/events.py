"""The events the catalog publishes (``docs/messaging.md``, *Who publishes what*).

``catalog.StockChanged`` after every stock movement (one per product whose level
changed) and ``catalog.LowStock`` when a movement takes a product's available units from
above the low-stock threshold to at or below it: once per crossing, not on every
movement below it. The use cases (:mod:`.services`) hand them to the repository, which
writes them to the outbox in the movement's transaction. Ids and figures only.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from charter.messaging.envelope import Envelope
from charter.observability.logs import correlation_id

from .domain import StockLevel

SOURCE = "catalog"
STOCK_CHANGED = "StockChanged"
LOW_STOCK = "LowStock"
REASONS = ("reserve", "commit", "release", "adjust", "set", "return")
"""Why a level moved (``StockChanged.reason``)."""

DEFAULT_LOW_STOCK_THRESHOLD = 5


def _event(type_: str, data: Mapping[str, object]) -> Envelope:
    return Envelope.new(type_, data, source=SOURCE, correlation_id=correlation_id.get())


def stock_changed(product_id: int, on_hand: int, reserved: int, reason: str) -> Envelope:
    """``catalog.StockChanged`` with the new level (``available`` = on_hand - reserved)."""
    if reason not in REASONS:
        raise ValueError(f"unknown stock movement reason {reason!r}")
    return _event(STOCK_CHANGED, {"product_id": product_id, "on_hand": on_hand,
                                  "reserved": reserved, "available": on_hand - reserved,
                                  "reason": reason})


def low_stock(product_id: int, available: int, threshold: int) -> Envelope:
    """``catalog.LowStock``: ``available`` units left, at or below ``threshold``."""
    return _event(LOW_STOCK, {"product_id": product_id, "available": available,
                              "threshold": threshold})


def crossed_low_stock(before: int, after: int, threshold: int) -> bool:
    """Whether available units went from above ``threshold`` to at or below it."""
    return before > threshold >= after


Levels = Mapping[int, tuple[int, int]]
"""``{product_id: (on_hand, reserved)}`` as they stood before a movement."""


def levels_before(levels: Iterable[StockLevel]) -> dict[int, tuple[int, int]]:
    """The figures of ``levels`` now, to compare with after the movement."""
    return {level.product_id: (level.on_hand, level.reserved) for level in levels}


def stock_events(before: Levels, after: Iterable[StockLevel], reason: str,
                 threshold: int) -> list[Envelope]:
    """StockChanged for each level that moved, and LowStock for each that crossed down."""
    found: list[Envelope] = []
    for level in after:
        on_hand, reserved = before[level.product_id]
        if (on_hand, reserved) == (level.on_hand, level.reserved):
            continue
        found.append(stock_changed(level.product_id, level.on_hand, level.reserved, reason))
        if crossed_low_stock(on_hand - reserved, level.available, threshold):
            found.append(low_stock(level.product_id, level.available, threshold))
    return found
