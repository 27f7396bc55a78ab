"""Settings of the authorization server, parsed and checked by :class:`AuthConfig`.

Outside development mode auth refuses to start without an ``https`` ``AUTH_ISSUER``,
``AUTH_SESSION_SECRET`` (never a known development value), its database URL; its cookies
are ``Secure``. In development mode the session secret is generated once under the var
dir (:func:`charter.config.secret`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from pydantic import Field, SecretStr

from auth import passwords
from auth.passwords import Argon2Params
from auth.throttle import Backoff, ThrottleSettings
from charter import config
from charter.config import ComponentSettings
from charter.security.client_ip import NetworkList

SESSION_SECRET_VAR = "AUTH_SESSION_SECRET"


class AuthConfig(ComponentSettings):
    """``AUTH_*`` variables (and the shared ones of :class:`charter.config.CharterSettings`)."""

    component: ClassVar[str] = "auth"
    required_secrets: ClassVar[tuple[str, ...]] = ("auth_session_secret",)
    uses_pki: ClassVar[bool] = False  # browser-facing, plain HTTP behind the TLS proxy

    auth_database_url: str | None = None
    auth_session_secret: SecretStr | None = None
    auth_access_token_ttl: int = Field(900, gt=0)
    auth_refresh_token_ttl: int = Field(14 * 24 * 3600, gt=0)
    auth_code_ttl: int = Field(300, gt=0)
    auth_auto_migrate: bool = True
    auth_cors_origins: str | None = None
    swagger_ui_redirect_uris: str | None = None
    # Brute-force limits (auth.throttle): trusted proxies as CIDRs, back-off thresholds.
    auth_trusted_proxies: NetworkList = ()
    auth_login_free_attempts: int = Field(5, ge=1)
    auth_ip_free_attempts: int = Field(50, ge=1)
    auth_account_free_attempts: int = Field(100, ge=1)
    auth_max_backoff: int = Field(900, gt=0)
    auth_hashing_concurrency: int = Field(4, ge=1)
    # Argon2id cost (auth.passwords): production defaults; lower only in development mode.
    auth_argon2_time_cost: int = Field(passwords.PRODUCTION.time_cost, ge=1, le=100)
    auth_argon2_memory_cost: int = Field(passwords.PRODUCTION.memory_cost, ge=8,
                                         le=4 * 1024 * 1024)
    auth_argon2_parallelism: int = Field(passwords.PRODUCTION.parallelism, ge=1, le=64)
    # Secrets of the seeded clients and demo users, checked against the known dev values.
    demo_cli_secret: SecretStr | None = None
    demo_alice_password: SecretStr | None = None
    demo_staff_password: SecretStr | None = None
    demo_admin_password: SecretStr | None = None

    def argon2_params(self) -> Argon2Params:
        """The password-hashing cost (``AUTH_ARGON2_*``)."""
        return Argon2Params(time_cost=self.auth_argon2_time_cost,
                            memory_cost=self.auth_argon2_memory_cost,
                            parallelism=self.auth_argon2_parallelism)

    def problems(self) -> list[str]:
        found = super().problems()
        return found + passwords.problems(self.argon2_params(), development=self.development)

    def cors_origins(self) -> set[str]:
        """``AUTH_CORS_ORIGINS``, comma-separated, without trailing slashes."""
        raw = self.auth_cors_origins or ""
        return {o.strip().rstrip("/") for o in raw.split(",") if o.strip()}


@dataclass(frozen=True)
class Settings:
    """What the authorization server needs besides its database."""

    issuer: str
    audience: str
    session_secret: str
    access_token_ttl: int = 900
    refresh_token_ttl: int = 14 * 24 * 3600
    code_ttl: int = 300
    leeway: int = 30
    secure_cookies: bool = False
    throttle: ThrottleSettings = field(default_factory=ThrottleSettings)
    # Argon2id cost the app installs (auth.passwords.configure); None keeps the process's.
    password_hashing: Argon2Params | None = None

    def url(self, path: str) -> str:
        """An absolute URL under the issuer."""
        return f"{self.issuer}{path}"


def session_secret() -> str:
    """``AUTH_SESSION_SECRET``; in development mode a random secret kept under the var dir."""
    return config.secret(SESSION_SECRET_VAR)


def load_config() -> AuthConfig:
    """The parsed, checked configuration (:class:`charter.config.ConfigError` if not)."""
    return AuthConfig.load()


def load_settings(cfg: AuthConfig | None = None) -> Settings:
    """Settings from the environment (checked: see :class:`AuthConfig`)."""
    cfg = cfg or load_config()
    issuer = cfg.issuer()
    return Settings(
        issuer=issuer,
        audience=cfg.auth_audience,
        session_secret=cfg.secret_value("auth_session_secret"),
        access_token_ttl=cfg.auth_access_token_ttl,
        refresh_token_ttl=cfg.auth_refresh_token_ttl,
        code_ttl=cfg.auth_code_ttl,
        leeway=cfg.auth_leeway,
        secure_cookies=not cfg.development or issuer.startswith("https://"),
        throttle=throttle_settings(cfg),
        password_hashing=cfg.argon2_params(),
    )


def throttle_settings(cfg: AuthConfig) -> ThrottleSettings:
    """The brute-force limits (see :mod:`auth.throttle`)."""
    cap = float(cfg.auth_max_backoff)
    return ThrottleSettings(
        trusted_proxies=cfg.auth_trusted_proxies,
        account_ip=Backoff(free=cfg.auth_login_free_attempts, cap=cap),
        ip=Backoff(free=cfg.auth_ip_free_attempts, cap=cap),
        account=Backoff(free=cfg.auth_account_free_attempts, cap=min(cap, 60.0)),
        hashing_concurrency=cfg.auth_hashing_concurrency,
        redis_url=cfg.redis_url,
    )
