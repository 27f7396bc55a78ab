"""Settings of the notifications service, parsed and checked here (see :mod:`charter.config`)."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field, SecretStr

from charter.config import ComponentSettings


class NotificationsConfig(ComponentSettings):
    """The file sink's path and the SMTP server (email goes to SMTP when ``SMTP_HOST`` is
    set); ``SMTP_PASSWORD`` is a secret (never a known development value outside
    development mode)."""

    component: ClassVar[str] = "notifications"

    notifications_database_url: str | None = None
    notifications_outbox_path: str | None = None
    smtp_host: str | None = None
    smtp_port: int | None = Field(None, gt=0, lt=65536)
    smtp_user: str | None = None
    smtp_password: SecretStr | None = None
    smtp_from: str | None = None
    smtp_starttls: bool = False
    smtp_timeout: float = Field(10.0, gt=0, allow_inf_nan=False)
    smtp_ca_file: str | None = None


def load_config() -> NotificationsConfig:
    """The checked configuration (:class:`charter.config.ConfigError` lists what is wrong)."""
    return NotificationsConfig.load()
