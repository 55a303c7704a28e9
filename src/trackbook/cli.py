"""The `trackbook` command: serve, migrate, accounts and keys."""

from __future__ import annotations

import asyncio
import enum
import functools
import gc
import io
import signal
import sys
import time
from collections.abc import Awaitable, Callable, Coroutine
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table
from sqlalchemy import make_url

from trackbook import logs, transfer
from trackbook.accounts import service as accounts
from trackbook.accounts import users
from trackbook.accounts.service import Account, IssuedKey
from trackbook.clock import SystemClock
from trackbook.contacts import service as contacts
from trackbook.db import migrate as migrations
from trackbook.db.engine import Database
from trackbook.errors import DomainError
from trackbook.keyring import Keyring, KeyringError, new_key, sealed_sample
from trackbook.settings import Settings, SettingsError, load_settings, unknown_variables

T = TypeVar("T")

app = typer.Typer(help="Trackbook: contact event tracking.", no_args_is_help=True)
accounts_app = typer.Typer(help="Accounts (tenants).", no_args_is_help=True)
keys_app = typer.Typer(help="API keys.", no_args_is_help=True)
users_app = typer.Typer(help="Dashboard users.", no_args_is_help=True)
lists_app = typer.Typer(help="Contact lists (Octeth's ListID).", no_args_is_help=True)
app.add_typer(accounts_app, name="accounts")
app.add_typer(keys_app, name="keys")
app.add_typer(lists_app, name="lists")
app.add_typer(users_app, name="users")

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)
clock = SystemClock()


class OnOff(enum.StrEnum):
    on = "on"
    off = "off"


def _settings() -> Settings:
    for line in unknown_variables():
        err.print(f"warning: {line}", markup=False)
    try:
        return load_settings()
    except SettingsError as error:
        err.print(f"error: {error}")
        raise typer.Exit(2) from None


def _prepare(settings: Settings, *, create: bool) -> None:
    """Upgrades the configured database, or stops with one or two lines on what to check
    (see `migrations.prepare`; only serve, worker and migrate `create` a database)."""
    try:
        migrations.prepare(settings.database_url, create=create)
    except migrations.UnusableDatabase as error:
        err.print(f"error: {error}", markup=False)
        raise typer.Exit(1) from None
    _check_server_key(settings)


def _check_server_key(settings: Settings) -> None:
    """Before any command uses the server key: it opens what the database holds sealed,
    and no new key is made beside a database sealed with another (a command run from
    another folder would otherwise seal new secrets with a key of its own)."""

    async def sample() -> str | None:
        db = Database(settings.database_url)
        try:
            return await db.query(sealed_sample)
        finally:
            await db.dispose()

    sealed = asyncio.run(sample())
    try:
        keyring = Keyring.from_settings(settings, create=sealed is None)
        if sealed is not None:
            keyring.open(sealed)
    except KeyringError as error:
        where = (
            "TRACKBOOK_SECRET_KEY"
            if settings.secret_key is not None
            else Path(settings.secret_key_file).absolute()
        )
        err.print(f"error: {error} (the key tried: {where})", markup=False)
        raise typer.Exit(1) from None


def _run(work: Callable[[Database], Coroutine[Any, Any, T]], *, create: bool = False) -> T:
    """Migrates, then runs `work` against the configured database."""
    settings = _settings()
    _prepare(settings, create=create)

    async def main() -> T:
        db = Database(settings.database_url)
        try:
            return await work(db)
        finally:
            await db.dispose()

    try:
        return asyncio.run(main())
    except DomainError as error:
        err.print(f"error: {error.message}")
        raise typer.Exit(1) from None


def _write(work: Callable[..., Awaitable[T]], *args: Any, **kwargs: Any) -> T:
    async def in_transaction(db: Database) -> T:
        return await db.write(work, *args, **kwargs)

    return _run(in_transaction)


def _print_table(headers: tuple[str, ...], rows: list[tuple[str, ...]]) -> None:
    """Columns never wrap or truncate: a prefix or id must stay whole to be copied."""
    table = Table(box=None)
    for header in headers:
        table.add_column(header, no_wrap=True)
    for row in rows:
        table.add_row(*row)
    # Piped or captured output is read by scripts: no terminal width to fit.
    console = out if out.is_terminal else Console(width=1000, highlight=False)
    console.print(table, crop=False)


