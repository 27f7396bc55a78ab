"""Which processes make up the platform, and how to migrate, seed and start each.

Entries name modules by string so the CLI imports only what it starts.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from charter import config


@dataclass(frozen=True)
class Component:
    """One process of the platform."""

    name: str
    package: str  # e.g. "services.catalog" or "auth"
    seed: str | None = None  # "module:function" taking a Database
    has_database: bool = True

    @property
    def asgi_factory(self) -> str:
        """The ``module:function`` uvicorn calls with ``--factory``."""
        return f"{self.package}.app:create_asgi"

    @property
    def migrations_dir(self) -> Path:
        """The Alembic script location of this component."""
        module = importlib.import_module(f"{self.package}.app")
        path: Path = module.MIGRATIONS_DIR
        return path

    @property
    def port(self) -> int:
        """The port it listens on."""
        return config.port(self.name)

    def seed_function(self) -> Any:
        """The seeding function, or ``None``."""
        if not self.seed:
            return None
        module, _, func = self.seed.partition(":")
        return getattr(importlib.import_module(module), func)


COMPONENTS: dict[str, Component] = {
    c.name: c
    for c in (
        Component("auth", "auth", seed="auth.seed:seed"),
        Component("catalog", "services.catalog", seed="services.catalog.seed:seed"),
        Component("cart", "services.cart"),
        Component("orders", "services.orders"),
        Component("payments", "services.payments"),
        Component("exchange", "services.exchange", seed="services.exchange.seed:seed"),
        Component("loyalty", "services.loyalty"),
        Component("notifications", "services.notifications"),
        Component("gateway", "services.gateway", has_database=False),
    )
}


def select(only: str | None) -> list[Component]:
    """The components named in a comma-separated list (all when empty), auth first."""
    if not only:
        return list(COMPONENTS.values())
    names = [n.strip() for n in only.split(",") if n.strip()]
    unknown = [n for n in names if n not in COMPONENTS]
    if unknown:
        raise SystemExit(f"unknown component(s): {', '.join(unknown)}; "
                         f"known: {', '.join(COMPONENTS)}")
    return [c for c in COMPONENTS.values() if c.name in names]


def consumer_subscriptions() -> list[Any]:
    """Every consumer's :class:`charter.messaging.broker.Subscription` on the platform:
    each component's ``<package>.messaging.SUBSCRIPTIONS`` (none without that module)."""
    found: list[Any] = []
    for comp in COMPONENTS.values():
        try:
            module = importlib.import_module(f"{comp.package}.messaging")
        except ModuleNotFoundError as exc:
            if exc.name != f"{comp.package}.messaging":
                raise
            continue
        found.extend(getattr(module, "SUBSCRIPTIONS", ()))
    return found


def consumer_queues() -> list[str]:
    """The queue of every consumer on the platform (see :func:`consumer_subscriptions`)."""
    return [sub.queue for sub in consumer_subscriptions()]
