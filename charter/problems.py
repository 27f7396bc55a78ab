"""RFC 9457 problem details for every error a service can answer.

Handlers and domain services raise :class:`Problem` (or a subclass); the app factory turns
it, Connexion's own errors, Flask's HTTP errors and any unexpected exception into an
``application/problem+json`` body. Unexpected exceptions are logged with their traceback
and answered with a bare 500: no stack trace ever reaches a client.
"""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"


class Problem(Exception):
    """An error with an HTTP status, answered as problem+json."""

    status = 500
    title = "Internal Server Error"

    def __init__(
        self,
        detail: str | None = None,
        *,
        status: int | None = None,
        title: str | None = None,
        type: str = "about:blank",
        headers: dict[str, str] | None = None,
        **extensions: Any,
    ) -> None:
        super().__init__(detail or title or self.title)
        if status is not None:
            self.status = status
        if title is not None:
            self.title = title
        self.detail = detail
        self.type = type
        self.headers = headers or {}
        self.extensions = extensions

    def body(self) -> dict[str, Any]:
        """The problem document."""
        doc: dict[str, Any] = {"type": self.type, "title": self.title, "status": self.status}
        if self.detail:
            doc["detail"] = self.detail
        doc.update(self.extensions)
        return doc


class BadRequest(Problem):
    status, title = 400, "Bad Request"


class Forbidden(Problem):
    status, title = 403, "Forbidden"


class NotFound(Problem):
    status, title = 404, "Not Found"


class Conflict(Problem):
    status, title = 409, "Conflict"


class Unprocessable(Problem):
    status, title = 422, "Unprocessable Content"


class ServiceUnavailable(Problem):
    status, title = 503, "Service Unavailable"


class BadGateway(Problem):
    status, title = 502, "Bad Gateway"


def body(status: int, title: str, detail: str | None = None, **ext: Any) -> dict[str, Any]:
    """A problem document as a dict (for the Flask-level handlers)."""
    doc: dict[str, Any] = {"type": "about:blank", "title": title, "status": status}
    if detail:
        doc["detail"] = detail
    doc.update(ext)
    return doc
