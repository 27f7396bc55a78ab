"""HTTP routes: OAuth endpoints, discovery, login/consent/registration pages, health."""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import quote

from authlib.oauth2 import OAuth2Error
from authlib.oauth2.rfc6749.errors import InvalidScopeError
from flask import Blueprint, Response, jsonify, redirect, render_template, request, session

from auth import accounts
from auth.scopes import SCOPE_DESCRIPTIONS, grant_for_user, split
from auth.server import server_metadata
from auth.throttle import Busy
from auth.web import (
    AuthContext,
    csrf_ok,
    csrf_token,
    ctx,
    current_user,
    problem,
    request_ip,
    safe_next,
    sign_in,
)
from charter.observability.health import readiness

log = logging.getLogger(__name__)
audit = logging.getLogger("auth.audit")

# The same words for a wrong password, an unknown account and a throttled attempt.
LOGIN_FAILED = ("Sign-in failed. Check your email and password; after several failed "
                "attempts, wait a few minutes before trying again.")

bp = Blueprint("auth", __name__)


@bp.app_context_processor
def _template_globals() -> dict[str, Any]:
    return {"csrf_token": csrf_token}


# --- OAuth 2 endpoints (RFC 6749 error format, produced by Authlib) ------------------


@bp.post("/oauth/token")
def token() -> Any:
    """The token endpoint, behind the client + IP back-off (failed client authentication
    counts against the client and the IP; an invalid grant against the IP only)."""
    context, ip = ctx(), request_ip()
    client_id = _token_client_id()
    wait = context.throttle.retry_after("token", client_id, ip)
    if wait:
        _audit("token.throttled", context, client_id, ip, retry_after=wait)
        return _throttled_problem(wait)
    response = context.server.create_token_response()
    error = (response.get_json(silent=True) or {}).get("error") if response.is_json else None
    if error in ("invalid_client", "invalid_grant"):
        failures = context.throttle.failed("token", client_id, ip,
                                           account_counters=error == "invalid_client")
        _audit(f"token.{error}", context, client_id, ip, failures=failures)
    elif response.status_code == 200:
        context.throttle.succeeded("token", client_id, ip)
    return response


@bp.post("/oauth/introspect")
def introspect() -> Any:
    return ctx().server.create_endpoint_response("introspection")


@bp.post("/oauth/revoke")
def revoke() -> Any:
    return ctx().server.create_endpoint_response("revocation")


@bp.route("/oauth/authorize", methods=["GET", "POST"])
def authorize() -> Any:
    server = ctx().server
    user = current_user()
    try:
        grant = server.get_consent_grant(end_user=user)
    except OAuth2Error as error:
        if not error.redirect_uri:  # no validated redirect URI: tell the user, here
            return _page("error.html", status=error.status_code,
                         message=error.description or error.error)
        return server.handle_error_response(None, error)

    if user is None:
        return redirect(f"/login?next={_quote(request.full_path)}")

    client = grant.client
    granted = grant_for_user(grant.request.payload.scope, client.scope, user.role)
    if request.method == "GET":
        return _page(
            "consent.html",
            client=client,
            user=user,
            scopes=[(s, SCOPE_DESCRIPTIONS[s]) for s in split(granted)],
            refused=[s for s in split(grant.request.payload.scope) if s not in split(granted)],
            action=request.full_path,
        )

    if not csrf_ok(request.form.get("csrf_token")):
        return _page("error.html", status=400, message="Your session expired. Please retry.")
    allowed = request.form.get("decision") == "allow" and bool(granted)
    if request.form.get("decision") == "allow" and not granted:
        refusal = InvalidScopeError(
            "None of the requested scopes can be granted.", redirect_uri=grant.redirect_uri
        )
        refusal.state = grant.request.payload.state
        return server.handle_error_response(None, refusal)
    return server.create_authorization_response(grant=grant, grant_user=user if allowed else None)


# --- discovery -------------------------------------------------------------------------


@bp.get("/.well-known/oauth-authorization-server")
@bp.get("/.well-known/openid-configuration")
def discovery() -> Response:
    response = jsonify(dict(server_metadata(ctx().settings)))
    response.headers["Cache-Control"] = "public, max-age=300"
    return response


@bp.get("/.well-known/jwks.json")
def jwks() -> Response:
    response = jsonify(ctx().server.keys.jwks())
    response.headers["Cache-Control"] = "public, max-age=60"
    return response


# --- accounts --------------------------------------------------------------------------


@bp.get("/")
def index() -> Any:
    return _page("index.html", user=current_user())


