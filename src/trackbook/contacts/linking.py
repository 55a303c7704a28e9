"""Linking identifiers several at a time, as Segment's identify and alias ask: the
contacts service's own transaction, retried once when a concurrent sender made the same
new contact first."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from trackbook.clock import Clock
from trackbook.contacts import service as contacts
from trackbook.contacts.errors import ContactConflict
from trackbook.contacts.identity import ContactRef, Credential, IdentityLink
from trackbook.db.engine import Database


class ContactService:
    def __init__(self, db: Database, clock: Clock) -> None:
        self._db = db
        self._clock = clock

    async def link(
        self, account_id: int, links: Sequence[IdentityLink], *, credential: Credential
    ) -> list[ContactConflict | None]:
        """For each link: the contact with its email or external id (created if new,
        given the other identifier and the traits as far as the credential may), then its
        anonymous id, whose events until now move to that contact. A link that would join
        two identified contacts is left undone: its outcome is the ContactConflict. One
        transaction for them all."""
        if not links:
            return []
        try:
            return await self._db.write(
                _link_all, account_id, links, credential=credential, now=self._clock.now()
            )
        except sa.exc.IntegrityError:
            # two senders linked the same new visitor at once and this one lost the race
            # on a unique key: once more, it finds what the other stored
            return await self._db.write(
                _link_all, account_id, links, credential=credential, now=self._clock.now()
            )


async def _link_all(
    conn: AsyncConnection,
    account_id: int,
    links: Sequence[IdentityLink],
    *,
    credential: Credential,
    now: datetime,
) -> list[ContactConflict | None]:
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
