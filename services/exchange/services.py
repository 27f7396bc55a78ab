"""Exchange use cases: current rates through a TTL cache, last known rates when the source fails.

:meth:`ExchangeService.current` decides which rate table answers a request:

1. the cached table (``charter.cache``, key ``rates:<source>``), if not expired — fresh
   entries live ``EXCHANGE_CACHE_TTL`` seconds (default 60);
2. otherwise the source is asked (one caller at a time per process: the others wait and
   then use the table it cached); a table fetched successfully is stored as the source's
   last known rates in the database and cached;
3. if the source fails, the last known rates from the database are served **stale**
   (``stale``, ``age`` = seconds since they were fetched; ``api.py`` adds a ``Warning``
   header); the
   stale answer is cached for ``EXCHANGE_STALE_RETRY`` seconds (default 5) so a failing
   source is not asked on every request; each stale answer is counted;
4. if nothing was ever known: 503 problem with ``Retry-After``.

The service depends only on ports (:mod:`.ports`): a :class:`RateSource` and
``uow: UnitOfWork[RatesRepository]`` for the last known rates (:mod:`charter.unit_of_work`).
Its settings (TTL, stale retry) are given by ``app.py``, which reads them from
:class:`.settings.ExchangeConfig`.

The wall clock (``now``) is injectable; age and freshness are computed from it, while the
cache's own expiry uses the cache's clock.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from prometheus_client import Counter
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

from charter.cache import Cache, TTLCache
from charter.clock import utcnow
from charter.observability.families import CacheCounter
from charter.observability.health import Degraded
from charter.problems import NotFound, Problem, ServiceUnavailable, Unprocessable
from charter.snapshots import JsonSnapshot
from charter.unit_of_work import UnitOfWork

from . import domain
from .domain import Conversion, Freshness, KnownRates, Quote, RateList
from .ports import RateSource, RateSourceError, RatesRepository

log = logging.getLogger(__name__)

DEFAULT_TTL = 60.0
DEFAULT_STALE_RETRY = 5.0
STALE_WARNING = '110 - "Response is Stale"'


STALE_SERVED = Counter(
    "charter_exchange_stale_served",
    "Answers served from the last known rates because the rate source failed", ["service"])
SOURCE_FAILURES = Counter(
    "charter_exchange_source_failures",
    "Failed attempts to fetch rates from the rate source", ["service"])
# Process-wide twins of ExchangeMetrics' ints: what /metrics exports, summed over workers
# in multiprocess mode (a custom collector is invisible there).


class ExchangeMetrics(Collector):
    """Business counters, registry-free (thread-safe ints) and a Prometheus collector.

    Each count also moves the process-wide ``charter_exchange_stale_served_total`` and
    ``charter_exchange_source_failures_total`` (:data:`STALE_SERVED`,
    :data:`SOURCE_FAILURES`), which the service's ``/metrics`` shows; the collector
    exports this instance's own counts (for a registry of its own).
    """

    def __init__(self, service: str = "exchange") -> None:
        self.service = service
        self._lock = threading.Lock()
        self.stale_served = 0
        self.source_failures = 0

    def count_stale(self) -> None:
        with self._lock:
            self.stale_served += 1
        STALE_SERVED.labels(self.service).inc()

    def count_failure(self) -> None:
        with self._lock:
            self.source_failures += 1
        SOURCE_FAILURES.labels(self.service).inc()

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
        """Whole seconds since the table was fetched (never negative)."""
        return max(0, int((now - self.fetched_at).total_seconds()))

    def freshness(self, now: datetime) -> Freshness:
        """The freshness an answer computed from this table reports."""
        return Freshness(as_of=self.table.as_of, source=self.source, stale=self.stale,
                         age=self.age(now))


SERVED = JsonSnapshot[Served](Served)
"""How an answering rate table is kept in the cache (shared by every instance via Redis)."""


def unknown(exc: domain.UnknownCurrency) -> Problem:
    """The 404 problem of a currency the rate table does not know."""
    return NotFound(str(exc), kind="unknown-currency", currency=exc.code)


class ExchangeService:
    """Rates and conversions over one rate source, one cache and the last known rates.

    ``ttl`` and ``stale_retry_after`` are seconds (``EXCHANGE_CACHE_TTL`` and
    ``EXCHANGE_STALE_RETRY``, read by ``app.py``).
    """

    def __init__(
        self,
        uow: UnitOfWork[RatesRepository],
        source: RateSource,
        cache: Cache | None = None,
        *,
        ttl: float = DEFAULT_TTL,
        stale_retry_after: float = DEFAULT_STALE_RETRY,
        now: Callable[[], datetime] | None = None,
        metrics: ExchangeMetrics | None = None,
    ) -> None:
        self.uow = uow
        self.source = source
        self.ttl = ttl
        self.stale_retry_after = stale_retry_after
        self.cache = cache if cache is not None else TTLCache(default_ttl=self.ttl)
        self.now = now or utcnow
        self.metrics = metrics or ExchangeMetrics()
        self.reads = CacheCounter(self.metrics.service, "rates")
        self._refresh_lock = threading.Lock()

    @property
    def _cache_key(self) -> str:
        return f"rates:{self.source.name}"

    # which table answers ----------------------------------------------------------------
    def current(self) -> Served:
        """The rate table to answer with (see the module docstring)."""
        served = self._cached()
        self.reads.count(hit=served is not None)
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
            return SERVED.load(doc)
        except ValueError:  # pydantic's ValidationError included
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
        served = Served(table=table, source=known.source, fetched_at=known.fetched_at,
                        stale=False)
        self.cache.set(self._cache_key, SERVED.dump(served), self.ttl)
        return served

    def _remember(self, known: KnownRates) -> None:
        try:
            with self.uow.write() as repo:
                repo.remember(known)
        except Exception as exc:  # the answer is still good; only the fallback is older
            log.warning("exchange: could not store the last known rates: %s", exc)

    def _last_known(self) -> Served:
        try:
            with self.uow.read() as repo:
                known = repo.last_known(self.source.name)
        except Exception as exc:
            log.warning("exchange: last known rates unreadable: %s", exc)
            known = None
        if known is None:
            raise ServiceUnavailable(
                "the exchange rate source is unavailable and no rate was ever known",
                kind="no-exchange-rates",
                headers={"Retry-After": str(int(self.stale_retry_after))},
            )
        served = Served(table=known.table, source=known.source, fetched_at=known.fetched_at,
                        stale=True)
        self.cache.set(self._cache_key, SERVED.dump(served), self.stale_retry_after)
        return served

    def check_rates(self) -> None:
        """Readiness of the rate source (``rates``): returns when fresh rates are known;
