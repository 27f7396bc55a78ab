"""``charter gov diff OLD NEW`` and ``charter gov publish [api/version…]``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from governance import openapi_model as model
from governance.diff import engine, publish

OPENAPI_DIR = Path(__file__).resolve().parents[2] / "openapi"


def cmd_diff(args: argparse.Namespace) -> int:
    """Print every change from OLD to NEW; exit 1 when one is breaking, 2 on bad input."""
    try:
        findings = engine.compare_files(Path(args.old), Path(args.new))
    except model.SpecError as exc:
        print(f"charter gov diff: {exc}", file=sys.stderr)
        return 2
    print(engine.format_json(findings) if args.format == "json" else
          engine.format_text(findings))
    return 1 if engine.has_breaking(findings) else 0


def cmd_publish(args: argparse.Namespace) -> int:
    """Write the baselines of the named specs (all by default); see :mod:`publish`."""
    if args.allow_breaking is not None and not args.allow_breaking.strip():
        print("charter gov publish: --allow-breaking needs a reason", file=sys.stderr)
        return 2
    openapi_dir = Path(args.openapi_dir)
    try:
        refs = publish.select(openapi_dir, args.specs,
                              Path(args.published_dir) if args.published_dir else None)
        outcomes = [publish.publish(ref, allow_breaking=args.allow_breaking) for ref in refs]
    except model.SpecError as exc:
        print(f"charter gov publish: {exc}", file=sys.stderr)
        return 2
    code = 0
    for outcome in outcomes:
        print(f"{outcome.spec.name}: {outcome.status}")
        if outcome.status == "refused":
            code = 1
            breaks = [f for f in outcome.findings if f.level is engine.Level.ERR]
            print(engine.format_text(breaks))
            print(f"  not published: {outcome.spec.name} breaks its baseline. Ship the change "
                  "as a new major version, or pass --allow-breaking 'REASON' (recorded in "
                  "openapi/.published/CHANGELOG.md).")
    return code


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``diff`` and ``publish`` to the ``charter gov`` group."""
    p = sub.add_parser("diff", help="breaking changes between two OpenAPI specs "
                       "(exit 1 on any ERR)")
    p.add_argument("old", help="the spec clients were written against (e.g. a baseline)")
    p.add_argument("new", help="the changed spec")
    p.add_argument("--format", choices=("text", "json"), default="text")
    p.set_defaults(func=cmd_diff)

    p = sub.add_parser("publish", help="update the published baselines "
                       "(openapi/.published/) from the specs")
    p.add_argument("specs", nargs="*", metavar="API[/vN]",
                   help="which specs (default: every openapi/<api>/v<N>.yaml)")
    p.add_argument("--allow-breaking", metavar="REASON",
                   help="publish even a breaking change; the reason goes to the changelog")
    p.add_argument("--openapi-dir", default=str(OPENAPI_DIR), help=argparse.SUPPRESS)
    p.add_argument("--published-dir", help=argparse.SUPPRESS)
    p.set_defaults(func=cmd_publish)
