"""Exchange persistence: the seeded rate table and the last known rates of each source.

:class:`SqlRatesRepository` is the SQL adapter of :class:`.ports.RatesRepository` (and
reads the seeded table for ``clients.TableRateSource`` and the seed).

* ``base_rates`` is the default rate *source*: one row per currency, units per one unit
  of the base currency (all rows share one base), as exact decimal strings.
* ``last_known_rates`` keeps, per source name, the last rate table fetched successfully
  (rates as a JSON object of decimal strings, ``as_of`` and ``fetched_at``), so the
  service can answer — marked stale — when its source fails, even after a restart.

Rates are stored as text, never as floats: the decimal value read back is the one written.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from sqlalchemy import (
    JSON,
    Column,
    String,
    Table,
    insert,
    select,
    update,
)
from sqlalchemy.orm import Session

from charter.db import NAMING_CONVENTION_FK_REFERRED, UtcDateTime, as_utc, service_metadata, utcnow

from . import domain
from .domain import KnownRates

metadata = service_metadata(NAMING_CONVENTION_FK_REFERRED)

base_rates = Table(
    "base_rates",
    metadata,
    Column("currency", String(3), primary_key=True),
    Column("base", String(3), nullable=False),
    Column("rate", String(40), nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
)

last_known_rates = Table(
    "last_known_rates",
    metadata,
    Column("source", String(32), primary_key=True),
    Column("base", String(3), nullable=False),
    Column("rates", JSON, nullable=False),
    Column("as_of", UtcDateTime, nullable=False),
    Column("fetched_at", UtcDateTime, nullable=False),
)


class SqlRatesRepository:
    """:class:`.ports.RatesRepository` (and the seeded table) inside one Session."""

    def __init__(self, session: Session) -> None:
        self.session = session

    # the seeded table (the default source) ----------------------------------------------
    def base_rate_rows(self) -> list[tuple[str, str, str, datetime]]:
        """(currency, base, rate, updated_at) of every row."""
        rows = self.session.execute(
            select(base_rates.c.currency, base_rates.c.base, base_rates.c.rate,
                   base_rates.c.updated_at).order_by(base_rates.c.currency)
        )
        return [(r.currency, r.base, r.rate, r.updated_at) for r in rows]

    def has_base_rate(self, currency: str) -> bool:
        found = self.session.scalar(
            select(base_rates.c.currency).where(base_rates.c.currency == currency)
        )
        return found is not None

    def put_base_rate(self, currency: str, base: str, rate: Decimal) -> None:
        """Insert or replace the rate of ``currency`` (units per one ``base``)."""
        values = {"base": base, "rate": str(rate), "updated_at": utcnow()}
        if self.has_base_rate(currency):
            self.session.execute(
                update(base_rates).where(base_rates.c.currency == currency).values(**values)
            )
        else:
            self.session.execute(insert(base_rates).values(currency=currency, **values))

    # last known rates ---------------------------------------------------------------------
    def last_known(self, source: str) -> KnownRates | None:
        row = self.session.execute(
            select(last_known_rates).where(last_known_rates.c.source == source)
        ).mappings().first()
        if row is None:
            return None
        table = domain.RateTable(
            base=row["base"],
            rates={code: Decimal(value) for code, value in row["rates"].items()},
            as_of=row["as_of"],
        )
        return KnownRates(source=source, table=table, fetched_at=row["fetched_at"])

    def remember(self, known: KnownRates) -> None:
        """Store ``known`` as the last known rates of its source (insert or replace)."""
        values = {
            "base": known.table.base,
            "rates": known.table.as_strings(),
            "as_of": as_utc(known.table.as_of),  # a naive one is taken to be UTC already
            "fetched_at": as_utc(known.fetched_at),
        }
        updated = self.session.execute(
            update(last_known_rates)
            .where(last_known_rates.c.source == known.source)
            .values(**values)
        )
        if not updated.rowcount:  # type: ignore[attr-defined]
            self.session.execute(insert(last_known_rates).values(source=known.source, **values))
