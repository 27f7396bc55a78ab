"""Where rates come from: the :class:`RateSource` port and its adapters.

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
* :class:`InMemoryRateSource` for tests and for running the service alone.

Every failure (unreachable, timeout, non-200, malformed JSON or shape, empty table)
raises :class:`RateSourceError`; the service then serves the last known rates.
"""

from __future__ import annotations

import abc
import json
import logging
import threading
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from charter.db import Database
from charter.http import HttpClient
from charter.problems import ServiceUnavailable

from . import domain
from .settings import ExchangeConfig
from .store import RatesRepository

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 2.0


class RateSourceError(Exception):
    """The source could not give a usable rate table."""


class RateSource(abc.ABC):
    """The port: the current rate table of one source."""

    name: str = "source"

    @abc.abstractmethod
    def fetch(self) -> domain.RateTable:
        """The current rates; raises :class:`RateSourceError` when there are none."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release resources."""


def parse_timestamp(value: Any) -> datetime:
    if not isinstance(value, str):
        raise RateSourceError(f"as_of {value!r} is not an RFC 3339 timestamp")
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise RateSourceError(f"as_of {value!r} is not an RFC 3339 timestamp") from exc
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


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
                rows = RatesRepository(session).base_rate_rows()
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
        self._now = clock or (lambda: datetime.now(UTC))

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


class InMemoryRateSource(RateSource):
    """Rates held in memory; ``down = True`` makes :meth:`fetch` fail. Counts calls."""

    def __init__(self, base: str = "EUR", rates: Mapping[str, Any] | None = None,
                 *, name: str = "table", as_of: datetime | None = None) -> None:
        self.name = name
        self.base = base
        self.rates: dict[str, Any] = dict(rates or {})
        self.as_of = as_of or datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
        self.down = False
        self.calls = 0
        self._lock = threading.Lock()

    def fetch(self) -> domain.RateTable:
        with self._lock:
            self.calls += 1
        if self.down:
            raise RateSourceError("the in-memory source is down")
        try:
            return domain.RateTable.build(self.base, self.rates, self.as_of)
        except domain.InvalidRates as exc:
            raise RateSourceError(str(exc)) from exc
