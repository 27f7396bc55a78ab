"""Exchange use cases: current rates through a TTL cache, last known rates when the source fails.

:meth:`ExchangeService.current` decides which rate table answers a request:

1. the cached table (``charter.cache``, key ``rates:<source>``), if not expired — fresh
   entries live ``EXCHANGE_CACHE_TTL`` seconds (default 60);
2. otherwise the source is asked (one caller at a time per process: the others wait and
   then use the table it cached); a table fetched successfully is stored as the source's
   last known rates in the database and cached;
3. if the source fails, the last known rates from the database are served **stale**
   (``stale: true``, ``age`` = seconds since they were fetched, a ``Warning`` header); the
   stale answer is cached for ``EXCHANGE_STALE_RETRY`` seconds (default 5) so a failing
   source is not asked on every request; each stale answer is counted;
4. if nothing was ever known: 503 problem with ``Retry-After``.

The wall clock (``now``) is injectable; age and freshness are computed from it, while
the cache's own expiry uses the cache's clock.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

from charter.cache import Cache, TTLCache
from charter.db import Database
from charter.problems import NotFound, Problem, ServiceUnavailable, Unprocessable

from . import domain
from .clients import RateSource, RateSourceError
from .settings import ExchangeConfig
from .store import KnownRates, RatesRepository, aware

log = logging.getLogger(__name__)

Doc = dict[str, Any]

DEFAULT_TTL = 60.0
DEFAULT_STALE_RETRY = 5.0
STALE_WARNING = '110 - "Response is Stale"'


def cache_ttl() -> float:
    """``EXCHANGE_CACHE_TTL`` seconds (default 60)."""
    return ExchangeConfig.parse().exchange_cache_ttl


def stale_retry() -> float:
    """``EXCHANGE_STALE_RETRY`` seconds (default 5)."""
    return ExchangeConfig.parse().exchange_stale_retry


def iso(ts: datetime) -> str:
    return aware(ts).astimezone(UTC).isoformat().replace("+00:00", "Z")


class ExchangeMetrics(Collector):
    """Business counters, registry-free (thread-safe ints) and a Prometheus collector.

    Register it on the service's registry to export ``charter_exchange_stale_served_total``
    and ``charter_exchange_source_failures_total``.
    """

    def __init__(self, service: str = "exchange") -> None:
        self.service = service
        self._lock = threading.Lock()
        self.stale_served = 0
        self.source_failures = 0

    def count_stale(self) -> None:
        with self._lock:
            self.stale_served += 1

    def count_failure(self) -> None:
        with self._lock:
            self.source_failures += 1

    def collect(self) -> Any:
        stale = CounterMetricFamily(
            "charter_exchange_stale_served",
            "Answers served from the last known rates because the rate source failed",
            labels=["service"],
        )
        stale.add_metric([self.service], self.stale_served)
        failures = CounterMetricFamily(
            "charter_exchange_source_failures",
            "Failed attempts to fetch rates from the rate source",
            labels=["service"],
        )
        failures.add_metric([self.service], self.source_failures)
        return [stale, failures]


@dataclass(frozen=True)
class Served:
    """The rate table that answers a request, and how fresh it is."""

    table: domain.RateTable
    source: str
    fetched_at: datetime
    stale: bool

    def age(self, now: datetime) -> int:
        return max(0, int((now - self.fetched_at).total_seconds()))


def _encode(known: KnownRates, stale: bool) -> Doc:
    return {
        "source": known.source,
        "base": known.table.base,
        "rates": known.table.as_strings(),
        "as_of": iso(known.table.as_of),
        "fetched_at": iso(known.fetched_at),
        "stale": stale,
    }


def _decode(doc: Doc) -> Served:
    table = domain.RateTable(
        base=doc["base"],
        rates={code: Decimal(value) for code, value in doc["rates"].items()},
        as_of=datetime.fromisoformat(doc["as_of"].replace("Z", "+00:00")),
    )
    fetched = datetime.fromisoformat(doc["fetched_at"].replace("Z", "+00:00"))
    return Served(table=table, source=doc["source"], fetched_at=fetched, stale=doc["stale"])


def unknown(exc: domain.UnknownCurrency) -> Problem:
    return NotFound(str(exc), title="Unknown currency", currency=exc.code)


class ExchangeService:
    """Rates and conversions over one rate source, one cache and the service database."""

    def __init__(
        self,
        db: Database,
        source: RateSource,
        cache: Cache | None = None,
        *,
        ttl: float | None = None,
        stale_retry_after: float | None = None,
        now: Callable[[], datetime] | None = None,
        metrics: ExchangeMetrics | None = None,
    ) -> None:
        self.db = db
        self.source = source
        self.ttl = ttl if ttl is not None else cache_ttl()
        self.stale_retry_after = (stale_retry_after if stale_retry_after is not None
                                  else stale_retry())
        self.cache = cache if cache is not None else TTLCache(default_ttl=self.ttl)
        self.now = now or (lambda: datetime.now(UTC))
        self.metrics = metrics or ExchangeMetrics()
        self._refresh_lock = threading.Lock()

    @property
    def _cache_key(self) -> str:
        return f"rates:{self.source.name}"

    # which table answers ----------------------------------------------------------------
    def current(self) -> Served:
        """The rate table to answer with (see the module docstring)."""
        served = self._cached()
        if served is None:
            with self._refresh_lock:  # one refresh at a time; the others reuse its result
                served = self._cached() or self._refresh()
        if served.stale:
            self.metrics.count_stale()
        return served

    def _cached(self) -> Served | None:
        doc = self.cache.get(self._cache_key)
        if doc is None:
            return None
        try:
            return _decode(doc)
        except (KeyError, TypeError, ValueError, ArithmeticError):
            log.warning("exchange: undecodable cache entry ignored")
            return None

    def _refresh(self) -> Served:
        try:
            table = self.source.fetch()
        except Exception as exc:  # any source failure: fall back to the last known rates
            self.metrics.count_failure()
            log.warning("exchange rate source %s failed: %s", self.source.name, exc,
                        exc_info=not isinstance(exc, RateSourceError))
            return self._last_known()
        known = KnownRates(source=self.source.name, table=table, fetched_at=self.now())
        self._remember(known)
        self.cache.set(self._cache_key, _encode(known, stale=False), self.ttl)
        return Served(table=table, source=known.source, fetched_at=known.fetched_at,
                      stale=False)

    def _remember(self, known: KnownRates) -> None:
        try:
            with self.db.session() as session:
                RatesRepository(session).remember(known)
        except Exception as exc:  # the answer is still good; only the fallback is older
            log.warning("exchange: could not store the last known rates: %s", exc)

    def _last_known(self) -> Served:
        try:
            with self.db.session() as session:
                known = RatesRepository(session).last_known(self.source.name)
        except Exception as exc:
            log.warning("exchange: last known rates unreadable: %s", exc)
            known = None
        if known is None:
            raise ServiceUnavailable(
                "the exchange rate source is unavailable and no rate was ever known",
                title="No exchange rates",
                headers={"Retry-After": str(int(self.stale_retry_after))},
            )
        self.cache.set(self._cache_key, _encode(known, stale=True), self.stale_retry_after)
        return Served(table=known.table, source=known.source, fetched_at=known.fetched_at,
                      stale=True)

    # use cases -------------------------------------------------------------------------
    def _freshness(self, served: Served) -> Doc:
        return {
            "as_of": iso(served.table.as_of),
            "source": served.source,
            "stale": served.stale,
            "age": served.age(self.now()),
        }

    def _identity(self) -> Doc:
        """Freshness of a currency converted into itself (no rate source needed)."""
        return {"as_of": iso(self.now()), "source": "identity", "stale": False, "age": 0}

    def rate(self, source: str, target: str) -> Doc:
        """The rate from ``source`` to ``target``."""
        if source == target and source in domain.EXPONENTS:
            return {"from": source, "to": target, "rate": domain.format_rate(Decimal(1)),
                    **self._identity()}
        served = self.current()
        try:
            rate = served.table.rate(source, target)
        except domain.UnknownCurrency as exc:
            raise unknown(exc) from exc
        return {"from": source, "to": target, "rate": domain.format_rate(rate),
                **self._freshness(served)}

    def rates(self, source: str) -> Doc:
        """Every rate from ``source``."""
        served = self.current()
        try:
            rates = served.table.rates_from(source)
        except domain.UnknownCurrency as exc:
            raise unknown(exc) from exc
        return {"from": source,
                "rates": {code: domain.format_rate(r) for code, r in rates.items()},
                **self._freshness(served)}

    def convert(self, source: str, target: str, amount: int) -> Doc:
        """``amount`` minor units of ``source`` in ``target`` (half-even rounding)."""
        if source == target and source in domain.EXPONENTS:
            rate = Decimal(1)
            freshness = self._identity()
        else:
            served = self.current()
            try:
                rate = served.table.rate(source, target)
            except domain.UnknownCurrency as exc:
                raise unknown(exc) from exc
            freshness = self._freshness(served)
        try:
            converted = domain.convert(amount, source, target, rate)
        except domain.UnknownCurrency as exc:
            raise unknown(exc) from exc
        except domain.ExchangeError as exc:
            raise Unprocessable(str(exc)) from exc
        return {"from": source, "to": target, "amount": amount, "converted_amount": converted,
                "rate": domain.format_rate(rate), "rounding": "half_even", **freshness}

