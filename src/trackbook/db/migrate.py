"""Upgrade a database to the newest schema with Alembic, from the CLI or start-up, and
tell an operator in plain words when the configured database cannot be used."""

from __future__ import annotations

import asyncio
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from sqlalchemy.ext.asyncio import create_async_engine

MIGRATIONS = Path(__file__).parent / "migrations"
CONNECT_TIMEOUT_SECONDS = 10
POINT_ELSEWHERE = "or point TRACKBOOK_DATABASE_URL at another database"


class UnusableDatabase(Exception):
    """The configured database cannot be reached or opened, or holds no Trackbook schema
    where one is needed. The message is a line or two for the operator: the URL (never
    its password) and what to check."""


def alembic_config(database_url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    config.set_main_option("file_template", "%%(year)d_%%(month).2d_%%(day).2d_%%(rev)s_%%(slug)s")
    return config


def upgrade(database_url: str) -> None:
    command.upgrade(alembic_config(database_url), "head")


def prepare(database_url: str, *, create: bool) -> None:
    """Upgrades the database to the newest schema, after checking that it can be used.

    With `create`, a database without Trackbook's schema (or a SQLite file not there yet)
    gets the whole schema; without, it is refused, so that a command run in the wrong
    folder or against the wrong database creates nothing there. A database with an older
    Trackbook schema is upgraded either way.
    """
    url = sa.make_url(database_url)
    shown = url.render_as_string(hide_password=True)
    file = _sqlite_file(url)
    if file is not None and not file.exists():
        if not file.parent.is_dir():
            raise UnusableDatabase(
                f"cannot open the database {shown}: the folder {file.parent} does not exist\n"
                f"create it, {POINT_ELSEWHERE}"
            )
        if not create:
            raise UnusableDatabase(_no_database(shown, f"{file} does not exist"))
    elif not asyncio.run(_has_schema(url, shown)) and not create:
        raise UnusableDatabase(_no_database(shown, "it holds no Trackbook tables"))
    upgrade(database_url)


def _sqlite_file(url: sa.URL) -> Path | None:
    """The file of a SQLite URL; None for other databases and in-memory or URI forms."""
    if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
        return None
    if url.query.get("uri") in ("true", "1"):
        return None
    return Path(str(url.database)).absolute()


def _no_database(shown: str, why: str) -> str:
    return (
        f"no Trackbook database at {shown}: {why}\n"
        f"run `trackbook migrate` (or `trackbook serve`) to create one there, {POINT_ELSEWHERE}"
    )


async def _has_schema(url: sa.URL, shown: str) -> bool:
    sqlite = url.get_backend_name() == "sqlite"
    engine = create_async_engine(
        url,
        poolclass=sa.pool.NullPool,
        connect_args={} if sqlite else {"timeout": CONNECT_TIMEOUT_SECONDS},
    )
    try:
        async with engine.connect() as connection:
            return await connection.run_sync(
                lambda sync: sa.inspect(sync).has_table("alembic_version")
            )
    except (sa.exc.DBAPIError, OSError, TimeoutError) as error:
        raise UnusableDatabase(_explain(error, url, shown)) from error
    finally:
        await engine.dispose()


def _explain(error: BaseException, url: sa.URL, shown: str) -> str:
    cause = error
    while cause.__cause__ is not None:
        cause = cause.__cause__
    reason = (str(cause).strip().splitlines() or [type(cause).__name__])[0]
    sqlstate = getattr(cause, "sqlstate", None)
    if url.get_backend_name() == "sqlite":
        check = f"check that this user may read and write {url.database} and its folder"
    elif sqlstate == "3D000":  # invalid_catalog_name
        check = f"create it (createdb {url.database})"
    elif sqlstate in ("28000", "28P01"):  # invalid authorization, invalid password
        check = "check the user and password, and PostgreSQL's pg_hba.conf"
    elif isinstance(cause, OSError | TimeoutError):
        where = f"{url.host or 'localhost'}:{url.port or 5432}"
        check = f"check that PostgreSQL is running at {where} and accepts connections from here"
    else:
        check = "check the database server's log"
    return f"cannot use the database {shown}: {reason}\n{check}, {POINT_ELSEWHERE}"
