"""No id is given twice on SQLite: the tables whose ids leave the server become AUTOINCREMENT.

Without it SQLite gives a new row the largest id in the table plus one, so deleting the
newest contact, list or webhook handed its id to the next one, while other systems still
held the old one (issue 21). PostgreSQL's sequences never go back: nothing to do there.
SQLite cannot add AUTOINCREMENT to a table, so each is rebuilt (copied whole, ids, keys
and indexes kept); sqlite_sequence starts at each table's largest id. Ids of rows deleted
before this migration are not known any more, and may still be given once.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-05 10:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES = (
    "contacts",
    "events",
    "event_summaries",
    "lists",
    "segments",
    "dropped_events",
    "automations",
    "automation_runs",
    "webhook_endpoints",
    "deliveries",
)


def upgrade() -> None:
    _rebuild(autoincrement=True)


def downgrade() -> None:
    _rebuild(autoincrement=False)


def _rebuild(*, autoincrement: bool) -> None:
    bind = op.get_bind()
    if bind.dialect.name != "sqlite":
        return
    # A table is rebuilt by dropping it; with foreign keys enforced, dropping contacts
    # would first delete, by cascade, every row that refers to a contact.
    if bind.scalar(sa.text("PRAGMA foreign_keys")):
        raise RuntimeError("migration 0012 rebuilds tables: run it with PRAGMA foreign_keys=OFF")
    dangling = _dangling(bind)
    for table in TABLES:
        with op.batch_alter_table(
            table, recreate="always", table_kwargs={"sqlite_autoincrement": autoincrement}
        ):
            pass
    lost = _dangling(bind) - dangling
    if lost:
        raise RuntimeError(f"rows lost the row they refer to in the rebuild: {sorted(lost)[:10]}")


def _dangling(bind: sa.Connection) -> set[tuple[str, int, str]]:
    """(table, rowid, referred table) of each row whose foreign key finds no row."""
    found = bind.execute(sa.text("PRAGMA foreign_key_check"))
    return {(table, rowid, referred) for table, rowid, referred, _ in found}
