"""Application factories: ``create_flask_app`` (WSGI) and ``create_asgi`` (for uvicorn).

    uvicorn --factory auth.app:create_asgi --port 8090 --no-proxy-headers

(``--no-proxy-headers``: auth trusts ``X-Forwarded-For`` only from ``AUTH_TRUSTED_PROXIES``;
uvicorn's default would rewrite the client address from it first.)

``create_asgi`` also starts auth's messaging (:func:`auth_messaging`: the relay of
``auth.UserRegistered`` from the outbox, run by the worker holding the leader lock;
``CHARTER_MESSAGING=off`` starts none).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from flask import Flask, request
from werkzeug.exceptions import HTTPException

from auth import cors, passwords, revocations
from auth.server import create_server
from auth.settings import Settings, load_config, load_settings
from auth.store import outbox
from auth.views import bp
from auth.web import EXTENSION, AuthContext, problem
from charter import config
from charter.db import Database
from charter.messaging.runtime import Messaging
from charter.serve import fails_fast

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"

log = logging.getLogger(__name__)

_SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
}
_PAGE_CSP = "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'"


def create_flask_app(db: Database | None = None, settings: Settings | None = None) -> Flask:
    """The authorization server as a Flask app (database and settings from env by default)."""
    settings = settings or load_settings()
    if settings.password_hashing is not None:
        passwords.configure(settings.password_hashing)
    db = db or Database(config.database_url("auth"))
    # Authlib logs issued tokens at DEBUG level: keep its loggers above that.
    logging.getLogger("authlib").setLevel(logging.INFO)

    app = Flask(__name__)
    app.config.update(
        SECRET_KEY=settings.session_secret,
        SESSION_COOKIE_NAME="charter_auth",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=settings.secure_cookies,
        MAX_CONTENT_LENGTH=64 * 1024,
    )
    server = create_server(app, db, settings)
    app.extensions[EXTENSION] = AuthContext(db=db, settings=settings, server=server)
    app.register_blueprint(bp)
    app.register_blueprint(revocations.bp)
    _install_error_handlers(app)
    cors.install(app, db)

    @app.after_request
    def _headers(response: Any) -> Any:
        for name, value in _SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        if response.mimetype == "text/html":
            response.headers.setdefault("Content-Security-Policy", _PAGE_CSP)
        return response

    return app


def _install_error_handlers(app: Flask) -> None:
    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> Any:
        status = exc.code or 500
        return problem(status, exc.name, exc.description if status < 500 else None)

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> Any:
        log.exception("unhandled error", extra={"path": request.path})
        return problem(500, "Internal Server Error")


def auth_messaging(db: Database, **options: Any) -> Messaging:
    """Auth's relay (what :data:`auth.store.outbox` holds; no consumers), run by the
    worker holding ``auth-messaging``; the broker is ``AMQP_URL`` (else, in development
    mode, the embedded one). ``options``: see :class:`charter.messaging.runtime.Messaging`."""
    return Messaging("auth", db, outbox=outbox, **options)


def attach_messaging(app: Flask, messaging: Messaging, registry: Any) -> None:
    """Auth's relay on its ``/metrics`` (``registry``) and in its readiness: it publishes
    ``UserRegistered``, so it is not ready while the broker does not answer (``broker``)."""
    registry.register(messaging.collector())
    app.extensions[EXTENSION].checks.setdefault("broker", messaging.check_ready)


@fails_fast
def create_asgi() -> Any:
    """ASGI app for uvicorn. In development mode the database is migrated on start."""
    from prometheus_client import CollectorRegistry
    from prometheus_flask_exporter import PrometheusMetrics

    from charter.messaging import runtime
    from charter.migrations import upgrade
    from charter.observability.families import ProcessFamilies
    from charter.observability.logs import configure
    from charter.observability.metrics_exposition import mark_dead_at_exit
    from charter.observability.middleware import ObservabilityMiddleware, RequestMetrics
    from charter.wsgi_bridge import BufferedWSGIBridge

    cfg = load_config()  # fails closed: every missing or bad variable in one message
    configure("auth", cfg.log_level)
    from charter.observability import tracing
    tracing.install("auth")  # spans exported only when OTEL_EXPORTER_OTLP_ENDPOINT is set
    url = cfg.db_url()
    if cfg.development and cfg.auth_auto_migrate:
        upgrade("auth", MIGRATIONS_DIR, url)
    db = Database(url)
    app = create_flask_app(db, load_settings(cfg))
    app.extensions[EXTENSION].server.keys.signing_key()  # first start creates a key
    registry = CollectorRegistry()
    # /metrics only: per-request metrics are ObservabilityMiddleware's (charter_http_*,
    # which also see answers made before Flask); the exporter's flask_http_* would
    # count every request a second time.
    PrometheusMetrics(app, registry=registry, group_by="url_rule", path="/metrics",
                      default_labels={"service": "auth"},
                      export_defaults=False)
    mark_dead_at_exit()  # several workers: /metrics sums them (PROMETHEUS_MULTIPROC_DIR)
    registry.register(ProcessFamilies())  # one process: client policy metrics and the like
    if runtime.enabled():
        messaging = auth_messaging(db)
        attach_messaging(app, messaging, registry)
        messaging.start()  # in every worker; the one holding the lock leads
    return ObservabilityMiddleware(
        BufferedWSGIBridge(app),  # type: ignore[arg-type]
        RequestMetrics(registry, "auth"),
    )
