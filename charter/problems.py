"""RFC 9457 problem details for every error a service can answer.

Handlers and domain services raise :class:`Problem` (or a subclass) naming its kind —
``Conflict(detail, kind="insufficient-stock")`` — and the registry
(:mod:`charter.problem_types`) supplies the stable ``type`` URI, the title and the
status. The app factory turns it, Connexion's own errors, Flask's HTTP errors and any
unexpected exception into an ``application/problem+json`` body. Unexpected exceptions
are logged with their traceback and answered with a bare 500: no stack trace ever reaches
a client.

No internal detail in a 5xx body: a server-side problem's ``detail`` (an upstream's error
text, an exception's name) is written to the log with the request's correlation id, and
the body says only :data:`GENERIC_5XX_DETAIL` plus ``correlation_id`` (and whatever
extensions the raiser chose to publish, e.g. the id of the record that failed).
"""

from __future__ import annotations

import logging
import re
from typing import Any

from charter import config, problem_types
from charter.observability.logs import correlation_id

log = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"
GENERIC_5XX_DETAIL = (
    "The server could not complete the request; quote the correlation_id when reporting it."
)


def type_uri(slug: str) -> str:
    """The ``type`` URI of ``slug``: absolute from ``CHARTER_PUBLIC_URL``.

    Start-up refuses production without ``CHARTER_PUBLIC_URL``
    (:meth:`charter.config.CharterSettings.problems`); should a process run without it
    anyway, the URI is the relative reference ``/problems/<slug>`` (resolved against the
    request's own URL, RFC 9457 §3.1.1) — never a development host.
    """
    try:
        return problem_types.uri(slug)
    except config.ConfigError:
        return problem_types.PATH + problem_types.get(slug).slug


_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def printable(detail: str) -> str:
    """``detail`` with control characters written as ``\\xNN``.

    Details may quote what the client sent (Connexion: "Extra query parameter(s) … not in
    spec"); the shared Problem schema allows no control character in ``detail`` (log and
    terminal injection), and Schemathesis sent some in parameter names.
    """
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", detail)


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
    """An error answered as problem+json; ``kind`` (a registered slug) gives its type,
    title and status (``status=`` alone picks the generic kind of that status)."""

    status = 500
    kind = "internal-error"
    title = "Internal Server Error"

    def __init__(
        self,
        detail: str | None = None,
        *,
        kind: str | None = None,
        status: int | None = None,
        title: str | None = None,
        headers: dict[str, str] | None = None,
        **extensions: Any,
    ) -> None:
        if kind is not None:
            registered = problem_types.get(kind)
        elif status is not None and status != self.status:
            registered = problem_types.for_status(status)
        else:
            registered = problem_types.get(self.kind)
        self.kind = registered.slug
        self.status = status if status is not None else registered.status
        # ``title`` only for code written before the registry; the registry's title wins
        # whenever a kind is named (a test rejects ``title=`` at raise sites).
        self.title = registered.title if kind is not None or title is None else title
        super().__init__(detail or self.title)
        self.detail = detail  # for code that catches it; a 5xx body never shows it
        self.headers = headers or {}
        self.extensions = extensions

    @property
    def type(self) -> str:
        """The ``type`` URI (see :func:`type_uri`)."""
        return type_uri(self.kind)

    def body(self) -> dict[str, Any]:
        """The problem document to answer with (5xx: generic detail, see the module doc)."""
        detail, extensions = self.detail, self.extensions
        if self.status >= 500:
            detail, extensions = _public_5xx(self.status, self.title, detail, extensions)
        doc: dict[str, Any] = {"type": self.type, "title": self.title, "status": self.status}
        if detail:
            doc["detail"] = printable(detail)
        doc.update(extensions)
        return doc


class BadRequest(Problem):
    status, kind, title = 400, "bad-request", "Bad Request"


class Forbidden(Problem):
    status, kind, title = 403, "forbidden", "Forbidden"


class NotFound(Problem):
    status, kind, title = 404, "not-found", "Not Found"


class Conflict(Problem):
    status, kind, title = 409, "conflict", "Conflict"


class Unprocessable(Problem):
    status, kind, title = 422, "unprocessable", "Unprocessable Content"


class ServiceUnavailable(Problem):
    status, kind, title = 503, "service-unavailable", "Service Unavailable"


class UpstreamUnavailable(ServiceUnavailable):
    """Another service could not answer (unreachable, timed out, failed, odd answer): the
    base of the HTTP adapters' typed "<service> unavailable" errors."""

    kind = "upstream-unavailable"


class BadGateway(Problem):
    status, kind, title = 502, "bad-gateway", "Bad Gateway"


def body(status: int, title: str | None = None, detail: str | None = None, *,
         kind: str | None = None, **ext: Any) -> dict[str, Any]:
    """A problem document as a dict (for the Flask-level handlers and auth): ``kind``
    names the registered type (default: the generic kind of ``status``), ``title``
    defaults to the registry's. 5xx details are logged, not published (see the module
    doc)."""
    registered = problem_types.get(kind) if kind else problem_types.for_status(status)
    title = title or registered.title
    if status >= 500:
        detail, ext = _public_5xx(status, title, detail, ext)
    doc: dict[str, Any] = {"type": type_uri(registered.slug), "title": title, "status": status}
    if detail:
        doc["detail"] = printable(detail)
    doc.update(ext)
    return doc
