"""What an operator sees when `trackbook` cannot start: a port in use, a database that
cannot be reached or holds no Trackbook schema, a database URL in its usual form."""

from __future__ import annotations

import asyncio
import os
import re
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command
from cryptography.fernet import Fernet
from sqlalchemy.ext.asyncio import create_async_engine
from typer.testing import CliRunner

from tests.support import (
    KEY,
    create_postgres_database,
    drop_postgres_database,
    free_port,
    require_postgres,
    serving,
)
from trackbook.cli import app
from trackbook.db.migrate import alembic_config
from trackbook.settings import Settings

PASSWORD = "not-for-your-eyes"
"""The password of these tests' database URLs: no output may show it."""


def trackbook(
    cwd: Path, *args: str, database_url: str | None = None
) -> subprocess.CompletedProcess[str]:
    """Runs the command as an operator does; without a URL, with the default one."""
    env = {k: v for k, v in os.environ.items() if k != "TRACKBOOK_DATABASE_URL"}
    if database_url is not None:
        env["TRACKBOOK_DATABASE_URL"] = database_url
    return subprocess.run(
        ["trackbook", *args],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        cwd=cwd,
        timeout=120,
    )


@pytest.fixture
def port_in_use() -> Iterator[int]:
    """A port another process listens on."""
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        yield other.getsockname()[1]


def test_serve_on_a_port_in_use_says_so_in_one_line_before_any_secret(
    empty_database_url: str, tmp_path: Path, port_in_use: int
) -> None:
    refused = trackbook(
        tmp_path, "serve", "--port", str(port_in_use), database_url=empty_database_url
    )
    output = refused.stdout + refused.stderr
    assert refused.returncode != 0
    assert len(output.strip().splitlines()) == 1, output
    assert str(port_in_use) in output
    assert "--port" in output
    assert "TRACKBOOK_PORT" in output
    assert "password" not in output
    assert "tb_live_" not in output
    with serving(empty_database_url, free_port(), tmp_path) as started:
        assert len(KEY.findall(started)) == 1, started
        assert len(re.findall(r"password \(shown once\): \S+", started)) == 1, started


def test_serve_on_an_address_not_of_this_machine_says_so_in_one_line(tmp_path: Path) -> None:
    # 192.0.2.0/24 is reserved for documentation (RFC 5737): no machine has it
    refused = trackbook(tmp_path, "serve", "--host", "192.0.2.1", "--port", str(free_port()))
    output = refused.stdout + refused.stderr
    assert refused.returncode != 0
    assert len(output.strip().splitlines()) == 1, output
    assert "192.0.2.1" in output
    assert "--host" in output
    assert "TRACKBOOK_HOST" in output
    assert not (tmp_path / "trackbook.db").exists()


@pytest.fixture(params=["postgresql refused", "unknown postgresql database", "sqlite folder"])
def unusable(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, str]:
    """A database URL that cannot be used, and what the error must name."""
    if request.param == "postgresql refused":
        return f"postgresql://root:{PASSWORD}@127.0.0.1:1/test", "127.0.0.1:1"
    if request.param == "unknown postgresql database":
        require_postgres()  # only a running server says the database does not exist
        url = f"postgresql://root:{PASSWORD}@127.0.0.1:5432/tb_not_created"
        return url, "tb_not_created"
    return f"sqlite:///{tmp_path / 'missing' / 'trackbook.db'}", str(tmp_path / "missing")


def test_an_unusable_database_is_a_few_lines_for_every_command(
    unusable: tuple[str, str], tmp_path: Path
) -> None:
    url, named = unusable
    runner = CliRunner(env={"TRACKBOOK_DATABASE_URL": url})
    (tmp_path / "events.ndjson").write_text('{"event": "x"}\n')
    commands = [
        ["serve", "--port", str(free_port())],
        ["worker"],
        ["migrate"],
        ["accounts", "list"],
        ["accounts", "create", "Shop"],
        ["import", str(tmp_path / "events.ndjson"), "--account", "1"],
        ["export", "events", "--account", "1"],
    ]
    for args in commands:
        result = runner.invoke(app, args, catch_exceptions=False)
        assert result.exit_code == 1, (args, result.output)
        lines = result.output.strip().splitlines()
        assert 1 <= len(lines) <= 3, (args, result.output)
        assert named in result.output, (args, result.output)
        assert "TRACKBOOK_DATABASE_URL" in result.output, (args, result.output)
        assert PASSWORD not in result.output, (args, result.output)
    served = trackbook(tmp_path, "serve", "--port", str(free_port()), database_url=url)
    assert served.returncode == 1
    assert "Traceback" not in served.stderr
    assert len(served.stderr.strip().splitlines()) <= 3, served.stderr
    assert PASSWORD not in served.stdout + served.stderr


def test_a_command_in_an_empty_folder_creates_no_database(tmp_path: Path) -> None:
    for args in (["accounts", "list"], ["accounts", "create", "Shop"]):
        refused = trackbook(tmp_path, *args)
        assert refused.returncode == 1
        assert "Traceback" not in refused.stderr
        assert len(refused.stderr.strip().splitlines()) <= 3, refused.stderr
        assert "TRACKBOOK_DATABASE_URL" in refused.stderr
        assert "trackbook migrate" in refused.stderr
        assert list(tmp_path.iterdir()) == []


def _tables(url: str) -> list[str]:
    async def read() -> list[str]:
        engine = create_async_engine(url, poolclass=sa.pool.NullPool)
        try:
            async with engine.connect() as connection:
                return await connection.run_sync(lambda sync: sa.inspect(sync).get_table_names())
        finally:
            await engine.dispose()

    return asyncio.run(read())


