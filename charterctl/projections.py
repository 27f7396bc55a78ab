"""``charter projections rebuild SERVICE`` and ``charter projections status SERVICE``.

A service offers its read models in ``services/<service>/projections.py`` as
``def projections(db: Database) -> list[Projection]``; the events and checkpoints are
the standard event-store tables (:func:`charter.eventstore.add_event_store_tables`) in
the service's database (``charter.config.database_url(service)``).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable

from sqlalchemy import MetaData

from charter import config
from charter.db import Database
from charter.eventstore import EventStore, Projection, ProjectionRunner, add_event_store_tables

EXIT_USAGE = 2


class NoProjections(Exception):
    """The service is unknown or offers no projections (the message says which)."""


def projections_module(service: str) -> str:
    """The module in which ``service`` offers its projections."""
    from charterctl import registry

    component = registry.COMPONENTS.get(service)
    if component is None:
        raise NoProjections(f"unknown service {service!r}; known: "
                            f"{', '.join(registry.COMPONENTS)}")
    if not component.has_database:
        raise NoProjections(f"service {service} has no projections (it has no database)")
    return f"{component.package}.projections"


def load_projections(service: str, db: Database) -> list[Projection]:
    """The projections ``service`` offers on ``db`` (:class:`NoProjections` if none)."""
    module_name = projections_module(service)
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name != module_name:
            raise  # the module exists but one of its imports is missing
        raise NoProjections(f"service {service} has no projections "
                            f"(no module {module_name})") from None
    factory: Callable[[Database], list[Projection]] | None = getattr(
        module, "projections", None)
    found = factory(db) if factory is not None else []
    if not found:
        raise NoProjections(f"service {service} has no projections")
    return found


def _select(found: list[Projection], only: str | None) -> list[Projection]:
    if not only:
        return found
    names = {n.strip() for n in only.split(",") if n.strip()}
    unknown = names - {p.name for p in found}
    if unknown:
        raise NoProjections(f"unknown projection(s) {', '.join(sorted(unknown))}; "
                            f"known: {', '.join(p.name for p in found)}")
    return [p for p in found if p.name in names]


def cmd_projections(args: argparse.Namespace) -> int:
    """Rebuild the service's projections from zero, or print their checkpoints and lag."""
    service: str = args.service
    try:
        projections_module(service)  # unknown service: say so before opening a database
        db = Database(config.database_url(service))
    except (NoProjections, config.ConfigError) as exc:
        print(f"charter projections: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        selected = _select(load_projections(service, db), args.only)
        tables = add_event_store_tables(MetaData())
        runner = ProjectionRunner(EventStore(tables), tables)
        for projection in selected:
            if args.projections_cmd == "rebuild":
                applied = runner.rebuild(db, projection, batch=args.batch, atomic=args.atomic)
                with db.session() as session:
                    state = runner.status(session, projection)
                print(f"{service}: {projection.name} rebuilt: {applied} events applied, "
                      f"checkpoint {state.checkpoint}, lag {state.lag}")
            else:
                with db.session() as session:
                    state = runner.status(session, projection)
                print(f"{service}: {projection.name}: checkpoint {state.checkpoint}, "
                      f"lag {state.lag}")
    except NoProjections as exc:
        print(f"charter projections: {exc}", file=sys.stderr)
        return EXIT_USAGE
    finally:
        db.dispose()
    return 0


def _positive(value: str) -> int:
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError("must be >= 1")
    return number


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``projections`` command group to the ``charter`` parser."""
    group = sub.add_parser("projections", help="event-sourced read models: rebuild, status")
    commands = group.add_subparsers(dest="projections_cmd", required=True)
    p = commands.add_parser("rebuild", help="reset a service's projections and replay "
                            "every event into them")
    p.add_argument("service", help="e.g. orders")
    p.add_argument("--only", help="comma-separated projection names (default: all)")
    p.add_argument("--batch", type=_positive, default=500, help="events per transaction")
    p.add_argument("--atomic", action="store_true",
                   help="one transaction: readers keep the old rows until it commits")
    p.set_defaults(func=cmd_projections)
    p = commands.add_parser("status", help="checkpoint and lag of a service's projections")
    p.add_argument("service")
    p.add_argument("--only", help="comma-separated projection names (default: all)")
    p.set_defaults(func=cmd_projections)
