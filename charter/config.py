"""Twelve-factor configuration, parsed and checked in one typed place (pydantic-settings).

Fail closed: the platform runs in **production mode** unless development mode is asked
for (``CHARTER_ENV=development``; ``embedded`` is accepted as an alias; ``charter up
--dev`` sets it). Development mode runs on a laptop with SQLite files under ``var/``,
random development secrets generated once under ``var/secrets/`` and a development CA.

Outside development mode a component refuses to start unless it has an ``https``
issuer (``AUTH_ISSUER``), its database URL, its secrets (none of them a known
development value, see :data:`KNOWN_DEV_SECRETS`) and, with mutual TLS on, its
certificates under ``CHARTER_PKI_DIR``. :meth:`ComponentSettings.load` reports every
missing or bad variable in one :class:`ConfigError`.

:class:`CharterSettings` holds what every component shares; each component subclasses
:class:`ComponentSettings` in its own ``settings.py`` (``auth/settings.py``,
``services/<name>/settings.py``) with its own variables. The helper functions below
(:func:`database_url`, :func:`service_url`, :func:`auth_settings`, …) read the same
settings.
"""

from __future__ import annotations

import os
import secrets as _secrets
from dataclasses import dataclass
from enum import StrEnum
from functools import lru_cache
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

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

# Every secret or password that appears in the code, docs or tests as a development value.
# None of them is accepted outside development mode, whatever variable holds it.
KNOWN_DEV_SECRETS: frozenset[str] = frozenset(
    {
        "demo-cli-secret",
        "charter-internal-secret",
        "alice-password-1",
        "staff-password-1",
        "admin-password-1",
        "erin-password-1",
        "frank-password-1",
        "test-session-secret",
        "auth-session-secret",
        "charter-dummy-password",
        "secret",
        "password",
        "changeme",
        "REPLACE-ME",  # the placeholder of every Secret in deploy/k8s/
    }
)

DEV_ALIASES = frozenset({"development", "dev", "embedded"})


class ConfigError(RuntimeError):
    """A required setting is missing or invalid (the message names the variables)."""


class Mode(StrEnum):
    """How the platform runs: ``development`` must be asked for; anything else fails closed."""

    DEVELOPMENT = "development"
    PRODUCTION = "production"


