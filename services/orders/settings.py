"""The orders service's settings, parsed and checked in one place (see :mod:`charter.config`)."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field, SecretStr

from charter.config import ComponentSettings


class OrdersConfig(ComponentSettings):
    """``ORDERS_CLIENT_SECRET`` (required outside development mode), ``<SERVICE>_TIMEOUT``
    seconds per dependency, ``ORDERS_RECOVERY_INTERVAL`` (0 = recover only at start),
    ``ORDERS_CHECKOUT_DEADLINE`` (seconds a checkout may wait for unreachable services
    before it is compensated), ``ORDERS_SAGA_WORKERS`` (checkouts run at once per
    process) and ``ORDERS_MAX_WAITING`` (checkout requests per process that may wait for
    their saga, ``Prefer: wait``; each holds a request thread)."""

    component: ClassVar[str] = "orders"
    required_secrets: ClassVar[tuple[str, ...]] = ("orders_client_secret",)

    orders_database_url: str | None = None
    orders_client_secret: SecretStr | None = None
    orders_recovery_interval: float = Field(30.0, ge=0, allow_inf_nan=False)
    catalog_timeout: float = Field(2.0, gt=0, allow_inf_nan=False)
    cart_timeout: float = Field(2.0, gt=0, allow_inf_nan=False)
    payments_timeout: float = Field(2.0, gt=0, allow_inf_nan=False)
    exchange_timeout: float = Field(2.0, gt=0, allow_inf_nan=False)
    orders_checkout_deadline: float = Field(60.0, gt=0, allow_inf_nan=False)
    orders_saga_workers: int = Field(8, ge=1, le=64)
    orders_max_waiting: int = Field(16, ge=0, le=256)


def load_config() -> OrdersConfig:
    """The checked configuration (:class:`charter.config.ConfigError` lists what is wrong)."""
    return OrdersConfig.load()
