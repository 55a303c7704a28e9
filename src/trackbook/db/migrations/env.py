"""Alembic environment: runs migrations through the same async drivers as the app."""

from __future__ import annotations

import asyncio
from typing import Any

from alembic import context
from sqlalchemy import Connection, pool
from sqlalchemy.ext.asyncio import create_async_engine

from trackbook.db.partitions import is_partition
from trackbook.db.tables import metadata
from trackbook.settings import load_settings

config = context.config


def _url() -> str:
    configured = config.get_main_option("sqlalchemy.url")
    return configured or load_settings().database_url


def _include(_object: Any, name: str | None, type_: str, reflected: bool, compare_to: Any) -> bool:
    """The month partitions of events exist only in the database, made by partitions.py."""
    return not (type_ == "table" and reflected and compare_to is None and is_partition(name or ""))


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        include_object=_include,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
        compare_server_default=True,
    )
    with context.begin_transaction():
        context.run_migrations()


async def _run_online() -> None:
    engine = create_async_engine(_url(), poolclass=pool.NullPool)
    async with engine.connect() as connection:
        await connection.run_sync(_run)
    await engine.dispose()


if context.is_offline_mode():
    context.configure(url=_url(), target_metadata=metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()
else:
    asyncio.run(_run_online())
