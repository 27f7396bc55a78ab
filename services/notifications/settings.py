"""Settings of the notifications service, parsed and checked here (see :mod:`charter.config`)."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field, SecretStr, field_validator

from charter.config import ComponentSettings, ConfigError

from .domain import Channel, InvalidNotification, normalise_recipient

DEVELOPMENT_STAFF_ADDRESS = "staff@charter.local"


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
    notifications_staff_address: str | None = None

    @field_validator("notifications_staff_address")
    @classmethod
    def _staff_address(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        try:
            return normalise_recipient(Channel.EMAIL, value)
        except InvalidNotification as exc:
            raise ValueError(str(exc)) from exc

    def staff_address(self) -> str:
        """Where staff alerts (low stock) go: ``NOTIFICATIONS_STAFF_ADDRESS``; in development
        mode ``staff@charter.local`` when unset; else :class:`ConfigError` (fail closed)."""
        if self.notifications_staff_address:
            return self.notifications_staff_address
        if not self.development:
            raise ConfigError(STAFF_ADDRESS_MISSING)
        return DEVELOPMENT_STAFF_ADDRESS


STAFF_ADDRESS_MISSING = ("NOTIFICATIONS_STAFF_ADDRESS must be set outside development mode "
                         "(the e-mail address staff alerts such as low stock go to)")


def load_config() -> NotificationsConfig:
    """The checked configuration (:class:`charter.config.ConfigError` lists what is wrong)."""
    return NotificationsConfig.load()
