"""``charter gov catalog``: write (or ``--check``) the Backstage catalog."""

from __future__ import annotations

import argparse
import sys

from charter import config
from governance.catalog import generate


def cmd_catalog(args: argparse.Namespace) -> int:
    """Generate ``catalog/`` and ``catalog-info.yaml``, or check them with ``--check``."""
    try:
        rendered = generate.render()
    except (generate.CatalogError, ValueError) as exc:
        print(f"charter gov catalog: {exc}", file=sys.stderr)
        return 2
    if args.check:
        stale = generate.drift(rendered)
        if stale:
            print(f"the Backstage catalog is out of date ({', '.join(stale)}): "
                  "run `charter gov catalog`", file=sys.stderr)
            return 1
        print("catalog/: up to date")
        return 0
    changed = generate.write(rendered)
    for path in changed:
        print(f"wrote {path.relative_to(config.ROOT)}")
    if not changed:
        print("catalog/: up to date")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``catalog`` to ``charter gov``."""
    p = sub.add_parser("catalog", help="generate the Backstage catalog (catalog/, "
                       "catalog-info.yaml) from the specs and governance files")
    p.add_argument("--check", action="store_true",
                   help="only check that the files on disk are up to date (exit 1)")
    p.set_defaults(func=cmd_catalog)