def test_a_command_on_a_database_without_trackbook_creates_nothing_until_migrate(
    empty_database_url: str, tmp_path: Path
) -> None:
    """On PostgreSQL the database exists, empty; on SQLite the file does not."""
    runner = CliRunner(env={"TRACKBOOK_DATABASE_URL": empty_database_url})
    for args in (["accounts", "list"], ["export", "contacts", "--account", "1"]):
        refused = runner.invoke(app, args, catch_exceptions=False)
        assert refused.exit_code == 1, refused.output
        assert "no Trackbook database" in refused.output
        assert "trackbook migrate" in refused.output
    if empty_database_url.startswith("sqlite"):
        assert not (tmp_path / "trackbook.db").exists()
    else:
        assert _tables(empty_database_url) == []
    assert runner.invoke(app, ["migrate"], catch_exceptions=False).exit_code == 0
    assert runner.invoke(app, ["accounts", "list"], catch_exceptions=False).exit_code == 0


def test_a_command_upgrades_an_older_trackbook_schema(empty_database_url: str) -> None:
    command.upgrade(alembic_config(empty_database_url), "+1")
    runner = CliRunner(env={"TRACKBOOK_DATABASE_URL": empty_database_url})
    created = runner.invoke(app, ["accounts", "create", "Older"], catch_exceptions=False)
    assert created.exit_code == 0, created.output
    assert "name: Older" in created.output


@pytest.mark.parametrize(
    ("given", "used"),
    [
        ("postgresql://u:p@db:5432/tb", "postgresql+asyncpg://u:p@db:5432/tb"),
        ("postgres://u@db/tb", "postgresql+asyncpg://u@db/tb"),
        ("postgresql+asyncpg://u@db/tb", "postgresql+asyncpg://u@db/tb"),
        ("sqlite:///trackbook.db", "sqlite+aiosqlite:///trackbook.db"),
        ("sqlite:////var/lib/trackbook.db", "sqlite+aiosqlite:////var/lib/trackbook.db"),
        ("sqlite+aiosqlite:///trackbook.db", "sqlite+aiosqlite:///trackbook.db"),
    ],
)
def test_usual_database_url_forms_run_on_the_async_drivers(given: str, used: str) -> None:
    assert Settings(database_url=given).database_url == used


def test_a_plain_database_url_serves_every_command(backend: str, tmp_path: Path) -> None:
    if backend == "sqlite":
        url, remove = f"sqlite:///{tmp_path / 'plain.db'}", None
    else:
        require_postgres()
        name, async_url = create_postgres_database()
        url, remove = async_url.replace("postgresql+asyncpg://", "postgres://"), name
    try:
        runner = CliRunner(env={"TRACKBOOK_DATABASE_URL": url})
        assert runner.invoke(app, ["migrate"], catch_exceptions=False).exit_code == 0
        created = runner.invoke(app, ["accounts", "create", "Plain"], catch_exceptions=False)
        assert "name: Plain" in created.output, created.output
    finally:
        if remove is not None:
            drop_postgres_database(remove)


@pytest.mark.parametrize("port", ["0", "99999", "-1"])
def test_serve_refuses_a_port_that_cannot_be(port: str, tmp_path: Path) -> None:
    done = trackbook(tmp_path, "serve", "--port", port)
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        f"error: --port must be a port number from 1 to 65535, not {port}"
    ]
    assert list(tmp_path.iterdir()) == []


def test_a_command_run_away_from_the_server_key_says_so_and_makes_none(tmp_path: Path) -> None:
    home, elsewhere = tmp_path / "home", tmp_path / "elsewhere"
    home.mkdir()
    elsewhere.mkdir()
    database_url = f"sqlite:///{home}/trackbook.db"
    assert trackbook(home, "migrate").returncode == 0
    assert trackbook(home, "accounts", "create", "Keyed").returncode == 0
    assert (home / "trackbook.key").exists()

    away = trackbook(elsewhere, "accounts", "show", "1", database_url=database_url)
    assert away.returncode == 1
    [line] = away.stderr.splitlines()
    assert "no server key" in line
    assert str(elsewhere / "trackbook.key") in line
    assert "TRACKBOOK_SECRET_KEY_FILE" in line
    assert list(elsewhere.iterdir()) == []

    (elsewhere / "trackbook.key").write_text(Fernet.generate_key().decode() + "\n")
    wrong = trackbook(elsewhere, "accounts", "show", "1", database_url=database_url)
    assert wrong.returncode == 1
    [line] = wrong.stderr.splitlines()
    assert "sealed with another server key" in line
    assert "Traceback" not in wrong.stderr

    pointed = trackbook(elsewhere, "accounts", "show", "1", database_url=database_url)
    assert pointed.returncode == 1  # the wrong key file is still there: nothing changed


def test_a_misspelt_setting_is_named_with_the_one_meant(tmp_path: Path) -> None:
    done = subprocess.run(
        ["trackbook", "accounts", "list"],
        env={**os.environ, "TRACKBOOK_DATABASE_URI": "sqlite:///elsewhere.db"},
        capture_output=True,
        text=True,
        check=False,
        cwd=tmp_path,
        timeout=120,
    )
    assert (
        "warning: TRACKBOOK_DATABASE_URI is not a Trackbook setting "
        "(did you mean TRACKBOOK_DATABASE_URL?); it is ignored"
    ) in done.stderr
