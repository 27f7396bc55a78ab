"""What the exchange service needs from outside: a rate source and its last known rates.

* :class:`RateSource` — the current rate table of one source (``clients.py`` has the
  adapters: the service's own ``base_rates`` table, an upstream HTTP API); every failure
  raises :class:`RateSourceError`.
* :class:`RatesRepository` — the last known rates of each source, reached through a unit
  of work (``UnitOfWork[RatesRepository]``, :mod:`charter.unit_of_work`);
  ``store.SqlRatesRepository`` implements it on SQLAlchemy.
"""

from __future__ import annotations

from typing import Protocol

from .domain import KnownRates, RateTable


class RateSourceError(Exception):
    """The source could not give a usable rate table."""


class RateSource(Protocol):
    """The port: the current rate table of one source."""

    name: str

    def fetch(self) -> RateTable:
        """The current rates; raises :class:`RateSourceError` when there are none."""
        ...

    def close(self) -> None:
        """Release resources (nothing by default)."""
        return None


class RatesRepository(Protocol):
    """The last known rates of each source, inside one unit of work."""

    def last_known(self, source: str) -> KnownRates | None:
        """The last table fetched successfully from ``source``, if any."""
        ...

    def remember(self, known: KnownRates) -> None:
        """Store ``known`` as the last known rates of its source (insert or replace)."""
        ...