def _when(moment: datetime | None) -> str:
    return moment.strftime("%Y-%m-%d %H:%M") if moment else "-"


def _keyring() -> Keyring:
    try:
        return Keyring.from_settings(_settings())
    except KeyringError as error:
        err.print(f"error: {error}")
        raise typer.Exit(2) from None


def _show_account(account: Account) -> None:
    out.print(f"id: {account.id}")
    out.print(f"name: {account.name}")
    out.print(f"timezone: {account.timezone}")
    out.print(f"tracking: {'on' if account.tracking_enabled else 'off'}")
    out.print(f"activecampaign actid: {account.actid}")
    out.print(f"activecampaign event key: {_keyring().open(account.sealed_event_key)}")


def _show_key(issued: IssuedKey) -> None:
    key = issued.key
    if key.kind is accounts.KeyKind.PUBLISHABLE:
        origins = ", ".join(key.allowed_origins) or "any origin"
        out.print(
            f"Publishable key for account {key.account_id}, for sending events only, "
            f"from {origins} (shown once, store it now):"
        )
    else:
        out.print(f"API key for account {key.account_id} (shown once, store it now):")
    out.print(issued.secret)


@app.command()
def migrate() -> None:
    """Upgrade the database to the newest schema."""
    settings = _settings()
    _prepare(settings, create=True)
    shown = make_url(settings.database_url).render_as_string(hide_password=True)
    out.print(f"the database {shown} has the newest schema")


@app.command("server-key")
def server_key() -> None:
    """Print a new server key for TRACKBOOK_SECRET_KEY (it seals webhook secrets; put
    the new key first and keep the old one after it while rotating)."""
    out.print(new_key())


FIRST_USER = "admin@example.com"
YOUNG_COLLECTION_EVERY = 50_000
"""Allocations between two young collections of a serving or importing process (Python's
default: 700). Under load every event waiting for its commit is a dozen live objects;
with the default, the collections that follow from young ones took about a third of the
server's time in /v1/batch (bench/RESULTS.md, session 7)."""


