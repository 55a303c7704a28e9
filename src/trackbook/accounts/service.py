"""Create and change accounts; issue, list, revoke and check API keys."""

from __future__ import annotations

import enum
import hashlib
import hmac
import secrets
import string
import zoneinfo
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import urlsplit

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from trackbook.accounts.errors import AccountNotFound, KeyNotFound
from trackbook.db.tables import accounts, api_keys
from trackbook.errors import Conflict, Invalid


class KeyKind(enum.StrEnum):
    SECRET = "secret"  # noqa: S105 - the name of a kind, not a password
    """Every route of every dialect."""
    PUBLISHABLE = "publishable"
    """Only the routes that record events: safe to embed in a web page or an app."""


# A key is its kind's marker and 40 random characters; the marker and the first 8 of
# those are its visible prefix, which names it in lists and revocations.
KEY_MARKERS = {KeyKind.SECRET: "tb_live_", KeyKind.PUBLISHABLE: "tb_pub_"}
PREFIX_RANDOM = 8
MAX_ORIGINS = 50
_KEY_ALPHABET = string.ascii_letters + string.digits
# last_used_at is a hint for people rotating keys, not an audit log: writing it on
# every request would put a write on the hot path, so it is refreshed at most this often.
LAST_USED_RESOLUTION = timedelta(minutes=1)


@dataclass(frozen=True, slots=True)
class Account:
    id: int
    name: str
    timezone: str
    tracking_enabled: bool
    created_at: datetime
    actid: str
    """ActiveCampaign's site-tracking account id, 9 digits."""
    event_key: str
    """ActiveCampaign's event key, 40 hex characters: trackcmp's proof of the account."""


@dataclass(frozen=True, slots=True)
class ApiKey:
    id: int
    account_id: int
    name: str
    prefix: str
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None
    kind: KeyKind
    allowed_origins: tuple[str, ...]
    """Origins a publishable key may be used from in a browser; empty: any."""


@dataclass(frozen=True, slots=True)
class IssuedKey:
    """A new key: `secret` is shown once and never stored."""

    key: ApiKey
    secret: str


