"""Demo data: illustrative exchange rates relative to EUR (not market data).

``seed(db)`` is idempotent: it inserts the rate of each currency that has none yet and
never overwrites a rate already in the table. The schema must exist
(``charter.migrations.upgrade("exchange", MIGRATIONS_DIR, url)``).
"""

from __future__ import annotations

from decimal import Decimal

from charter.db import Database

from .store import SqlRatesRepository

BASE = "EUR"

# Units of each currency per 1 EUR.
RATES: dict[str, str] = {
    "EUR": "1",
    "USD": "1.0850",
    "GBP": "0.8570",
    "JPY": "162.50",
    "BRL": "5.3900",
    "CHF": "0.9450",
    "SEK": "11.4500",
    "NOK": "11.7000",
    "DKK": "7.4600",
    "PLN": "4.3200",
    "CAD": "1.4800",
    "AUD": "1.6500",
    "KWD": "0.3340",
}


def seed(db: Database) -> int:
    """Insert the demo rates where missing; returns how many rates it created."""
    created = 0
    with db.session() as session:
        repo = SqlRatesRepository(session)
        for currency, rate in RATES.items():
            if repo.has_base_rate(currency):
                continue
            repo.put_base_rate(currency, BASE, Decimal(rate))
            created += 1
    return created
