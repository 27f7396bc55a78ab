"""The loyalty service's settings, parsed and checked in one place (see :mod:`charter.config`)."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from charter.config import ComponentSettings


class LoyaltyConfig(ComponentSettings):
    """``LOYALTY_POINTS_PER_UNIT``: points per whole currency unit of an order (0-1000)."""

    component: ClassVar[str] = "loyalty"

    loyalty_database_url: str | None = None
    loyalty_points_per_unit: int = Field(1, ge=0, le=1000)


def load_config() -> LoyaltyConfig:
    """The checked configuration (:class:`charter.config.ConfigError` lists what is wrong)."""
    return LoyaltyConfig.load()
