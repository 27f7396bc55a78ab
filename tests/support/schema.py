"""Migrations against models: one check every service's schema test shares."""

from __future__ import annotations

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import MetaData, inspect

from charter import migrations
from tests.support.databases import migrated_database, migrations_dir


def assert_migrations_match_models(service: str, url: str, metadata: MetaData) -> set[str]:
    """Upgrade ``url`` to ``service``'s head, compare it with ``metadata``, go down and up.

    Fails when Alembic's autogenerate finds any difference between the migrated schema and
    the models, or when downgrading to ``base`` leaves a table behind. Returns the table
    names at head (the version table included) for the caller's own expectations.
    """
    version_table = f"alembic_version_{service}"
    db = migrated_database(service, url)
    try:
        tables = set(inspect(db.engine).get_table_names())
        with db.engine.connect() as conn:
            ctx = MigrationContext.configure(conn, opts={"version_table": version_table})
            diff = [d for d in compare_metadata(ctx, metadata)
                    if not (d[0] == "remove_table" and d[1].name.startswith("alembic_version"))]
        assert diff == [], f"{service}: migrations differ from the models: {diff}"
        config = migrations.alembic_config(service, migrations_dir(service), url)
        command.downgrade(config, "base")
        left = set(inspect(db.engine).get_table_names()) - {version_table}
        assert left == set(), f"{service}: downgrade to base left {sorted(left)}"
        command.upgrade(config, "head")  # and back up again
    finally:
        db.dispose()
    return tables
