"""Fault injection per operation: added latency, error rate, unavailability windows.

A profile maps an operationId (or ``*``, every request) to its faults::

    {"get_thing": {"latency_ms": "50-150", "error_rate": 0.2},
     "*": {"unavailable": [{"from": "2026-12-06T10:00:00Z", "until": "2026-12-06T10:05:00Z"},
                           {"for_s": 30}]}}

``latency_ms`` is a number or ``"min-max"``; ``error_rate`` is 0..1; ``unavailable`` is one
window or a list (``for_s`` counts from when the profile was loaded or set). Faulted
requests are answered 503 problem+json with ``X-Charter-Fault: injected``.

Sources: ``CHARTER_FAULTS`` (JSON) or ``CHARTER_FAULTS_FILE`` (a JSON or YAML file) at
start; then the live file ``<var_dir>/faults/<service>.json`` (written by
:func:`set_faults` and the admin endpoint), which every worker re-reads when it changes
(one ``stat`` per 0.5 s at most). :class:`FaultMiddleware` is inert — no ``stat``, no
lookup — when neither a profile is configured nor development mode is on.

The admin endpoint ``/_charter/faults`` (GET, PUT, DELETE) exists only in development
mode and only answers callers whose verified platform client certificate names an
identity in :data:`ADMIN_IDENTITIES` (see ``docs/resilience.md``).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import random
import re
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import yaml
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from charter import config, problems
from charter.clock import parse_rfc3339, rfc3339, utcnow
from charter.security import mtls

log = logging.getLogger(__name__)

ENV_PROFILE = "CHARTER_FAULTS"
ENV_FILE = "CHARTER_FAULTS_FILE"
ADMIN_PATH = "/_charter/faults"
FAULT_HEADER = b"x-charter-fault"
# Who may use the admin endpoint: the operator's CLI certificate (``charter`` commands,
# ``make chaos``), never a service's.
ADMIN_IDENTITIES = frozenset({"charter-cli"})
CHECK_INTERVAL = 0.5
MAX_ADMIN_BODY = 64 * 1024
UNTOUCHED = ("/health/", "/metrics")
_SERVICE_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,63}$")


class FaultConfigError(ValueError):
    """A fault profile that cannot be used."""


@dataclass(frozen=True)
class Window:
    """An unavailability window ``[start, until)`` in UTC."""

    start: datetime
    until: datetime

    def contains(self, now: datetime) -> bool:
        """True while ``now`` is inside the window."""
        return self.start <= now < self.until


def _number(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise FaultConfigError(f"{what} must be a number, not {value!r}")
    if value < 0:
        raise FaultConfigError(f"{what} must not be negative")
    return float(value)


def _latency(value: Any) -> tuple[float, float]:
    if isinstance(value, str):
        low, sep, high = value.partition("-")
        try:
            bounds = (float(low), float(high) if sep else float(low))
        except ValueError as exc:
            raise FaultConfigError(f"latency_ms {value!r} is not 'N' or 'min-max'") from exc
    else:
        bounds = (_number(value, "latency_ms"),) * 2
    if bounds[0] < 0 or bounds[1] < bounds[0]:
        raise FaultConfigError(f"latency_ms {value!r}: need 0 <= min <= max")
    return bounds


def _window(doc: Any, now: datetime) -> Window:
    if not isinstance(doc, Mapping):
        raise FaultConfigError(f"an unavailable window must be an object, not {doc!r}")
    if "for_s" in doc:
        return Window(now, now + timedelta(seconds=_number(doc["for_s"], "for_s")))
    try:
        start, until = parse_rfc3339(str(doc["from"])), parse_rfc3339(str(doc["until"]))
    except (KeyError, ValueError) as exc:
        raise FaultConfigError("an unavailable window needs 'for_s', or 'from' and 'until' "
                               "as RFC 3339 timestamps") from exc
    if until <= start:
        raise FaultConfigError("an unavailable window must end after it starts")
    return Window(start, until)


@dataclass(frozen=True)
class OperationFaults:
    """The faults of one operation."""

    latency_ms: tuple[float, float] = (0.0, 0.0)
    error_rate: float = 0.0
    unavailable: tuple[Window, ...] = ()

    @classmethod
    def parse(cls, doc: Any, now: datetime) -> OperationFaults:
        """Validate one operation's entry (relative windows start at ``now``)."""
        if not isinstance(doc, Mapping):
            raise FaultConfigError(f"faults must be an object, not {doc!r}")
        unknown = set(doc) - {"latency_ms", "error_rate", "unavailable"}
        if unknown:
            raise FaultConfigError(f"unknown fault settings: {sorted(unknown)}")
        rate = _number(doc.get("error_rate", 0), "error_rate")
        if rate > 1:
            raise FaultConfigError("error_rate must be between 0 and 1")
        windows = doc.get("unavailable") or []
        if isinstance(windows, Mapping):
            windows = [windows]
        if not isinstance(windows, list):
            raise FaultConfigError("unavailable must be a window or a list of windows")
        return cls(_latency(doc.get("latency_ms", 0)), rate,
                   tuple(_window(w, now) for w in windows))

    def delay(self) -> float:
        """Seconds to wait before answering (drawn within the range)."""
        low, high = self.latency_ms
        return (low if high == low else random.uniform(low, high)) / 1000

    def failure(self, now: datetime) -> str | None:
        """Why this request fails (``unavailable``, ``error-rate``), or ``None``."""
        if any(w.contains(now) for w in self.unavailable):
            return "unavailable"
        if self.error_rate and random.random() < self.error_rate:
            return "error-rate"
        return None

    def to_json(self) -> dict[str, Any]:
        """The entry as JSON, windows as absolute timestamps."""
        low, high = self.latency_ms
        return {
            "latency_ms": low if low == high else f"{low:g}-{high:g}",
            "error_rate": self.error_rate,
            "unavailable": [{"from": rfc3339(w.start), "until": rfc3339(w.until)}
                            for w in self.unavailable],
        }