def _settle_heap() -> None:
    """For a long-running command, once start-up has built its modules, app and routes:
    the collector no longer walks those objects, and collects young ones less often."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(YOUNG_COLLECTION_EVERY, *gc.get_threshold()[1:])


async def _bootstrap(db: Database) -> tuple[IssuedKey, str] | None:
    """On an empty database: a default account, its first key and a dashboard user."""
    async with db.transaction() as conn:
        if await accounts.list_accounts(conn):
            return None
        account = await accounts.create_account(
            conn, "Default", now=clock.now(), keyring=_keyring()
        )
        issued = await accounts.create_key(conn, account.id, now=clock.now(), name="first key")
        password = users.new_password()
        await users.create_user(conn, account.id, FIRST_USER, password, now=clock.now())
        return issued, password


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Overrides TRACKBOOK_HOST.")] = None,
    port: Annotated[int | None, typer.Option(help="Overrides TRACKBOOK_PORT.")] = None,
    worker: Annotated[
        bool,
        typer.Option(
            help="Run an automation and webhook worker in this process "
            "(--no-worker when separate `trackbook worker` processes do it)."
        ),
    ] = True,
) -> None:
    """Migrate, then serve the API (embedded SQLite unless TRACKBOOK_DATABASE_URL is set)."""
    from trackbook import serving  # noqa: PLC0415 - only serve needs the server
    from trackbook.app import create_app  # noqa: PLC0415

    settings = _settings()
    if port is not None and not 1 <= port <= 65535:
        err.print(f"error: --port must be a port number from 1 to 65535, not {port}")
        raise typer.Exit(2)
    overrides = {k: v for k, v in {"host": host, "port": port}.items() if v is not None}
    if not worker:
        overrides["worker_in_process"] = False
    if overrides:
        settings = settings.model_copy(update=overrides)
    # Bound before the first account's key and password are made and shown: a start that
    # cannot serve must not spend them, nor lose the port to another process meanwhile.
    try:
        sockets = serving.listen(settings.host, settings.port)
    except serving.CannotListen as error:
        err.print(f"error: {error}", markup=False)
        raise typer.Exit(1) from None
    # before the database is prepared: a server key made there is logged as JSON too
    logs.configure(settings.log_level)
    try:
        first = _run(_bootstrap, create=True)
        out.print(f"Trackbook is serving on {settings.base_url}")
        out.print(f"API docs: {settings.base_url}/docs")
        if first is not None:
            issued, password = first
            out.print(f"Created the account 'Default' (id {issued.key.account_id}).")
            _show_key(issued)
            out.print(f"Dashboard: {settings.base_url}/signin")
            out.print(f"  email: {FIRST_USER}")
            out.print(f"  password (shown once): {password}")
        sys.stdout.flush()
        application = create_app(settings)
        _settle_heap()
        status = serving.run(application, settings, sockets)
    finally:
        serving.close(sockets)
    if status:
        raise typer.Exit(status)


@app.command("worker")
def run_worker() -> None:
    """Migrate, then run automations and webhook deliveries until stopped (Ctrl-C or
    SIGTERM). Run as many as needed beside `trackbook serve --no-worker`."""
    from trackbook.services import Services  # noqa: PLC0415 - only the worker needs them

    settings = _settings().model_copy(update={"worker_in_process": True})
    logs.configure(settings.log_level)
    _prepare(settings, create=True)

    async def main() -> None:
        services = Services.build(settings, clock)
        _settle_heap()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        await services.start()
        out.print(f"worker {services.worker.token} is running")
        sys.stdout.flush()
        try:
            await stop.wait()
        finally:
            await services.stop()

    asyncio.run(main())


class FileFormat(enum.StrEnum):
    ndjson = "ndjson"
    csv = "csv"


class Exported(enum.StrEnum):
    events = "events"
    contacts = "contacts"


@app.command("import")
def import_events(
    file: Path,
    account: Annotated[int, typer.Option(help="The account the events belong to.")],
    file_format: Annotated[
        FileFormat | None,
        typer.Option("--format", help="ndjson or csv; by default from the file's suffix."),
    ] = None,
    mapping: Annotated[
        list[str] | None,
        typer.Option(
            "--map",
            help="CSV column=field, repeatable: event, title, value, timestamp, message_id, "
            "source, contact.email|external_id|id|anonymous_id, properties.NAME, or - to skip.",
        ),
    ] = None,
    batch: Annotated[int, typer.Option(min=1, max=5000, help="Events per transaction.")] = 2000,
    dry_run: Annotated[bool, typer.Option(help="Check every row; store nothing.")] = False,
) -> None:
    """Import events from NDJSON (native track format) or CSV. Rows without a message_id
    get one from their content and line, so running the same file again stores nothing
    twice. Exits 1 when rows were rejected, listing them by line."""
    from trackbook.services import Services  # noqa: PLC0415 - only import needs the writer

    settings = _settings()
    # a batch is one transaction: larger ones share their commit and the index pages
    # they touch (a 200k-event SQLite import: 100 s with 500 per transaction, 72 s with
    # 2000), so the writer's groups are let grow to the batch; one writer, so that the
    # batches commit in file order (a counter's last value is the file's last)
    settings = settings.model_copy(
        update={
            "worker_in_process": False,
            "group_commit_max_events": max(
                batch, settings.group_size(sqlite=settings.database_url.startswith("sqlite"))
            ),
            "event_writers": 1,
        }
    )
    _prepare(settings, create=False)
    kind = file_format or (FileFormat.csv if file.suffix.lower() == ".csv" else FileFormat.ndjson)
    overrides = dict(item.split("=", 1) for item in (mapping or []) if "=" in item)
    try:
        size = file.stat().st_size
    except OSError as error:
        err.print(f"error: {file}: {error.strerror}")
        raise typer.Exit(2) from None

    async def main() -> transfer.ImportReport:
        services = Services.build(settings, clock)
        _settle_heap()
        await services.start()
        try:
            target = await services.db.query(accounts.get_account, account)
            with (
                file.open("rb") as raw,
                io.TextIOWrapper(raw, encoding="utf-8", newline="") as text,
                _progress() as progress,
            ):
                task = progress.add_task("import", total=size, rows=0, rate=0)
                started = time.monotonic()
                if kind is FileFormat.csv:
                    rows = transfer.csv_rows(text, overrides)
                else:
                    rows = transfer.ndjson_rows(raw)
                done = 0

                def advance(count: int) -> None:
                    nonlocal done
                    done += count
                    rate = done / max(time.monotonic() - started, 1e-6)
                    progress.update(task, completed=raw.tell(), rows=done, rate=int(rate))

                return await transfer.import_rows(
                    rows,
                    target,
                    services.events,
                    batch=batch,
                    dry_run=dry_run,
                    progress=advance,
                    refresh_statistics=functools.partial(
                        services.db.refresh_statistics, transfer.IMPORTED_TABLES
                    ),
                )
        finally:
            await services.stop()

    try:
        report = asyncio.run(main())
    except DomainError as error:
        err.print(f"error: {error.message}")
        raise typer.Exit(1) from None
    verb = "would store" if dry_run else "stored"
    out.print(
        f"read {report.read}, {verb} {report.stored}, already there {report.duplicates}, "
        f"rejected {len(report.rejected)}"
    )
    for rejected in report.rejected[:50]:
        out.print(f"  line {rejected.line}: {rejected.reason}")
    if len(report.rejected) > 50:
        out.print(f"  … and {len(report.rejected) - 50} more")
    if report.rejected:
        raise typer.Exit(1)


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.fields[rows]} rows"),
        BarColumn(),
        TextColumn("{task.fields[rate]} rows/s"),
        TimeRemainingColumn(),
        console=err,
        transient=not err.is_terminal,
    )


@app.command("export")
def export(
    what: Exported,
    account: Annotated[int, typer.Option(help="The account to export.")],
    file_format: Annotated[FileFormat, typer.Option("--format")] = FileFormat.ndjson,
    output: Annotated[
        Path | None, typer.Option(help="The file to write; standard output by default.")
    ] = None,
) -> None:
    """Stream every event (oldest first) or contact of an account as NDJSON or CSV."""
    columns = transfer.EVENT_COLUMNS if what is Exported.events else transfer.CONTACT_COLUMNS

    async def work(db: Database) -> int:
        await db.query(accounts.get_account, account)
        rows = transfer.export_rows(db, account, what.value)
        if output is None:
            return await transfer.write_export(rows, columns, file_format.value, sys.stdout)
        with output.open("w", encoding="utf-8", newline="") as handle:
            return await transfer.write_export(rows, columns, file_format.value, handle)

    written = _run(work)
    err.print(f"exported {written} {what.value}")


@accounts_app.command("create")
def accounts_create(
    name: str,
    timezone: Annotated[str, typer.Option(help="IANA time zone, e.g. Europe/Berlin.")] = "UTC",
) -> None:
    """Create an account."""

    async def work(db: Database) -> Account:
        # the server key file is made only where there is a database to seal for
        keyring = _keyring()
        return await db.write(
            accounts.create_account, name, now=clock.now(), timezone=timezone, keyring=keyring
        )

    _show_account(_run(work))


@accounts_app.command("list")
def accounts_list() -> None:
    """List accounts."""

    async def work(db: Database) -> list[Account]:
        return await db.query(accounts.list_accounts)

    table = Table("id", "name", "timezone", "tracking", box=None)
    for account in _run(work):
        table.add_row(
            str(account.id),
            account.name,
            account.timezone,
            "on" if account.tracking_enabled else "off",
        )
    out.print(table)


@accounts_app.command("show")
def accounts_show(account_id: int) -> None:
    """Show an account's settings."""

    async def work(db: Database) -> Account:
        return await db.query(accounts.get_account, account_id)

    _show_account(_run(work))


