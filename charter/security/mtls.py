"""Mutual TLS between services: client contexts, the caller's identity, internal operations.

Every service-to-service call is mutually authenticated: the services in
:data:`charter.config.MTLS_SERVICES` listen with TLS and ``CERT_REQUIRED`` (a client
without a certificate from the platform CA is refused at the handshake, see
:mod:`charter.serve`), and every outbound client presents its own certificate and checks
the server's against the same CA (:func:`client_ssl_context`, used automatically by
:func:`charter.http.create_client` for URLs of those services).

The identity of a peer is its certificate's subject common name (``orders``, ``cart``,
``gateway``, ``charter-cli``…). :mod:`charter.serve` puts it into the ASGI scope as the
TLS extension (``scope["extensions"]["tls"]``, see :func:`tls_extension`);
:func:`caller_identity` reads it back.

Internal-only operations declare ``x-internal-callers: [orders]`` in their spec.
:class:`InternalCallersMiddleware` (installed by :func:`charter.service.create_app`, after
Connexion's routing) answers 403 problem+json when the caller's identity is not listed,
and when the bearer token was not issued to that same identity's OAuth client (the
token's ``client_id`` must equal the certificate's identity: a stolen token is useless
without the matching key, a stolen certificate without the matching client secret).

Process settings: ``CHARTER_MTLS`` (default ``1``; ``0`` = plain HTTP everywhere, no
enforcement), ``CHARTER_PKI_DIR`` (default ``var/pki``), ``CHARTER_SERVICE`` (the identity
this process presents as a client and the service it serves; default for clients:
``charter-cli``).
"""

from __future__ import annotations

import functools
import logging
import ssl
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from starlette.types import ASGIApp, Receive, Scope, Send

from charter import config, problems
from charter.security import connexion_auth
from charter.security import credentials as pki
from charter.security.tokens import InvalidToken

log = logging.getLogger(__name__)

TLS_EXTENSION = "tls"
IDENTITY_KEY = "client_cert_identity"
INTERNAL_CALLERS = "x-internal-callers"
HTTP_METHODS = frozenset({"get", "put", "post", "delete", "options", "head", "patch", "trace"})
_TLS_VERSIONS = {"TLSv1.2": 0x0303, "TLSv1.3": 0x0304}


# -- identities and SSL contexts ---------------------------------------------------------


def current_identity() -> str:
    """The identity this process presents: ``CHARTER_SERVICE``, else ``charter-cli``."""
    return config.service_identity() or pki.CLI_IDENTITY


def require_credentials(identity: str, directory: Path | None = None) -> pki.Credentials:
    """The CA, certificate and key files of ``identity``; a clear error when missing."""
    files = pki.credentials(identity, directory)
    missing = files.missing()
    if missing:
        raise config.ConfigError(
            f"mutual TLS is on (CHARTER_MTLS) but {', '.join(map(str, missing))} "
            "is missing: run `charter pki init` (development) or mount the certificates "
            "at CHARTER_PKI_DIR (see docs/mtls.md); CHARTER_MTLS=0 turns mTLS off"
        )
    return files


def client_ssl_context(identity: str | None = None, directory: Path | None = None
                       ) -> ssl.SSLContext:
    """An ``SSLContext`` that presents ``identity``'s certificate and trusts only the CA.

    Pass it as httpx's ``verify=`` (httpx 0.28 ignores ``cert=`` when ``verify`` is a
    path). Hostnames are checked (the certificates carry the service name, ``localhost``
    and ``127.0.0.1``). Contexts are cached per identity and directory; contexts are
    thread-safe and shareable between clients (sync and async).
    """
    name = identity or current_identity()
    return _client_context(name, str(pki.pki_dir(directory)))


@functools.lru_cache(maxsize=32)
def _client_context(identity: str, directory: str) -> ssl.SSLContext:
    files = require_credentials(identity, Path(directory))
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(files.ca))
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(str(files.cert), str(files.key))
    return ctx


def server_ssl_context(identity: str, directory: Path | None = None) -> ssl.SSLContext:
    """A server-side context equivalent to the uvicorn options of :mod:`charter.serve`.

    ``CERT_REQUIRED`` against the CA: clients without a certificate, or with one from
    another CA, fail the handshake. For servers not started through uvicorn's options.
    """
    files = require_credentials(identity, directory)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(str(files.cert), str(files.key))
    ctx.load_verify_locations(str(files.ca))
    ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


def clear_cache() -> None:
    """Forget cached client contexts (after certificates were regenerated)."""
    _client_context.cache_clear()


def _origin(url: str) -> tuple[str, str, int] | None:
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    if not parts.scheme or not parts.hostname:
        return None
    scheme = parts.scheme.lower()
    return scheme, parts.hostname.lower(), port or (443 if scheme == "https" else 80)