def hash_key(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def key_kind(text: str) -> KeyKind | None:
    """The kind of key that `text` (a key or a prefix of one) is, by its marker."""
    for kind, marker in KEY_MARKERS.items():
        if text.startswith(marker):
            return kind
    return None


def prefix_length(kind: KeyKind) -> int:
    return len(KEY_MARKERS[kind]) + PREFIX_RANDOM


def normalise_origin(origin: str, field: str = "origin") -> str:
    """A web origin as browsers send it in the Origin header: scheme://host[:port],
    lower-case, without the scheme's default port, path, query or fragment."""
    invalid = Invalid(field, f"must be an origin such as https://www.example.com: {origin!r}")
    try:
        parts = urlsplit(origin.strip())
        port = parts.port
    except ValueError:
        raise invalid from None
    scheme, host = parts.scheme.lower(), (parts.hostname or "").lower()
    if scheme not in ("http", "https") or not host or parts.username or parts.password:
        raise invalid
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise invalid
    if ":" in host:
        host = f"[{host}]"
    default_port = {"http": 80, "https": 443}[scheme]
    return f"{scheme}://{host}" + ("" if port in (None, default_port) else f":{port}")


def _origins(kind: KeyKind, origins: Iterable[str]) -> list[str] | None:
    listed = list(dict.fromkeys(normalise_origin(origin, "origins") for origin in origins))
    if listed and kind is not KeyKind.PUBLISHABLE:
        raise Invalid("origins", "are only for publishable keys: a secret key has none")
    if len(listed) > MAX_ORIGINS:
        raise Invalid("origins", f"must be at most {MAX_ORIGINS}")
    return listed or None


def _account(row: sa.Row[tuple[object, ...]]) -> Account:
    return Account(
        id=row.id,
        name=row.name,
        timezone=row.timezone,
        tracking_enabled=row.tracking_enabled,
        created_at=row.created_at,
        actid=row.actid,
        event_key=row.event_key,
    )


def _api_key(row: sa.Row[tuple[object, ...]]) -> ApiKey:
    return ApiKey(
        id=row.id,
        account_id=row.account_id,
        name=row.name,
        prefix=row.prefix,
        created_at=row.created_at,
        last_used_at=row.last_used_at,
        revoked_at=row.revoked_at,
        kind=KeyKind(row.kind),
        allowed_origins=tuple(row.allowed_origins or ()),
    )


def _check_timezone(timezone: str) -> str:
    try:
        zoneinfo.ZoneInfo(timezone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise Invalid("timezone", f"is not a known time zone: {timezone!r}") from None
    return timezone


def _check_name(name: str) -> str:
    name = name.strip()
    if not 1 <= len(name) <= 200:
        raise Invalid("name", "must be 1 to 200 characters")
    return name


def new_event_key() -> str:
    return secrets.token_hex(20)


async def _free_actid(conn: AsyncConnection) -> str:
    while True:
        actid = str(100_000_000 + secrets.randbelow(900_000_000))
        if await conn.scalar(sa.select(accounts.c.id).where(accounts.c.actid == actid)) is None:
            return actid


async def create_account(
    conn: AsyncConnection, name: str, *, now: datetime, timezone: str = "UTC"
) -> Account:
    actid = await _free_actid(conn)
    row = (
        await conn.execute(
            accounts.insert()
            .values(
                name=_check_name(name),
                timezone=_check_timezone(timezone),
                tracking_enabled=True,
                created_at=now,
                actid=actid,
                event_key=new_event_key(),
            )
            .returning(*accounts.c)
        )
    ).one()
    return _account(row)


async def list_accounts(conn: AsyncConnection) -> list[Account]:
    rows = await conn.execute(sa.select(accounts).order_by(accounts.c.id))
    return [_account(row) for row in rows]


async def get_account(conn: AsyncConnection, account_id: int) -> Account:
    row = (await conn.execute(sa.select(accounts).where(accounts.c.id == account_id))).one_or_none()
    if row is None:
        raise AccountNotFound(f"account {account_id} does not exist")
    return _account(row)


async def update_account(
    conn: AsyncConnection,
    account_id: int,
    *,
    name: str | None = None,
    timezone: str | None = None,
    tracking_enabled: bool | None = None,
) -> Account:
    changes: dict[str, object] = {}
    if name is not None:
        changes["name"] = _check_name(name)
    if timezone is not None:
        changes["timezone"] = _check_timezone(timezone)
    if tracking_enabled is not None:
        changes["tracking_enabled"] = tracking_enabled
    if not changes:
        return await get_account(conn, account_id)
    row = (
        await conn.execute(
            accounts.update()
            .where(accounts.c.id == account_id)
            .values(**changes)
            .returning(*accounts.c)
        )
    ).one_or_none()
    if row is None:
        raise AccountNotFound(f"account {account_id} does not exist")
    return _account(row)


async def rotate_event_key(conn: AsyncConnection, account_id: int) -> Account:
    """A new ActiveCampaign event key; trackcmp requests with the old one are refused."""
    row = (
        await conn.execute(
            accounts.update()
            .where(accounts.c.id == account_id)
            .values(event_key=new_event_key())
            .returning(*accounts.c)
        )
    ).one_or_none()
    if row is None:
        raise AccountNotFound(f"account {account_id} does not exist")
    return _account(row)


async def find_by_actid(conn: AsyncConnection, actid: str) -> Account | None:
    """The account of an ActiveCampaign actid: trackcmp names the account this way."""
    row = (await conn.execute(sa.select(accounts).where(accounts.c.actid == actid))).one_or_none()
    return None if row is None else _account(row)


async def create_key(
    conn: AsyncConnection,
    account_id: int,
    *,
    now: datetime,
    name: str = "",
    kind: KeyKind = KeyKind.SECRET,
    origins: Iterable[str] = (),
) -> IssuedKey:
    """A new key of `kind`; `origins` (publishable keys only) limits where browsers may
    use it from."""
    allowed_origins = _origins(kind, origins)
    await get_account(conn, account_id)
    secret = KEY_MARKERS[kind] + "".join(secrets.choice(_KEY_ALPHABET) for _ in range(40))
    row = (
        await conn.execute(
            api_keys.insert()
            .values(
                account_id=account_id,
                name=name.strip(),
                prefix=secret[: prefix_length(kind)],
                key_hash=hash_key(secret),
                created_at=now,
                kind=kind.value,
                allowed_origins=allowed_origins,
            )
            .returning(*api_keys.c)
        )
    ).one()
    return IssuedKey(key=_api_key(row), secret=secret)


async def list_keys(conn: AsyncConnection, account_id: int | None = None) -> list[ApiKey]:
    query = sa.select(api_keys).order_by(api_keys.c.id)
    if account_id is not None:
        query = query.where(api_keys.c.account_id == account_id)
    return [_api_key(row) for row in await conn.execute(query)]


async def revoke_key(
    conn: AsyncConnection, prefix: str, *, now: datetime, account_id: int | None = None
) -> ApiKey:
    """Revoke the one live key whose prefix starts with `prefix` (at least the marker + 4),
    of the given account only when one is given (the dashboard), else of any (the CLI)."""
    kind = key_kind(prefix)
    if kind is None or len(prefix) < len(KEY_MARKERS[kind]) + 4:
        markers = " or ".join(KEY_MARKERS.values())
        raise Invalid("prefix", f"must be {markers} and at least 4 more characters")
    rows = (
        await conn.execute(
            sa.select(api_keys.c.id).where(
                api_keys.c.prefix.startswith(prefix[: prefix_length(kind)], autoescape=True),
                api_keys.c.revoked_at.is_(None),
                sa.true() if account_id is None else api_keys.c.account_id == account_id,
            )
        )
    ).all()
    if not rows:
        raise KeyNotFound(f"no live key has the prefix {prefix!r}")
    if len(rows) > 1:
        raise Conflict(f"{len(rows)} live keys have the prefix {prefix!r}; give more of it")
    row = (
        await conn.execute(
            api_keys.update()
            .where(api_keys.c.id == rows[0].id)
            .values(revoked_at=now)
            .returning(*api_keys.c)
        )
    ).one()
    return _api_key(row)


@dataclass(frozen=True, slots=True)
class KeyMatch:
    account: Account
    key_id: int
    last_used_at: datetime | None
    kind: KeyKind
    allowed_origins: tuple[str, ...]


async def find_key(conn: AsyncConnection, secret: str) -> KeyMatch | None:
    """The live key matching `secret`, compared by hash in constant time, or None."""
    kind = key_kind(secret)
    if kind is None or len(secret) <= prefix_length(kind):
        return None
    digest = hash_key(secret)
    rows = await conn.execute(
        sa.select(
            api_keys.c.id.label("key_id"),
            api_keys.c.key_hash,
            api_keys.c.last_used_at,
            api_keys.c.kind.label("key_kind"),
            api_keys.c.allowed_origins,
            *accounts.c,
        )
        .join(accounts, accounts.c.id == api_keys.c.account_id)
        .where(api_keys.c.prefix == secret[: prefix_length(kind)], api_keys.c.revoked_at.is_(None))
    )
    match = None
    for row in rows:
        if hmac.compare_digest(row.key_hash, digest):
            match = KeyMatch(
                _account(row),
                row.key_id,
                row.last_used_at,
                KeyKind(row.key_kind),
                tuple(row.allowed_origins or ()),
            )
    return match


@dataclass(frozen=True, slots=True)
class BrowserOrigins:
    """The origins some live publishable key may be used from: what a CORS preflight,
    which carries no key, is answered for."""

    any_origin: bool
    listed: frozenset[str]

    def allow(self, origin: str) -> bool:
        return self.any_origin or origin in self.listed


async def browser_origins(conn: AsyncConnection) -> BrowserOrigins:
    # Across accounts, as find_key: a preflight names no account, only an origin.
    rows = await conn.execute(
        sa.select(api_keys.c.allowed_origins).where(
            api_keys.c.kind == KeyKind.PUBLISHABLE.value, api_keys.c.revoked_at.is_(None)
        )
    )
    lists = [tuple(row.allowed_origins or ()) for row in rows]
    return BrowserOrigins(
        any_origin=any(not origins for origins in lists),
        listed=frozenset(origin for origins in lists for origin in origins),
    )


def needs_last_used_update(match: KeyMatch, now: datetime) -> bool:
    return match.last_used_at is None or now - match.last_used_at >= LAST_USED_RESOLUTION


async def touch_key(conn: AsyncConnection, key_id: int, *, now: datetime) -> None:
    await conn.execute(api_keys.update().where(api_keys.c.id == key_id).values(last_used_at=now))
