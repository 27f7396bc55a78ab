"""``charter db replica setup|status|promote|teardown``: a local streaming-replication standby.

The standby is a second PostgreSQL cluster on this machine (default port 5433) made with
``pg_basebackup -R`` from the catalog's primary server, kept current through a physical
replication slot (the primary keeps the WAL it has not received yet) and started with
``pg_ctl``. Run as root, every PostgreSQL program runs as the ``postgres`` user (PostgreSQL
refuses root) and the data directory belongs to it. See ``deploy/postgres/README.md`` and
``docs/operations.md``, *Catalog database replication*.

The functions are also the set-up of the replication test and of ``bench.replication``
(:func:`measure_lag`). Every failure is a :class:`ReplicaError` whose message is one line.
"""

from __future__ import annotations

import argparse
import json
import os
import pwd
import shutil
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from sqlalchemy.engine import URL, make_url

DEFAULT_PRIMARY = "postgresql://postgres@127.0.0.1:5432/postgres"
DEFAULT_PORT = 5433
DEFAULT_SLOT = "charter_catalog_replica"
DEFAULT_DATA_DIR = Path("/var/lib/postgresql/charter-catalog-replica")
HBA_LINE = "host replication all 127.0.0.1/32 trust"
OS_USER = "postgres"
# Settings a hot standby needs at least as high as its primary's.
MATCH_PRIMARY = ("max_connections", "max_worker_processes", "max_wal_senders",
                 "max_prepared_transactions", "max_locks_per_transaction")
EXIT_OK, EXIT_FAILED = 0, 1


class ReplicaError(Exception):
    """A step failed; the message (one line) says what and what to do."""


@dataclass(frozen=True)
class Standby:
    """Where the primary is and where the standby lives."""

    primary: str = DEFAULT_PRIMARY
    port: int = DEFAULT_PORT
    data_dir: Path = DEFAULT_DATA_DIR
    slot: str = DEFAULT_SLOT
    bindir: Path | None = None
    _url: URL = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        url = make_url(self.primary)
        if url.get_backend_name() != "postgresql":
            raise ReplicaError(f"the primary must be a PostgreSQL URL, not {url.drivername}")
        object.__setattr__(self, "_url", url)
        if not self.slot.replace("_", "").isalnum() or not self.slot.islower():
            raise ReplicaError(f"slot name {self.slot!r}: lower-case letters, digits and _ only")

    @property
    def primary_host(self) -> str:
        return self._url.host or "127.0.0.1"

    @property
    def primary_port(self) -> int:
        return self._url.port or 5432

    @property
    def user(self) -> str:
        return self._url.username or "postgres"

    def primary_dsn(self, database: str | None = None, **extra: str) -> str:
        """libpq connection string of the primary (``database``: else the URL's)."""
        parts = {"host": self.primary_host, "port": str(self.primary_port), "user": self.user,
                 "dbname": database or self._url.database or "postgres",
                 "connect_timeout": "5", **extra}
        if self._url.password:
            parts["password"] = self._url.password
        return " ".join(f"{k}={v}" for k, v in parts.items())

    def standby_url(self, database: str | None = None) -> str:
        """SQLAlchemy URL of ``database`` (else the primary URL's) on the standby."""
        url = self._url.set(host="127.0.0.1", port=self.port,
                            database=database or self._url.database or "postgres")
        return url.render_as_string(hide_password=False)

    def standby_dsn(self, database: str = "postgres") -> str:
        return (f"host=127.0.0.1 port={self.port} user={self.user} dbname={database} "
                "connect_timeout=5")


# --- running the PostgreSQL programs --------------------------------------------------

def find_bindir(major: int | None = None) -> Path:
    """The PostgreSQL server programs: ``/usr/lib/postgresql/<major>/bin`` (Debian), else
    ``pg_config --bindir``; :class:`ReplicaError` when ``pg_basebackup`` is not there."""
    candidates: list[Path] = []
    if major is not None:
        candidates.append(Path(f"/usr/lib/postgresql/{major}/bin"))
    pg_config = shutil.which("pg_config")
    if pg_config:
        with suppress(OSError, subprocess.SubprocessError):
            out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True,
                                 check=True, timeout=10).stdout.strip()
            candidates.append(Path(out))
    candidates += sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)
    for path in candidates:
        if (path / "pg_basebackup").is_file() and (path / "pg_ctl").is_file():
            return path
    raise ReplicaError("PostgreSQL server programs not found (pg_basebackup, pg_ctl): "
                       "install postgresql or pass --bindir")


