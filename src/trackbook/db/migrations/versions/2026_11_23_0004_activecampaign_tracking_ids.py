"""ActiveCampaign site-tracking ids per account, and a phone number per contact.

Accounts that exist already get a random actid (9 digits) and event key (40 hex).

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23 10:10:00
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("accounts", schema=None) as batch_op:
        batch_op.add_column(sa.Column("actid", sa.String(length=9), nullable=True))
        batch_op.add_column(sa.Column("event_key", sa.String(length=40), nullable=True))
    connection = op.get_bind()
    accounts = sa.table("accounts", sa.column("id"), sa.column("actid"), sa.column("event_key"))
    taken: set[str] = set()
    for (account_id,) in connection.execute(sa.select(accounts.c.id)).all():
        actid = str(100_000_000 + secrets.randbelow(900_000_000))
        while actid in taken:
            actid = str(100_000_000 + secrets.randbelow(900_000_000))
        taken.add(actid)
        connection.execute(
            accounts.update()
            .where(accounts.c.id == account_id)
            .values(actid=actid, event_key=secrets.token_hex(20))
        )
    with op.batch_alter_table("accounts", schema=None) as batch_op:
        batch_op.alter_column("actid", existing_type=sa.String(length=9), nullable=False)
        batch_op.alter_column("event_key", existing_type=sa.String(length=40), nullable=False)
        batch_op.create_unique_constraint(batch_op.f("uq_accounts_actid"), ["actid"])
    with op.batch_alter_table("contacts", schema=None) as batch_op:
        batch_op.add_column(sa.Column("phone", sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("contacts", schema=None) as batch_op:
        batch_op.drop_column("phone")
    with op.batch_alter_table("accounts", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("uq_accounts_actid"), type_="unique")
        batch_op.drop_column("event_key")
        batch_op.drop_column("actid")
