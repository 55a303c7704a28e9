"""Fresh databases for each backend, and the `trackbook serve` process under test."""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import os
import queue
import shutil
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import asyncpg

from trackbook.keyring import Keyring, new_key
from trackbook.settings import RATE_LIMITS

POSTGRES_HOST = "127.0.0.1"
POSTGRES_PORT = 5432
POSTGRES_ADMIN_DATABASE = "test"
POSTGRES_USERS = ("root", "postgres")
START_SECONDS = 90.0
STOP_SECONDS = 15.0
# The server key of every benchmarked server: the event key trackcmp and v1 requests
# carry is stored sealed with it.
SECRET_KEY = new_key()


class BenchError(Exception):
    """The benchmark could not set up what it measures."""


@dataclass(frozen=True, slots=True)
class BenchDatabase:
    backend: str
    url: str
    """For TRACKBOOK_DATABASE_URL."""
    raw_location: str
    """For the raw insert: the SQLite file, or an asyncpg DSN."""


def sqlite_database(directory: Path) -> BenchDatabase:
    path = directory / "bench.db"
    return BenchDatabase("sqlite", f"sqlite+aiosqlite:///{path}", str(path))


async def _admin_connection() -> tuple[asyncpg.Connection, str]:
    """A connection to the admin database as the first user that is let in."""
    failures = []
    for user in POSTGRES_USERS:
        dsn = f"postgresql://{user}@{POSTGRES_HOST}:{POSTGRES_PORT}/{POSTGRES_ADMIN_DATABASE}"
        try:
            return await asyncpg.connect(dsn, timeout=5), user
        except (OSError, TimeoutError, asyncpg.PostgresError) as error:
            failures.append(f"{user}: {error}")
    raise BenchError(f"PostgreSQL is unreachable: {'; '.join(failures)}")


def create_postgres_database() -> BenchDatabase:
    name = f"tb_bench_{uuid.uuid4().hex[:12]}"

    async def create() -> str:
        connection, user = await _admin_connection()
        try:
            await connection.execute(f'CREATE DATABASE "{name}"')
        finally:
            await connection.close()
        return user

    user = asyncio.run(create())
    address = f"{user}@{POSTGRES_HOST}:{POSTGRES_PORT}/{name}"
    return BenchDatabase("postgresql", f"postgresql+asyncpg://{address}", f"postgresql://{address}")


def drop_postgres_database(database: BenchDatabase) -> None:
    name = database.url.rsplit("/", 1)[1]

    async def drop() -> None:
        connection, _ = await _admin_connection()
        try:
            await connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await connection.close()

    asyncio.run(drop())


def activecampaign_ids(database: BenchDatabase) -> tuple[str, str]:
    """The (actid, event key) of the one account, which trackcmp and v1 requests carry."""
    query = "SELECT actid, event_key FROM accounts ORDER BY id LIMIT 1"
    if database.backend == "sqlite":
        with contextlib.closing(sqlite3.connect(database.raw_location)) as connection:
            actid, event_key = connection.execute(query).fetchone()
            return str(actid), Keyring([SECRET_KEY]).open(event_key)

    async def read() -> tuple[str, str]:
        connection = await asyncpg.connect(database.raw_location, timeout=5)
        try:
            row = await connection.fetchrow(query)
        finally:
            await connection.close()
        return str(row["actid"]), Keyring([SECRET_KEY]).open(row["event_key"])

    return asyncio.run(read())


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def trackbook_command() -> list[str]:
    """The installed console script, next to this interpreter when it can be found
    there, so that the pid we watch is the server's and not a version-manager shim."""
    beside = Path(sys.executable).with_name("trackbook")
    if beside.exists():
        return [str(beside)]
    found = shutil.which("trackbook")
    if found is None:
        raise BenchError("the trackbook command is not installed (pip install -e .)")
    return [found]


def _forward_lines(stream: IO[str], lines: queue.Queue[str | None]) -> None:
    for line in stream:
        lines.put(line)
    lines.put(None)