@accounts_app.command("rotate-event-key")
def accounts_rotate_event_key(account_id: int) -> None:
    """Replace the ActiveCampaign event key; clients must send the new one."""

    async def work(db: Database) -> Account:
        return await db.write(accounts.rotate_event_key, account_id, keyring=_keyring())

    _show_account(_run(work))


@accounts_app.command("set")
def accounts_set(
    account_id: int,
    tracking: Annotated[OnOff | None, typer.Option(help="Turn event tracking on or off.")] = None,
    timezone: Annotated[str | None, typer.Option(help="IANA time zone.")] = None,
    name: Annotated[str | None, typer.Option()] = None,
) -> None:
    """Change an account's name, time zone or tracking switch."""
    account = _write(
        accounts.update_account,
        account_id,
        name=name,
        timezone=timezone,
        tracking_enabled=None if tracking is None else tracking is OnOff.on,
    )
    _show_account(account)


@keys_app.command("create")
def keys_create(
    account: Annotated[int, typer.Option("--account", help="Account id.")],
    name: Annotated[str, typer.Option(help="What the key is for.")] = "",
    publishable: Annotated[
        bool,
        typer.Option(
            "--publishable", help="A key that can only send events, to embed in web pages."
        ),
    ] = False,
    origin: Annotated[
        list[str] | None,
        typer.Option(
            "--origin", help="A site a publishable key may be used from (repeatable; none: any)."
        ),
    ] = None,
) -> None:
    """Create an API key; it is shown once."""
    kind = accounts.KeyKind.PUBLISHABLE if publishable else accounts.KeyKind.SECRET
    issued = _write(
        accounts.create_key, account, now=clock.now(), name=name, kind=kind, origins=origin or ()
    )
    _show_key(issued)


