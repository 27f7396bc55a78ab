"""Domain objects to JSON-ready values and back, for what a service keeps outside its tables.

Pydantic only (no ORM, no framework), so a service layer can keep cached reads and the
answers stored with idempotency keys as snapshots of its domain objects without loading
SQLAlchemy.
"""

from __future__ import annotations

from typing import Any, Generic, TypeVar

from pydantic import TypeAdapter

T = TypeVar("T")


class JsonSnapshot(Generic[T]):
    """Domain objects of one type to JSON-ready values and back (pydantic ``TypeAdapter``).

    For what a service keeps outside its tables: cached reads and the answers stored with
    idempotency keys. ``dump`` gives plain JSON values (datetimes as RFC 3339 strings,
    decimals as strings); ``load`` rebuilds the object, running its dataclass checks
    (``__post_init__``) again.
    """

    def __init__(self, kind: Any) -> None:
        self._adapter: TypeAdapter[T] = TypeAdapter(kind)

    def dump(self, value: T) -> Any:
        """``value`` as JSON-ready dicts, lists, strings and numbers."""
        return self._adapter.dump_python(value, mode="json")

    def load(self, data: Any) -> T:
        """The object ``dump`` was given (pydantic's ``ValidationError`` if it is not one)."""
        return self._adapter.validate_python(data)
