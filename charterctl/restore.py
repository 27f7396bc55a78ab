"""``charter restore <backup>``: put every service's database back to a backup point.

Order of work: verify every file of the backup against its manifest, check every target
(same kind of database as in the backup; the platform stopped; no other session on a
PostgreSQL target), ask for confirmation, and only then restore service by service —
SQLite by an atomic file replace, PostgreSQL by ``pg_restore --clean --if-exists
--single-transaction``. Each service's time and the total are printed and written to
``<backup>/restore-<timestamp>.json`` (compared with :data:`RTO_TARGET_S`). What a restore
means for events in flight: docs/operations.md, *Backup and restore*.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from charter import config
from charterctl import backup, dbdump

RTO_TARGET_S = 15 * 60  # docs/operations.md, "Backup and restore"
EXIT_REFUSED = 1
EXIT_FAILED = 3


class RestoreRefused(Exception):
    """A pre-flight check failed: nothing was restored."""


@dataclass(frozen=True)
class Restored:
    """One service's restore."""

    service: str
    kind: str
    seconds: float
    bytes: int


@dataclass
class Report:
    """What ``charter restore`` did (the ``--json`` output and ``restore-<ts>.json``)."""

    backup: str
    services: list[Restored] = field(default_factory=list)
    total_seconds: float = 0.0
    rto_target_s: int = RTO_TARGET_S
    failed: str | None = None

    def as_json(self) -> dict[str, Any]:
        """The report as a JSON-able dict."""
        return asdict(self)


def _alive(pid: object) -> bool:
    if not isinstance(pid, int) or pid <= 0 or pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process: it exists
    return True


def platform_running(status_file: Path) -> str | None:
    """Why the platform counts as running (``charter up``'s status file names a live
    supervisor or a live service process), or ``None``."""
    try:
        status = json.loads(status_file.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(status, dict):
        return None
    if _alive(status.get("pid")):
        return f"charter up is running (pid {status['pid']}, {status_file})"
    for name, comp in (status.get("components") or {}).items():
        live = [p for p in (comp or {}).get("pids") or [] if _alive(p)]
        if live:
            return f"{name} is running (pids {', '.join(map(str, live))}, {status_file})"
    return None


def plan(folder: Path, only: list[str] | None,
         target_of: Callable[[str], str]) -> list[tuple[backup.Entry, backup.Target]]:
    """The verified entries to restore, each with its target; :class:`RestoreRefused` or
    :class:`backup.BackupInvalid` before anything is touched."""
    entries = backup.verify(folder)
    if only:
        unknown = sorted(set(only) - {e.service for e in entries})
        if unknown:
            raise RestoreRefused(f"not in this backup: {', '.join(unknown)}; it holds "
                                 f"{', '.join(e.service for e in entries)}")
        entries = [e for e in entries if e.service in only]
    pairs = []
    for entry in entries:
        target = backup.Target(entry.service, target_of(entry.service))
        if target.kind != entry.kind:
            raise RestoreRefused(f"{entry.service}: the backup holds a {entry.kind} database "
                                 f"but the service is configured for {target.kind}")
        pairs.append((entry, target))
    return pairs


def check_idle(pairs: list[tuple[backup.Entry, backup.Target]], status_file: Path) -> None:
    """:class:`RestoreRefused` while the platform runs or a PostgreSQL target has other
    sessions (services elsewhere still connected)."""
    running = platform_running(status_file)
    if running:
        raise RestoreRefused(f"{running}; stop it first (or --force)")
    for _entry, target in pairs:
        if target.kind == "postgresql":
            sessions = dbdump.other_sessions(target.url)
            if sessions:
                raise RestoreRefused(
                    f"{target.service}: {sessions} other session(s) connected to "
                    f"{dbdump.safe_url(target.url)}; stop the service first (or --force)")


def restore(folder: Path, pairs: list[tuple[backup.Entry, backup.Target]],
            clock: Callable[[], float] = time.perf_counter) -> Report:
    """Restore each pair in turn; stops at the first failure (``report.failed`` names it,
    the services before it stay restored)."""
    report = Report(backup=str(folder))
    started = clock()
    for entry, target in pairs:
        begun = clock()
        source = folder / entry.file
        try:
            if entry.kind == "sqlite":
                dbdump.restore_sqlite(source, target.url)
            else:
                dbdump.restore_postgres(source, target.url)
        except (dbdump.DumpError, OSError) as exc:
            report.failed = f"{entry.service}: {exc}"
            break
        report.services.append(Restored(entry.service, entry.kind,
                                        round(clock() - begun, 4), entry.size))
    report.total_seconds = round(clock() - started, 4)
    return report


def _confirmed(pairs: list[tuple[backup.Entry, backup.Target]]) -> bool:
    names = ", ".join(f"{t.service} ({dbdump.safe_url(t.url)})" for _e, t in pairs)
    if not sys.stdin.isatty():
        print(f"charter restore: would overwrite {names}; pass --yes to confirm",
              file=sys.stderr)
        return False
    answer = input(f"Overwrite {names} with the backup? [y/N] ")
    return answer.strip().lower() in ("y", "yes")


def cmd_restore(args: argparse.Namespace) -> int:
    """Verify, check, confirm, restore; print per-service times and the total."""
    folder = Path(args.backup)
    try:
        pairs = plan(folder, args.service, config.database_url)
        if not args.force:
            from charterctl import runner

            check_idle(pairs, runner.status_path())
    except (backup.BackupInvalid, RestoreRefused, config.ConfigError, dbdump.DumpError) as exc:
        print(f"charter restore: {exc}", file=sys.stderr)
        print("charter restore: nothing was restored", file=sys.stderr)
        return EXIT_REFUSED
    except Exception as exc:  # e.g. PostgreSQL unreachable during the session check
        print(f"charter restore: cannot check the targets: {type(exc).__name__}: {exc}",
              file=sys.stderr)
        return EXIT_REFUSED
    if not args.yes and not _confirmed(pairs):
        return EXIT_REFUSED
    report = restore(folder, pairs)
    out = folder / f"restore-{backup.timestamp()}.json"
    out.write_text(json.dumps(report.as_json(), indent=2) + "\n")
    if args.json:
        print(json.dumps(report.as_json()))
    else:
        for done in report.services:
            print(f"  {done.service:<14} {done.kind:<10} {done.bytes:>10} bytes  "
                  f"{done.seconds:.3f} s")
        print(f"restored {len(report.services)} database(s) in {report.total_seconds:.3f} s "
              f"(RTO target {report.rto_target_s} s); report: {out}")
    if report.failed:
        print(f"charter restore: FAILED at {report.failed}", file=sys.stderr)
        return EXIT_FAILED
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``restore`` to the ``charter`` parser."""
    p = sub.add_parser("restore", help="restore the databases from a charter backup "
                       "(checksums verified first; refuses while the platform runs)")
    p.add_argument("backup", help="the backup folder (<dir>/<UTC timestamp>)")
    p.add_argument("--service", action="append", metavar="S",
                   help="restore only this service (repeatable; default: all in the backup)")
    p.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    p.add_argument("--force", action="store_true",
                   help="restore even though the platform or other sessions seem to run")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=cmd_restore)
