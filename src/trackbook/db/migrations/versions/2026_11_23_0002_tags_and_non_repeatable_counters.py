"""Tags, and counters of their own for non-repeatable events.

FluentCRM's repeatable=false adds a new counter row every time, so the counter's unique
key gains a series: 0 for the shared counter, the event id for a row of its own.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23 09:41:57.249499
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "tags",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column(
            "account_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
            name=op.f("fk_tags_account_id_accounts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tags")),
        sa.UniqueConstraint("account_id", "name", name=op.f("uq_tags_account_id_name")),
    )
    op.create_table(
        "contact_tags",
        sa.Column(
            "account_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("tag_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column(
            "contact_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
            name=op.f("fk_contact_tags_account_id_accounts"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["contact_id"],
            ["contacts.id"],
            name=op.f("fk_contact_tags_contact_id_contacts"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["tag_id"], ["tags.id"], name=op.f("fk_contact_tags_tag_id_tags"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("account_id", "tag_id", "contact_id", name=op.f("pk_contact_tags")),
    )
    op.create_index(
        op.f("ix_contact_tags_contact_id"), "contact_tags", ["contact_id"], unique=False
    )

    with op.batch_alter_table("event_summaries", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("series", sa.BigInteger(), server_default="0", nullable=False)
        )
        batch_op.drop_constraint(
            batch_op.f("uq_event_summaries_account_id_contact_id_name_title"), type_="unique"
        )
        batch_op.create_unique_constraint(
            batch_op.f("uq_event_summaries_account_id_contact_id_name_title_series"),
            ["account_id", "contact_id", "name", "title", "series"],
        )


def downgrade() -> None:
    with op.batch_alter_table("event_summaries", schema=None) as batch_op:
        batch_op.drop_constraint(
            batch_op.f("uq_event_summaries_account_id_contact_id_name_title_series"), type_="unique"
        )
        batch_op.create_unique_constraint(
            batch_op.f("uq_event_summaries_account_id_contact_id_name_title"),
            ["account_id", "contact_id", "name", "title"],
        )
        batch_op.drop_column("series")

    op.drop_index(op.f("ix_contact_tags_contact_id"), table_name="contact_tags")

    op.drop_table("contact_tags")
    op.drop_table("tags")
