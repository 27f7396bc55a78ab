"""Where rates come from: the adapters of the :class:`.ports.RateSource` port.

* :class:`TableRateSource` (default) reads the ``base_rates`` table of the service's own
  database (seeded by :func:`services.exchange.seed.seed`).
* :class:`HttpRateSource` (when ``EXCHANGE_UPSTREAM_URL`` is set) calls an upstream HTTP
  API through :class:`charter.http.HttpClient` (timeout ``EXCHANGE_UPSTREAM_TIMEOUT``,
  default 2 s; one bounded retry, it is a GET). The upstream must answer 200 with::

      {"base": "EUR",
       "as_of": "2026-11-24T16:00:00Z",          # optional, RFC 3339; default: now
       "rates": {"USD": "1.0850", "JPY": 162.5}}  # units per 1 base; strings or numbers

  Codes must be ISO 4217; rates positive; the base's own rate, if listed, must be 1;
  currencies whose minor unit this service does not know are skipped (logged).

Every failure (unreachable, timeout, non-200, malformed JSON or shape, empty table)
raises :class:`RateSourceError`; the service then serves the last known rates.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from datetime import datetime
from decimal import Decimal
from typing import Any

from charter.clock import parse_rfc3339, utcnow
from charter.db import Database
from charter.http import HttpClient
from charter.problems import ServiceUnavailable

from . import domain
from .ports import RateSource, RateSourceError
from .settings import ExchangeConfig
from .store import SqlRatesRepository

__all__ = ["HttpRateSource", "RateSource", "RateSourceError", "TableRateSource",
           "table_from_document", "upstream_timeout"]

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 2.0


def parse_timestamp(value: Any) -> datetime:
    """An upstream ``as_of`` as aware UTC; :class:`RateSourceError` if it is not RFC 3339."""
    if not isinstance(value, str):
        raise RateSourceError(f"as_of {value!r} is not an RFC 3339 timestamp")
    try:
        return parse_rfc3339(value)
    except ValueError as exc:
        raise RateSourceError(f"as_of {value!r} is not an RFC 3339 timestamp") from exc


def table_from_document(doc: Any, now: datetime) -> domain.RateTable:
    """Validate the upstream JSON shape (see the module docstring) into a rate table."""
    if not isinstance(doc, Mapping):
        raise RateSourceError("the upstream answer is not a JSON object")
    if "base" not in doc or "rates" not in doc:
        raise RateSourceError("the upstream answer lacks 'base' or 'rates'")
    as_of = parse_timestamp(doc["as_of"]) if doc.get("as_of") is not None else now
    ignored: list[str] = []
    try:
        table = domain.RateTable.build(doc["base"], doc["rates"], as_of, ignored=ignored)
    except domain.InvalidRates as exc:
        raise RateSourceError(f"unusable upstream rates: {exc}") from exc
    if ignored:
        log.warning("upstream rates: skipped currencies without a known minor unit: %s",
                    ", ".join(sorted(ignored)))
    return table


class TableRateSource(RateSource):
    """The ``base_rates`` table of the service's database."""

    name = "table"

    def __init__(self, db: Database) -> None:
        self.db = db

    def fetch(self) -> domain.RateTable:
        try:
            with self.db.session() as session:
                rows = SqlRatesRepository(session).base_rate_rows()
        except Exception as exc:  # the database is the source here: any failure counts
            raise RateSourceError(f"rate table unreadable: {type(exc).__name__}") from exc
        if not rows:
            raise RateSourceError("the rate table is empty (run the exchange seed)")
        bases = {base for _code, base, _rate, _at in rows}
        if len(bases) != 1:
            raise RateSourceError(f"the rate table mixes bases: {sorted(bases)}")
        base = bases.pop()
        rates = {code: rate for code, _base, rate, _at in rows}
        as_of = max(at for *_rest, at in rows)
        try:
            return domain.RateTable.build(base, rates, as_of)
        except domain.InvalidRates as exc:
            raise RateSourceError(f"unusable rate table: {exc}") from exc


def upstream_timeout() -> float:
    """``EXCHANGE_UPSTREAM_TIMEOUT`` seconds (default 2)."""
    return ExchangeConfig.parse().exchange_upstream_timeout


class HttpRateSource(RateSource):
    """An upstream rate API over HTTP (``GET <url>``, see the module docstring)."""

    name = "upstream"

    def __init__(
        self,
        url: str,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        retries: int = 1,
        http: HttpClient | None = None,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.url = url
        self.http = http or HttpClient("", name="exchange-upstream", timeout=timeout,
                                       retries=retries)
        self._now = clock or utcnow

    def fetch(self) -> domain.RateTable:
        try:
            response = self.http.get(self.url, headers={"Accept": "application/json"})
        except ServiceUnavailable as exc:
            raise RateSourceError(exc.detail or "the upstream is unavailable") from exc
        if response.status_code != 200:
            raise RateSourceError(f"the upstream answered {response.status_code}")
        try:
            doc = json.loads(response.content, parse_float=Decimal)
        except ValueError as exc:
            raise RateSourceError("the upstream answer is not valid JSON") from exc
        return table_from_document(doc, self._now())

    def close(self) -> None:
        self.http.close()
