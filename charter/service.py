"""The app factory every service uses: one Connexion FlaskApp wired the Charter way.

``create_app`` serves each spec version under ``/v<major>``, with strict request
validation, OAuth2 scopes enforced from the spec, Swagger UI with PKCE login,
problem+json errors, JSON logs with correlation ids, Prometheus metrics at ``/metrics``
and ``/health/live`` + ``/health/ready``. A service supplies its name, its handler
module, its database and any extra dependencies (kept on :class:`ServiceContext`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import connexion
from connexion.exceptions import OAuthProblem, OAuthScopeProblem, ProblemException
from connexion.lifecycle import ConnexionRequest, ConnexionResponse
from connexion.middleware import MiddlewarePosition
from connexion.options import SwaggerUIOptions
from connexion.problem import problem
from connexion.resolver import RelativeResolver
from flask import Flask, current_app, jsonify
from prometheus_client import CollectorRegistry
from prometheus_flask_exporter import PrometheusMetrics
from starlette.exceptions import HTTPException as StarletteHTTPException
from werkzeug.exceptions import HTTPException

from charter import (  # noqa: F401
    config,
    connexion_fixes,
    connexion_speedups,
    deprecation,
    problems,
    specs,
    wsgi_bridge,
)
from charter.db import Database
from charter.observability import families, logs, metrics_exposition, tracing
from charter.observability.health import ReadinessCheck, readiness
from charter.observability.middleware import ObservabilityMiddleware, RequestMetrics
from charter.security import connexion_auth, mtls
from charter.security.tokens import TokenVerifier, build_verifier

if TYPE_CHECKING:
    from charter.messaging.runtime import Messaging

log = logging.getLogger(__name__)


@dataclass
class ServiceContext:
    """What handlers of one service need: its name, database and other dependencies."""

    name: str
    db: Database
    deps: dict[str, Any] = field(default_factory=dict)
    checks: dict[str, ReadinessCheck] = field(default_factory=dict)
    messaging: Messaging | None = None  # the relay and consumers (charter.messaging.runtime)
    registry: CollectorRegistry | None = None  # what this app's /metrics shows (one process)


def context() -> ServiceContext:
    """The running service's context (inside a request)."""
    ctx: ServiceContext = current_app.extensions["charter"]
    return ctx


def default_verifier() -> TokenVerifier:
    """A verifier fed by auth's JWKS (prefetched) and revocation feed (polled)."""
    return build_verifier(config.auth_settings())


def _missing_token_handler(request: ConnexionRequest, exc: Exception) -> ConnexionResponse:
    """Connexion's own 401 (no or unreadable Authorization header): the shared problem."""
    return _problem_handler(request, connexion_auth.TokenRejected("missing"))


def _insufficient_scope_handler(request: ConnexionRequest,
                                exc: Exception) -> ConnexionResponse:
    """Connexion's scope-check 403: the shared problem, naming only the required scopes
    (Connexion's own detail would echo the token's scopes)."""
    assert isinstance(exc, OAuthScopeProblem)
    return _problem_handler(request, connexion_auth.InsufficientScope(exc.required_scopes))


def _connexion_problem(doc: dict[str, Any],
                       headers: dict[str, str] | None = None) -> ConnexionResponse:
    """A problem document (:meth:`problems.Problem.body`, :func:`problems.body`) as
    Connexion's response."""
    ext = {k: v for k, v in doc.items() if k not in ("type", "title", "status", "detail")}
    return problem(
        status=doc["status"],
        title=doc["title"],
        detail=doc.get("detail", ""),
        type=doc["type"],
        headers=headers or None,
        ext=ext or None,
    )


def _problem_handler(_request: ConnexionRequest, exc: Exception) -> ConnexionResponse:
    """A :class:`problems.Problem` raised before Flask (a 5xx's detail goes to the log)."""
    assert isinstance(exc, problems.Problem)
    return _connexion_problem(exc.body(), exc.headers)


def _framework_handler(_request: ConnexionRequest, exc: Exception) -> ConnexionResponse:
    """Connexion's and Starlette's own HTTP errors (400 validation, 404, 405, 415, …): the
    same problem, with the registered type of their status (Connexion's are about:blank)."""
    assert isinstance(exc, StarletteHTTPException)
    title = getattr(exc, "title", None)
    detail = getattr(exc, "detail", None)
    return _connexion_problem(problems.body(exc.status_code, title,
                                            detail if isinstance(detail, str) else None),
                              dict(exc.headers or {}))


