"""``charter logs``: the platform's local JSON logs merged into one time-ordered view.

``charter up`` has every process write its JSON log lines to a file of its own,
``<var>/logs/<component>.<worker>.jsonl``, rotated by size into ``….jsonl.1`` … ``.N``
(:mod:`charter.observability.logfile`). Each file is in time order, so the view is a
:func:`heapq.merge` of one lazy iterator per process (its rotated files oldest first): memory
stays flat however long the logs are. Lines that are not JSON objects with a ``ts`` (a
traceback printed by hand, a line still being written) are skipped; a filter's value is
looked for in the raw bytes before a line is parsed, so a search by correlation id parses
only the lines that mention it.

Hand-written because the job is a few dozen lines over the standard library (``heapq``,
``json``, ``datetime``); a log shipper (Loki, Vector) is the answer beyond one laptop.
"""

from __future__ import annotations

import argparse
import heapq
import json
import os
import re
import sys
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from charter import config

LOGS_DIR = "logs"  # under the var dir (charterctl.runner.log_file)
LEVELS = ("debug", "info", "warning", "error", "critical")
REORDER_WINDOW = 256  # lines of one file that may be out of order (threads racing the lock)
_FILE = re.compile(r"^(?P<stream>(?P<component>[A-Za-z0-9_-]+)(?:\.\d+)?\.jsonl)"
                   r"(?:\.(?P<backup>\d+))?$")
