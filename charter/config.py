"""Twelve-factor configuration: everything from the environment, safe embedded defaults.

Embedded mode (the default, ``CHARTER_ENV=embedded``) runs on a laptop with SQLite files
under ``var/`` and development secrets. ``CHARTER_ENV=production`` refuses to start
without the settings that have no safe default (database URLs, issuer, passwords).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OPENAPI_DIR = ROOT / "openapi"

PORTS: dict[str, int] = {
    "gateway": 8080,
    "auth": 8090,
    "catalog": 8101,
    "cart": 8102,
    "orders": 8103,
    "payments": 8104,
    "exchange": 8105,
    "loyalty": 8106,
    "notifications": 8107,
}


# Services that listen for internal callers with mutual TLS when ``CHARTER_MTLS`` is on.
# ``auth`` (browser login, JWKS) and ``gateway`` (the public entry point) stay plain HTTP.
MTLS_SERVICES: frozenset[str] = frozenset(
    {"catalog", "cart", "orders", "payments", "exchange", "loyalty", "notifications"}
)


class ConfigError(RuntimeError):
    """A required setting is missing or invalid."""


def env(name: str, default: str | None = None) -> str | None:
    """Read an environment variable; empty strings count as unset."""
    value = os.environ.get(name)
    return value if value not in (None, "") else default


def is_embedded() -> bool:
    """True unless ``CHARTER_ENV`` says production."""
    return (env("CHARTER_ENV", "embedded") or "embedded").lower() != "production"


def var_dir() -> Path:
    """Where embedded mode keeps its files (SQLite databases, keys, logs)."""
    path = Path(env("CHARTER_VAR_DIR", str(ROOT / "var")) or "var")
    path.mkdir(parents=True, exist_ok=True)
    return path


def port(service: str) -> int:
    """The port a service listens on (``<SERVICE>_PORT`` overrides the default)."""
    return int(env(f"{service.upper()}_PORT", str(PORTS[service])) or PORTS[service])


def mtls_enabled() -> bool:
    """Mutual TLS between services (``CHARTER_MTLS``, default on; ``0`` = plain HTTP)."""
    value = (env("CHARTER_MTLS", "1") or "1").strip().lower()
    return value not in ("0", "false", "no", "off")


def uses_mtls(service: str) -> bool:
    """True when ``service`` listens with mutual TLS (mTLS on and not auth/gateway)."""
    return service in MTLS_SERVICES and mtls_enabled()


def pki_dir() -> Path:
    """Where the CA and the service certificates live (``CHARTER_PKI_DIR``, else ``var/pki``)."""
    configured = env("CHARTER_PKI_DIR")
    return Path(configured) if configured else var_dir() / "pki"


def service_identity() -> str | None:
    """The service this process runs as (``CHARTER_SERVICE``, set by ``charter up``)."""
    return env("CHARTER_SERVICE")


def service_url(service: str) -> str:
    """Base URL other processes use to reach a service (``<SERVICE>_URL`` overrides).

    ``https://`` for the services that listen with mutual TLS (see :func:`uses_mtls`).
    """
    scheme = "https" if uses_mtls(service) else "http"
    default = f"{scheme}://127.0.0.1:{port(service)}"
    return (env(f"{service.upper()}_URL", default) or default).rstrip("/")


def database_url(service: str) -> str:
    """The service's own database.

    ``<SERVICE>_DATABASE_URL`` wins; then ``DATABASE_URL`` (``{service}`` in it is replaced
    by the service name, so one template gives one database per service); then, in
    embedded mode, a SQLite file ``var/<service>.db``.
    """
    specific = env(f"{service.upper()}_DATABASE_URL")
    if specific:
        return specific
    shared = env("DATABASE_URL")
    if shared:
        return shared.replace("{service}", service)
    if not is_embedded():
        raise ConfigError(f"{service.upper()}_DATABASE_URL or DATABASE_URL must be set")
    return f"sqlite:///{var_dir() / (service + '.db')}"


@dataclass(frozen=True)
class AuthSettings:
    """What a resource server needs to verify access tokens."""

    issuer: str
    audience: str
    jwks_url: str
    algorithms: tuple[str, ...] = ("RS256", "ES256")
    leeway: int = 30


def auth_settings() -> AuthSettings:
    """Token-verification settings shared by every service and the gateway."""
    issuer = env("AUTH_ISSUER") or service_url("auth")
    return AuthSettings(
        issuer=issuer.rstrip("/"),
        audience=env("AUTH_AUDIENCE", "charter-api") or "charter-api",
        jwks_url=env("AUTH_JWKS_URL") or f"{service_url('auth')}/.well-known/jwks.json",
        leeway=int(env("AUTH_LEEWAY", "30") or 30),
    )


def redis_url() -> str | None:
    """Redis for shared caches; ``None`` means in-process caches."""
    return env("REDIS_URL")
