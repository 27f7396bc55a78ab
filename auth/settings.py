"""Settings of the authorization server, read from the environment (see ``charter.config``)."""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass

from charter import config

log = logging.getLogger(__name__)

SESSION_SECRET_FILE = "auth-session-secret"


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
    service_clients: frozenset[str] = frozenset({"charter-internal"})

    def url(self, path: str) -> str:
        """An absolute URL under the issuer."""
        return f"{self.issuer}{path}"


def _int(name: str, default: int) -> int:
    raw = config.env(name)
    try:
        return int(raw) if raw is not None else default
    except ValueError as exc:
        raise config.ConfigError(f"{name} must be an integer") from exc


def session_secret() -> str:
    """``AUTH_SESSION_SECRET``; in embedded mode a random secret kept under the var dir."""
    value = config.env("AUTH_SESSION_SECRET")
    if value:
        return value
    if not config.is_embedded():
        raise config.ConfigError("AUTH_SESSION_SECRET must be set in production")
    path = config.var_dir() / SESSION_SECRET_FILE
    if not path.exists():
        path.touch(mode=0o600)
        path.write_text(secrets.token_urlsafe(48))
        log.info("created a development session secret under the var dir")
    return path.read_text().strip()


def load_settings() -> Settings:
    """Settings from the environment."""
    shared = config.auth_settings()
    return Settings(
        issuer=shared.issuer,
        audience=shared.audience,
        session_secret=session_secret(),
        access_token_ttl=_int("AUTH_ACCESS_TOKEN_TTL", 900),
        refresh_token_ttl=_int("AUTH_REFRESH_TOKEN_TTL", 14 * 24 * 3600),
        code_ttl=_int("AUTH_CODE_TTL", 300),
        leeway=shared.leeway,
        secure_cookies=shared.issuer.startswith("https://"),
        service_clients=frozenset(
            c.strip()
            for c in (config.env("AUTH_SERVICE_CLIENTS", "charter-internal") or "").split(",")
            if c.strip()
        ),
    )
