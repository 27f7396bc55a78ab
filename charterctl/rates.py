"""``charter rates seed``: load the exchange's illustrative reference rates.

Without an upstream rate source (``EXCHANGE_UPSTREAM_URL``) the exchange serves the
rates in its own table, and is not ready while that table is empty. ``charter up --dev``
seeds it with demo data; a production deployment without an upstream (the compose stack's
``rates`` job) asks for the same rates explicitly with this command. They are
illustrative, not market data (:mod:`services.exchange.seed`); a rate already in the table
is never overwritten.
"""

from __future__ import annotations

import argparse
import sys

from charter import config


def cmd_rates_seed(_args: argparse.Namespace) -> int:
    """Insert the reference rates that are missing from the exchange's table."""
    from charter.db import Database
    from services.exchange.seed import seed

    try:
        db = Database(config.database_url("exchange"))
    except config.ConfigError as exc:
        print(f"charter rates seed: {exc}", file=sys.stderr)
        return 2
    try:
        created = seed(db)
    finally:
        db.dispose()
    print(f"exchange: {created} reference rates added (illustrative, not market data)")
    return 0


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add ``rates seed`` to the ``charter`` command."""
    rates = sub.add_parser("rates", help="the exchange's reference rates").add_subparsers(
        dest="rates_cmd", required=True)
    p = rates.add_parser("seed", help="load the illustrative reference rates where missing "
                         "(deployments without EXCHANGE_UPSTREAM_URL)")
    p.set_defaults(func=cmd_rates_seed)
