"""CORS for the endpoints a browser calls across origins (Swagger UI's PKCE exchange).

Swagger UI runs on each service's (or the gateway's) origin and posts the authorization
code to ``/oauth/token`` on this server, so the token, revocation and discovery endpoints
answer CORS requests — but only for origins of registered redirect URIs (plus
``AUTH_CORS_ORIGINS``, comma-separated). No credentials (cookies) are ever allowed
cross-origin: the login and consent pages stay same-origin.
"""

from __future__ import annotations

import time
from urllib.parse import urlsplit

from flask import Flask, Response, request
from sqlalchemy import select

from auth.store import Client
from charter import config
from charter.db import Database

CORS_PATHS = ("/oauth/token", "/oauth/revoke", "/.well-known/")
_TTL = 30.0
ALLOWED_HEADERS = "Authorization, Content-Type, X-Requested-With, X-Correlation-Id"


def origin_of(uri: str) -> str | None:
    """``scheme://host[:port]`` of a URI, or ``None`` when it has none."""
    parts = urlsplit(uri)
    return f"{parts.scheme}://{parts.netloc}" if parts.scheme and parts.netloc else None


class AllowedOrigins:
    """Origins of every client's redirect URIs, re-read from the database every 30 s."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._origins: set[str] = set()
        self._loaded_at = float("-inf")

    def __contains__(self, origin: object) -> bool:
        if time.monotonic() - self._loaded_at > _TTL:
            self._reload()
        return origin in self._origins

    def _reload(self) -> None:
        extra = {o.strip().rstrip("/") for o in (config.env("AUTH_CORS_ORIGINS") or "").split(",")}
        with self._db.session() as s:
            uris = [u for c in s.scalars(select(Client)) for u in c.redirect_uris]
        self._origins = {o for o in map(origin_of, uris) if o} | {o for o in extra if o}
        self._loaded_at = time.monotonic()


def install(app: Flask, db: Database) -> None:
    """Answer CORS preflights and add CORS headers on the browser-facing endpoints."""
    allowed = AllowedOrigins(db)

    @app.after_request
    def _cors(response: Response) -> Response:
        origin = request.headers.get("Origin")
        if origin and request.path.startswith(CORS_PATHS) and origin in allowed:
            response.headers["Access-Control-Allow-Origin"] = origin
            response.headers["Access-Control-Allow-Methods"] = "GET, POST, OPTIONS"
            response.headers["Access-Control-Allow-Headers"] = ALLOWED_HEADERS
            response.headers["Access-Control-Max-Age"] = "600"
        if request.path.startswith(CORS_PATHS):
            response.vary.add("Origin")
        return response
