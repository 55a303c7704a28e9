"""Events and their counters reference their contact by (account_id, contact_id); their
separate foreign keys to accounts, and the one of event_message_ids, go.

Every event and counter row paid two referential checks, one of them a share lock on
its account's row, taken again for every row of a group: on PostgreSQL those checks
were most of the time of writing an event (issue 9). One key on (account_id,
contact_id) is checked once per row and says more than the two did: the contact
belongs to the same account as the event. Deleting an account still deletes its
events and counters, through its contacts. A message-id key row is deleted with its
event (erasure deletes both), so its own key to accounts only cost time.

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

SCOPED = ("events", "event_summaries")


def upgrade() -> None:
    with op.batch_alter_table("contacts") as batch:
        batch.create_unique_constraint(op.f("uq_contacts_account_id_id"), ["account_id", "id"])
    for table in SCOPED:
        with op.batch_alter_table(table) as batch:
            batch.drop_constraint(f"fk_{table}_account_id_accounts", type_="foreignkey")
            batch.drop_constraint(f"fk_{table}_contact_id_contacts", type_="foreignkey")
            batch.create_foreign_key(
                op.f(f"fk_{table}_account_id_contacts"),
                "contacts",
                ["account_id", "contact_id"],
                ["account_id", "id"],
                ondelete="CASCADE",
            )
    with op.batch_alter_table("event_message_ids") as batch:
        batch.drop_constraint("fk_event_message_ids_account_id_accounts", type_="foreignkey")


def downgrade() -> None:
    with op.batch_alter_table("event_message_ids") as batch:
        batch.create_foreign_key(
            "fk_event_message_ids_account_id_accounts",
            "accounts",
            ["account_id"],
            ["id"],
            ondelete="CASCADE",
        )
    for table in SCOPED:
        with op.batch_alter_table(table) as batch:
            batch.drop_constraint(f"fk_{table}_account_id_contacts", type_="foreignkey")
            batch.create_foreign_key(
                f"fk_{table}_account_id_accounts",
                "accounts",
                ["account_id"],
                ["id"],
                ondelete="CASCADE",
            )
            batch.create_foreign_key(
                f"fk_{table}_contact_id_contacts",
                "contacts",
                ["contact_id"],
                ["id"],
                ondelete="CASCADE",
            )
    with op.batch_alter_table("contacts") as batch:
        batch.drop_constraint("uq_contacts_account_id_id", type_="unique")