class CharterSettings(BaseSettings):
    """What every component reads from the environment (names are the upper-case fields)."""

    model_config = SettingsConfigDict(env_ignore_empty=True, extra="ignore", frozen=True)

    charter_env: Mode = Mode.PRODUCTION
    charter_var_dir: Path = ROOT / "var"
    charter_service: str | None = None
    # Worker processes of this component (``uvicorn --workers``; set by the runner).
    charter_workers: int = Field(1, ge=1)
    log_level: str = "INFO"
    # A copy of the process's JSON logs (set per worker by ``charter up``), rotated at
    # this size keeping this many rotated files: charter.observability.logfile.
    charter_log_file: Path | None = None
    charter_log_max_bytes: int = Field(5 * 1024 * 1024, ge=1024)
    charter_log_backups: int = Field(2, ge=0)

    auth_issuer: str | None = None
    auth_audience: str = "charter-api"
    auth_jwks_url: str | None = None
    auth_token_url: str | None = None
    auth_public_url: str | None = None
    auth_leeway: int = Field(30, ge=0, le=600)
    auth_revocation_url: str | None = None
    auth_revocation_poll_interval: float = Field(1.0, gt=0, le=2.0)
    auth_revocation_max_staleness: float = Field(30.0, gt=0)

    database_url: str | None = None
    redis_url: str | None = None
    charter_mtls: bool = True
    charter_pki_dir: Path | None = None

    charter_validate_responses: bool = False
    swagger_ui_client_id: str = "swagger-ui"
    cache_ttl_seconds: float = Field(30.0, gt=0)

    gateway_port: int = Field(PORTS["gateway"], ge=1, le=65535)
    auth_port: int = Field(PORTS["auth"], ge=1, le=65535)
    catalog_port: int = Field(PORTS["catalog"], ge=1, le=65535)
    cart_port: int = Field(PORTS["cart"], ge=1, le=65535)
    orders_port: int = Field(PORTS["orders"], ge=1, le=65535)
    payments_port: int = Field(PORTS["payments"], ge=1, le=65535)
    exchange_port: int = Field(PORTS["exchange"], ge=1, le=65535)
    loyalty_port: int = Field(PORTS["loyalty"], ge=1, le=65535)
    notifications_port: int = Field(PORTS["notifications"], ge=1, le=65535)
    gateway_url: str | None = None
    auth_url: str | None = None
    catalog_url: str | None = None
    cart_url: str | None = None
    orders_url: str | None = None
    payments_url: str | None = None
    exchange_url: str | None = None
    loyalty_url: str | None = None
    notifications_url: str | None = None
    # The portal's public base URL: problem ``type`` URIs are ``<it>/problems/<slug>``.
    charter_public_url: str | None = None

    @field_validator("charter_env", mode="before")
    @classmethod
    def _mode(cls, value: Any) -> Any:
        if isinstance(value, str) and value.strip().lower() in DEV_ALIASES:
            return Mode.DEVELOPMENT
        if isinstance(value, str):
            return value.strip().lower()
        return value

    @property
    def development(self) -> bool:
        """True in development mode (``CHARTER_ENV=development``)."""
        return self.charter_env is Mode.DEVELOPMENT

    def port_of(self, service: str) -> int:
        """The port ``service`` listens on."""
        value: int = getattr(self, f"{service}_port")
        return value

    def url_of(self, service: str) -> str:
        """Base URL of ``service`` (``<SERVICE>_URL``, else from its port)."""
        configured: str | None = getattr(self, f"{service}_url", None)
        if configured:
            return configured.rstrip("/")
        scheme = "https" if service in MTLS_SERVICES and self.charter_mtls else "http"
        return f"{scheme}://127.0.0.1:{self.port_of(service)}"

    def issuer(self) -> str:
        """The token issuer (``AUTH_ISSUER``; in development mode auth's own URL)."""
        if self.auth_issuer:
            return self.auth_issuer.rstrip("/")
        if not self.development:
            raise ConfigError("AUTH_ISSUER must be set to the https:// URL of the issuer")
        return self.url_of("auth")

    def public_url(self) -> str:
        """The public base URL of the platform's portal (``CHARTER_PUBLIC_URL``; in
        development mode the gateway's local URL; otherwise :class:`ConfigError`)."""
        if self.charter_public_url:
            return self.charter_public_url.rstrip("/")
        if not self.development:
            raise ConfigError("CHARTER_PUBLIC_URL must be set to the https:// URL of the "
                              "portal")
        return self.url_of("gateway")

    def problems(self) -> list[str]:
        """What is missing or wrong for production (empty in development mode)."""
        if self.development:
            return []
        found: list[str] = []
        if not self.auth_issuer:
            found.append("AUTH_ISSUER must be set (the https:// URL of the token issuer)")
        elif not self.auth_issuer.lower().startswith("https://"):
            found.append(f"AUTH_ISSUER must be an https:// URL, not {self.auth_issuer!r}")
        if not self.charter_public_url:
            found.append("CHARTER_PUBLIC_URL must be set (the https:// URL of the portal; "
                         "problem type URIs start with it)")
        elif not self.charter_public_url.lower().startswith("https://"):
            found.append("CHARTER_PUBLIC_URL must be an https:// URL, not "
                         f"{self.charter_public_url!r}")
        found += self.secret_problems()
        return found

    def secret_problems(self) -> list[str]:
        """Secret settings that hold a known development value."""
        found: list[str] = []
        for name, field in type(self).model_fields.items():
            value = getattr(self, name)
            if isinstance(value, SecretStr) and value.get_secret_value() in KNOWN_DEV_SECRETS:
                found.append(f"{_var(name, field.validation_alias)} is a known development "
                             "secret; set a real one")
        return found


def _var(name: str, alias: object) -> str:
    return (alias if isinstance(alias, str) else name).upper()


S = TypeVar("S", bound="ComponentSettings")


