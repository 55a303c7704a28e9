"""The same app under different ASGI servers: `POST /v1/track` and the validate-only
route, one server after another on one database (SQLite or PostgreSQL).

    python bench/servers.py [--seconds 5] [--backends sqlite,postgresql] [--rounds 2]

Servers: `trackbook serve` (uvicorn with uvloop and httptools), uvicorn with the
asyncio loop and h11, and granian (ASGI interface, one worker, uvloop). Each runs
`trackbook.app:create_app` with the settings `trackbook serve` gets from the bench.
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing
import os
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import workload
from backends import (
    BenchDatabase,
    Server,
    create_postgres_database,
    drop_postgres_database,
    free_port,
    server_environment,
    sqlite_database,
)
from ingest import SINGLE_REQUESTS, Run, _load, _measured, _warm_up
from loadgen import run_phase

APP = "trackbook.app:create_app"


def _commands(port: int) -> dict[str, list[str]]:
    address = ["--host", "127.0.0.1", "--port", str(port)]
    uvicorn = [sys.executable, "-m", "uvicorn", "--factory", APP, *address]
    granian = shutil.which("granian") or "granian"
    return {
        "uvicorn uvloop+httptools": [*uvicorn, "--loop", "uvloop", "--http", "httptools"],
        "uvicorn asyncio+h11": [*uvicorn, "--loop", "asyncio", "--http", "h11"],
        "granian (asgi, uvloop)": [
            granian, "--interface", "asgi", "--factory", "--workers", "1",
            "--loop", "uvloop", "--log-level", "warning", *address, APP,
        ],
    }  # fmt: skip


class Other(Server):
    """An ASGI server other than `trackbook serve`, on a database it already set up."""

    def __init__(self, database: BenchDatabase, directory: Path, key: str, name: str) -> None:
        super().__init__(database, directory)
        self.key = key
        self.command = _commands(self.port)[name]

    def start(self) -> None:
        self._log = self.log_path.open("w")
        self._process = subprocess.Popen(  # noqa: S603 - fixed commands, no shell
            self.command,
            env=server_environment(self.database),
            stdout=self._log,
            stderr=self._log,
            text=True,
        )
        self._wait_healthy(time.monotonic() + 90)


def _bench(backend: str, seconds: float, rounds: int, pool: ProcessPoolExecutor) -> None:
    with contextlib.ExitStack() as cleanup:
        directory = Path(cleanup.enter_context(tempfile.TemporaryDirectory(prefix="tb-srv-")))
        if backend == "sqlite":
            database = sqlite_database(directory)
        else:
            database = create_postgres_database()
            cleanup.callback(drop_postgres_database, database)
        first = Server(database, directory)
        first.start()
        try:
            _warm_up(Run(first, database, pool, seconds, 64))
        finally:
            first.stop()
        singles = workload.single_events(seed=1, count=SINGLE_REQUESTS)
        print(f"== {backend}: {seconds:g} s per phase, 64 connections ==")
        print(f"{'server':<26} {'phase':<9} {'req/s':>7} {'p50 ms':>7} {'p99 ms':>7} {'CPU':>5}")
        for round_ in range(rounds):
            for name in _commands(0):
                server = Other(database, directory, first.key, name)
                server.port = free_port()
                server.command = _commands(server.port)[name]
                server.start()
                try:
                    run = Run(server, database, pool, seconds, 64)
                    for phase, path, status in (
                        ("track", "/v1/track", 201),
                        ("validate", "/v1/_bench/validate", 201),
                    ):
                        result = _measured(run, run_phase, _load(run, phase, path, singles, status))
                        cpu = (result.server_cpu_seconds or 0) / result.seconds
                        print(
                            f"{name:<26} {phase:<9} {result.requests_per_second:>7.0f} "
                            f"{result.p50_ms:>7.1f} {result.p99_ms:>7.1f} {cpu:>5.0%}"
                            + (f"  errors {result.errors}" if result.errors else ""),
                            flush=True,
                        )
                finally:
                    server.stop()
            print(f"-- round {round_ + 1} done; load average {os.getloadavg()[0]:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--rounds", type=int, default=2)
    arguments = parser.parse_args()
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
        for backend in arguments.backends.split(","):
            _bench(backend, arguments.seconds, arguments.rounds, pool)


if __name__ == "__main__":
    main()