@dataclass(frozen=True)
class FaultProfile:
    """operationId (or ``*``) → :class:`OperationFaults`."""

    operations: Mapping[str, OperationFaults] = field(default_factory=dict)

    @classmethod
    def parse(cls, doc: Any, now: datetime | None = None) -> FaultProfile:
        """Validate a profile document; raises :class:`FaultConfigError`."""
        if doc is None:
            return cls()
        if not isinstance(doc, Mapping):
            raise FaultConfigError("a fault profile must be an object of operationId -> faults")
        when = now or utcnow()
        return cls({str(op): OperationFaults.parse(faults, when) for op, faults in doc.items()})

    def for_operation(self, operation_id: str | None) -> OperationFaults | None:
        """The faults of a request: its operationId (full, or the part after the last
        dot as written in the spec), else ``*``."""
        ops = self.operations
        if not ops:
            return None
        if operation_id:
            found = ops.get(operation_id) or ops.get(operation_id.rpartition(".")[2])
            if found is not None:
                return found
        return ops.get("*")

    def to_json(self) -> dict[str, Any]:
        """The profile as JSON (what the live file holds)."""
        return {op: faults.to_json() for op, faults in self.operations.items()}


def configured_profile(now: datetime | None = None) -> FaultProfile | None:
    """The profile from ``CHARTER_FAULTS`` or ``CHARTER_FAULTS_FILE``, ``None`` if neither
    is set. A malformed one raises :class:`FaultConfigError` (the service refuses to
    start rather than run a different experiment than asked)."""
    raw = config.env(ENV_PROFILE)
    if raw is not None:
        try:
            return FaultProfile.parse(json.loads(raw), now)
        except ValueError as exc:
            raise FaultConfigError(f"{ENV_PROFILE}: {exc}") from exc
    path = config.env(ENV_FILE)
    if path is not None:
        try:
            doc = yaml.safe_load(Path(path).read_text())  # YAML is a superset of JSON
        except (OSError, yaml.YAMLError) as exc:
            raise FaultConfigError(f"{ENV_FILE}: cannot read {path}: {exc}") from exc
        try:
            return FaultProfile.parse(doc, now)
        except FaultConfigError as exc:
            raise FaultConfigError(f"{ENV_FILE} {path}: {exc}") from exc
    return None


def live_path(service: str) -> Path:
    """``<var_dir>/faults/<service>.json``, the profile every worker of ``service`` follows."""
    if not _SERVICE_NAME.match(service):
        raise ValueError(f"not a service name: {service!r}")
    return config.var_dir() / "faults" / f"{service}.json"


def set_faults(service: str, profile: FaultProfile | Mapping[str, Any] | None) -> Path:
    """Replace the live profile of every worker of ``service`` (``None``: no faults).

    Validates first (:class:`FaultConfigError`), resolves ``for_s`` windows to absolute
    times, and writes the file atomically. Workers pick it up within 0.5 s.
    """
    if not isinstance(profile, FaultProfile):
        profile = FaultProfile.parse(profile)
    path = live_path(service)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{service}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as out:
            json.dump(profile.to_json(), out)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    log.warning("fault profile of %s set: %s", service, sorted(profile.operations) or "none")
    return path


