"""The catalog service's settings, parsed and checked in one place (see :mod:`charter.config`)."""

from __future__ import annotations

from typing import ClassVar

from charter.config import ComponentSettings


class CatalogConfig(ComponentSettings):
    """The shared settings (``CACHE_TTL_SECONDS`` included) and ``CATALOG_DATABASE_URL``."""

    component: ClassVar[str] = "catalog"

    catalog_database_url: str | None = None


def load_config() -> CatalogConfig:
    """The checked configuration (:class:`charter.config.ConfigError` lists what is wrong)."""
    return CatalogConfig.load()
