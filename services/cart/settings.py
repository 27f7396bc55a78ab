"""The cart service's settings, parsed and checked in one place (see :mod:`charter.config`)."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field, SecretStr

from charter.config import ComponentSettings


class CartConfig(ComponentSettings):
    """``CART_CLIENT_SECRET`` (its OAuth client, required outside development mode) and
    ``CATALOG_TIMEOUT`` seconds for calls to catalog."""

    component: ClassVar[str] = "cart"
    required_secrets: ClassVar[tuple[str, ...]] = ("cart_client_secret",)

    cart_database_url: str | None = None
    cart_client_secret: SecretStr | None = None
    catalog_timeout: float = Field(2.0, gt=0, allow_inf_nan=False)


def load_config() -> CartConfig:
    """The checked configuration (:class:`charter.config.ConfigError` lists what is wrong)."""
    return CartConfig.load()
