"""``charter backup``: a consistent, timestamped copy of every service's database.

``<dir>/<UTC timestamp>/`` holds one file per service (``<service>.sqlite`` from SQLite's
online backup API, ``<service>.dump`` from ``pg_dump --format=custom``) and
``manifest.json``: format version, creation time, Charter's version and git revision, and
per service its kind, file, size, SHA-256, Alembic revision and the event store's last
global position. :func:`verify` checks a backup against its manifest before
:mod:`charterctl.restore` touches anything. See docs/operations.md, *Backup and restore*.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from charter import config
from charterctl import dbdump

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
BACKUPS_DIR = "backups"
SUFFIX = {"sqlite": ".sqlite", "postgresql": ".dump"}


class BackupInvalid(Exception):
    """The backup is incomplete, tampered with or not a Charter backup (nothing restored)."""


@dataclass(frozen=True)
class Target:
    """One service's database."""

    service: str
    url: str

    @property
    def kind(self) -> str:
        """``sqlite`` or ``postgresql``."""
        return dbdump.kind_of(self.url)


@dataclass(frozen=True)
class Entry:
    """One service in a manifest."""

    service: str
    kind: str
    file: str
    size: int
    sha256: str
    schema_revision: str | None
    last_event_position: int | None


def targets(only: list[str] | None = None) -> list[Target]:
    """Every component with a database (or those in ``only``), with its configured URL."""
    from charterctl import registry

    names = [c.name for c in registry.select(",".join(only) if only else None)
             if c.has_database]
    return [Target(name, config.database_url(name)) for name in names]


def sha256_of(path: Path) -> str:
    """The hex SHA-256 of a file."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _charter_version() -> dict[str, str | None]:
    try:
        version: str | None = metadata.version("charter")
    except metadata.PackageNotFoundError:
        version = None
    try:
        rev = subprocess.run(["git", "rev-parse", "HEAD"], cwd=config.ROOT,
                             capture_output=True, text=True, timeout=5, check=False)
        git_rev = (rev.stdout.strip() or None) if rev.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        git_rev = None
    return {"version": version, "git_rev": git_rev}


def timestamp(now: datetime | None = None) -> str:
    """``20261206T103807.123456Z``: sortable, unique per microsecond, safe in file names."""
    return (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%S.%fZ")


def backup(selected: list[Target], root: Path, *, skip_missing: bool = True) -> Path:
    """Back up ``selected`` into a new ``root/<timestamp>/``; returns that directory.

    A development-mode SQLite file that does not exist yet (the service never ran) is
    skipped with a note on stderr when ``skip_missing``; any other failure removes the
    partial backup and raises :class:`dbdump.DumpError`.
    """
    created = datetime.now(UTC)
    folder = root / timestamp(created)
    folder.mkdir(parents=True, exist_ok=False)
    entries: list[Entry] = []
    try:
        for target in selected:
            kind = target.kind
            if kind == "sqlite" and skip_missing and not dbdump.sqlite_path(target.url).exists():
                print(f"charter backup: {target.service}: skipped (no database file "
                      f"{dbdump.sqlite_path(target.url)})", file=sys.stderr)
                continue
            file = folder / f"{target.service}{SUFFIX[kind]}"
            if kind == "sqlite":
                facts = dbdump.backup_sqlite(target.url, target.service, file)
            else:
                facts = dbdump.backup_postgres(target.url, target.service, file)
            entries.append(Entry(target.service, kind, file.name, file.stat().st_size,
                                 sha256_of(file), facts.schema_revision,
                                 facts.last_event_position))
        if not entries:
            raise dbdump.DumpError("no database to back up")
        manifest = {"format": FORMAT_VERSION, "created_at": created.isoformat(),
                    "charter": _charter_version(),
                    "services": [asdict(e) for e in entries]}
        (folder / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    except BaseException:
        for leftover in folder.iterdir():
            leftover.unlink()
        folder.rmdir()
        raise
    return folder


def read_manifest(folder: Path) -> dict[str, Any]:
    """The manifest of a backup folder (:class:`BackupInvalid` when missing or unreadable)."""
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
    except FileNotFoundError:
        raise BackupInvalid(f"{folder} has no {MANIFEST}: not a (complete) backup") from None
    except (OSError, ValueError) as exc:
        raise BackupInvalid(f"{folder / MANIFEST} is unreadable: {exc}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT_VERSION:
        raise BackupInvalid(f"{folder / MANIFEST}: unknown format "
                            f"{manifest.get('format') if isinstance(manifest, dict) else None!r}"
                            f" (expected {FORMAT_VERSION})")
    return manifest


def verify(folder: Path) -> list[Entry]:
    """Every entry of the manifest, after checking each file's presence, size and SHA-256;
    :class:`BackupInvalid` naming every problem otherwise."""
    manifest = read_manifest(folder)
    problems: list[str] = []
    entries: list[Entry] = []
    for raw in manifest.get("services") or []:
        try:
            entry = Entry(**raw)
        except TypeError as exc:
            raise BackupInvalid(f"{folder / MANIFEST}: bad service entry: {exc}") from None
        path = folder / entry.file
        if Path(entry.file).name != entry.file or entry.kind not in SUFFIX:
            problems.append(f"{entry.service}: bad entry (file {entry.file!r}, "
                            f"kind {entry.kind!r})")
        elif not path.is_file():
            problems.append(f"{entry.service}: {entry.file} is missing")
        elif path.stat().st_size != entry.size:
            problems.append(f"{entry.service}: {entry.file} has {path.stat().st_size} bytes, "
                            f"the manifest says {entry.size}")
        elif sha256_of(path) != entry.sha256:
            problems.append(f"{entry.service}: {entry.file} does not match its SHA-256 "
                            "(corrupted or altered)")
        entries.append(entry)
    if not entries:
        problems.append("the manifest lists no service")
    if problems:
        raise BackupInvalid("backup " + str(folder) + " refused:\n  " + "\n  ".join(problems))
    return entries


def default_root() -> Path:
    """``<var>/backups``."""
    return config.var_dir() / BACKUPS_DIR


def cmd_backup(args: argparse.Namespace) -> int:
    """Back up every service's database (or ``--only`` ones) and print where."""
    try:
        selected = targets(args.only)
        root = Path(args.to) if args.to else default_root()
        folder = backup(selected, root)
    except (config.ConfigError, dbdump.DumpError) as exc:
        print(f"charter backup: {exc}", file=sys.stderr)
        return 1
    for raw in read_manifest(folder)["services"]:
        entry = Entry(**raw)
        extra = ("" if entry.last_event_position is None
                 else f", events up to {entry.last_event_position}")
        print(f"  {entry.service:<14} {entry.kind:<10} {entry.size:>10} bytes  "
              f"rev {entry.schema_revision}{extra}")
    print(folder)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``backup`` and ``restore`` to the ``charter`` parser."""
    from charterctl import restore

    p = sub.add_parser("backup", help="a consistent, timestamped copy of every service's "
                       "database (pg_dump / SQLite online backup) with a manifest")
    p.add_argument("--to", metavar="DIR", help="where to create <UTC timestamp>/ "
                   "(default <var>/backups)")
    p.add_argument("--only", action="append", metavar="SERVICE",
                   help="back up only this service (repeatable)")
    p.set_defaults(func=cmd_backup)
    restore.register(sub)
