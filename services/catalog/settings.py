"""The catalog service's settings, parsed and checked in one place (see :mod:`charter.config`)."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from charter.config import ComponentSettings

from .events import DEFAULT_LOW_STOCK_THRESHOLD


class CatalogConfig(ComponentSettings):
    """The shared settings (``CACHE_TTL_SECONDS`` included), ``CATALOG_DATABASE_URL``,
    ``CATALOG_DATABASE_READ_URL`` (optional PostgreSQL standby for read-only use cases) and
    ``CATALOG_LOW_STOCK_THRESHOLD`` (``catalog.LowStock`` when available units drop to or
    below it; a whole number from 0 to 1,000,000, default 5)."""

    component: ClassVar[str] = "catalog"

    catalog_database_url: str | None = None
    catalog_database_read_url: str | None = Field(None, pattern=r"^postgresql(\+psycopg)?://")
    catalog_low_stock_threshold: int = Field(DEFAULT_LOW_STOCK_THRESHOLD, ge=0, le=1_000_000)


def load_config() -> CatalogConfig:
    """The checked configuration (:class:`charter.config.ConfigError` lists what is wrong)."""
    return CatalogConfig.load()
