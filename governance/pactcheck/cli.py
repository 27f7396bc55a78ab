"""``charter contracts check``: every pact checked against its provider's OpenAPI spec."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from governance import openapi_model as model
from governance.pactcheck import check

ROOT = Path(__file__).resolve().parents[2]


def cmd_check(args: argparse.Namespace) -> int:
    """Print the verdict on every interaction; exit 1 on any mismatch, 2 on bad input."""
    pacts = [Path(p) for p in args.pacts] or [ROOT / "contracts" / "pacts"]
    files = check.pact_files(pacts)
    if not files:
        print(f"charter contracts check: no pact file in {', '.join(map(str, pacts))}",
              file=sys.stderr)
        return 2 if args.require else 0
    try:
        results = list(check.check_all(files, Path(args.openapi_dir)))
    except model.SpecError as exc:
        print(f"charter contracts check: {exc}", file=sys.stderr)
        return 2
    print(check.format_json(results) if args.format == "json" else check.format_text(results))
    return 0 if all(r.ok for r in results) else 1


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``check`` to the ``charter contracts`` group."""
    p = sub.add_parser("check", help="check every pact against the provider's OpenAPI spec "
                       "(no provider started; exit 1 on a mismatch)")
    p.add_argument("pacts", nargs="*", metavar="PACT",
                   help="pact files or folders (default: contracts/pacts/)")
    p.add_argument("--openapi-dir", default=str(ROOT / "openapi"),
                   help="where openapi/<provider>/v<N>.yaml live")
    p.add_argument("--format", choices=("text", "json"), default="text")
    p.add_argument("--require", action="store_true",
                   help="fail (exit 2) when there is no pact file at all")
    p.set_defaults(func=cmd_check)
