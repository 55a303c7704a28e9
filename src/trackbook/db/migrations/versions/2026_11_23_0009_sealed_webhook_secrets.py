"""Webhook signing secrets and ActiveCampaign event keys are stored sealed with the
server key, which takes more room.

Those stored before this are sealed when a server next starts (`seal_stored_secrets`
in delivery/webhooks.py and accounts/service.py): the migration does not hold the
server key.

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-23 13:10:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("accounts") as batch_op:
        batch_op.alter_column(
            "event_key", existing_type=sa.String(length=40), type_=sa.String(length=255)
        )
    with op.batch_alter_table("webhook_endpoints") as batch_op:
        batch_op.alter_column(
            "secret", existing_type=sa.String(length=80), type_=sa.String(length=255)
        )


def downgrade() -> None:
    with op.batch_alter_table("accounts") as batch_op:
        batch_op.alter_column(
            "event_key", existing_type=sa.String(length=255), type_=sa.String(length=40)
        )
    with op.batch_alter_table("webhook_endpoints") as batch_op:
        batch_op.alter_column(
            "secret", existing_type=sa.String(length=255), type_=sa.String(length=80)
        )