def as_server_user(argv: Sequence[str]) -> list[str]:
    """``argv`` run as the ``postgres`` user when we are root (PostgreSQL refuses root)."""
    return ["runuser", "-u", OS_USER, "--", *argv] if os.geteuid() == 0 else list(argv)


def _run(argv: Sequence[str], what: str, timeout: float = 300) -> str:
    try:
        done = subprocess.run(as_server_user(argv), capture_output=True, text=True,
                              timeout=timeout, cwd="/")
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ReplicaError(f"{what} failed: {exc}") from None
    if done.returncode != 0:
        lines = (done.stderr or done.stdout).strip().splitlines() or ["no output"]
        raise ReplicaError(f"{what} failed: {lines[-1]}")
    return done.stdout


@contextmanager
def _connect(dsn: str, what: str, **options: Any) -> Iterator[psycopg.Connection[Any]]:
    try:
        conn = psycopg.connect(dsn, autocommit=True, **options)
    except psycopg.Error as exc:
        raise ReplicaError(f"cannot connect to the {what}: {_first_line(exc)}") from None
    try:
        yield conn
    except psycopg.Error as exc:
        raise ReplicaError(f"{what}: {_first_line(exc)}") from None
    finally:
        conn.close()


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


# --- the primary ----------------------------------------------------------------------

def replication_refusal(spec: Standby) -> str | None:
    """Why the primary refuses a physical replication connection from here, or ``None``."""
    try:
        psycopg.connect(spec.primary_dsn(replication="true"), autocommit=True).close()
    except psycopg.Error as exc:
        return _first_line(exc)
    return None


def _is_local(host: str) -> bool:
    return host in ("127.0.0.1", "localhost", "::1") or host.startswith("/")


def allow_local_replication(spec: Standby) -> Path:
    """Append :data:`HBA_LINE` to the primary's ``pg_hba.conf`` (a local, writable file)
    and reload its configuration; the file's path."""
    if not _is_local(spec.primary_host):
        raise ReplicaError(f"the primary {spec.primary_host} is not on this machine: add "
                           f"'{HBA_LINE}' (with the standby's address) to its pg_hba.conf")
    with _connect(spec.primary_dsn(), "primary") as conn:
        hba = Path(str(conn.execute("SHOW hba_file").fetchone()[0]))  # type: ignore[index]
        if not hba.is_file() or not os.access(hba, os.W_OK):
            raise ReplicaError(f"cannot write {hba}: add '{HBA_LINE}' to it yourself and run "
                               "SELECT pg_reload_conf()")
        text = hba.read_text()
        if HBA_LINE not in text.splitlines():
            with hba.open("a") as out:
                out.write(("" if text.endswith("\n") else "\n")
                          + "# added by charter db replica setup --allow-local-replication\n"
                          + HBA_LINE + "\n")
        conn.execute("SELECT pg_reload_conf()")
    time.sleep(0.2)  # the postmaster reloads on SIGHUP, asynchronously
    return hba


def require_replication(spec: Standby, *, allow: bool = False) -> None:
    """Fail with what to add unless the primary accepts replication connections (with
    ``allow``, add the line to a local pg_hba.conf and reload first)."""
    refusal = replication_refusal(spec)
    if refusal is None:
        return
    if "pg_hba.conf" not in refusal:
        raise ReplicaError(f"the primary refuses replication: {refusal}")
    if not allow:
        raise ReplicaError(f"the primary's pg_hba.conf has no replication entry: add "
                           f"'{HBA_LINE}' and run SELECT pg_reload_conf(), or pass "
                           "--allow-local-replication")
    hba = allow_local_replication(spec)
    for _ in range(20):
        if replication_refusal(spec) is None:
            return
        time.sleep(0.1)
    raise ReplicaError(f"replication still refused after adding '{HBA_LINE}' to {hba}")


def _primary_facts(spec: Standby) -> dict[str, str]:
    with _connect(spec.primary_dsn(), "primary") as conn:
        names = ("server_version_num", "wal_level", *MATCH_PRIMARY)
        facts = {n: str(conn.execute(f"SHOW {n}").fetchone()[0]) for n in names}  # type: ignore[index]
        slot = conn.execute("SELECT active FROM pg_replication_slots WHERE slot_name = %s",
                            (spec.slot,)).fetchone()
    facts["slot"] = "absent" if slot is None else ("active" if slot[0] else "inactive")
    return facts