def _unexpected_handler(_request: ConnexionRequest, exc: Exception) -> ConnexionResponse:
    """Any other error raised before Flask: logged, answered as a bare 500 with the
    correlation id (as the Flask-level handler does)."""
    log.error("unhandled error", exc_info=exc)
    return _connexion_problem(problems.body(500, "Internal Server Error"))


def _install_flask_errors(flask_app: Flask) -> None:
    """Errors raised inside Flask (handlers, unknown paths) become problem+json too."""

    def as_problem(doc: dict[str, Any]) -> Any:
        response = jsonify(doc)
        response.status_code = doc["status"]
        response.mimetype = problems.PROBLEM_JSON
        return response

    @flask_app.errorhandler(problems.Problem)
    def _problem(exc: problems.Problem) -> Any:
        response = as_problem(exc.body())
        response.headers.update(exc.headers)
        return response

    @flask_app.errorhandler(HTTPException)
    def _http(exc: HTTPException) -> Any:
        return as_problem(problems.body(exc.code or 500, exc.name, exc.description))

    @flask_app.errorhandler(Exception)
    def _any(exc: Exception) -> Any:
        log.error("unhandled error", exc_info=exc)
        return as_problem(problems.body(500, "Internal Server Error"))


def _install_health(flask_app: Flask, ctx: ServiceContext) -> None:
    @flask_app.get("/health/live")
    def live() -> Any:
        return {"status": "ok", "service": ctx.name}

    @flask_app.get("/health/ready")
    def ready() -> Any:
        body, ok = readiness(ctx.name, {"database": ctx.db.ping, **ctx.checks})
        return body, (200 if ok else 503)


def swagger_ui_options(api_scopes: Iterable[str]) -> SwaggerUIOptions:
    """Swagger UI configured for the authorization-code + PKCE flow against auth."""
    client_id = config.settings().swagger_ui_client_id
    return SwaggerUIOptions(
        swagger_ui_template_arguments={
            "initOAuth": {
                "clientId": client_id,
                "usePkceWithAuthorizationCodeGrant": True,
                "scopes": " ".join(api_scopes),
            }
        }
    )


