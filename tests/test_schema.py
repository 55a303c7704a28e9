"""The schema comes only from migrations, and the migrations match the tables."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import sqlalchemy as sa

from trackbook.db.engine import Database
from trackbook.db.tables import metadata

ROOT = Path(__file__).resolve().parent.parent


def test_alembic_upgrade_head_and_check_on_an_empty_database(empty_database_url: str) -> None:
    env = {**os.environ, "TRACKBOOK_DATABASE_URL": empty_database_url}
    for command in (["alembic", "upgrade", "head"], ["alembic", "check"]):
        result = subprocess.run(
            command, cwd=ROOT, env=env, capture_output=True, text=True, check=False, timeout=120
        )
        assert result.returncode == 0, result.stdout + result.stderr
    assert "No new upgrade operations detected" in result.stdout + result.stderr


def test_every_unique_key_leads_with_account_id() -> None:
    for table in metadata.sorted_tables:
        if table.name == "accounts":
            continue
        assert "account_id" in table.c, table.name
        for constraint in table.constraints:
            if isinstance(constraint, sa.UniqueConstraint | sa.PrimaryKeyConstraint):
                columns = [column.name for column in constraint.columns]
                assert columns == ["id"] or columns[0] == "account_id", (table.name, columns)


def test_migrations_are_dated_and_explained() -> None:
    versions = ROOT / "src" / "trackbook" / "db" / "migrations" / "versions"
    for path in versions.glob("*.py"):
        assert path.name[:11].replace("_", "").isdigit(), path.name
        assert path.read_text().startswith('"""'), path.name


async def test_sqlite_runs_in_wal_mode(database_url: str) -> None:
    db = Database(database_url)
    try:
        async with db.read() as conn:
            if conn.dialect.name != "sqlite":
                return
            mode = await conn.scalar(sa.text("PRAGMA journal_mode"))
    finally:
        await db.dispose()
    assert mode == "wal"


async def test_the_tables_declared_autoincrement_are_so_on_sqlite(database_url: str) -> None:
    """`alembic check` does not compare sqlite_autoincrement; this test does. Ids that
    leave the server are never given twice (tests/test_ids.py)."""
    declared = {
        table.name
        for table in metadata.sorted_tables
        if table.dialect_options["sqlite"]["autoincrement"]
    }
    shown = {"contacts", "events", "lists", "segments", "automations", "webhook_endpoints"}
    assert shown <= declared
    db = Database(database_url)
    try:
        async with db.read() as conn:
            if conn.dialect.name != "sqlite":
                return
            found = await conn.scalars(
                sa.text("SELECT name FROM sqlite_master WHERE sql LIKE '%AUTOINCREMENT%'")
            )
            assert set(found) == declared
    finally:
        await db.dispose()


async def test_sqlite_connections_overwrite_what_is_deleted(database_url: str) -> None:
    db = Database(database_url)
    if not db.is_sqlite:
        await db.dispose()
        pytest.skip("a SQLite setting")
    try:
        async with db.read() as reader, db.transaction() as writer:
            settings = [
                await conn.scalar(sa.text("PRAGMA secure_delete")) for conn in (reader, writer)
            ]
        settings.append(await db.run_transaction(_secure_delete))
        settings.append(await db.run_query(_secure_delete))
    finally:
        await db.dispose()
    assert settings == [1, 1, 1, 1]


def _secure_delete(conn: sa.Connection) -> object:
    return conn.scalar(sa.text("PRAGMA secure_delete"))