:class:`charter.observability.health.Degraded` (``stale``) while the last known rates are served
        because the source fails; raises when the source fails and no rate was ever known.

        The source is asked only when the cached table expired (at most once per TTL, or
        per ``stale_retry_after`` while it fails), as a request would.
        """
        served = self._cached()
        if served is None:
            with self._refresh_lock:
                served = self._cached() or self._refresh()
        if served.stale:
            raise Degraded("stale")

    # use cases -------------------------------------------------------------------------
    def _identity(self) -> Freshness:
        """Freshness of a currency converted into itself (no rate source needed)."""
        return Freshness(as_of=self.now(), source="identity", stale=False, age=0)

    def _rate(self, source: str, target: str) -> tuple[Decimal, Freshness]:
        """The rate from ``source`` to ``target`` and where it came from."""
        if source == target and source in domain.EXPONENTS:
            return Decimal(1), self._identity()
        served = self.current()
        try:
            rate = served.table.rate(source, target)
        except domain.UnknownCurrency as exc:
            raise unknown(exc) from exc
        return rate, served.freshness(self.now())

    def rate(self, source: str, target: str) -> Quote:
        """The rate from ``source`` to ``target``."""
        rate, freshness = self._rate(source, target)
        return Quote(source=source, target=target, rate=rate, freshness=freshness)

    def rates(self, source: str) -> RateList:
        """Every rate from ``source``."""
        served = self.current()
        try:
            rates = served.table.rates_from(source)
        except domain.UnknownCurrency as exc:
            raise unknown(exc) from exc
        return RateList(source=source, rates=rates, freshness=served.freshness(self.now()))

    def convert(self, source: str, target: str, amount: int) -> Conversion:
        """``amount`` minor units of ``source`` in ``target`` (half-even rounding)."""
        rate, freshness = self._rate(source, target)
        try:
            converted = domain.convert(amount, source, target, rate)
        except domain.UnknownCurrency as exc:
            raise unknown(exc) from exc
        except domain.ExchangeError as exc:
            raise Unprocessable(str(exc)) from exc
        return Conversion(source=source, target=target, amount=amount,
                          converted_amount=converted, rate=rate, freshness=freshness)