def is_mtls_url(url: str) -> bool:
    """True when ``url`` is an ``https`` URL of a service that listens with mTLS.

    "Of a service" means the same scheme, host and port as
    :func:`charter.config.service_url` of one of :data:`charter.config.MTLS_SERVICES`,
    so external HTTPS APIs (e.g. an exchange-rate source) keep the system trust store.
    """
    if not config.mtls_enabled():
        return False
    origin = _origin(url)
    if origin is None or origin[0] != "https":
        return False
    return any(_origin(config.service_url(name)) == origin
               for name in sorted(config.MTLS_SERVICES))


def verify_for(url: str, identity: str | None = None,
               directory: Path | None = None) -> ssl.SSLContext | bool:
    """What to pass as httpx's ``verify=`` for calls to ``url``.

    The mTLS client context (:func:`client_ssl_context`) for a platform service's URL,
    ``True`` (system trust store) for anything else.
    """
    if is_mtls_url(url):
        return client_ssl_context(identity, directory)
    return True


# -- the caller's identity in the ASGI scope ---------------------------------------------


def identity_from_certificate(cert: x509.Certificate) -> str | None:
    """A peer's identity: the certificate subject's common name."""
    return pki.common_name(cert)


def tls_extension(der: bytes | None, tls_version: str | None = None) -> dict[str, Any]:
    """The ASGI TLS extension for a connection whose verified peer certificate is ``der``.

    Keys follow the ASGI TLS extension (``client_cert_chain`` as PEM,
    ``client_cert_name`` as an RFC 4514 string, ``client_cert_error``, ``tls_version``),
    plus ``client_cert_identity``: the certificate's common name (``None`` without a
    certificate).
    """
    info: dict[str, Any] = {
        "server_cert": None,
        "client_cert_chain": [],
        "client_cert_name": None,
        "client_cert_error": None,
        "tls_version": _TLS_VERSIONS.get(tls_version or ""),
        "cipher_suite": None,
        IDENTITY_KEY: None,
    }
    if not der:
        return info
    try:
        cert = x509.load_der_x509_certificate(der)
    except ValueError:
        info["client_cert_error"] = "unparseable certificate"
        return info
    info["client_cert_chain"] = [cert.public_bytes(serialization.Encoding.PEM).decode()]
    info["client_cert_name"] = cert.subject.rfc4514_string()
    info[IDENTITY_KEY] = identity_from_certificate(cert)
    return info


def tls_extension_from_ssl_object(ssl_object: Any) -> dict[str, Any] | None:
    """The TLS extension for a connection's ``ssl.SSLObject`` (``None``: not TLS).

    Only a certificate that passed verification is returned by ``getpeercert`` when the
    server requires or requests one, so the identity is trustworthy.
    """
    if ssl_object is None:
        return None
    der = ssl_object.getpeercert(binary_form=True)
    version = ssl_object.version() if hasattr(ssl_object, "version") else None
    return tls_extension(der, version)


def caller_identity(scope: Mapping[str, Any]) -> str | None:
    """The verified client-certificate identity of the request, if it came over mTLS."""
    tls = (scope.get("extensions") or {}).get(TLS_EXTENSION)
    if not tls:
        return None
    identity = tls.get(IDENTITY_KEY)
    return str(identity) if identity else None


def request_caller() -> str | None:
    """Inside a Flask handler: the calling service's certificate identity, if any.

    a2wsgi (Connexion's FlaskApp) passes the ASGI scope as ``environ["asgi.scope"]``.
    """
    from flask import has_request_context, request

    if not has_request_context():
        return None
    scope = request.environ.get("asgi.scope")
    return caller_identity(scope) if isinstance(scope, Mapping) else None


class TLSScopeApp:
    """Wraps an ASGI app to put one connection's TLS extension into each request scope."""

    __slots__ = ("app", "tls")

    def __init__(self, app: ASGIApp, tls: Mapping[str, Any]) -> None:
        self.app = app
        self.tls = dict(tls)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            extensions = scope.get("extensions")
            if extensions is None:
                extensions = scope["extensions"] = {}
            extensions[TLS_EXTENSION] = dict(self.tls)
        await self.app(scope, receive, send)


# -- internal-only operations ------------------------------------------------------------


def internal_callers(spec: Mapping[str, Any]) -> dict[str, frozenset[str]]:
    """operationId → allowed caller identities, for operations with ``x-internal-callers``.

    Raises ``ValueError`` for a malformed declaration (so a service refuses to start).
    """
    result: dict[str, frozenset[str]] = {}
    for path, item in (spec.get("paths") or {}).items():
        for method, operation in (item or {}).items():
            if method not in HTTP_METHODS or not isinstance(operation, Mapping):
                continue
            if INTERNAL_CALLERS not in operation:
                continue
            callers = operation[INTERNAL_CALLERS]
            if not isinstance(callers, list) or not all(isinstance(c, str) for c in callers):
                raise ValueError(f"{method.upper()} {path}: {INTERNAL_CALLERS} must be a list "
                                 "of service identities")
            op_id = operation.get("operationId")
            if not op_id:
                raise ValueError(f"{method.upper()} {path}: {INTERNAL_CALLERS} needs an "
                                 "operationId")
            result[str(op_id)] = frozenset(callers)
    return result