def create_app(
    name: str,
    *,
    api_module: str | Mapping[str, str],
    db: Database,
    versions: Iterable[str] = ("v1",),
    verifier: TokenVerifier | None = None,
    deps: dict[str, Any] | None = None,
    checks: dict[str, ReadinessCheck] | None = None,
    spec_name: str | None = None,
    spec_dir: Path | None = None,
    enforce_callers: bool | None = None,
    clock: Callable[[], datetime] | None = None,
    messaging: Messaging | None = None,
    threads: int = wsgi_bridge.DEFAULT_THREADS,
) -> connexion.FlaskApp:
    """Build a service's Connexion app from ``openapi/<name>/<version>.yaml``.

    Operations declaring ``x-internal-callers`` are guarded by
    :class:`charter.security.mtls.InternalCallersMiddleware`; ``enforce_callers`` is
    ``True`` (always), ``False`` (never) or ``None``: when ``CHARTER_MTLS`` is on, for
    requests that came over TLS, and for every request when this process runs as the
    service (``CHARTER_SERVICE=<name>``). See :func:`charter.security.mtls.enforcement`.

    ``api_module`` is one handler module for every version or one per version
    (``{"v1": …, "v2": …}``). A version listed in ``governance/deprecation.yaml`` gets
    :class:`charter.deprecation.DeprecationMiddleware`, which asks ``clock`` (default
    the real time) whether its sunset has passed.

    ``messaging`` (:class:`charter.messaging.runtime.Messaging`, not started here: the
    ASGI factory starts it) adds the readiness check ``broker`` and its metrics to
    ``/metrics``, and is kept on the :class:`ServiceContext`. ``threads``: the request
    threads per process (:mod:`charter.wsgi_bridge`).
    """
    verifier = verifier or default_verifier()
    tracing.install(name)  # spans exported only when OTEL_EXPORTER_OTLP_ENDPOINT is set
    app = connexion.FlaskApp(name)
    callers: dict[str, dict[str, frozenset[str]]] = {}
    for version in versions:
        spec = specs.load(spec_name or name, version, spec_dir)
        callers[f"/{version}"] = mtls.internal_callers(spec)
        app.add_api(
            spec,
            base_path=f"/{version}",
            resolver=RelativeResolver(api_module if isinstance(api_module, str)
                                      else api_module[version]),
            strict_validation=True,
            validate_responses=config.settings().charter_validate_responses,
            swagger_ui_options=swagger_ui_options(specs.scopes(spec)),
            pythonic_params=True,
        )
    checks = dict(checks or {})
    if verifier.poller is not None:  # stale revocation feed = not ready
        checks.setdefault("revocations", verifier.check_ready)
    if messaging is not None:
        checks.setdefault("broker", messaging.check_ready)
    ctx = ServiceContext(name=name, db=db, deps=deps or {}, checks=checks,
                         messaging=messaging)
    flask_app = app.app
    wsgi_bridge.install(app, threads)  # one thread hand-off per request, not a2wsgi's streaming
    flask_app.extensions["charter"] = ctx
    flask_app.json.sort_keys = False  # type: ignore[attr-defined]
    registry = ctx.registry = CollectorRegistry()
    if messaging is not None:  # one process: its relay/consumer metrics on this /metrics
        registry.register(messaging.collector())
    # One process: the process-wide families (client policy, caches, saga, business
    # counters) on this /metrics; with several workers the exposition reads every file.
    registry.register(families.ProcessFamilies())
    # /metrics only: per-request metrics are ObservabilityMiddleware's (charter_http_*,
    # which also see answers made before Flask); the exporter's flask_http_* would
    # count every request a second time.
    PrometheusMetrics(flask_app, registry=registry, group_by="url_rule", path="/metrics",
                      default_labels={"service": name},
                      export_defaults=False)
    # With several workers (PROMETHEUS_MULTIPROC_DIR) the exporter's /metrics sums every
    # worker's files (MultiProcessCollector on a fresh registry); mark this one dead at exit.
    metrics_exposition.mark_dead_at_exit()
    app.add_middleware(
        ObservabilityMiddleware,
        position=MiddlewarePosition.BEFORE_EXCEPTION,
        metrics=RequestMetrics(registry, name),
    )
    # Fault injection (charter.faults): inside the observability middleware, so injected
    # answers are logged and counted like real ones, and after routing (BEFORE_SECURITY),
    # where the operationId is known; inert without a profile outside development mode.
    from charter.faults import FaultMiddleware
    app.add_middleware(FaultMiddleware, position=MiddlewarePosition.BEFORE_SECURITY,
                       service=name)
    # Versions listed in governance/deprecation.yaml: headers, 410 after the sunset,
    # calls counted per client (charter.deprecation); ``clock`` lets tests pass the sunset.
    retiring = deprecation.middleware_options(spec_name or name, versions, name, registry,
                                              clock or deprecation.utcnow)
    if retiring is not None:
        app.add_middleware(deprecation.DeprecationMiddleware,
                           position=MiddlewarePosition.BEFORE_EXCEPTION, **retiring)
    # Each insert lands just before security, so the verifier (added first) runs before
    # the internal-callers check, which needs it to compare client_id and certificate.
    app.add_middleware(
        connexion_auth.VerifierMiddleware,
        position=MiddlewarePosition.BEFORE_SECURITY,
        verifier=verifier,
    )
    if any(callers.values()):
        app.add_middleware(
            mtls.InternalCallersMiddleware,
            position=MiddlewarePosition.BEFORE_SECURITY,
            service=name,
            callers=callers,
            enforce=enforce_callers,
        )
    app.add_error_handler(OAuthProblem, _missing_token_handler)
    app.add_error_handler(OAuthScopeProblem, _insufficient_scope_handler)
    app.add_error_handler(problems.Problem, _problem_handler)
    app.add_error_handler(ProblemException, _framework_handler)  # Connexion's own
    app.add_error_handler(StarletteHTTPException, _framework_handler)
    app.add_error_handler(Exception, _unexpected_handler)
    _install_flask_errors(flask_app)
    _install_health(flask_app, ctx)
    return app


def configure_logging(name: str) -> None:
    """JSON logs for a service process (called by the ASGI factories)."""
    logs.configure(name, config.log_level())
