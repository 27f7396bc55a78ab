"""JSON logs carrying ``service`` and ``correlation_id`` on every line (and ``saga_id``
while a saga step runs, ``trace_id``/``span_id`` inside a trace: the OpenTelemetry
context of :mod:`charter.observability.tracing`)."""

from __future__ import annotations

import contextvars
import json
import logging
import sys
import time
from typing import Any

from opentelemetry.trace import get_current_span

correlation_id: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "correlation_id", default=None
)
saga_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("saga_id", default=None)
"""The checkout saga a line belongs to (set while a saga step or its message runs)."""

_RESERVED = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime"}


class JSONFormatter(logging.Formatter):
    """One JSON object per line; extra fields passed with ``extra=`` are kept."""

    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "service": self.service,
            "logger": record.name,
            "message": record.getMessage(),
            "correlation_id": correlation_id.get(),
        }
        saga = saga_id.get()
        if saga is not None:
            doc["saga_id"] = saga
        span = get_current_span().get_span_context()
        if span.is_valid:
            doc["trace_id"] = f"{span.trace_id:032x}"
            doc["span_id"] = f"{span.span_id:016x}"
        for key, value in record.__dict__.items():
            if key not in _RESERVED and not key.startswith("_"):
                doc[key] = value
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        return json.dumps(doc, default=str)


def configure(service: str, level: str = "INFO") -> None:
    """Send every log record of the process to stderr as JSON lines (and to
    ``CHARTER_LOG_FILE`` too when set: :mod:`charter.observability.logfile`)."""
    from charter.observability import logfile

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JSONFormatter(service))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    logfile.attach(handler, root)
    root.setLevel(level)
    # The logging HOWTO's "Optimization": our JSON lines carry neither the caller's file
    # and line nor thread/process names, so LogRecord need not compute them (about a third
    # of an access-log line's cost). Tracebacks of logged exceptions are unaffected.
    logging._srcfile = None  # type: ignore[attr-defined]
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    for noisy in ("uvicorn.access",):
        logging.getLogger(noisy).disabled = True
    # httpx logs every outbound request at INFO (the revocation poll included, once a
    # second); the receiving side's access log already has them.
    for chatty in ("httpx", "httpcore"):
        logging.getLogger(chatty).setLevel(logging.WARNING)
