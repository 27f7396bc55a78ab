"""Deprecated API versions at run time: headers, 410 after the sunset, calls per client.

``governance/deprecation.yaml`` (or ``CHARTER_DEPRECATION_FILE``) lists the deprecated API
versions; :func:`load` reads it through a typed model (:class:`DeprecationFile`). Any
service serving a listed ``(api, version)`` gets :class:`DeprecationMiddleware` from the
app factory (:func:`charter.service.create_app`), and the gateway adds the same headers
to what it answers itself, so a direct call and a call through the gateway look alike:

* before the sunset, every response under ``/<version>`` carries ``Deprecation: @<epoch>``
  (RFC 9745), ``Sunset: <HTTP-date>`` (RFC 8594) and ``Link`` to the successor's Swagger
  UI (``rel="successor-version"``) and to the policy (``rel="deprecation"``);
* from the sunset on, it answers ``410 Gone`` problem+json (:data:`SUNSET_PROBLEM_SLUG`);
* each call is counted in ``charter_deprecated_calls_total`` by OAuth ``client_id`` (the
  verified token's; ``anonymous`` without one), which ``charter gov deprecations`` reads.

Hand-written because no kept library does RFC 9745/8594 headers for an ASGI app; the
middleware is ~40 lines over plain ASGI, like :mod:`charter.observability.middleware`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from email.utils import format_datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml
from prometheus_client import CollectorRegistry, Counter
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from charter import config, problem_types
from charter.clock import as_utc, rfc3339, utcnow
from charter.problems import PROBLEM_JSON

DEFAULT_FILE = config.ROOT / "governance" / "deprecation.yaml"
SUNSET_PROBLEM_SLUG = "api-version-sunset"
METRIC = "charter_deprecated_calls_total"
ANONYMOUS = "anonymous"

Header = tuple[bytes, bytes]
Clock = Callable[[], datetime]


class ApiRef(BaseModel):
    """An API version: ``api`` (folder under ``openapi/``) and ``version`` (``v<major>``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    api: str = Field(pattern=r"^[a-z][a-z0-9-]*$")
    version: str = Field(pattern=r"^v[1-9][0-9]*$")


class DeprecatedVersion(ApiRef):
    """One deprecated API version, its dates and its successor."""

    deprecated_at: AwareDatetime
    sunset_at: AwareDatetime
    successor: ApiRef

    @property
    def prefix(self) -> str:
        """Where the gateway serves it: ``/<api>/<version>``."""
        return f"/{self.api}/{self.version}"

    def is_sunset(self, now: datetime) -> bool:
        """True from ``sunset_at`` on."""
        return as_utc(now) >= self.sunset_at


class DeprecationFile(BaseModel):
    """The whole of ``governance/deprecation.yaml``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    minimum_notice_days: int = Field(ge=0, le=3650)
    policy_path: str = Field(pattern=r"^/[A-Za-z0-9/_.-]*$")
    versions: tuple[DeprecatedVersion, ...] = ()

    @model_validator(mode="after")
    def _check(self) -> DeprecationFile:
        seen: set[tuple[str, str]] = set()
        for v in self.versions:
            if (v.api, v.version) in seen:
                raise ValueError(f"{v.api} {v.version} is listed twice")
            seen.add((v.api, v.version))
            if (v.successor.api, v.successor.version) == (v.api, v.version):
                raise ValueError(f"{v.api} {v.version} cannot succeed itself")
            if v.sunset_at - v.deprecated_at < timedelta(days=self.minimum_notice_days):
                raise ValueError(
                    f"{v.api} {v.version}: sunset_at must be at least "
                    f"{self.minimum_notice_days} days after deprecated_at")
        return self

    def find(self, api: str, version: str) -> DeprecatedVersion | None:
        """The entry of ``api`` ``version``, or ``None`` when it is not deprecated."""
        return next((v for v in self.versions if (v.api, v.version) == (api, version)), None)


def parse(data: Any) -> DeprecationFile:
    """Validate an already-parsed YAML document (raises ``pydantic.ValidationError``)."""
    return DeprecationFile.model_validate(data)


def load(path: Path | None = None) -> DeprecationFile:
    """The deprecation file (``CHARTER_DEPRECATION_FILE``, default ``governance/…``)."""
    chosen = path or Path(os.environ.get("CHARTER_DEPRECATION_FILE") or DEFAULT_FILE)
    return _load(chosen.resolve())


@lru_cache(maxsize=8)
def _load(path: Path) -> DeprecationFile:
    if not path.exists():  # an image without governance/: nothing is deprecated
        return DeprecationFile(minimum_notice_days=0, policy_path="/")
    with path.open(encoding="utf-8") as fh:
        return parse(yaml.safe_load(fh) or {})


def public_base() -> str:
    """The platform's public base URL (``CHARTER_PUBLIC_URL``; the gateway's local URL
    when it is unset, as in development and tests)."""
    try:
        return config.settings().public_url()
    except config.ConfigError:
        return config.settings().url_of("gateway")


def sunset_problem_type(base: str | None = None) -> str:
    """The problem ``type`` URI of a call to a version past its sunset."""
    return problem_types.uri(SUNSET_PROBLEM_SLUG, base or public_base())


def http_date(value: datetime) -> str:
    """``value`` as an RFC 9110 HTTP-date (``Sun, 01 Jun 2027 00:00:00 GMT``)."""
    return format_datetime(as_utc(value), usegmt=True)


def headers(entry: DeprecatedVersion, policy_path: str, base: str | None = None) -> list[Header]:
    """The ``Deprecation``, ``Sunset`` and ``Link`` headers of ``entry``'s responses."""
    root = (base or public_base()).rstrip("/")
    successor = f"{root}/{entry.successor.api}/{entry.successor.version}/ui/"
    link = f'<{successor}>; rel="successor-version", <{root}{policy_path}>; rel="deprecation"'
    return [
        (b"deprecation", f"@{int(entry.deprecated_at.timestamp())}".encode()),
        (b"sunset", http_date(entry.sunset_at).encode()),
        (b"link", link.encode()),
    ]