@bp.route("/login", methods=["GET", "POST"])
def login() -> Any:
    next_url = safe_next(request.values.get("next"))
    if request.method == "GET":
        return _page("login.html", next=next_url, email="", error=None)
    if not csrf_ok(request.form.get("csrf_token")):
        return _page("login.html", status=400, next=next_url, email="",
                     error="Your session expired. Please try again.")
    email = request.form.get("email", "")
    context, ip = ctx(), request_ip()
    account = accounts.normalize_email(email)
    wait = context.throttle.retry_after("login", account, ip)
    if wait:  # no password work at all while backing off
        _audit("login.throttled", context, account, ip, retry_after=wait)
        page = _page("login.html", status=429, next=next_url, email=email, error=LOGIN_FAILED)
        page.headers["Retry-After"] = str(wait)
        return page
    try:
        with context.gate.slot(), context.db.session() as db_session:
            user = accounts.authenticate(db_session, email, request.form.get("password", ""))
    except Busy:
        return _busy_page("login.html", next=next_url, email=email)
    if user is None:
        failures = context.throttle.failed("login", account, ip)
        _audit("login.failed", context, account, ip, failures=failures)
        return _page("login.html", status=401, next=next_url, email=email, error=LOGIN_FAILED)
    context.throttle.succeeded("login", account, ip)
    sign_in(user)
    log.info("login succeeded", extra={"user_id": user.id})
    return redirect(next_url)


@bp.post("/logout")
def logout() -> Any:
    if not csrf_ok(request.form.get("csrf_token")):
        return _page("error.html", status=400, message="Your session expired. Please retry.")
    session.clear()
    return redirect("/login")


@bp.route("/register", methods=["GET", "POST"])
def register() -> Any:
    if request.method == "POST" and request.is_json:
        return _register_json()
    next_url = safe_next(request.values.get("next"))
    if request.method == "GET":
        return _page("register.html", next=next_url, email="", error=None)
    email = request.form.get("email", "")
    if not csrf_ok(request.form.get("csrf_token")):
        return _page("register.html", status=400, next=next_url, email=email,
                     error="Your session expired. Please try again.")
    try:
        with ctx().gate.slot(), ctx().db.session() as db_session:
            user = accounts.create_user(db_session, email, request.form.get("password", ""))
    except accounts.AccountError as exc:
        return _page("register.html", status=exc.status, next=next_url, email=email,
                     error=str(exc))
    except Busy:
        return _busy_page("register.html", next=next_url, email=email)
    sign_in(user)
    log.info("user registered", extra={"user_id": user.id})
    return redirect(next_url)


def _register_json() -> Response:
    data = request.get_json(silent=True)
    if not isinstance(data, dict):
        return problem(400, "Bad Request", "The body must be a JSON object.")
    email, password = data.get("email"), data.get("password")
    if not isinstance(email, str) or not isinstance(password, str):
        return problem(400, "Bad Request", "'email' and 'password' are required strings.")
    try:
        with ctx().gate.slot(), ctx().db.session() as db_session:
            user = accounts.create_user(db_session, email, password)
    except accounts.AccountError as exc:
        return problem(exc.status, exc.title, str(exc), kind=exc.kind)
    except Busy:
        response = problem(503, "Service Unavailable", "Too many sign-ins at once; retry.")
        response.headers["Retry-After"] = "1"
        return response
    log.info("user registered", extra={"user_id": user.id})
    response = jsonify(user.public())
    response.status_code = 201
    return response


# --- health ----------------------------------------------------------------------------


@bp.get("/health/live")
def live() -> Response:
    return jsonify({"status": "ok"})


@bp.get("/health/ready")
def ready() -> Response:
    """200 when the database (and Redis, the broker when used) answer, else a 503
    problem; both name each dependency's state
    (:func:`charter.observability.health.readiness`: ``checks``, ``dependencies``)."""
    context = ctx()
    body, ok = readiness("auth", {"database": context.db.ping, **context.checks})
    if not ok:
        return problem(503, "Service Unavailable", "A dependency does not answer.",
                       service=body["service"], checks=body["checks"],
                       dependencies=body["dependencies"])
    return jsonify(body)


# --- helpers ---------------------------------------------------------------------------


def _page(template: str, status: int = 200, **context: Any) -> Response:
    response = Response(render_template(template, **context), status=status)
    response.headers["Cache-Control"] = "no-store"
    return response


def _quote(value: str) -> str:
    return quote(value, safe="")


def _busy_page(template: str, **context: Any) -> Response:
    page = _page(template, status=503, error="Too many sign-ins at once. Please retry.",
                 **context)
    page.headers["Retry-After"] = "1"
    return page


def _token_client_id() -> str:
    """The client id a token request claims (Basic user name, else ``client_id``)."""
    auth = request.authorization
    if auth is not None and auth.type == "basic" and auth.username:
        return str(auth.username)
    return str(request.form.get("client_id") or "-")


def _throttled_problem(wait: int) -> Response:
    """429 for the token endpoint: problem+json that OAuth clients can read too."""
    response = problem(429, "Too Many Requests",
                       "Too many failed attempts; retry after the delay.",
                       error="slow_down", error_description="Too many failed attempts.")
    response.headers["Retry-After"] = str(wait)
    response.headers["Cache-Control"] = "no-store"
    return response


def _audit(event: str, context: AuthContext, account: str, ip: str, **fields: Any) -> None:
    """One JSON audit line: the account as a keyed pseudonym, never a secret."""
    audit.warning(event, extra={"event": event, "account": context.throttle.pseudonym(account),
                                "client_ip": ip, **fields})
