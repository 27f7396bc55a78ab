"""``charter gov sla show | alerts | report`` (see docs/governance.md, "SLAs")."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import httpx

from governance.sla import model, report, rules


def _load(args: argparse.Namespace) -> tuple[model.Policy, list[model.Objective]]:
    try:
        policy = model.load(Path(args.policy))
        return policy, model.objectives(policy)
    except model.SlaError as exc:
        raise SystemExit(f"charter gov sla: {exc}") from None


def cmd_show(args: argparse.Namespace) -> int:
    """Print every objective and the error budget it implies."""
    _, objectives = _load(args)
    head = ("service", "class", "availability", "error budget", "outage/window",
            "p99 ≤", "5xx ceiling", "operations")
    rows = [head] + [(
        o.service, o.slo_class, f"{o.availability_pct:g} %", f"{o.error_budget * 100:.4g} %",
        f"{o.budget_minutes:.1f} min/{o.window}", f"{o.latency_p99_ms:g} ms",
        f"{o.error_rate_ceiling_pct:g} %",
        ", ".join(o.operations) or "methods " + "|".join(o.methods),
    ) for o in objectives]
    widths = [max(len(r[i]) for r in rows) for i in range(len(head) - 1)]
    for row in rows:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=False)) + "  " + row[-1])
    return 0


def cmd_alerts(args: argparse.Namespace) -> int:
    """Write (or with ``--check`` verify) the Prometheus rules in ``deploy/prometheus/``."""
    _, objectives = _load(args)
    out = Path(args.out)
    if args.check:
        stale = rules.drift(objectives, out)
        if stale:
            print(f"{', '.join(stale)} in {out} differ from governance/slas.yaml: "
                  "run `charter gov sla alerts`", file=sys.stderr)
            return 1
        print(f"{out}: up to date")
        return 0
    changed = rules.write(objectives, out)
    for path in changed:
        print(f"wrote {path}")
    if not changed:
        print(f"{out}: up to date")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    """Measure every objective over a window and grade it."""
    policy, objectives = _load(args)
    try:
        model.duration_seconds(args.window)
    except ValueError as exc:
        print(f"charter gov sla report: --window: {exc}", file=sys.stderr)
        return 2
    if args.at and not args.prometheus:
        print("charter gov sla report: --at needs --prometheus", file=sys.stderr)
        return 2
    if args.service:
        objectives = [o for o in objectives if o.service in args.service]
    try:
        with httpx.Client(timeout=args.timeout) as client:
            if args.prometheus:
                counts = report.from_prometheus(objectives, args.prometheus, args.window,
                                                client, args.at)
            else:
                counts = report.from_scrapes(objectives, args.scrape,
                                             model.duration_seconds(args.window), client)
    except report.ReportError as exc:
        print(f"charter gov sla report: {exc}", file=sys.stderr)
        return 2
    rows = report.results(policy, objectives, counts)
    if args.format == "json":
        print(json.dumps(report.as_json(rows, args.window), indent=2))
    else:
        print(report.table(rows, args.window))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``sla show``, ``sla alerts`` and ``sla report`` to ``charter gov``."""
    sla = sub.add_parser("sla", help="SLAs as code: objectives, alert rules, SLO report")
    cmds = sla.add_subparsers(dest="sla_cmd", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--policy", default=str(model.SLAS_PATH), help="the SLA policy file")

    show = cmds.add_parser("show", parents=[common],
                           help="every objective and the error budget it implies")
    show.set_defaults(func=cmd_show)

    alerts = cmds.add_parser("alerts", parents=[common],
                             help="generate the Prometheus SLO rules into deploy/prometheus/")
    alerts.add_argument("--out", default=str(rules.OUT_DIR), help="output folder")
    alerts.add_argument("--check", action="store_true",
                        help="only check that the files on disk are up to date (exit 1)")
    alerts.set_defaults(func=cmd_alerts)

    rep = cmds.add_parser("report", parents=[common],
                          help="each SLO over a window: met / at risk / breached")
    source = rep.add_mutually_exclusive_group(required=True)
    source.add_argument("--prometheus", metavar="URL", help="Prometheus base URL (HTTP API)")
    source.add_argument("--scrape", metavar="URL", nargs="+",
                        help="/metrics URLs, scraped twice --window apart")
    rep.add_argument("--window", default=None,
                     help="the window (Prometheus duration; default 1h with --prometheus, "
                          "60s with --scrape)")
    rep.add_argument("--at", help="with --prometheus: the window ends at this time (RFC 3339 "
                     "or Unix time; default now)")
    rep.add_argument("--service", action="append", help="only this service (repeatable)")
    rep.add_argument("--format", choices=("text", "json"), default="text")
    rep.add_argument("--timeout", type=float, default=10.0, help="HTTP timeout, seconds")
    rep.set_defaults(func=_report_defaults)


def _report_defaults(args: argparse.Namespace) -> int:
    if args.window is None:
        args.window = "1h" if args.prometheus else "60s"
    return cmd_report(args)