class FaultState:
    """The profile in force in this process: the live file when there is one (re-read
    when its mtime, inode or size change, checked at most every :data:`CHECK_INTERVAL`
    seconds), else the configured profile."""

    def __init__(self, service: str, configured: FaultProfile | None,
                 monotonic: Callable[[], float] = time.monotonic,
                 stat: Callable[[Path], os.stat_result] = os.stat) -> None:
        self.service = service
        self.path = live_path(service)
        self.configured = configured
        self.profile = configured
        self.source = "configuration" if configured is not None else "none"
        self._stamp: tuple[int, int, int] | None = None
        self._next_check = 0.0
        self._monotonic = monotonic
        self._stat = stat

    def current(self) -> FaultProfile | None:
        """The profile to apply now."""
        now = self._monotonic()
        if now >= self._next_check:
            self._next_check = now + CHECK_INTERVAL
            self.reload()
        return self.profile

    def reload(self) -> None:
        """Look at the live file now."""
        try:
            st = self._stat(self.path)
        except FileNotFoundError:
            if self._stamp is not None:
                self._stamp = None
                self.profile, self.source = self.configured, (
                    "configuration" if self.configured is not None else "none")
            return
        stamp = (st.st_mtime_ns, st.st_ino, st.st_size)
        if stamp == self._stamp:
            return
        try:
            profile = FaultProfile.parse(json.loads(self.path.read_text()))
        except (OSError, ValueError) as exc:
            log.warning("fault profile %s unusable, keeping the previous one: %s",
                        self.path, exc)
            return
        self._stamp = stamp
        self.profile, self.source = profile, "live-file"
        log.warning("fault profile of %s now: %s", self.service,
                    sorted(profile.operations) or "none")


def _operation(scope: Scope) -> str | None:
    routing = (scope.get("extensions") or {}).get("connexion_routing") or {}
    op = routing.get("operation_id")
    return str(op) if op else None


async def _answer(send: Send, status: int, doc: Mapping[str, Any] | None,
                  extra: list[tuple[bytes, bytes]] | None = None,
                  content_type: bytes = problems.PROBLEM_JSON.encode()) -> None:
    body = json.dumps(doc).encode() if doc is not None else b""
    headers = [(b"content-length", str(len(body)).encode())] + (extra or [])
    if doc is not None:
        headers.append((b"content-type", content_type))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _read_body(receive: Receive, limit: int) -> bytes | None:
    chunks: list[bytes] = []
    size = 0
    while True:
        message: Message = await receive()
        if message["type"] != "http.request":
            return None
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body"):
            return b"".join(chunks)


class FaultMiddleware:
    """Applies the fault profile to each request; serves the admin endpoint in
    development mode. Installed by :func:`charter.service.create_app` after Connexion's
    routing (so the operationId is known) and inside the observability middleware (so
    injected answers are logged and counted like real ones)."""

    def __init__(self, app: ASGIApp, service: str) -> None:
        self.app = app
        self.service = service
        self.admin = config.is_development()
        configured = configured_profile()
        self.state: FaultState | None = None
        if configured is not None or self.admin:
            self.state = FaultState(service, configured)
        if configured is not None:
            log.warning("fault injection configured for %s: %s", service,
                        sorted(configured.operations))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        state = self.state
        if state is None or scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope.get("path", "")
        if path == ADMIN_PATH:
            if self.admin:
                await self._admin(state, scope, receive, send)
                return
        elif not path.startswith(UNTOUCHED):
            profile = state.current()
            faults = profile.for_operation(_operation(scope)) if profile else None
            if faults is not None:
                delay = faults.delay()
                if delay > 0:
                    await asyncio.sleep(delay)
                reason = faults.failure(utcnow())
                if reason is not None:
                    doc = problems.body(503, detail=f"fault injected ({reason})",
                                        kind="service-unavailable")
                    await _answer(send, 503, doc, [(FAULT_HEADER, b"injected")])
                    return
        await self.app(scope, receive, send)

    async def _admin(self, state: FaultState, scope: Scope, receive: Receive,
                     send: Send) -> None:
        caller = mtls.caller_identity(scope)
        if caller not in ADMIN_IDENTITIES:
            log.warning("fault admin refused for %s", caller or "a caller without a "
                        "platform client certificate")
            await _answer(send, 403, problems.body(
                403, detail="only the operator's platform client certificate may change "
                            "fault profiles", kind="forbidden"))
            return
        method = scope.get("method", "GET")
        if method == "GET":
            profile = state.current()
            await _answer(send, 200, {"service": self.service, "source": state.source,
                                      "profile": profile.to_json() if profile else {}},
                          content_type=b"application/json")
            return
        if method == "DELETE":
            set_faults(self.service, None)
            state.reload()
            log.warning("fault profile of %s cleared by %s", self.service, caller)
            await _answer(send, 204, None)
            return
        if method != "PUT":
            await _answer(send, 405, problems.body(405), [(b"allow", b"GET, PUT, DELETE")])
            return
        raw = await _read_body(receive, MAX_ADMIN_BODY)
        try:
            if raw is None:
                raise FaultConfigError(f"the body must be JSON of at most {MAX_ADMIN_BODY} "
                                       "bytes")
            profile = FaultProfile.parse(json.loads(raw))
        except (ValueError, UnicodeDecodeError) as exc:
            await _answer(send, 400, problems.body(400, detail=problems.printable(str(exc)),
                                                   kind="validation-error"))
            return
        set_faults(self.service, profile)
        state.reload()
        log.warning("fault profile of %s replaced by %s", self.service, caller)
        await _answer(send, 200, {"service": self.service, "source": state.source,
                                  "profile": profile.to_json()},
                      content_type=b"application/json")
