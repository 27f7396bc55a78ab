"""The event store: append-only streams, optimistic concurrency, replay, projections.

Used by event-sourced services (orders). A service adds the tables to its own metadata
(:func:`add_event_store_tables`), appends and loads through :class:`EventStore` in its
unit of work, rebuilds aggregates with :func:`replay`, and keeps read models with
:class:`ProjectionRunner`. See ``docs/event-store.md``.
"""

from .projections import Projection, ProjectionRunner, ProjectionStatus, SessionSource
from .store import (
    ConcurrencyConflict,
    EventMetadata,
    EventStore,
    Executor,
    NewEvent,
    RecordedEvent,
    replay,
)
from .tables import EventStoreTables, add_event_store_tables

__all__ = [
    "ConcurrencyConflict", "EventMetadata", "EventStore", "EventStoreTables", "Executor",
    "NewEvent", "Projection", "ProjectionRunner", "ProjectionStatus", "RecordedEvent",
    "SessionSource", "add_event_store_tables", "replay",
]
