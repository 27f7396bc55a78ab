"""The platform's one time format: aware UTC datetimes, written as RFC 3339 with ``Z``.

Pure standard library (no ORM), so domain-free service layers and ``api.py`` can use it
without loading SQLAlchemy; :mod:`charter.db` re-exports these names and adds the
``UtcDateTime`` column type that stores them.
"""

from __future__ import annotations

from datetime import UTC, datetime


def utcnow() -> datetime:
    """The current time, timezone-aware, in UTC (the only clock format stored)."""
    return datetime.now(UTC)


def as_utc(value: datetime) -> datetime:
    """``value`` as an aware UTC datetime (naive values are taken to be UTC already)."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def rfc3339(value: datetime) -> str:
    """``value`` as RFC 3339 in UTC with a ``Z`` (how the APIs write timestamps)."""
    return as_utc(value).isoformat().replace("+00:00", "Z")


def parse_rfc3339(value: str) -> datetime:
    """An RFC 3339 timestamp (``Z`` or an offset) as an aware UTC datetime.

    Raises ``ValueError`` when ``value`` is not one.
    """
    return as_utc(datetime.fromisoformat(value.replace("Z", "+00:00")))