@keys_app.command("list")
def keys_list(
    account: Annotated[int | None, typer.Option("--account", help="Only this account.")] = None,
) -> None:
    """List keys by prefix (the secret itself is never stored)."""

    async def work(db: Database) -> list[accounts.ApiKey]:
        return await db.query(accounts.list_keys, account)

    _print_table(
        ("prefix", "account", "kind", "origins", "name", "created", "last used", "revoked"),
        [
            (
                key.prefix + "…",
                str(key.account_id),
                key.kind.value,
                " ".join(key.allowed_origins) or "-",
                key.name or "-",
                _when(key.created_at),
                _when(key.last_used_at),
                _when(key.revoked_at),
            )
            for key in _run(work)
        ],
    )


@keys_app.command("revoke")
def keys_revoke(prefix: str) -> None:
    """Revoke the key with this prefix; requests with it are refused from now on."""
    key = _write(accounts.revoke_key, prefix.rstrip("…"), now=clock.now())
    out.print(f"revoked {key.prefix}… of account {key.account_id}")


@users_app.command("create")
def users_create(
    email: str,
    account: Annotated[int, typer.Option(help="The account the user signs in to.")],
    generate: Annotated[
        bool, typer.Option("--generate", help="Generate a password and print it once.")
    ] = False,
) -> None:
    """Add a dashboard user; the password is prompted for, or generated and shown once."""
    if generate:
        password = users.new_password()
    else:
        password = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    user = _write(users.create_user, account, email, password, now=clock.now())
    out.print(f"user {user.email} can sign in to account {user.account_id}")
    if generate:
        out.print(f"password (shown once): {password}")


@users_app.command("list")
def users_list(account: Annotated[int, typer.Option(help="The account.")]) -> None:
    """Dashboard users of an account."""

    async def work(db: Database) -> list[users.User]:
        return await db.query(users.list_users, account)

    found = _run(work)
    _print_table(
        ("email", "created", "last sign-in"),
        [(u.email, _when(u.created_at), _when(u.last_sign_in_at)) for u in found],
    )


@lists_app.command("create")
def lists_create(
    name: str, account: Annotated[int, typer.Option("--account", help="Account id.")]
) -> None:
    """Create a list; its id is the ListID Octeth clients send."""
    created = _write(contacts.create_list, account, name, now=clock.now())
    out.print(f"id: {created.id}")
    out.print(f"name: {created.name}")


@lists_app.command("list")
def lists_list(account: Annotated[int, typer.Option("--account", help="Account id.")]) -> None:
    """List an account's lists with their member counts."""

    async def work(db: Database) -> list[contacts.ContactList]:
        return await db.query(contacts.list_lists, account)

    _print_table(
        ("id", "name", "members"),
        [(str(item.id), item.name, str(item.member_count)) for item in _run(work)],
    )


@lists_app.command("delete")
def lists_delete(
    list_id: int, account: Annotated[int, typer.Option("--account", help="Account id.")]
) -> None:
    """Delete a list and its memberships (refused while an automation or segment uses it)."""
    _write(contacts.delete_list, account, list_id)
    out.print(f"deleted list {list_id}")


def main() -> None:
    app()