class ComponentSettings(CharterSettings):
    """Settings of one deployable component; subclasses add its own variables.

    ``component`` names it; ``required_secrets`` are the fields (``SecretStr``) that must
    be set outside development mode (in development mode :func:`secret` makes them);
    ``has_database`` and ``uses_pki`` say whether it needs a database URL and, with
    mutual TLS on, its certificate under ``CHARTER_PKI_DIR``.
    """

    component: ClassVar[str] = ""
    required_secrets: ClassVar[tuple[str, ...]] = ()
    has_database: ClassVar[bool] = True
    uses_pki: ClassVar[bool] = True

    def own_database_url(self) -> str | None:
        """``<COMPONENT>_DATABASE_URL`` (declared by the subclass) or ``DATABASE_URL``."""
        specific: str | None = getattr(self, f"{self.component}_database_url", None)
        if specific:
            return specific
        if self.database_url:
            return self.database_url.replace("{service}", self.component)
        return None

    def db_url(self) -> str:
        """The database URL (a SQLite file under the var dir in development mode)."""
        url = self.own_database_url()
        if url:
            return url
        if not self.development:
            raise ConfigError(_db_message(self.component))
        return f"sqlite:///{_var_dir(self.charter_var_dir) / (self.component + '.db')}"

    def secret_value(self, field: str) -> str:
        """The value of a secret field; generated under the var dir in development mode."""
        value = getattr(self, field)
        if isinstance(value, SecretStr):
            return value.get_secret_value()
        return secret(_var(field, type(self).model_fields[field].validation_alias))

    def problems(self) -> list[str]:
        found = super().problems()
        if self.development:
            return found
        fields = type(self).model_fields
        for name in self.required_secrets:
            if getattr(self, name) is None:
                found.append(f"{_var(name, fields[name].validation_alias)} must be set "
                             "(a secret; no default outside development mode)")
        if self.has_database and not self.own_database_url():
            found.append(_db_message(self.component))
        if self.uses_pki and self.charter_mtls:
            if self.charter_pki_dir is None:
                found.append("CHARTER_PKI_DIR must be set (mutual TLS is on; CHARTER_MTLS=0 "
                             "turns it off)")
            else:
                base = self.charter_pki_dir
                files = ["ca.pem", f"{self.component}.pem", f"{self.component}-key.pem"]
                missing = [f for f in files if not (base / f).is_file()]
                if missing:
                    found.append(f"CHARTER_PKI_DIR ({base}) lacks {', '.join(missing)}")
        return found

    @classmethod
    def parse(cls: type[S]) -> S:
        """Parse the environment without the production checks (values still typed)."""
        try:
            return cls()
        except ValidationError as exc:
            raise ConfigError(_describe(cls, exc)) from None

    @classmethod
    def load(cls: type[S]) -> S:
        """Parse and check the environment; :class:`ConfigError` lists every problem."""
        settings = cls.parse()
        found = settings.problems()
        if found:
            raise ConfigError(_header(cls.component) + "".join(f"\n  - {p}" for p in found))
        return settings


def _db_message(component: str) -> str:
    return f"{component.upper()}_DATABASE_URL or DATABASE_URL must be set"


def _header(component: str) -> str:
    what = component or "charter"
    return (f"{what} cannot start outside development mode (CHARTER_ENV=development asks "
            "for it):")


def _describe(cls: type[CharterSettings], exc: ValidationError) -> str:
    fields = cls.model_fields
    lines = []
    for err in exc.errors():
        loc = str(err["loc"][0]) if err["loc"] else ""
        name = _var(loc, fields[loc].validation_alias) if loc in fields else loc.upper()
        lines.append(f"\n  - {name}: {err['msg']}")
    component = getattr(cls, "component", "") or "charter"
    return f"{component}: invalid settings:" + "".join(lines)


def settings() -> CharterSettings:
    """The shared settings of the current environment (cached while it is unchanged)."""
    return _cached(CharterSettings, tuple(sorted(os.environ.items())))


@lru_cache(maxsize=32)
def _cached(cls: type[CharterSettings], _env: tuple[tuple[str, str], ...]) -> CharterSettings:
    try:
        return cls()
    except ValidationError as exc:
        raise ConfigError(_describe(cls, exc)) from None


def env(name: str, default: str | None = None) -> str | None:
    """Read an environment variable; empty strings count as unset."""
    value = os.environ.get(name)
    return value if value not in (None, "") else default


def is_development() -> bool:
    """True only when development mode was asked for (``CHARTER_ENV=development``)."""
    return settings().development


def is_embedded() -> bool:
    """Old name of :func:`is_development`."""
    return is_development()


def _var_dir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def var_dir() -> Path:
    """Where development mode keeps its files (SQLite databases, keys, secrets, logs)."""
    return _var_dir(settings().charter_var_dir)


def port(service: str) -> int:
    """The port a service listens on (``<SERVICE>_PORT`` overrides the default)."""
    return settings().port_of(service)


