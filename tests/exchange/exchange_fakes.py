"""In-memory fakes of the exchange ports (importable: tests/exchange is on sys.path)."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from services.exchange import domain
from services.exchange.ports import RateSource, RateSourceError


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
