"""``charter gov lint [spec…]``: Charter's API style rules (exit 1 on any error, 2 when the
linter cannot run)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from governance.lint import report
from governance.lint.engine import lint
from governance.lint.paths import LintSetupError


def cmd_lint(args: argparse.Namespace) -> int:
    """Lint the given specs (default: all) and print the report."""
    try:
        result = lint([Path(spec) for spec in args.specs] or None)
    except LintSetupError as exc:
        print(f"charter gov lint: {exc}", file=sys.stderr)
        return 2
    print(report.as_json(result) if args.format == "json" else report.text(result))
    return 1 if result.errors else 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``lint`` to the ``charter gov`` sub-commands."""
    parser = sub.add_parser("lint", help="API style rules: Spectral (spectral:oas, OWASP API "
                            "Top 10 2023, house rules) and openapi-spec-validator")
    parser.add_argument("specs", nargs="*", help="spec files (default: openapi/*/v*.yaml)")
    parser.add_argument("--format", choices=("text", "json"), default="text")
    parser.set_defaults(func=cmd_lint)