def gone_body(entry: DeprecatedVersion, base: str | None = None) -> dict[str, Any]:
    """The 410 problem document of a call to ``entry`` after its sunset."""
    root = (base or public_base()).rstrip("/")
    return {
        "type": sunset_problem_type(root),
        "title": problem_types.get(SUNSET_PROBLEM_SLUG).title,
        "status": 410,
        "detail": (f"{entry.api} {entry.version} was retired on {rfc3339(entry.sunset_at)}; "
                   f"use {entry.successor.api} {entry.successor.version}."),
        "successor": f"{root}/{entry.successor.api}/{entry.successor.version}/ui/",
    }


class DeprecatedCalls:
    """The counter of calls to deprecated versions, by client id (bounded: OAuth clients)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.counter = Counter(
            METRIC,
            "Calls to deprecated API versions, by OAuth client id",
            ["service", "api", "version", "operation", "client_id", "status"],
            registry=registry,
        )

    def count(self, service: str, entry: DeprecatedVersion, operation: str, client_id: str,
              status: int) -> None:
        self.counter.labels(service, entry.api, entry.version, operation, client_id,
                            str(status)).inc()


def _client_id(scope: Scope) -> str:
    """The verified token's ``client_id`` (Connexion keeps ``token_info`` in the scope)."""
    info = scope.get("extensions", {}).get("connexion_context", {}).get("token_info") or {}
    client = info.get("client_id") if isinstance(info, dict) else None
    return str(client) if client else ANONYMOUS


def _operation(scope: Scope) -> str:
    op = scope.get("extensions", {}).get("connexion_routing", {}).get("operation_id")
    return str(op).rsplit(".", 1)[-1] if op else "unrouted"  # resolved: module.function


class DeprecationMiddleware:
    """Headers, 410 after the sunset and per-client counting for a service's deprecated
    versions (``versions``: ``/v<major>`` path prefix → entry)."""

    def __init__(self, app: ASGIApp, service: str, versions: dict[str, DeprecatedVersion],
                 policy_path: str, calls: DeprecatedCalls, clock: Clock = utcnow,
                 base: str | None = None) -> None:
        self.app = app
        self.service = service
        self.versions = versions
        self.calls = calls
        self.clock = clock
        root = base or public_base()
        self.headers = {p: headers(e, policy_path, root) for p, e in versions.items()}
        self.gone = {p: json.dumps(gone_body(e, root)).encode() for p, e in versions.items()}

    def _prefix(self, path: str) -> str | None:
        for prefix in self.versions:
            if path == prefix or path.startswith(prefix + "/"):
                return prefix
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        prefix = self._prefix(scope.get("path", "")) if scope["type"] == "http" else None
        if prefix is None:
            await self.app(scope, receive, send)
            return
        entry, extra = self.versions[prefix], self.headers[prefix]
        scope.setdefault("extensions", {})
        if entry.is_sunset(self.clock()):
            body = self.gone[prefix]
            await send({"type": "http.response.start", "status": 410, "headers": [
                (b"content-type", PROBLEM_JSON.encode()),
                (b"content-length", str(len(body)).encode()), *extra]})
            await send({"type": "http.response.body", "body": body})
            self.calls.count(self.service, entry, "sunset", ANONYMOUS, 410)
            return
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                message = dict(message, headers=[*message.get("headers", []), *extra])
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            self.calls.count(self.service, entry, _operation(scope), _client_id(scope), status)


def middleware_options(api: str, versions: Iterable[str], service: str,
                       registry: CollectorRegistry, clock: Clock = utcnow,
                       policy: DeprecationFile | None = None) -> dict[str, Any] | None:
    """Keyword arguments of :class:`DeprecationMiddleware` for a service serving ``api``
    ``versions``, or ``None`` when none of them is deprecated."""
    policy = policy or load()
    found = {f"/{v}": e for v in versions if (e := policy.find(api, v)) is not None}
    if not found:
        return None
    return {"service": service, "versions": found, "policy_path": policy.policy_path,
            "calls": DeprecatedCalls(registry), "clock": clock}
