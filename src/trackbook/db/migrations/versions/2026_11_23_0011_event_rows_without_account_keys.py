"""Events, their counters and their message-id keys lose their foreign keys to accounts.

Every event and counter row paid two referential checks, one to its contact and one to
its account, and the account's was a share lock on the same account row taken again
for every row of a group: on PostgreSQL those checks were most of the time of writing
an event (issue 9). The key to the contact stays, and a contact belongs to one account,
so deleting an account still deletes its events and counters through its contacts. A
message-id key row is deleted with its event (erasure deletes both).

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-23 16:20:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES = ("events", "event_summaries", "event_message_ids")


def upgrade() -> None:
    for table in TABLES:
        with op.batch_alter_table(table) as batch:
            batch.drop_constraint(f"fk_{table}_account_id_accounts", type_="foreignkey")


def downgrade() -> None:
    for table in TABLES:
        with op.batch_alter_table(table) as batch:
            batch.create_foreign_key(
                f"fk_{table}_account_id_accounts",
                "accounts",
                ["account_id"],
                ["id"],
                ondelete="CASCADE",
            )
