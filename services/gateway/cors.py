"""CORS at the gateway: browser clients on other origins (``GATEWAY_CORS_ORIGINS``).

Starlette's :class:`~starlette.middleware.cors.CORSMiddleware` (a dependency already)
decides the policy: which origins, methods and request headers are allowed, and the
preflight answer's headers. :class:`Cors` keeps that and changes three things where the
platform's rules differ:

* a refused preflight is a 403 problem+json without any ``Access-Control-*`` header
  (Starlette: a 400 ``text/plain`` that still lists the allowed methods and headers);
* an actual request from an origin that is not allowed gets no CORS header at all
  (Starlette still adds ``Access-Control-Allow-Credentials`` and ``-Expose-Headers``);
* with explicit origins every answer carries ``Vary: Origin`` (also those to requests
  without ``Origin``), so a shared cache never hands one origin's answer to another.

Preflights (``OPTIONS`` with ``Access-Control-Request-Method``) are answered here and never
forwarded. A wildcard origin never goes with credentials (refused at start-up and here).
Requests without ``Origin`` cost one scan of the header list.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterable, Sequence
from typing import Annotated, Any

from pydantic import BeforeValidator
from pydantic_settings import NoDecode
from starlette.datastructures import Headers
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from charter.problem_types import for_status
from charter.problems import PROBLEM_JSON, type_uri

from . import headers as hdr

log = logging.getLogger(__name__)

# scheme://host[:port] as a browser serialises an origin: no path, no trailing slash.
_ORIGIN = re.compile(r"^https?://(\[[0-9a-f:.]+\]|[a-z0-9]([a-z0-9.-]*[a-z0-9])?)(:[0-9]{1,5})?$")

#: Request headers a browser may send (besides the CORS-safelisted ones): what the specs
#: declare as header parameters, the bearer token, and the tracing/correlation headers.
ALLOWED_REQUEST_HEADERS = ("Authorization", "Content-Type", "Idempotency-Key", "Prefer",
                           "X-Correlation-Id", "traceparent", "tracestate")
#: Response headers a browser script may read (the safelisted ones need no mention).
EXPOSED_HEADERS = ("Location", "Content-Location", "Link", "Retry-After", "WWW-Authenticate",
                   "RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset",
                   "RateLimit-Policy", "Deprecation", "Sunset", "Idempotent-Replayed",
                   "Preference-Applied", "X-Correlation-Id")


def parse_origins(raw: str | Iterable[Any] | None) -> tuple[str, ...]:
    """Comma-separated origins (``https://shop.example, http://localhost:3000``) or ``*``.

    Lower-cased (browsers send them so); ``ValueError`` names an entry that is not a bare
    ``scheme://host[:port]`` (a path or trailing slash would never match).
    """
    items = (raw or "").split(",") if isinstance(raw, str) or raw is None else raw
    origins: list[str] = []
    for item in items:
        text = str(item).strip().lower()
        if not text:
            continue
        if text != "*" and not _ORIGIN.match(text):
            raise ValueError(f"{text!r} is not an origin (scheme://host[:port], no path) "
                             "nor '*'")
        if text not in origins:
            origins.append(text)
    if "*" in origins and len(origins) > 1:
        raise ValueError("'*' allows every origin: list origins or give '*' alone")
    return tuple(origins)


# A settings field holding allowed origins (not decoded as JSON; errors name the variable).
OriginList = Annotated[tuple[str, ...], NoDecode, BeforeValidator(parse_origins)]


class Cors(CORSMiddleware):
    """Starlette's CORS policy with the platform's answers (see the module docstring)."""

    def __init__(self, app: ASGIApp, origins: Sequence[str], *, methods: Sequence[str],
                 allow_credentials: bool = False, max_age: int = 600) -> None:
        if not origins:
            raise ValueError("CORS needs at least one allowed origin")
        if allow_credentials and "*" in origins:
            raise ValueError("credentials are never allowed for a wildcard origin")
        super().__init__(app, allow_origins=tuple(origins), allow_methods=tuple(methods),
                         allow_headers=ALLOWED_REQUEST_HEADERS,
                         allow_credentials=allow_credentials,
                         expose_headers=EXPOSED_HEADERS, max_age=max_age)
        self._allowed = frozenset(o.encode("latin-1") for o in origins)
        self._wildcard = "*" in origins
        simple = [(b"access-control-expose-headers", ", ".join(EXPOSED_HEADERS).encode())]
        if allow_credentials:
            simple.append((b"access-control-allow-credentials", b"true"))
        self._simple = simple

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        origin: bytes | None = None
        preflight = False
        for name, value in scope["headers"]:
            if name == b"origin":
                origin = value
            elif name == b"access-control-request-method":
                preflight = True
        if origin is not None and preflight and scope["method"] == "OPTIONS":
            await self._preflight(scope, send)
            return
        if origin is None or not (self._wildcard or origin in self._allowed):
            if self._wildcard:  # the answer does not depend on Origin
                await self.app(scope, receive, send)
            else:
                await self.app(scope, receive, _with_vary(send))
            return
        cors = [(b"access-control-allow-origin", b"*" if self._wildcard else origin),
                *self._simple]

        async def send_cors(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", ())
                           if not k.lower().startswith(b"access-control-")]
                headers += cors
                if not self._wildcard:
                    hdr.add_vary(headers, b"Origin")
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_cors)

    async def _preflight(self, scope: Scope, send: Send) -> None:
        request = Headers(scope=scope)
        answer = self.preflight_response(request_headers=request)
        if answer.status_code < 400:  # 204: Starlette's headers without its "OK" body
            allowed = [(k, v) for k, v in answer.raw_headers
                       if k not in (b"content-type", b"content-length")]
            await send({"type": "http.response.start", "status": 204, "headers": allowed})
            await send({"type": "http.response.body", "body": b""})
            return
        reasons = bytes(answer.body).decode("latin-1").removeprefix("Disallowed CORS ")
        log.info("CORS preflight refused (%s)", reasons,
                 extra={"origin": request.get("origin", "")[:200]})
        kind = for_status(403)
        body = json.dumps({
            "type": type_uri(kind.slug), "title": kind.title, "status": 403,
            "detail": f"CORS preflight refused: {reasons} not allowed.",
        }).encode()
        headers = [(b"content-type", PROBLEM_JSON.encode()),
                   (b"content-length", str(len(body)).encode())]
        if not self._wildcard:
            headers.append((b"vary", b"Origin"))
        await send({"type": "http.response.start", "status": 403, "headers": headers})
        await send({"type": "http.response.body", "body": body})


def _with_vary(send: Send) -> Send:
    """``send`` adding ``Vary: Origin`` to the response's headers."""

    async def sender(message: Message) -> None:
        if message["type"] == "http.response.start":
            headers = list(message.get("headers", ()))
            hdr.add_vary(headers, b"Origin")
            message["headers"] = headers
        await send(message)

    return sender
