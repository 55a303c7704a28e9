"""Dropped events keep whom they name (email, external id, anonymous id) in columns of
their own, filled in for the rows already there from their payloads.

Export and erasure of a contact matched dropped events by text anywhere in the JSON
payload: `bob@ex.com` matched `mallory.bob@ex.com`, and external id `7` matched a
message whose `messageId` was "7" (issue 22, finding 8). They now match these columns
exactly.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-05 10:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
COLUMNS = {"email": 320, "external_id": 255, "anonymous_id": 255}
BATCH = 1000


def upgrade() -> None:
    with op.batch_alter_table("dropped_events") as batch:
        for name, length in COLUMNS.items():
            batch.add_column(sa.Column(name, sa.String(length=length), nullable=True))
    for name in COLUMNS:
        op.create_index(
            op.f(f"ix_dropped_events_account_id_{name}"),
            "dropped_events",
            ["account_id", name],
            unique=False,
        )
    _fill_in()


def downgrade() -> None:
    for name in COLUMNS:
        op.drop_index(op.f(f"ix_dropped_events_account_id_{name}"), table_name="dropped_events")
    with op.batch_alter_table("dropped_events") as batch:
        for name in COLUMNS:
            batch.drop_column(name)


def _text(value: Any, limit: int) -> str | None:
    if isinstance(value, bool) or not isinstance(value, str | int):
        return None
    text = str(value).strip()
    return text if 0 < len(text) <= limit and "\x00" not in text else None


def _object(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _naming(source: str, payload: Any) -> dict[str, str | None]:
    """Whom a payload names, as the dialects that dropped events until now wrote them:
    ActiveCampaign's `visit[email]`; Segment's message under `message` (userId,
    anonymousId or an alias call's previousId, and traits.email of an identify call or
    context.traits.email)."""
    payload = _object(payload)
    if source == "activecampaign":
        email = _text(_object(payload.get("visit")).get("email"), 320)
        return {"email": email and email.lower()}
    if source != "segment":
        return {}
    message = _object(payload.get("message"))
    kind = message.get("type")
    email = None
    for traits in (
        message.get("traits") if kind == "identify" else None,
        _object(message.get("context")).get("traits"),
    ):
        email = _text(_object(traits).get("email"), 320)
        if email is not None:
            break
    anonymous = message.get("previousId") if kind == "alias" else message.get("anonymousId")
    return {
        "email": email and email.lower(),
        "external_id": _text(message.get("userId"), 255),
        "anonymous_id": _text(anonymous, 255),
    }


def _fill_in() -> None:
    connection = op.get_bind()
    table = sa.table(
        "dropped_events",
        sa.column("id", sa.BigInteger()),
        sa.column("source", sa.String()),
        sa.column("payload", JSON),
        *(sa.column(name, sa.String()) for name in COLUMNS),
    )
    after = 0
    while True:
        rows = connection.execute(
            sa.select(table.c.id, table.c.source, table.c.payload)
            .where(table.c.id > after)
            .order_by(table.c.id)
            .limit(BATCH)
        ).all()
        if not rows:
            return
        for row in rows:
            naming = {
                name: value for name, value in _naming(row.source, row.payload).items() if value
            }
            if naming:
                connection.execute(table.update().where(table.c.id == row.id).values(**naming))
        after = rows[-1].id
