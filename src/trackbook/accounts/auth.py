"""Who a request is: API keys (and ActiveCampaign actids) checked against the database,
remembered for a few seconds.

Looking a key up costs a connection and a query, more than the rest of a track
request; a short memory of verified keys and actids takes that off the hot path. A revocation
or an account change made in this process applies at once (forget_account); one made
by another process (the CLI, another API node) applies within `ttl`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from trackbook.accounts.errors import Unauthenticated
from trackbook.accounts.service import (
    Account,
    KeyMatch,
    find_by_actid,
    find_key,
    hash_key,
    needs_last_used_update,
    touch_key,
)
from trackbook.clock import Clock
from trackbook.db.engine import Database
from trackbook.metrics import current_account

MAX_REMEMBERED = 10_000


@dataclass(slots=True)
class _Remembered:
    match: KeyMatch
    until: datetime


class Authenticator:
    def __init__(self, db: Database, clock: Clock, *, ttl_seconds: float) -> None:
        self._db = db
        self._clock = clock
        self._ttl = timedelta(seconds=ttl_seconds)
        # by SHA-256 of the key: the secrets themselves are not kept in memory
        self._remembered: dict[str, _Remembered] = {}
        self._by_actid: dict[str, tuple[Account, datetime]] = {}

    async def authenticate(self, secret: str | None) -> Account:
        """The account of a live API key; Unauthenticated when it is missing, unknown
        or revoked."""
        if not secret:
            raise Unauthenticated("an API key is required")
        now = self._clock.now()
        digest = hash_key(secret)
        remembered = self._remembered.get(digest)
        if remembered is not None and remembered.until > now:
            match = remembered.match
        else:
            found = await self._db.query(find_key, secret)
            if found is None:
                self._remembered.pop(digest, None)
                raise Unauthenticated("the API key is not valid or has been revoked")
            match = found
            if self._ttl:
                self._remember(digest, _Remembered(match, now + self._ttl))
        if needs_last_used_update(match, now):
            await self._db.write(touch_key, match.key_id, now=now)
            if digest in self._remembered:
                self._remembered[digest].match = replace(match, last_used_at=now)
        current_account.set(match.account.id)
        return match.account

    async def account_by_actid(self, actid: str) -> Account | None:
        """The account an ActiveCampaign actid names (trackcmp's way of naming it); the
        caller checks the event key against it."""
        now = self._clock.now()
        remembered = self._by_actid.get(actid)
        if remembered is not None and remembered[1] > now:
            return remembered[0]
        account = await self._db.query(find_by_actid, actid)
        if account is None:
            self._by_actid.pop(actid, None)
        elif self._ttl:
            if len(self._by_actid) >= MAX_REMEMBERED:
                del self._by_actid[next(iter(self._by_actid))]
            self._by_actid[actid] = (account, now + self._ttl)
        return account

    def _remember(self, digest: str, remembered: _Remembered) -> None:
        if len(self._remembered) >= MAX_REMEMBERED:
            del self._remembered[next(iter(self._remembered))]
        self._remembered[digest] = remembered

    def forget_account(self, account_id: int) -> None:
        """Drops what is remembered of an account's keys, after a change to it."""
        for digest in [
            digest
            for digest, remembered in self._remembered.items()
            if remembered.match.account.id == account_id
        ]:
            del self._remembered[digest]
        for actid in [
            actid for actid, (account, _) in self._by_actid.items() if account.id == account_id
        ]:
            del self._by_actid[actid]