def server_environment(database: BenchDatabase) -> dict[str, str]:
    """This process's environment without its TRACKBOOK_ settings, plus those of a
    benchmarked server on `database`."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith("TRACKBOOK_")}
    environment |= {
        "TRACKBOOK_DATABASE_URL": database.url,
        "TRACKBOOK_BENCH_ROUTES": "true",
        "TRACKBOOK_LOG_LEVEL": "warning",
        "TRACKBOOK_SECRET_KEY": SECRET_KEY,
    }
    # the limiter still runs on every request (its cost is measured), but never refuses
    for limit in RATE_LIMITS:
        environment[f"TRACKBOOK_{limit.upper()}"] = "1000000/second"
    return environment


class Server:
    """`trackbook serve` on a free loopback port, one uvicorn worker."""

    def __init__(self, database: BenchDatabase, directory: Path) -> None:
        self.database = database
        self.port = free_port()
        self.log_path = directory / "server.log"
        self.key = ""
        self._process: subprocess.Popen[str] | None = None
        self._log: IO[str] | None = None
        self._reader: threading.Thread | None = None

    @property
    def pid(self) -> int:
        assert self._process is not None
        return self._process.pid

    def start(self) -> None:
        """Starts the server, reads the API key it prints and waits for /healthz."""
        self._log = self.log_path.open("w")
        self._process = subprocess.Popen(  # noqa: S603 - our own console script, no shell
            [*trackbook_command(), "serve", "--host", "127.0.0.1", "--port", str(self.port)],
            env=server_environment(self.database),
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
        )
        lines: queue.Queue[str | None] = queue.Queue()
        assert self._process.stdout is not None
        self._reader = threading.Thread(
            target=_forward_lines, args=(self._process.stdout, lines), daemon=True
        )
        self._reader.start()
        deadline = time.monotonic() + START_SECONDS
        self.key = self._read_key(lines, deadline)
        self._wait_healthy(deadline)

    def _read_key(self, lines: queue.Queue[str | None], deadline: float) -> str:
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise BenchError(f"no API key printed in {START_SECONDS:.0f} s{self.log_tail()}")
            try:
                line = lines.get(timeout=remaining)
            except queue.Empty:
                continue
            if line is None:
                raise BenchError(f"the server exited before printing a key{self.log_tail()}")
            if line.startswith("tb_live_"):
                return line.strip()

    def _wait_healthy(self, deadline: float) -> None:
        assert self._process is not None
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise BenchError(f"the server exited while starting{self.log_tail()}")
            connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
            try:
                connection.request("GET", "/healthz")
                if connection.getresponse().status == 200:
                    return
            except OSError:
                pass
            finally:
                connection.close()
            time.sleep(0.1)
        raise BenchError(f"/healthz did not answer in {START_SECONDS:.0f} s{self.log_tail()}")

    def groups_written(self) -> tuple[float, float]:
        """Group-commit transactions so far and the events they held, from /metrics."""
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
        try:
            connection.request("GET", "/metrics")
            text = connection.getresponse().read().decode()
        finally:
            connection.close()
        found = {"count": 0.0, "sum": 0.0}
        for line in text.splitlines():
            name, _, value = line.partition(" ")
            for part in found:
                if name == f"trackbook_group_commit_events_{part}":
                    found[part] = float(value)
        return found["count"], found["sum"]

    def cpu_seconds(self) -> float:
        """User plus system CPU time of the server process, all its threads."""
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        # utime and stime are fields 14 and 15 of proc(5); [0] here is field 3.
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def rss_kib(self) -> int:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise BenchError("no VmRSS in /proc/<pid>/status")

    def log_tail(self, lines: int = 20) -> str:
        with contextlib.suppress(OSError):
            if self._log is not None:
                self._log.flush()
            tail = self.log_path.read_text().splitlines()[-lines:]
            if tail:
                return "\n  server log:\n  " + "\n  ".join(tail)
        return ""

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if it does not stop in time."""
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(STOP_SECONDS)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait(STOP_SECONDS)
        # The reader ends at EOF once the process is gone; close the pipe after it.
        if self._reader is not None:
            self._reader.join(STOP_SECONDS)
        if self._process is not None and self._process.stdout is not None:
            self._process.stdout.close()
        if self._log is not None:
            self._log.close()