_AGO = re.compile(r"^(\d+(?:\.\d+)?)([smhd])$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


@dataclass(frozen=True)
class Entry:
    """One log line: when (epoch seconds), the parsed object and the raw text."""

    at: float
    doc: dict[str, Any]
    raw: str


@dataclass(frozen=True)
class Filter:
    """Which lines to show; every given criterion must hold."""

    correlation_id: str | None = None
    trace_id: str | None = None
    saga_id: str | None = None
    services: frozenset[str] = frozenset()
    since: float | None = None
    level: str | None = None  # the lowest level shown

    def _fields(self) -> list[tuple[str, str]]:
        return [(k, v) for k, v in (("correlation_id", self.correlation_id),
                                    ("trace_id", self.trace_id),
                                    ("saga_id", self.saga_id)) if v]

    def may_match(self, raw: bytes) -> bool:
        """False when the raw line cannot match (a searched id is not in it)."""
        return all(value.encode() in raw for _, value in self._fields())

    def matches(self, entry: Entry) -> bool:
        """True when the parsed line passes every criterion."""
        doc = entry.doc
        if any(str(doc.get(key)) != value for key, value in self._fields()):
            return False
        if self.services and str(doc.get("service")) not in self.services:
            return False
        if self.since is not None and entry.at < self.since:
            return False
        if self.level is not None:
            level = str(doc.get("level", "")).lower()
            rank = LEVELS.index(level) if level in LEVELS else len(LEVELS)
            return rank >= LEVELS.index(self.level)
        return True


def parse_time(text: str) -> float | None:
    """Epoch seconds of an ISO 8601 / RFC 3339 time (naive = UTC); ``None`` if invalid."""
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.timestamp()


def parse_since(text: str, now: float | None = None) -> float:
    """``10m``, ``2h``, ``30s``, ``1d`` (ago) or an RFC 3339 time → epoch seconds."""
    ago = _AGO.match(text.strip())
    if ago:
        current = time.time() if now is None else now
        return current - float(ago.group(1)) * _UNITS[ago.group(2)]
    when = parse_time(text.strip())
    if when is None:
        raise ValueError(f"not a duration (10m, 2h, 30s, 1d) or an RFC 3339 time: {text!r}")
    return when


def parse_line(raw: bytes | str) -> Entry | None:
    """The entry of one line; ``None`` for anything but a JSON object with a valid ``ts``."""
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
    text = text.strip()
    if not text.startswith("{"):
        return None
    try:
        doc = json.loads(text)
    except ValueError:
        return None
    if not isinstance(doc, dict) or not isinstance(doc.get("ts"), str):
        return None
    at = parse_time(doc["ts"])
    return None if at is None else Entry(at, doc, text)


def streams(directory: Path) -> dict[str, list[Path]]:
    """The log files under ``directory`` per process (``orders.2.jsonl``), each list in
    time order: the oldest backup first, the live file last."""
    found: dict[str, list[tuple[int, Path]]] = {}
    if not directory.is_dir():
        return {}
    for path in directory.iterdir():
        m = _FILE.match(path.name)
        if m and path.is_file():
            backup = int(m.group("backup") or 0)
            found.setdefault(m.group("stream"), []).append((backup, path))
    return {name: [p for _, p in sorted(files, key=lambda f: -f[0])]
            for name, files in sorted(found.items())}


def component_of(stream: str) -> str:
    """``orders`` for ``orders.2.jsonl``."""
    m = _FILE.match(stream)
    return m.group("component") if m else stream


def read_stream(paths: Iterable[Path], filt: Filter,
                offsets: dict[tuple[int, int], int] | None = None) -> Iterator[Entry]:
    """The matching entries of one process's files, in file order. A file that vanished
    (rotated away meanwhile) is skipped. ``offsets`` receives, per file (device, inode),
    how far it was read: complete lines only (a last line being written is left)."""
    for path in paths:
        try:
            handle = path.open("rb")
        except OSError:
            continue
        with handle:
            st = os.fstat(handle.fileno())
            key = (st.st_dev, st.st_ino)
            start = offsets.get(key, 0) if offsets is not None else 0
            handle.seek(start)
            done = start
            for raw in handle:
                if not raw.endswith(b"\n"):
                    break  # being written: read it next time (--follow)
                done += len(raw)
                if not filt.may_match(raw):
                    continue
                entry = parse_line(raw)
                if entry is not None and filt.matches(entry):
                    yield entry
            if offsets is not None:
                offsets[key] = done


def reorder(entries: Iterable[Entry], window: int = REORDER_WINDOW) -> Iterator[Entry]:
    """``entries`` sorted by time, given that none is more than ``window`` lines away from
    its place (a process's threads stamp a line before they take the handler's lock)."""
    heap: list[tuple[float, int, Entry]] = []
    for seq, entry in enumerate(entries):
        heapq.heappush(heap, (entry.at, seq, entry))
        if len(heap) > window:
            yield heapq.heappop(heap)[2]
    while heap:
        yield heapq.heappop(heap)[2]


def log_dirs(var_dirs: Sequence[Path]) -> list[Path]:
    """``<var>/logs`` of each var dir."""
    return [Path(v) / LOGS_DIR for v in var_dirs]


def merged(directories: Sequence[Path], filt: Filter,
           offsets: dict[tuple[int, int], int] | None = None) -> Iterator[Entry]:
    """Every matching entry of every process under ``directories``, in time order."""
    iterators = []
    for directory in directories:
        for stream, paths in streams(directory).items():
            if filt.services and component_of(stream) not in filt.services:
                continue
            iterators.append(reorder(read_stream(paths, filt, offsets)))
    return heapq.merge(*iterators, key=lambda e: e.at)


def short(value: object, width: int = 8) -> str:
    """The first ``width`` characters of an id (``-`` for none)."""
    return "-" if value in (None, "") else str(value)[:width]


def format_row(entry: Entry) -> str:
    """``time  service  LEVEL  correlation  message`` (one line; a traceback's first)."""
    doc = entry.doc
    message = str(doc.get("message", "")).replace("\n", " ⏎ ")
    if "exc" in doc:
        message += f" [{str(doc['exc']).strip().splitlines()[-1]}]"
    return (f"{doc.get('ts', '')}  {str(doc.get('service', '-')):<13} "
            f"{str(doc.get('level', '-')).upper():<8} "
            f"{short(doc.get('correlation_id')):<8}  {message}")


HEADER = f"{'TIME':<24}  {'SERVICE':<13} {'LEVEL':<8} {'CORR ID':<8}  MESSAGE"


@dataclass
class View:
    """Where the lines go and how they look."""

    out: TextIO = field(default_factory=lambda: sys.stdout)
    raw: bool = False
    shown: int = 0

    def show(self, entries: Iterable[Entry]) -> None:
        for entry in entries:
            if not self.raw and self.shown == 0:
                print(HEADER, file=self.out)
            print(entry.raw if self.raw else format_row(entry), file=self.out)
            self.shown += 1
        self.out.flush()


def follow(directories: Sequence[Path], filt: Filter, view: View,
           offsets: dict[tuple[int, int], int], *, interval: float = 0.5,
           polls: int | None = None) -> None:
    """Print what is written from now on, every ``interval`` s (``polls`` times, or until
    interrupted). Rotation is followed: files are tracked by inode, so a file renamed to
    ``.1`` is read on from where it was and the new live file from its start."""
    count = 0
    while polls is None or count < polls:
        time.sleep(interval)
        batch: list[Entry] = []
        for directory in directories:
            for stream, paths in streams(directory).items():
                if not filt.services or component_of(stream) in filt.services:
                    batch.extend(read_stream(paths, filt, offsets))
        batch.sort(key=lambda e: e.at)
        view.show(batch)
        count += 1


def _since(text: str) -> float:
    try:
        return parse_since(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``charter logs`` to the ``charter`` command."""
    p = subparsers.add_parser(
        "logs", help="the platform's local JSON logs, merged in time order",
        description="Merge the JSON log files charter up writes under <var>/logs into one "
        "time-ordered view, e.g. one request across every service: "
        "charter logs --correlation-id ID")
    p.add_argument("--correlation-id", help="only lines of this correlation id")
    p.add_argument("--trace-id", help="only lines of this trace id (W3C trace context)")
    p.add_argument("--saga-id", help="only lines of this checkout saga (the order id)")
    p.add_argument("--service", action="append", default=[], metavar="NAME",
                   help="only this component's lines (repeatable)")
    p.add_argument("--since", type=_since, metavar="WHEN",
                   help="only lines since: 10m, 2h, 30s, 1d ago, or an RFC 3339 time")
    p.add_argument("--level", choices=LEVELS, type=str.lower,
                   help="only lines of this level or above")
    p.add_argument("--json", action="store_true", help="the raw JSON lines")
    p.add_argument("--follow", "-f", action="store_true",
                   help="keep printing new lines (Ctrl-C stops)")
    p.add_argument("--var-dir", action="append", default=[], type=Path, metavar="DIR",
                   help="the var dir of a charter up (repeatable, e.g. for a second "
                   "charter up --only beside the first; default: CHARTER_VAR_DIR or var/)")
    p.set_defaults(func=cmd_logs)


def cmd_logs(args: argparse.Namespace) -> int:
    """Print the matching lines; 1 when there are no log files at all (with ``--follow``:
    wait for them)."""
    var_dirs = args.var_dir or [config.var_dir()]
    directories = log_dirs(var_dirs)
    if not args.follow and not any(streams(d) for d in directories):
        where = ", ".join(str(d) for d in directories)
        print(f"charter logs: no log files under {where} (charter up writes them)",
              file=sys.stderr)
        return 1
    filt = Filter(correlation_id=args.correlation_id, trace_id=args.trace_id,
                  saga_id=args.saga_id, services=frozenset(args.service),
                  since=args.since, level=args.level)
    view = View(raw=args.json)
    offsets: dict[tuple[int, int], int] = {}
    try:
        view.show(merged(directories, filt, offsets))
        if args.follow:
            follow(directories, filt, view, offsets)
    except KeyboardInterrupt:
        pass
    except BrokenPipeError:  # charter logs | head: stop quietly, as other tools do
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 0
