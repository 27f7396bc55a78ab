"""The restore drill: back up a platform's data, lose it, restore it, check it, time it.

``python -m bench.restore_drill [--json PATH] [--orders N] [--var DIR]`` starts a small
platform (``charter --dev up`` in a temporary directory, as ``make bench`` does), places
``N`` checkouts through the gateway as alice, stops it, runs ``charter backup``, deletes
the SQLite databases (the disaster), runs ``charter restore --json --yes`` and checks that
the orders are all back. With ``--var DIR`` it uses that var dir's data instead of
starting a platform (the platform must be stopped; its databases are replaced by the
backup just taken of them, so nothing is deleted there). It prints, and writes to
``--json``, the restore report of ``charter restore --json``
(``{"services": [...], "total_seconds": …, "rto_target_s": …}``) plus ``backup_seconds``,
``backup_bytes``, ``orders_at_backup``, ``orders_after_restore``, ``databases_deleted``
and ``verified``.
Exit status 0 when the restore brought every order back, 1 when not, 2 when the drill
could not run.
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from bench.platform import ROOT, BenchError, running

DATABASE_SUFFIXES = (".db", ".db-wal", ".db-shm")


def charter(env: dict[str, str], *args: str, timeout: float = 600) -> str:
    """``charter --dev <args>`` in ``env``; its standard output (:class:`BenchError` when it
    fails)."""
    done = subprocess.run([sys.executable, "-m", "charterctl.cli", "--dev", *args], env=env,
                          cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                          check=False)
    if done.returncode != 0:
        raise BenchError(f"charter {' '.join(args)}: exit status {done.returncode}: "
                         f"{(done.stderr or done.stdout).strip()[-800:]}")
    return done.stdout


def count_orders(var: Path) -> int:
    """Orders in the orders service's SQLite database (0 without one)."""
    path = var / "orders.db"
    if not path.exists():
        return 0
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return int(conn.execute("SELECT COUNT(*) FROM orders").fetchone()[0])
    finally:
        conn.close()


def place_orders(work: Path, orders: int) -> dict[str, str]:
    """Start a platform in ``work``, place ``orders`` checkouts as alice, stop it; the
    platform's environment (its var dir holds the data)."""
    from bench import checkout
    from bench.__main__ import alice_token, checkout_products

    print(f"restore drill: starting a platform in {work}", flush=True)
    with running(work) as platform:
        token = alice_token(platform)
        result, errors = checkout.run(platform.url("gateway"), token,
                                      checkout_products(platform, orders), 2, orders)
        if errors:
            raise BenchError(f"checkouts failed: {errors[:3]}")
        print(f"restore drill: {result.requests} checkouts placed; stopping the platform",
              flush=True)
        return dict(platform.env)


def newest_backup(root: Path) -> Path:
    """The newest ``<UTC timestamp>/`` with a manifest under ``root``."""
    found = sorted(p.parent for p in root.glob("*/manifest.json"))
    if not found:
        raise BenchError(f"charter backup left no backup under {root}")
    return found[-1]


def folder_bytes(folder: Path) -> int:
    """The size of every file in ``folder``."""
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def parse_json(text: str) -> dict[str, Any]:
    """The JSON object in a command's output (after any other lines)."""
    start = text.find("{")
    if start < 0:
        raise BenchError(f"no JSON in: {text[-500:]}")
    found, _ = json.JSONDecoder().raw_decode(text[start:])
    if not isinstance(found, dict):
        raise BenchError("the restore report is not a JSON object")
    return found


def drill(env: dict[str, str], backups: Path, disaster: bool) -> dict[str, Any]:
    """Back up, (lose the databases), restore and check; the report."""
    var = Path(env["CHARTER_VAR_DIR"])
    before = count_orders(var)
    started = time.monotonic()
    printed = charter(env, "backup", "--to", str(backups))
    backup_seconds = time.monotonic() - started
    lines = [line.strip() for line in printed.splitlines() if line.strip()]
    folder = Path(lines[-1]) if lines and Path(lines[-1]).is_dir() else newest_backup(backups)
    print(f"restore drill: backup {folder} in {backup_seconds:.2f} s", flush=True)
    if disaster:
        lost = [p for p in var.iterdir() if p.name.endswith(DATABASE_SUFFIXES)]
        for path in lost:
            path.unlink()
        print(f"restore drill: deleted {len(lost)} database files", flush=True)
    report = parse_json(charter(env, "restore", str(folder), "--json", "--yes"))
    after = count_orders(var)
    report.update({"backup_seconds": round(backup_seconds, 3),
                   "backup_bytes": folder_bytes(folder), "orders_at_backup": before,
                   "orders_after_restore": after, "databases_deleted": disaster,
                   "verified": after == before})
    return report


def main(argv: list[str] | None = None) -> int:
    """Entry point."""
    parser = argparse.ArgumentParser(prog="python -m bench.restore_drill", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", type=Path, metavar="PATH", help="write the report here")
    parser.add_argument("--orders", type=int, default=10,
                        help="checkouts to place before the backup (default 10)")
    parser.add_argument("--var", type=Path, metavar="DIR",
                        help="drill on this (stopped) platform's var dir instead")
    args = parser.parse_args(argv)
    if args.orders < 1:
        parser.error("--orders must be at least 1")
    try:
        with ExitStack() as stack:
            work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="drill-")))
            if args.var is not None:
                env = {**os.environ, "CHARTER_VAR_DIR": str(args.var.resolve())}
            else:
                env = place_orders(work, args.orders)
            report = drill(env, work / "backups", disaster=args.var is None)
    except (BenchError, subprocess.TimeoutExpired, OSError, sqlite3.Error) as exc:
        print(f"restore drill: {exc}", file=sys.stderr)
        return 2
    text = json.dumps(report, indent=2)
    print(text)
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(text + "\n")
    if not report["verified"]:
        print(f"restore drill: {report['orders_after_restore']} orders after the restore, "
              f"{report['orders_at_backup']} at the backup", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
