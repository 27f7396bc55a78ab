"""A settable clock for code that takes one (instead of sleeping in tests)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

START = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)


class SettableClock:
    """One time that only moves when a test calls :meth:`advance`.

    It serves every shape of clock the code takes: :meth:`now` (an aware UTC
    ``datetime``, e.g. ``now=clock.now``), :meth:`time` or the clock itself (epoch
    seconds, e.g. ``clock=clock``) and :meth:`monotonic` (seconds since ``start``, e.g.
    ``TTLCache(clock=clock.monotonic)``).
    """

    def __init__(self, start: datetime = START) -> None:
        self.start = start
        self.current = start

    def now(self) -> datetime:
        """The current time as an aware UTC datetime."""
        return self.current

    def time(self) -> float:
        """The current time as epoch seconds."""
        return self.current.timestamp()

    def monotonic(self) -> float:
        """Seconds since ``start``."""
        return (self.current - self.start).total_seconds()

    def advance(self, seconds: float) -> None:
        """Move the time ``seconds`` forward."""
        self.current += timedelta(seconds=seconds)

    def __call__(self) -> float:
        return self.time()
