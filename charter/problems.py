"""RFC 9457 problem details for every error a service can answer.

Handlers and domain services raise :class:`Problem` (or a subclass); the app factory turns
it, Connexion's own errors, Flask's HTTP errors and any unexpected exception into an
``application/problem+json`` body. Unexpected exceptions are logged with their traceback
and answered with a bare 500: no stack trace ever reaches a client.

No internal detail in a 5xx body: a server-side problem's ``detail`` (an upstream's error
text, an exception's name) is written to the log with the request's correlation id, and
the body says only :data:`GENERIC_5XX_DETAIL` plus ``correlation_id`` (and whatever
extensions the raiser chose to publish, e.g. the id of the record that failed).
"""

from __future__ import annotations

import logging
from typing import Any

from charter.observability.logs import correlation_id

log = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"
GENERIC_5XX_DETAIL = (
    "The server could not complete the request; quote the correlation_id when reporting it."
)


def _public_5xx(status: int, title: str, detail: str | None,
                extensions: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """Log a server-side problem's detail; the generic detail and extensions to publish."""
    cid = correlation_id.get()
    if detail:
        log.warning("answered %d %s: %s", status, title, detail,
                    extra={"problem_status": status})
    public = dict(extensions)
    if cid:
        public.setdefault("correlation_id", cid)
    return GENERIC_5XX_DETAIL, public


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
        self.detail = detail  # for code that catches it; a 5xx body never shows it
        self.type = type
        self.headers = headers or {}
        self.extensions = extensions

    def body(self) -> dict[str, Any]:
        """The problem document to answer with (5xx: generic detail, see the module doc)."""
        detail, extensions = self.detail, self.extensions
        if self.status >= 500:
            detail, extensions = _public_5xx(self.status, self.title, detail, extensions)
        doc: dict[str, Any] = {"type": self.type, "title": self.title, "status": self.status}
        if detail:
            doc["detail"] = detail
        doc.update(extensions)
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


class UpstreamUnavailable(ServiceUnavailable):
    """Another service could not answer (unreachable, timed out, failed, odd answer): the
    base of the HTTP adapters' typed "<service> unavailable" errors."""


class BadGateway(Problem):
    status, title = 502, "Bad Gateway"


def body(status: int, title: str, detail: str | None = None, **ext: Any) -> dict[str, Any]:
    """A problem document as a dict (for the Flask-level handlers); 5xx details are
    logged, not published (see the module doc)."""
    if status >= 500:
        detail, ext = _public_5xx(status, title, detail, ext)
    doc: dict[str, Any] = {"type": "about:blank", "title": title, "status": status}
    if detail:
        doc["detail"] = detail
    doc.update(ext)
    return doc
