"""Request helpers for the HTML pages and JSON APIs: session user, CSRF, problem+json."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

from flask import Response, current_app, jsonify, session

from auth.server import CharterAuthorizationServer
from auth.settings import Settings
from auth.store import User
from charter import problems
from charter.db import Database

EXTENSION = "charter.auth"


@dataclass
class AuthContext:
    """What the views need, stored in ``app.extensions``."""

    db: Database
    settings: Settings
    server: CharterAuthorizationServer


def ctx() -> AuthContext:
    context: AuthContext = current_app.extensions[EXTENSION]
    return context


def problem(status: int, title: str, detail: str | None = None, **ext: Any) -> Response:
    """An RFC 9457 ``application/problem+json`` response."""
    response = jsonify(problems.body(status, title, detail, **ext))
    response.status_code = status
    response.mimetype = problems.PROBLEM_JSON
    return response


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
    user_id = session.get("uid")
    if not user_id:
        return None
    with ctx().db.session() as db_session:
        user = db_session.get(User, user_id)
    if user is None:
        session.pop("uid", None)
    return user


def sign_in(user: User) -> None:
    """Start a fresh session for ``user`` (no session fixation)."""
    session.clear()
    session["uid"] = user.id
    session["csrf"] = secrets.token_urlsafe(32)


def safe_next(target: str | None, default: str = "/") -> str:
    """Only local paths are accepted as a post-login destination."""
    if target and target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target
    return default
