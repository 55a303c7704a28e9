"""Automation fan-out is bounded per incoming event: each run knows the incoming event
its event comes from and how many `track` steps lie between them, and
event_derivations counts the events automations recorded from each incoming event.

Runs made before this came from incoming events: their own event is their origin. On
SQLite the runs table is rebuilt AUTOINCREMENT, as 0012 made it, and keeps the highest id
it ever gave (sqlite_sequence), so no run id is given twice.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-05 12:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("automation_runs") as batch:
        batch.add_column(sa.Column("origin_event_id", BIG_ID, nullable=True))
        batch.add_column(sa.Column("depth", sa.Integer(), server_default="0", nullable=False))
    op.execute("UPDATE automation_runs SET origin_event_id = event_id")
    bind = op.get_bind()
    given = None
    if bind.dialect.name == "sqlite":
        given = bind.scalar(
            sa.text("SELECT seq FROM sqlite_sequence WHERE name = 'automation_runs'")
        )
    # SQLite rebuilds the table for NOT NULL: from the reflected table, which does not
    # carry AUTOINCREMENT
    with op.batch_alter_table(
        "automation_runs", table_kwargs={"sqlite_autoincrement": True}
    ) as batch:
        batch.alter_column("origin_event_id", existing_type=BIG_ID, nullable=False)
    if given is not None:
        op.execute(
            sa.text(
                "UPDATE sqlite_sequence SET seq = max(seq, :given) WHERE name = 'automation_runs'"
            ).bindparams(given=given)
        )
    op.create_table(
        "event_derivations",
        sa.Column("account_id", BIG_ID, nullable=False),
        sa.Column("origin_event_id", BIG_ID, nullable=False),
        sa.Column("derived", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
            name=op.f("fk_event_derivations_account_id_accounts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("account_id", "origin_event_id", name=op.f("pk_event_derivations")),
    )


def downgrade() -> None:
    op.drop_table("event_derivations")
    with op.batch_alter_table("automation_runs") as batch:
        batch.drop_column("depth")
        batch.drop_column("origin_event_id")
