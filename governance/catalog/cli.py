"""``charter gov catalog``: write (or ``--check``) the Backstage catalog."""

from __future__ import annotations

import argparse

from charter import config
from governance import generated_files
from governance.catalog import generate


def cmd_catalog(args: argparse.Namespace) -> int:
    """Generate ``catalog/`` and ``catalog-info.yaml``, or check them with ``--check``."""
    return generated_files.run(
        "catalog", "the Backstage catalog", "catalog/",
        generated_files.Generator(generate.render, generate.drift, generate.write,
                                  (generate.CatalogError,)),
        check=args.check, root=config.ROOT)


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``catalog`` to ``charter gov``."""
    p = sub.add_parser("catalog", help="generate the Backstage catalog (catalog/, "
                       "catalog-info.yaml) from the specs and governance files")
    p.add_argument("--check", action="store_true",
                   help="only check that the files on disk are up to date (exit 1)")
    p.set_defaults(func=cmd_catalog)
