"""Alembic, one migration history per service (each with its own version table)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import MetaData

from charter import config
from charter.db import make_engine


def alembic_config(service: str, migrations_dir: Path, url: str | None = None) -> Config:
    """An Alembic config for one service, without an ini file."""
    cfg = Config()
    cfg.set_main_option("script_location", str(migrations_dir))
    cfg.set_main_option("sqlalchemy.url", url or config.database_url(service))
    cfg.attributes["service"] = service
    return cfg


def upgrade(service: str, migrations_dir: Path, url: str | None = None) -> None:
    """Bring a service's database to the newest revision."""
    command.upgrade(alembic_config(service, migrations_dir, url), "head")


def run_env(metadata: MetaData) -> None:
    """Body of every service's ``migrations/env.py`` (online mode only)."""
    from alembic import context

    cfg = context.config
    service = cfg.attributes.get("service") or cfg.get_main_option("service") or "charter"
    engine = make_engine(cfg.get_main_option("sqlalchemy.url") or "")
    with engine.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=metadata,
            version_table=f"alembic_version_{service}",
            render_as_batch=connection.dialect.name == "sqlite",
        )
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()
