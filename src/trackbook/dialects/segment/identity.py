"""Linking the identifiers Segment messages carry: userId, email and anonymousId."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncConnection

from trackbook.contacts import service as contacts
from trackbook.contacts.errors import ContactConflict
from trackbook.contacts.identity import ContactRef, Credential
from trackbook.dialects.segment.messages import Link


async def link_identities(
    conn: AsyncConnection,
    account_id: int,
    links: Sequence[Link],
    *,
    credential: Credential,
    now: datetime,
) -> list[ContactConflict | None]:
    """For each link: the contact with its email or external id (created if new, given
    the other identifier and the traits as far as the credential may), then its
    anonymous id, whose events until now move to that contact. A link that would join
    two identified contacts is left undone: its outcome is the ContactConflict."""
    outcomes: list[ContactConflict | None] = []
    for link in links:
        try:
            contact, _ = await contacts.upsert_contact(
                conn,
                account_id,
                credential=credential,
                now=now,
                email=link.email,
                external_id=link.external_id,
                fields=dict(link.traits),
            )
            if link.anonymous_id is not None:
                await contacts.identify(
                    conn,
                    account_id,
                    link.anonymous_id,
                    ContactRef(id=contact.id),
                    credential=credential,
                    now=now,
                )
        except ContactConflict as conflict:
            outcomes.append(conflict)
        else:
            outcomes.append(None)
    return outcomes
