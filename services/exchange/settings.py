"""The exchange service's settings, parsed and checked in one place (see :mod:`charter.config`)."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from charter.config import ComponentSettings


class ExchangeConfig(ComponentSettings):
    """The upstream rate source (``EXCHANGE_UPSTREAM_URL``, else the rate table), its timeout
    and the cache's TTL and stale-retry seconds."""

    component: ClassVar[str] = "exchange"

    exchange_database_url: str | None = None
    exchange_upstream_url: str | None = None
    exchange_upstream_timeout: float = Field(2.0, gt=0, allow_inf_nan=False)
    exchange_cache_ttl: float = Field(60.0, gt=0, allow_inf_nan=False)
    exchange_stale_retry: float = Field(5.0, gt=0, allow_inf_nan=False)


def load_config() -> ExchangeConfig:
    """The checked configuration (:class:`charter.config.ConfigError` lists what is wrong)."""
    return ExchangeConfig.load()