def mtls_enabled() -> bool:
    """Mutual TLS between services (``CHARTER_MTLS``, default on; ``0`` = plain HTTP)."""
    return settings().charter_mtls


def uses_mtls(service: str) -> bool:
    """True when ``service`` listens with mutual TLS (mTLS on and not auth/gateway)."""
    return service in MTLS_SERVICES and mtls_enabled()


def pki_dir() -> Path:
    """Where the CA and the service certificates live (``CHARTER_PKI_DIR``, else ``var/pki``)."""
    configured = settings().charter_pki_dir
    return configured if configured is not None else var_dir() / "pki"


def service_identity() -> str | None:
    """The service this process runs as (``CHARTER_SERVICE``, set by ``charter up``)."""
    return settings().charter_service


def service_url(service: str) -> str:
    """Base URL other processes use to reach a service (``<SERVICE>_URL`` overrides).

    ``https://`` for the services that listen with mutual TLS (see :func:`uses_mtls`).
    """
    return settings().url_of(service)


def database_url(service: str) -> str:
    """The service's own database.

    ``<SERVICE>_DATABASE_URL`` wins; then ``DATABASE_URL`` (``{service}`` in it is replaced
    by the service name, so one template gives one database per service); then, in
    development mode, a SQLite file ``var/<service>.db``; otherwise :class:`ConfigError`.
    """
    specific = env(f"{service.upper()}_DATABASE_URL")
    if specific:
        return specific
    shared = settings()
    if shared.database_url:
        return shared.database_url.replace("{service}", service)
    if not shared.development:
        raise ConfigError(_db_message(service))
    return f"sqlite:///{var_dir() / (service + '.db')}"


def database_read_url(service: str) -> str | None:
    """``<SERVICE>_DATABASE_READ_URL``: a streaming-replication standby of the service's
    PostgreSQL database for its read-only use cases (:meth:`charter.db.Database.read`), or
    ``None`` (every read on the primary)."""
    return env(f"{service.upper()}_DATABASE_READ_URL") or None


@dataclass(frozen=True)
class AuthSettings:
    """What a resource server needs to verify access tokens."""

    issuer: str
    audience: str
    jwks_url: str
    algorithms: tuple[str, ...] = ("RS256", "ES256")
    leeway: int = 30
    revocation_url: str = ""  # auth's revocation feed ("" = none)
    revocation_poll_interval: float = 1.0
    revocation_max_staleness: float = 30.0


def auth_settings() -> AuthSettings:
    """Token-verification settings shared by every service and the gateway.

    Outside development mode ``AUTH_ISSUER`` must be set (:class:`ConfigError`).
    """
    shared = settings()
    return AuthSettings(
        issuer=shared.issuer(),
        audience=shared.auth_audience,
        jwks_url=shared.auth_jwks_url or f"{shared.url_of('auth')}/.well-known/jwks.json",
        leeway=shared.auth_leeway,
        revocation_url=shared.auth_revocation_url
        or f"{shared.url_of('auth')}/oauth/revocations",
        revocation_poll_interval=shared.auth_revocation_poll_interval,
        revocation_max_staleness=shared.auth_revocation_max_staleness,
    )


def redis_url() -> str | None:
    """Redis for shared caches; ``None`` means in-process caches."""
    return settings().redis_url


def log_level() -> str:
    """``LOG_LEVEL`` (default ``INFO``)."""
    return settings().log_level


def secret(name: str) -> str:
    """The secret held by environment variable ``name``.

    A known development secret (:data:`KNOWN_DEV_SECRETS`) is refused outside development
    mode. In development mode an unset secret is generated once (random) and kept in
    ``var_dir()/secrets/<name>`` (mode 0600). Outside it, a missing secret raises
    :class:`ConfigError` naming the variable.
    """
    value = env(name)
    development = is_development()
    if value is not None:
        if value in KNOWN_DEV_SECRETS and not development:
            raise ConfigError(f"{name} is a known development secret; set a real one")
        return value
    if not development:
        raise ConfigError(f"{name} must be set (a secret; no default outside development mode)")
    folder = var_dir() / "secrets"
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = folder / name
    if not path.exists():
        # Write a private temporary file, then link it into place: concurrent first starts
        # agree on one value (the loser of the race reads the winner's).
        tmp = folder / f".{name}.{os.getpid()}.{_secrets.token_hex(4)}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(_secrets.token_urlsafe(32))
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
    return path.read_text().strip()