def enforcement(service: str, enforce: bool | None) -> tuple[bool, bool]:
    """``(check_tls_requests, refuse_plain_requests)`` for ``create_app(enforce_callers=)``.

    - ``True``: every request to an internal operation needs an allowed TLS identity.
    - ``False``: nothing is checked.
    - ``None`` (default): nothing when ``CHARTER_MTLS=0``; otherwise requests that came
      over TLS are checked, and plain-HTTP requests are refused too when this process runs
      as the service (``CHARTER_SERVICE=<service>``, set by ``charter up``/deployments).
      In-process test clients (no TLS, no ``CHARTER_SERVICE``) are not affected.
    """
    if enforce is not None:
        return enforce, enforce
    if not config.mtls_enabled():
        return False, False
    return True, config.service_identity() == service


class InternalCallersMiddleware:
    """403 problem+json when an internal operation's caller is not in its allow-list,
    or when its token belongs to another client than its certificate.

    Sits after Connexion's routing (``MiddlewarePosition.BEFORE_SECURITY``), so it knows
    the operation, and before token checks: a service that may not call an operation at
    all learns nothing more from it. For an allowed caller, a valid bearer token whose
    ``client_id`` differs from the certificate's identity is refused too (a missing or
    invalid token is left to Connexion's security check: 401). ``callers`` maps an API
    base path (``/v1``) to :func:`internal_callers` of that version's spec.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        service: str,
        callers: Mapping[str, Mapping[str, frozenset[str]]],
        enforce: bool | None = None,
    ) -> None:
        self.app = app
        self.service = service
        self.callers = {base: dict(ops) for base, ops in callers.items() if ops}
        self.check_tls, self.refuse_plain = enforcement(service, enforce)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and self.callers and (self.check_tls or self.refuse_plain):
            caller = self._check(scope)
            if caller is not None:
                await self._check_client(scope, caller)
        await self.app(scope, receive, send)

    def _check(self, scope: Scope) -> str | None:
        """Raise 403 for a caller not on the allow-list; the allowed caller, if checked."""
        extensions = scope.get("extensions") or {}
        routing = extensions.get("connexion_routing") or {}
        op_id = routing.get("operation_id")
        if not op_id:
            return None
        ops = self.callers.get(routing.get("api_base_path") or "")
        allowed = ops.get(str(op_id).rsplit(".", 1)[-1]) if ops else None
        if allowed is None:
            return None
        over_tls = extensions.get(TLS_EXTENSION) is not None
        if not (self.refuse_plain or (over_tls and self.check_tls)):
            return None
        caller = caller_identity(scope)
        if caller is not None and caller in allowed:
            return caller
        short = str(op_id).rsplit(".", 1)[-1]
        log.warning("%s: refused internal operation %s to caller %s", self.service, short,
                    caller or ("no client certificate" if over_tls else "plain HTTP"))
        who = f"caller '{caller}'" if caller else "a caller without a client certificate"
        raise problems.Forbidden(
            f"Operation {short} is internal to the platform; {who} may not use it."
        )

    async def _check_client(self, scope: Scope, caller: str) -> None:
        """Raise 403 when a valid bearer token was issued to another client than ``caller``."""
        token = bearer_token(scope)
        if token is None:
            return
        try:
            claims = await connexion_auth.verify(connexion_auth.verifier_of(scope), token)
        except InvalidToken:
            return  # Connexion's security check answers 401
        client_id = claims.get("client_id")
        if client_id == caller:
            return
        routing = (scope.get("extensions") or {}).get("connexion_routing") or {}
        short = str(routing.get("operation_id", "")).rsplit(".", 1)[-1]
        log.warning("%s: refused internal operation %s: token of client %s presented with "
                    "the certificate of %s", self.service, short, client_id or "(none)", caller)
        raise problems.Forbidden(
            f"Operation {short} is internal to the platform; the token must be issued to "
            f"the client '{caller}' of the calling certificate, not to "
            f"'{client_id or 'no client'}'."
        )


def bearer_token(scope: Mapping[str, Any]) -> str | None:
    """The bearer token of a request's ``Authorization`` header, if any."""
    for name, value in scope.get("headers") or ():
        if name.lower() == b"authorization":
            kind, _, token = value.decode("latin-1").partition(" ")
            token = token.strip()
            return token if kind.lower() == "bearer" and token else None
    return None
