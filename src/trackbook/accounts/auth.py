"""Who a request is: API keys (and ActiveCampaign actids) checked against the database,
remembered for a few seconds.

Looking a key up costs a connection and a query, more than the rest of a track
request; a short memory of verified keys and actids takes that off the hot path. A revocation
or an account change made in this process applies at once (forget_account); one made
by another process (the CLI, another API node) applies within `ttl`.

Publishable keys are refused here on every route but the ones that record events,
which call `authenticate_ingest`: a route that does not say it ingests is closed to
them without doing anything for it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from trackbook.accounts.errors import Forbidden, Unauthenticated
from trackbook.accounts.service import (
    Account,
    BrowserOrigins,
    KeyKind,
    KeyMatch,
    browser_origins,
    find_by_actid,
    find_key,
    hash_key,
    needs_last_used_update,
    normalise_origin,
    touch_key,
)
from trackbook.clock import Clock
from trackbook.db.engine import Database
from trackbook.errors import Invalid
from trackbook.metrics import current_account

MAX_REMEMBERED = 10_000


@dataclass(slots=True)
class _Remembered:
    match: KeyMatch
    until: datetime


@dataclass(frozen=True, slots=True)
class IngestCaller:
    account: Account
    cors_origin: str | None
    """The browser origin to allow in the answer: set only for a publishable key used
    from an origin it accepts."""
    publishable: bool = False
    """A publishable key sits in web pages: its answers must tell nothing held."""


class Authenticator:
    def __init__(self, db: Database, clock: Clock, *, ttl_seconds: float) -> None:
        self._db = db
        self._clock = clock
        self._ttl = timedelta(seconds=ttl_seconds)
        # by SHA-256 of the key: the secrets themselves are not kept in memory
        self._remembered: dict[str, _Remembered] = {}
        self._origins: tuple[BrowserOrigins, datetime] | None = None
        self._by_actid: dict[str, tuple[Account, datetime]] = {}

    async def authenticate(self, secret: str | None) -> Account:
        """The account of a live secret API key; Unauthenticated when it is missing,
        unknown or revoked, Forbidden when it is a publishable key."""
        match = await self._verified(secret)
        if match.kind is not KeyKind.SECRET:
            raise Forbidden("a publishable key can only send events; this route needs a secret key")
        return match.account

    async def authenticate_ingest(self, secret: str | None, *, origin: str | None) -> IngestCaller:
        """For routes that only record events: any live key. A publishable key with
        allowed origins is Forbidden when the request comes from another origin."""
        match = await self._verified(secret)
        if match.kind is KeyKind.SECRET:
            return IngestCaller(match.account, None)
        if origin is None:
            return IngestCaller(match.account, None, publishable=True)
        if match.allowed_origins and _normalised(origin) not in match.allowed_origins:
            raise Forbidden(f"this key may not be used from the origin {origin!r}")
        return IngestCaller(match.account, origin, publishable=True)

    async def allows_browser_origin(self, origin: str) -> bool:
        """Whether some live publishable key may be used from `origin`."""
        now = self._clock.now()
        if self._origins is None or self._origins[1] <= now:
            self._origins = (await self._db.query(browser_origins), now + self._ttl)
        normalised = _normalised(origin)
        return normalised is not None and self._origins[0].allow(normalised)

    async def _verified(self, secret: str | None) -> KeyMatch:
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
        return match

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
        self._origins = None
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


def _normalised(origin: str) -> str | None:
    """The Origin header as keys list origins; None for `null` and other non-origins."""
    try:
        return normalise_origin(origin)
    except Invalid:
        return None
