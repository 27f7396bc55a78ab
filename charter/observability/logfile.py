"""A copy of a process's JSON log lines in a file of its own, for ``charter logs``.

``charter up`` gives every process it starts ``CHARTER_LOG_FILE`` (one file per worker:
``<var>/logs/<component>.<worker>.jsonl``); :func:`attach` then adds a size-rotated file
handler beside the stderr one. One writer per file: the standard library's
:class:`logging.handlers.RotatingFileHandler` is safe across the threads of a process, not
across processes, so the workers of one service never share a file. Each line is formatted
once for both handlers (:class:`OnceFormatter`). Without ``CHARTER_LOG_FILE`` (services
started directly, containers) nothing changes: the logs go to stderr only.
"""

from __future__ import annotations

import logging
import logging.handlers
import sys
from pathlib import Path

from charter import config

LOG_FILE_ENV = "CHARTER_LOG_FILE"
MAX_BYTES_ENV = "CHARTER_LOG_MAX_BYTES"
BACKUPS_ENV = "CHARTER_LOG_BACKUPS"
_CACHE = "_charter_formatted"  # a LogRecord attribute; "_" keys stay out of the JSON


class OnceFormatter(logging.Formatter):
    """Formats a record once with ``inner`` and hands the same line to every handler."""

    def __init__(self, inner: logging.Formatter) -> None:
        super().__init__()
        self.inner = inner

    def format(self, record: logging.LogRecord) -> str:
        line = record.__dict__.get(_CACHE)
        if line is None:
            line = self.inner.format(record)
            record.__dict__[_CACHE] = line
        return str(line)


class SizeRotatingFileHandler(logging.handlers.RotatingFileHandler):
    """:class:`~logging.handlers.RotatingFileHandler` that counts the bytes it wrote
    instead of two ``stat`` calls, a seek and a tell before every line (half the cost of
    a line); exact because the JSON lines are ASCII (``json.dumps`` escapes the rest).
    A path that is not a regular file (``/dev/stderr``) is never rotated."""

    def __init__(self, path: Path, *, max_bytes: int, backups: int) -> None:
        special = path.exists() and not path.is_file()
        super().__init__(path, maxBytes=0 if special else max_bytes, backupCount=backups,
                         encoding="utf-8")
        self._size = 0 if special else path.stat().st_size

    def shouldRollover(self, record: logging.LogRecord) -> bool:  # noqa: N802 - stdlib's
        """True when ``record``'s line would take the file past its size."""
        return 0 < self.maxBytes < self._size + len(self.format(record)) + 1

    def doRollover(self) -> None:  # noqa: N802 - the standard library's name
        """Rotate, then count from zero in the new file."""
        super().doRollover()
        self._size = 0

    def emit(self, record: logging.LogRecord) -> None:
        """Write the line (rotating first when due) and count it."""
        super().emit(record)
        self._size += len(self.format(record)) + 1


def file_handler(path: Path, formatter: logging.Formatter, *, max_bytes: int,
                 backups: int) -> logging.Handler:
    """A :class:`SizeRotatingFileHandler` on ``path`` (parents created), rotated at
    ``max_bytes`` keeping ``backups`` rotated files."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = SizeRotatingFileHandler(path, max_bytes=max_bytes, backups=backups)
    handler.setFormatter(formatter)
    return handler


def attach(console: logging.Handler, root: logging.Logger | None = None) -> Path | None:
    """Add the ``CHARTER_LOG_FILE`` handler to ``root`` (default: the root logger), sharing
    ``console``'s formatting, rotated at ``CHARTER_LOG_MAX_BYTES`` (5 MiB) keeping
    ``CHARTER_LOG_BACKUPS`` (2) files (checked with the shared settings: a bad value stops
    the component at start-up). The file's path, or ``None`` when none is configured or it
    cannot be opened (said on stderr: a log file never stops a service)."""
    settings = config.settings()
    target = settings.charter_log_file
    if target is None or console.formatter is None:
        return None
    root = root if root is not None else logging.getLogger()
    formatter = OnceFormatter(console.formatter)
    try:
        handler = file_handler(target, formatter, max_bytes=settings.charter_log_max_bytes,
                               backups=settings.charter_log_backups)
    except OSError as exc:
        print(f"cannot write the log file {target}: {exc}", file=sys.stderr, flush=True)
        return None
    console.setFormatter(formatter)
    root.addHandler(handler)
    return target
