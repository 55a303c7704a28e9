"""Engines for SQLite (embedded, WAL) and PostgreSQL, and how storage failures surface."""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from typing import Any, Concatenate, ParamSpec, TypeVar

import orjson
import re2
import sqlalchemy as sa
from sqlalchemy import event as sa_event
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from trackbook.errors import StorageUnavailable


def _json_dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


log = logging.getLogger(__name__)
P = ParamSpec("P")
T = TypeVar("T")


def _regexp(pattern: str | None, text: str | None) -> bool | None:
    if pattern is None or text is None:
        return None
    try:
        return re2.search(pattern, text) is not None
    except re2.error:
        return False


SQLITE_READER_THREADS = 4


# Errors that mean "the database is not there right now", as opposed to a bug or a
# constraint violation: connection refused, server gone, SQLite file locked.
_UNAVAILABLE = (sa.exc.OperationalError, sa.exc.InterfaceError, OSError, TimeoutError)


def is_unavailable(error: BaseException) -> bool:
    if isinstance(error, sa.exc.DBAPIError) and error.connection_invalidated:
        return True
    return isinstance(error, _UNAVAILABLE)


class Database:
    """A reader and a writer engine.

    On SQLite they are two pools on one file: the writer begins every transaction
    with BEGIN IMMEDIATE so that a read-then-write transaction cannot fail with a
    stale snapshot, while readers keep WAL's concurrent reads. A third, synchronous
    engine on the same file serves `run_transaction` from a thread of its own. On
    PostgreSQL all are the same engine.
    """

    def __init__(self, url: str) -> None:
        self.url = sa.make_url(url)
        self.is_sqlite = self.url.get_backend_name() == "sqlite"
        self._sync_writer: sa.Engine | None = None
        self._sync_thread: ThreadPoolExecutor | None = None
        self._sync_reader: sa.Engine | None = None
        self._reader_threads: ThreadPoolExecutor | None = None
        if self.is_sqlite:
            self.reader = self._sqlite_engine(immediate=False)
            self.writer = self._sqlite_engine(immediate=True)
        else:
            # Sized for a loaded API node: opening a connection per request beyond the
            # pool costs more than the request itself.
            self.reader = self.writer = self._postgres_engine(pool_size=20, max_overflow=10)

    def _postgres_engine(self, *, pool_size: int, max_overflow: int) -> AsyncEngine:
        return create_async_engine(
            self.url,
            json_serializer=_json_dumps,
            json_deserializer=orjson.loads,
            pool_size=pool_size,
            max_overflow=max_overflow,
            pool_pre_ping=True,
            pool_timeout=5,
            connect_args={"timeout": 5},
        )

    def _sqlite_engine(self, *, immediate: bool) -> AsyncEngine:
        engine = create_async_engine(
            self.url,
            json_serializer=_json_dumps,
            json_deserializer=orjson.loads,
            connect_args={"timeout": 30},
            pool_timeout=30,
        )
        self._configure_sqlite(engine.sync_engine, immediate=immediate)
        return engine

    @staticmethod
    def _configure_sqlite(engine: sa.Engine, *, immediate: bool) -> None:
        @sa_event.listens_for(engine, "connect")
        def _on_connect(dbapi_connection: Any, _record: Any) -> None:
            # Take transaction control from the sqlite3 module so BEGIN is ours.
            dbapi_connection.isolation_level = None
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA busy_timeout=30000")
            # what is deleted (an erased contact) is overwritten with zeros, not left in
            # free pages of the file for anyone who reads it
            cursor.execute("PRAGMA secure_delete=ON")
            cursor.close()
            # REGEXP with RE2 in place of Python's re: matching time stays linear in the
            # text whatever the pattern, so a segment cannot stall the database thread
            dbapi_connection.create_function("regexp", 2, _regexp, deterministic=True)

        begin = "BEGIN IMMEDIATE" if immediate else "BEGIN"

        @sa_event.listens_for(engine, "begin")
        def _on_begin(connection: sa.Connection) -> None:
            connection.exec_driver_sql(begin)

    def _sqlite_sync_engine(self, *, connections: int, immediate: bool) -> sa.Engine:
        """The same file through the standard sqlite3 module, for work run whole in
        threads of ours (a connection may move between them, never be shared)."""
        engine = sa.create_engine(
            self.url.set(drivername="sqlite"),
            json_serializer=_json_dumps,
            json_deserializer=orjson.loads,
            connect_args={"timeout": 30, "check_same_thread": False},
            pool_size=connections,
            max_overflow=0,
            pool_timeout=30,
        )
        self._configure_sqlite(engine, immediate=immediate)
        return engine

    def _sqlite_sync_writer(self) -> tuple[sa.Engine, ThreadPoolExecutor]:
        if self._sync_writer is None or self._sync_thread is None:
            # used only from one thread; created on first use so that read-only
            # processes never open it
            self._sync_writer = self._sqlite_sync_engine(connections=1, immediate=True)
            self._sync_thread = ThreadPoolExecutor(1, thread_name_prefix="trackbook-sqlite-writer")
        return self._sync_writer, self._sync_thread

    def _sqlite_sync_readers(self) -> tuple[sa.Engine, ThreadPoolExecutor]:
        if self._sync_reader is None or self._reader_threads is None:
            self._sync_reader = self._sqlite_sync_engine(
                connections=SQLITE_READER_THREADS, immediate=False
            )
            self._reader_threads = ThreadPoolExecutor(
                SQLITE_READER_THREADS, thread_name_prefix="trackbook-sqlite-reader"
            )
        return self._sync_reader, self._reader_threads

    @staticmethod
    async def _connect(engine: AsyncEngine) -> AsyncConnection:
        # Any failure to get a connection (refused, database not accepting
        # connections, pool exhausted) is the database being unavailable.
        try:
            return await engine.connect()
        except (sa.exc.DBAPIError, sa.exc.TimeoutError, OSError, TimeoutError) as error:
            raise StorageUnavailable(str(error)) from error

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncConnection]:
        connection = await self._connect(self.reader)
        try:
            yield connection
        except _UNAVAILABLE as error:
            if is_unavailable(error):
                raise StorageUnavailable(str(error)) from error
            raise
        finally:
            await connection.close()

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncConnection]:
        """One unit of work: commits when the block ends, rolls back on any error."""
        connection = await self._connect(self.writer)
        try:
            async with connection.begin():
                yield connection
        except _UNAVAILABLE as error:
            if is_unavailable(error):
                raise StorageUnavailable(str(error)) from error
            raise
        finally:
            await connection.close()

    async def write(
        self,
        work: Callable[Concatenate[AsyncConnection, P], Awaitable[T]],
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> T:
        """Runs a service function in a transaction of its own: one request, one transaction."""
        async with self.transaction() as connection:
            return await work(connection, *args, **kwargs)

    async def run_transaction(
        self,
        work: Callable[Concatenate[sa.Connection, P], T],
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> T:
        """Runs synchronous SQLAlchemy work in one transaction of its own.

        For work of many statements: on SQLite the whole transaction runs in a writer
        thread on the sqlite3 module (one hand-off, where aiosqlite takes several per
        statement); on PostgreSQL it runs on the async driver through run_sync.
        """
        if not self.is_sqlite:
            async with self.transaction() as connection:
                return await connection.run_sync(work, *args, **kwargs)
        engine, thread = self._sqlite_sync_writer()
        call = functools.partial(_in_sqlite_transaction, engine, work, *args, **kwargs)
        return await asyncio.get_running_loop().run_in_executor(thread, call)

    async def query(
        self,
        work: Callable[Concatenate[AsyncConnection, P], Awaitable[T]],
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> T:
        """Runs a read-only service function on a reader connection."""
        async with self.read() as connection:
            return await work(connection, *args, **kwargs)

    async def run_query(
        self,
        work: Callable[Concatenate[sa.Connection, P], T],
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> T:
        """Runs synchronous read-only work on a reader connection.

        For reads on a hot path: on SQLite the whole read runs in a reader thread on the
        sqlite3 module (one hand-off to the event loop, where aiosqlite takes one per
        step: checkout, BEGIN, execute, fetch, rollback); on PostgreSQL through run_sync.
        """
        if not self.is_sqlite:
            async with self.read() as connection:
                return await connection.run_sync(work, *args, **kwargs)
        engine, threads = self._sqlite_sync_readers()
        call = functools.partial(_in_sqlite_transaction, engine, work, *args, **kwargs)
        return await asyncio.get_running_loop().run_in_executor(threads, call)

    async def refresh_statistics(self, tables: Sequence[str]) -> None:
        """Has PostgreSQL sample the tables again, after a bulk load changed their size by
        much: until autovacuum catches up (or ever, where it is off), the planner costs
        them by the old statistics and picks scans of the whole account over index
        look-ups. SQLite's planner assumes indexes are selective without statistics."""
        if self.is_sqlite:
            return
        async with self.writer.connect() as connection:
            await connection.execute(sa.text(f"ANALYZE {', '.join(tables)}"))
            await connection.commit()

    async def scrub(self) -> None:
        """On SQLite, copies the WAL into the database file and empties it, so that what
        committed transactions deleted (zeros in the file, by secure_delete) is left in
        no older WAL frame either. Nothing to do on PostgreSQL."""
        if not self.is_sqlite:
            return
        engine, thread = self._sqlite_sync_writer()
        emptied = await asyncio.get_running_loop().run_in_executor(thread, _truncate_wal, engine)
        if not emptied:
            log.warning("the WAL could not be emptied now: a reader holds an older snapshot")

    async def ping(self) -> None:
        async with self.read() as connection:
            await connection.execute(sa.text("SELECT 1"))

    async def dispose(self) -> None:
        await self.reader.dispose()
        if self.writer is not self.reader:
            await self.writer.dispose()
        if self._sync_thread is not None and self._sync_writer is not None:
            engine, thread = self._sync_writer, self._sync_thread
            self._sync_writer = self._sync_thread = None
            await asyncio.get_running_loop().run_in_executor(thread, engine.dispose)
            thread.shutdown()
        if self._reader_threads is not None and self._sync_reader is not None:
            engine, threads = self._sync_reader, self._reader_threads
            self._sync_reader = self._reader_threads = None
            # the pool's connections may be used by any reader thread (check_same_thread off)
            engine.dispose()
            threads.shutdown()


class SerialWriter:
    """Transactions of synchronous work for one caller that runs them one after another
    (the event writer). Between two of them the PostgreSQL connection stays checked
    out until `release()`, so that back-to-back groups skip the pool's checkout and
    pre-ping round trip; it is dropped after any error and checked out (and pinged)
    afresh for the next transaction. On SQLite this is `Database.run_transaction`.
    """

    def __init__(self, db: Database) -> None:
        self._db = db
        self._connection: AsyncConnection | None = None

    async def run(
        self,
        work: Callable[Concatenate[sa.Connection, P], T],
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> T:
        if self._db.is_sqlite:
            return await self._db.run_transaction(work, *args, **kwargs)
        if self._connection is None:
            self._connection = await self._db._connect(self._db.writer)
        connection = self._connection
        try:
            async with connection.begin():
                return await connection.run_sync(work, *args, **kwargs)
        except BaseException as error:
            self._connection = None
            await connection.close()
            if isinstance(error, _UNAVAILABLE) and is_unavailable(error):
                raise StorageUnavailable(str(error)) from error
            raise

    async def release(self) -> None:
        """Returns the connection to the pool (when no transaction is waiting)."""
        if self._connection is not None:
            connection, self._connection = self._connection, None
            await connection.close()


def _truncate_wal(engine: sa.Engine) -> bool:
    # the raw connection: outside any transaction (a checkpoint cannot run in one), it
    # waits for older readers up to the busy timeout
    connection = engine.raw_connection()
    try:
        cursor = connection.cursor()
        busy, _, _ = cursor.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        cursor.close()
    finally:
        connection.close()
    return not busy


def _in_sqlite_transaction(
    engine: sa.Engine,
    work: Callable[Concatenate[sa.Connection, P], T],
    *args: P.args,
    **kwargs: P.kwargs,
) -> T:
    try:
        with engine.begin() as connection:
            return work(connection, *args, **kwargs)
    except (sa.exc.DBAPIError, sa.exc.TimeoutError, OSError, TimeoutError) as error:
        if isinstance(error, sa.exc.TimeoutError) or is_unavailable(error):
            raise StorageUnavailable(str(error)) from error
        raise
