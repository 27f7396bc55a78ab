"""Request helpers for the HTML pages and JSON APIs: session user, CSRF, problem+json."""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urljoin, urlsplit

from flask import Response, current_app, jsonify, request, session

from auth.server import CharterAuthorizationServer
from auth.settings import Settings
from auth.store import User
from auth.throttle import HashingGate, RedisStore, Throttle
from charter import problems
from charter.db import Database

EXTENSION = "charter.auth"

# C0 controls, DEL and C1 controls: never part of a destination we redirect to.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


@dataclass
class AuthContext:
    """What the views need, stored in ``app.extensions``."""

    db: Database
    settings: Settings
    server: CharterAuthorizationServer
    throttle: Throttle = None  # type: ignore[assignment]  # built from settings
    gate: HashingGate = None  # type: ignore[assignment]
    checks: dict[str, Callable[[], None]] = field(default_factory=dict)
    """Readiness checks besides the database (``redis``; ``broker`` added by the ASGI
    factory when the relay runs); see :func:`charter.observability.health.readiness`."""

    def __post_init__(self) -> None:
        limits = self.settings.throttle
        if self.throttle is None:
            self.throttle = Throttle(limits, secret=self.settings.session_secret)
        if self.gate is None:
            self.gate = HashingGate(limits.hashing_concurrency, limits.hashing_wait)
        if isinstance(self.throttle.store, RedisStore):  # sign-ins fail closed without it
            self.checks.setdefault("redis", self.throttle.store.ping)


def ctx() -> AuthContext:
    context: AuthContext = current_app.extensions[EXTENSION]
    return context


def problem(status: int, title: str, detail: str | None = None, **ext: Any) -> Response:
    """An RFC 9457 ``application/problem+json`` response."""
    response = jsonify(problems.body(status, title, detail, **ext))
    response.status_code = status
    response.mimetype = problems.PROBLEM_JSON
    return response


def request_ip() -> str:
    """The client's address (``X-Forwarded-For`` / ``Forwarded`` only from a trusted
    proxy: :mod:`charter.security.client_ip`)."""
    headers = request.headers
    return ctx().throttle.proxies.client(
        request.remote_addr,
        ", ".join(headers.getlist("X-Forwarded-For")) or None,
        ", ".join(headers.getlist("Forwarded")) or None)


def csrf_token() -> str:
    """The session-bound CSRF token (created on first use)."""
    token = session.get("csrf")
    if not token:
        token = secrets.token_urlsafe(32)
        session["csrf"] = token
    return str(token)


def csrf_ok(submitted: str | None) -> bool:
    expected = session.get("csrf")
    return bool(expected and submitted) and secrets.compare_digest(str(expected), str(submitted))


def current_user() -> User | None:
    """The signed-in user; a session whose account is gone or disabled is signed out."""
    user_id = session.get("uid")
    if not user_id:
        return None
    with ctx().db.session() as db_session:
        user = db_session.get(User, user_id)
    if user is None or user.is_disabled:
        session.pop("uid", None)
        return None
    return user


def sign_in(user: User) -> None:
    """Start a fresh session for ``user`` (no session fixation)."""
    session.clear()
    session["uid"] = user.id
    session["csrf"] = secrets.token_urlsafe(32)


def safe_next(target: str | None, default: str = "/") -> str:
    """A post-login destination that can only be a path on this origin.

    The value is judged as a browser would read it (RFC 9700 §4.11): a browser drops tab
    and newline characters anywhere in a URL and treats a backslash like ``/``, so
    ``/%09/evil.example`` and ``/%5Cevil.example`` both mean ``//evil.example`` to it. A
    control character, a backslash, a scheme or a host refuses the value, and ``default``
    is used instead.
    """
    if not target or _CONTROL.search(target) or "\\" in target:
        return default
    if not target.startswith("/") or target.startswith("//"):
        return default
    parts = urlsplit(target)
    if parts.scheme or parts.netloc:
        return default
    # Resolve against a placeholder origin, as the browser resolves the Location header.
    resolved = urlsplit(urljoin("https://origin.invalid/", target))
    if resolved.netloc != "origin.invalid" or resolved.scheme != "https":
        return default
    return target