def _drop_slot(spec: Standby, wait: float = 10.0) -> bool:
    """Drop the slot on the primary (waiting for it to become inactive); False if absent."""
    with _connect(spec.primary_dsn(), "primary") as conn:
        deadline = time.monotonic() + wait
        while True:
            row = conn.execute("SELECT active FROM pg_replication_slots WHERE slot_name = %s",
                               (spec.slot,)).fetchone()
            if row is None:
                return False
            if not row[0] or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        conn.execute("SELECT pg_drop_replication_slot(%s)", (spec.slot,))
    return True


# --- the standby ----------------------------------------------------------------------

def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


def _running(spec: Standby) -> bool:
    return (spec.data_dir / "postmaster.pid").exists()


def _standby_conf(spec: Standby, facts: dict[str, str]) -> str:
    lines = [
        "# charter db replica setup: this standby's own settings",
        f"port = {spec.port}",
        "listen_addresses = '127.0.0.1'",
        f"unix_socket_directories = '{spec.data_dir}'",
        "hot_standby = on",
        "hot_standby_feedback = on   # the primary keeps rows the standby's queries read",
        "shared_buffers = '32MB'",
        f"cluster_name = '{spec.slot}'",
        *(f"{name} = {facts[name]}" for name in MATCH_PRIMARY),
    ]
    return "\n".join(lines) + "\n"


