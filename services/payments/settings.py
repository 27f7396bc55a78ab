"""The payments service's settings, parsed and checked in one place (see :mod:`charter.config`)."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from charter.config import ComponentSettings


class PaymentsConfig(ComponentSettings):
    """``PAYMENTS_DECLINE_ABOVE``: the simulated provider declines amounts above it (minor
    units)."""

    component: ClassVar[str] = "payments"

    payments_database_url: str | None = None
    payments_decline_above: int = Field(1_000_000, ge=0)


def load_config() -> PaymentsConfig:
    """The checked configuration (:class:`charter.config.ConfigError` lists what is wrong)."""
    return PaymentsConfig.load()
