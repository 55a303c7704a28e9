"""Events partitioned by month on PostgreSQL; message ids kept unique in a table of their own.

A partitioned table can only enforce unique keys that include the partition key, so the
per-account uniqueness of message_id moves from `events` to `event_message_ids` (on both
databases, so that both run the same code). On PostgreSQL `events` is rebuilt as a table
partitioned by range of occurred_at, with month partitions from the oldest event to three
months ahead and a default partition; its rows are copied over in this migration.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-23 11:20:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

from trackbook.db.partitions import DEFAULT, ensure_partitions

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BIGID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
COLUMNS = (
    "id, account_id, contact_id, name, title, value, properties, source, message_id, "
    "list_id, occurred_at, received_at"
)


def upgrade() -> None:
    op.create_table(
        "event_message_ids",
        sa.Column("account_id", BIGID, nullable=False),
        sa.Column("message_id", sa.String(length=255), nullable=False),
        sa.Column("event_id", BIGID, nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
            name=op.f("fk_event_message_ids_account_id_accounts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("account_id", "message_id", name=op.f("pk_event_message_ids")),
    )
    op.create_index(
        op.f("ix_event_message_ids_event_id"), "event_message_ids", ["event_id"], unique=False
    )
    op.execute(
        "INSERT INTO event_message_ids (account_id, message_id, event_id) "
        "SELECT account_id, message_id, id FROM events WHERE message_id IS NOT NULL"
    )
    if op.get_bind().dialect.name == "postgresql":
        _partition()
    else:
        with op.batch_alter_table("events") as batch_op:
            batch_op.drop_constraint("uq_events_account_id_message_id", type_="unique")


def _partition() -> None:
    bind = op.get_bind()
    op.execute("ALTER TABLE events RENAME TO events_unpartitioned")
    for old in ("pk_events", "uq_events_account_id_message_id"):
        op.execute(f"ALTER TABLE events_unpartitioned RENAME CONSTRAINT {old} TO {old}_old")
    for old in ("ix_events_timeline", "ix_events_name"):
        op.execute(f"ALTER INDEX {old} RENAME TO {old}_old")
    for old in ("account_id_accounts", "contact_id_contacts", "list_id_lists"):
        op.execute(
            f"ALTER TABLE events_unpartitioned RENAME CONSTRAINT fk_events_{old} "
            f"TO fk_events_{old}_old"
        )
    op.execute(
        """
        CREATE TABLE events (
            id BIGINT NOT NULL DEFAULT nextval('events_id_seq'),
            account_id BIGINT NOT NULL,
            contact_id BIGINT NOT NULL,
            name VARCHAR(255) NOT NULL,
            title VARCHAR(255),
            value TEXT,
            properties JSONB,
            source VARCHAR(32) NOT NULL,
            message_id VARCHAR(255),
            list_id BIGINT,
            occurred_at TIMESTAMP WITH TIME ZONE NOT NULL,
            received_at TIMESTAMP WITH TIME ZONE NOT NULL,
            CONSTRAINT pk_events PRIMARY KEY (id, occurred_at),
            CONSTRAINT fk_events_account_id_accounts FOREIGN KEY (account_id)
                REFERENCES accounts (id) ON DELETE CASCADE,
            CONSTRAINT fk_events_contact_id_contacts FOREIGN KEY (contact_id)
                REFERENCES contacts (id) ON DELETE CASCADE,
            CONSTRAINT fk_events_list_id_lists FOREIGN KEY (list_id)
                REFERENCES lists (id) ON DELETE SET NULL
        ) PARTITION BY RANGE (occurred_at)
        """
    )
    op.execute(
        "CREATE INDEX ix_events_timeline ON events (account_id, contact_id, occurred_at, id)"
    )
    op.execute("CREATE INDEX ix_events_name ON events (account_id, name, occurred_at)")
    op.execute(f"CREATE TABLE {DEFAULT} PARTITION OF events DEFAULT")
    oldest = bind.scalar(sa.text("SELECT min(occurred_at) FROM events_unpartitioned"))
    now = datetime.now(UTC)
    ensure_partitions(bind, now, since=oldest.date() if oldest is not None else None)
    op.execute(f"INSERT INTO events ({COLUMNS}) SELECT {COLUMNS} FROM events_unpartitioned")
    op.execute("ALTER SEQUENCE events_id_seq OWNED BY events.id")
    op.execute("DROP TABLE events_unpartitioned")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE events RENAME TO events_partitioned")
        op.execute("ALTER TABLE events_partitioned RENAME CONSTRAINT pk_events TO pk_events_p")
        op.execute("ALTER INDEX ix_events_timeline RENAME TO ix_events_timeline_p")
        op.execute("ALTER INDEX ix_events_name RENAME TO ix_events_name_p")
        for fk in ("account_id_accounts", "contact_id_contacts", "list_id_lists"):
            op.execute(
                f"ALTER TABLE events_partitioned RENAME CONSTRAINT fk_events_{fk} "
                f"TO fk_events_{fk}_p"
            )
        op.execute(
            "CREATE TABLE events (LIKE events_partitioned INCLUDING DEFAULTS, "
            "CONSTRAINT pk_events PRIMARY KEY (id), "
            "CONSTRAINT uq_events_account_id_message_id UNIQUE (account_id, message_id), "
            "CONSTRAINT fk_events_account_id_accounts FOREIGN KEY (account_id) "
            "REFERENCES accounts (id) ON DELETE CASCADE, "
            "CONSTRAINT fk_events_contact_id_contacts FOREIGN KEY (contact_id) "
            "REFERENCES contacts (id) ON DELETE CASCADE, "
            "CONSTRAINT fk_events_list_id_lists FOREIGN KEY (list_id) "
            "REFERENCES lists (id) ON DELETE SET NULL)"
        )
        op.execute(
            "CREATE INDEX ix_events_timeline ON events (account_id, contact_id, occurred_at, id)"
        )
        op.execute("CREATE INDEX ix_events_name ON events (account_id, name, occurred_at)")
        op.execute(f"INSERT INTO events ({COLUMNS}) SELECT {COLUMNS} FROM events_partitioned")
        op.execute("ALTER SEQUENCE events_id_seq OWNED BY events.id")
        op.execute("DROP TABLE events_partitioned")
    else:
        with op.batch_alter_table("events") as batch_op:
            batch_op.create_unique_constraint(
                "uq_events_account_id_message_id", ["account_id", "message_id"]
            )
    op.drop_index(op.f("ix_event_message_ids_event_id"), table_name="event_message_ids")
    op.drop_table("event_message_ids")
