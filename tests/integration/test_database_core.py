"""charter.db against the real PostgreSQL server and the embedded SQLite default."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from sqlalchemy import Column, Integer, MetaData, String, Table, select, text

from charter.db import Database, ensure_database
from tests.support.databases import database_url, drop_databases

metadata = MetaData()
things = Table("things", metadata, Column("id", Integer, primary_key=True),
               Column("name", String(50), nullable=False, unique=True))


def _exercise(db: Database) -> None:
    metadata.create_all(db.engine)
    with db.session() as s:
        s.execute(things.insert().values(id=1, name="one"))
    with pytest.raises(RuntimeError), db.session() as s:
        s.execute(things.insert().values(id=2, name="two"))
        raise RuntimeError("roll back")
    with db.session() as s:
        assert s.execute(select(things.c.name)).scalars().all() == ["one"]
    db.ping()


@pytest.mark.postgres
def test_unit_of_work_on_postgres(postgres_url: str) -> None:
    db = Database(postgres_url)
    try:
        assert db.engine.dialect.name == "postgresql"
        _exercise(db)
    finally:
        db.dispose()


def test_unit_of_work_on_sqlite(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'nested' / 'x.db'}")
    _exercise(db)
    with db.engine.connect() as conn:
        assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
    db.dispose()


@pytest.mark.postgres
def test_ensure_database_creates_once(postgres_url: str) -> None:
    """``postgres_url`` proves the server answers; the database under test is another."""
    name = f"charter_ensure_{uuid.uuid4().hex[:8]}"
    url = database_url(name)
    try:
        assert ensure_database(url) is True
        assert ensure_database(url) is False
        db = Database(url)
        db.ping()
        db.dispose()
    finally:
        drop_databases([name])
