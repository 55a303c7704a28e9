"""What an operator sees when `trackbook` starts: a database URL in its usual form."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.support import create_postgres_database, drop_postgres_database, require_postgres
from trackbook.cli import app
from trackbook.settings import Settings


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
