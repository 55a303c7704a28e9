"""Which automations name a list, segment or webhook endpoint: what may not be deleted
from under them."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from trackbook.db.tables import automations

Names = Callable[[Mapping[str, Any], list[dict[str, Any]]], bool]
"""Whether an automation's (conditions, actions) name the thing."""


async def automations_naming(conn: AsyncConnection, account_id: int, names: Names) -> list[str]:
    """The account's automations that name it, each as "automation ID (NAME)"."""
    found = await conn.execute(
        sa.select(
            automations.c.id, automations.c.name, automations.c.conditions, automations.c.actions
        )
        .where(automations.c.account_id == account_id)
        .order_by(automations.c.id)
    )
    return [
        f"automation {automation_id} ({name})"
        for automation_id, name, conditions, actions in found
        if names(conditions or {}, actions)
    ]