def setup(spec: Standby, *, allow_local_replication: bool = False,
          timeout: float = 120.0) -> dict[str, Any]:
    """Make and start the standby; its status once it streams."""
    require_replication(spec, allow=allow_local_replication)
    facts = _primary_facts(spec)
    if facts["wal_level"] not in ("replica", "logical"):
        raise ReplicaError(f"the primary has wal_level={facts['wal_level']}: set it to "
                           "replica and restart the primary")
    if facts["slot"] != "absent":
        raise ReplicaError(f"replication slot {spec.slot} already exists on the primary "
                           f"({facts['slot']}): run 'charter db replica teardown' first")
    if spec.data_dir.exists() and any(spec.data_dir.iterdir()):
        raise ReplicaError(f"{spec.data_dir} is not empty: run 'charter db replica teardown' "
                           "or pass another --data-dir")
    if not _port_free(spec.port):
        raise ReplicaError(f"port {spec.port} is in use: pass another --port")
    bindir = spec.bindir or find_bindir(int(facts["server_version_num"]) // 10000)
    _make_data_dir(spec.data_dir)
    try:
        _run([str(bindir / "pg_basebackup"), "-h", spec.primary_host,
              "-p", str(spec.primary_port), "-U", spec.user, "-D", str(spec.data_dir),
              "-R", "-X", "stream", "-C", "-S", spec.slot, "--checkpoint=fast", "--no-sync"],
             "pg_basebackup", timeout=timeout)
        _write_configuration(spec, facts)
        _run([str(bindir / "pg_ctl"), "-D", str(spec.data_dir), "-l",
              str(spec.data_dir / "standby.log"), "-w", "-t", str(int(timeout)), "start"],
             "pg_ctl start (see standby.log in the data directory)", timeout=timeout + 5)
        _wait_streaming(spec, timeout)
    except BaseException:
        with suppress(ReplicaError):
            teardown(spec)
        raise
    return status(spec)


def _make_data_dir(path: Path) -> None:
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    if os.geteuid() == 0:
        entry = pwd.getpwnam(OS_USER)
        os.chown(path, entry.pw_uid, entry.pw_gid)
    path.chmod(0o700)


def _write_configuration(spec: Standby, facts: dict[str, str]) -> None:
    """postgresql.conf / pg_hba.conf when the base backup has none (Debian keeps them in
    /etc), and this standby's settings in postgresql.auto.conf (which wins)."""
    files = {
        "postgresql.conf": "# charter db replica: settings in postgresql.auto.conf\n",
        "pg_hba.conf": "local all all trust\nhost all all 127.0.0.1/32 trust\n",
        "pg_ident.conf": "",
    }
    for name, content in files.items():
        target = spec.data_dir / name
        if not target.exists():
            _write_as_server_user(target, content)
    auto = spec.data_dir / "postgresql.auto.conf"
    _write_as_server_user(auto, auto.read_text() + _standby_conf(spec, facts))


def _write_as_server_user(path: Path, content: str) -> None:
    path.write_text(content)
    if os.geteuid() == 0:
        entry = pwd.getpwnam(OS_USER)
        os.chown(path, entry.pw_uid, entry.pw_gid)
    path.chmod(0o600)


def _wait_streaming(spec: Standby, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with _connect(spec.primary_dsn(), "primary") as conn:
            row = conn.execute(
                "SELECT r.state FROM pg_stat_replication r JOIN pg_replication_slots s "
                "ON s.active_pid = r.pid WHERE s.slot_name = %s", (spec.slot,)).fetchone()
        if row is not None and row[0] == "streaming":
            return
        time.sleep(0.1)
    raise ReplicaError(f"the standby did not start streaming within {timeout:.0f} s "
                       f"(see {spec.data_dir / 'standby.log'})")


def status(spec: Standby) -> dict[str, Any]:
    """Lag in bytes and seconds (``pg_stat_replication`` on the primary), the standby's
    replay position and the age of its last replayed transaction."""
    out: dict[str, Any] = {"port": spec.port, "data_dir": str(spec.data_dir),
                           "slot": spec.slot, "running": _running(spec)}
    with _connect(spec.primary_dsn(), "primary") as conn:
        slot = conn.execute(
            "SELECT active, pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)::bigint "
            "FROM pg_replication_slots WHERE slot_name = %s", (spec.slot,)).fetchone()
        row = conn.execute(
            "SELECT r.state, r.replay_lsn::text, "
            "pg_wal_lsn_diff(pg_current_wal_lsn(), r.replay_lsn)::bigint, "
            "extract(epoch FROM r.replay_lag)::float8, r.sync_state "
            "FROM pg_stat_replication r JOIN pg_replication_slots s ON s.active_pid = r.pid "
            "WHERE s.slot_name = %s", (spec.slot,)).fetchone()
    out["slot_state"] = "absent" if slot is None else ("active" if slot[0] else "inactive")
    out["slot_retained_bytes"] = None if slot is None else slot[1]
    if row is not None:
        out.update(state=row[0], replay_lsn=row[1], lag_bytes=row[2],
                   lag_seconds=row[3] or 0.0, sync_state=row[4])
    else:
        out.update(state="not connected", lag_bytes=None, lag_seconds=None)
    if out["running"]:
        with suppress(ReplicaError), _connect(spec.standby_dsn(), "standby") as conn:
            standby = conn.execute(
                "SELECT pg_is_in_recovery(), pg_last_wal_replay_lsn()::text, "
                "extract(epoch FROM now() - pg_last_xact_replay_timestamp())::float8"
            ).fetchone()
            if standby is not None:
                out.update(in_recovery=standby[0], standby_replay_lsn=standby[1],
                           last_replayed_xact_age_seconds=standby[2])
    return out


def promote(spec: Standby) -> dict[str, Any]:
    """Make the standby a primary (``pg_ctl promote``) and drop the slot on the old
    primary if it still answers (it would keep WAL for nobody)."""
    if not _running(spec):
        raise ReplicaError(f"no standby running in {spec.data_dir}")
    bindir = spec.bindir or find_bindir()
    _run([str(bindir / "pg_ctl"), "-D", str(spec.data_dir), "-w", "promote"], "pg_ctl promote")
    dropped = False
    with suppress(ReplicaError):
        dropped = _drop_slot(spec)
    return {"promoted": True, "port": spec.port, "slot_dropped": dropped,
            "url": spec.standby_url()}


def teardown(spec: Standby) -> dict[str, Any]:
    """Stop the standby, drop its slot on the primary and remove its data directory; what
    is already gone is skipped."""
    stopped = False
    if _running(spec):
        bindir = spec.bindir or find_bindir()
        with suppress(ReplicaError):
            _run([str(bindir / "pg_ctl"), "-D", str(spec.data_dir), "-m", "immediate", "-w",
                  "stop"], "pg_ctl stop", timeout=60)
            stopped = True
    dropped = _drop_slot(spec)
    removed = spec.data_dir.exists()
    if removed:
        shutil.rmtree(spec.data_dir)
    return {"stopped": stopped, "slot_dropped": dropped, "data_dir_removed": removed}


# --- lag measurement (tests, bench.replication) ----------------------------------------

def measure_lag(spec: Standby, *, seconds: float = 3.0, interval: float = 0.05,
                timeout: float = 5.0) -> dict[str, Any]:
    """Commit a small write on the primary every ``interval`` for ``seconds`` and time
    until the standby has replayed it: ``{"samples": [{"t", "lag_ms"}], "max_lag_ms",
    "p50_lag_ms"}`` (``t``: seconds since the start)."""
    samples: list[dict[str, float]] = []
    with _connect(spec.primary_dsn(), "primary") as primary, \
            _connect(spec.standby_dsn(), "standby") as standby:
        start = time.monotonic()
        while (now := time.monotonic()) - start < seconds:
            with primary.transaction():  # a committed, WAL-logged write; no table needed
                primary.execute("SELECT pg_logical_emit_message(true, 'charter', 'lag probe')")
            lsn = primary.execute("SELECT pg_current_wal_lsn()::text").fetchone()[0]  # type: ignore[index]
            committed = time.monotonic()
            while not standby.execute("SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn",
                                      (lsn,)).fetchone()[0]:  # type: ignore[index]
                if time.monotonic() - committed > timeout:
                    raise ReplicaError(f"the standby did not replay {lsn} within {timeout} s")
                time.sleep(0.0005)
            lag = (time.monotonic() - committed) * 1000
            samples.append({"t": round(now - start, 3), "lag_ms": round(lag, 3)})
            time.sleep(max(0.0, interval - (time.monotonic() - now)))
    lags = [s["lag_ms"] for s in samples]
    return {"samples": samples, "max_lag_ms": max(lags, default=0.0),
            "p50_lag_ms": statistics.median(lags) if lags else 0.0}


# --- the command ------------------------------------------------------------------------

def _default_primary() -> str:
    for name in ("CATALOG_DATABASE_URL", "DATABASE_URL"):
        value = os.environ.get(name, "").replace("{service}", "catalog")
        if value.startswith("postgresql"):
            return value
    return DEFAULT_PRIMARY


def register(db_commands: argparse._SubParsersAction) -> None:
    """Add ``replica setup|status|promote|teardown`` under ``charter db``."""
    group = db_commands.add_parser("replica", help="a local streaming-replication standby "
                                   "of the catalog's PostgreSQL server")
    commands = group.add_subparsers(dest="replica_cmd", required=True)
    helps = {
        "setup": "pg_basebackup -R a standby through a replication slot and start it",
        "status": "replication state and lag (bytes, seconds)",
        "promote": "make the standby a primary (primary failure)",
        "teardown": "stop the standby, drop its slot, remove its data directory",
    }
    for name, text in helps.items():
        p = commands.add_parser(name, help=text)
        p.add_argument("--primary", default=None,
                       help="primary URL (default CATALOG_DATABASE_URL, DATABASE_URL, "
                            f"else {DEFAULT_PRIMARY})")
        p.add_argument("--port", type=int, default=DEFAULT_PORT, help="the standby's port")
        p.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)
        p.add_argument("--slot", default=DEFAULT_SLOT, help="replication slot name")
        p.add_argument("--bindir", type=Path, help="PostgreSQL programs (default: found)")
        p.add_argument("--json", action="store_true", help="print JSON")
        if name == "setup":
            p.add_argument("--allow-local-replication", action="store_true",
                           help=f"add '{HBA_LINE}' to the local primary's pg_hba.conf "
                                "and reload it when replication is refused")
        p.set_defaults(func=cmd_replica)


def cmd_replica(args: argparse.Namespace) -> int:
    """Run one ``charter db replica`` command; a failure is one line on stderr, exit 1."""
    try:
        spec = Standby(primary=args.primary or _default_primary(), port=args.port,
                       data_dir=args.data_dir, slot=args.slot, bindir=args.bindir)
        if args.replica_cmd == "setup":
            result = setup(spec, allow_local_replication=args.allow_local_replication)
        elif args.replica_cmd == "status":
            result = status(spec)
        elif args.replica_cmd == "promote":
            result = promote(spec)
        else:
            result = teardown(spec)
    except (ReplicaError, OSError) as exc:  # OSError: a data directory we may not touch
        print(f"charter db replica {args.replica_cmd}: {exc}", file=sys.stderr)
        return EXIT_FAILED
    if args.json:
        print(json.dumps(result, indent=2, default=str))
    else:
        for key, value in result.items():
            print(f"{key:32} {value}")
    if args.replica_cmd == "setup":
        print(f"\nreads: CATALOG_DATABASE_READ_URL={spec.standby_url()}", file=sys.stderr)
    return EXIT_OK
