"""INSERT … ON CONFLICT: SQLite and PostgreSQL spell it alike, SQLAlchemy builds it per dialect."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection


def upsert(
    conn: AsyncConnection | sa.Connection, table: sa.Table
) -> postgresql.Insert | sqlite.Insert:
    if conn.dialect.name == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)
