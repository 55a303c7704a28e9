"""The `trackbook` command, run as a user runs it."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import httpx
import orjson
from typer.testing import CliRunner

from tests.support import KEY, free_port, serving
from trackbook.cli import app


def invoke(runner: CliRunner, *args: str) -> str:
    result = runner.invoke(app, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def test_accounts_create_list_show_set(cli: CliRunner) -> None:
    created = invoke(cli, "accounts", "create", "Shop One", "--timezone", "Europe/Paris")
    account_id = re.search(r"id: (\d+)", created)
    assert account_id is not None
    assert "timezone: Europe/Paris" in created
    assert "tracking: on" in created
    listed = invoke(cli, "accounts", "list")
    assert re.search(rf"^\s*{account_id[1]}\s+Shop One\s+Europe/Paris\s+on", listed, re.M)
    changed = invoke(
        cli, "accounts", "set", account_id[1], "--tracking", "off", "--timezone", "Europe/Berlin"
    )
    assert "tracking: off" in changed
    assert "timezone: Europe/Berlin" in changed
    shown = invoke(cli, "accounts", "show", account_id[1])
    assert "tracking: off" in shown


def test_bad_input_is_a_one_line_error(cli: CliRunner) -> None:
    bad_zone = cli.invoke(app, ["accounts", "create", "X", "--timezone", "Nowhere/City"])
    assert bad_zone.exit_code == 1
    assert bad_zone.output.strip().startswith("error: ")
    missing = cli.invoke(app, ["accounts", "show", "999999999"])
    assert missing.exit_code == 1
    assert "does not exist" in missing.output


def test_keys_create_list_revoke(cli: CliRunner, database_url: str) -> None:
    account_id = re.search(r"id: (\d+)", invoke(cli, "accounts", "create", "Keys Inc"))
    assert account_id is not None
    created = invoke(cli, "keys", "create", "--account", account_id[1], "--name", "zapier")
    key = KEY.search(created)
    assert key is not None
    prefix = key[0][:16]
    listed = invoke(cli, "keys", "list", "--account", account_id[1])
    assert prefix in listed
    assert "zapier" in listed
    assert key[0] not in listed
    revoked = invoke(cli, "keys", "revoke", prefix)
    assert f"revoked {prefix}" in revoked
    again = cli.invoke(app, ["keys", "revoke", prefix])
    assert again.exit_code == 1
    assert "no live key" in again.output
    assert re.search(
        rf"{re.escape(prefix)}….*\d{{4}}-\d\d-\d\d \d\d:\d\d\s*$",
        invoke(cli, "keys", "list", "--account", account_id[1]),
        re.M,
    )


def test_wrong_setting_stops_with_one_line_naming_the_variable(tmp_path: Path) -> None:
    for name, value in (
        ("TRACKBOOK_PORT", "eighty"),
        ("TRACKBOOK_DATABASE_URL", "mysql://localhost/db"),
        ("TRACKBOOK_LOG_LEVEL", "loud"),
    ):
        result = subprocess.run(
            [sys.executable, "-m", "trackbook", "migrate"],
            env={**os.environ, name: value},
            capture_output=True,
            text=True,
            check=False,
            cwd=tmp_path,
            timeout=60,
        )
        assert result.returncode == 2, result.stderr
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1, result.stderr
        assert lines[0].startswith(f"error: {name}: "), lines


def test_first_serve_migrates_creates_an_account_and_prints_url_and_key(
    empty_database_url: str, tmp_path: Path
) -> None:
    port = free_port()
    with serving(empty_database_url, port, tmp_path) as output:
        assert f"http://127.0.0.1:{port}" in output
        key = KEY.search(output)
        assert key is not None, output
        headers = {"Authorization": f"Bearer {key[0]}"}
        account = httpx.get(f"http://127.0.0.1:{port}/v1/account", headers=headers, timeout=10)
        assert account.status_code == 200
        assert account.json()["name"] == "Default"
        tracked = httpx.post(
            f"http://127.0.0.1:{port}/v1/track",
            headers=headers,
            json={"event": "first", "contact": {"email": "new@example.com"}},
            timeout=10,
        )
        assert tracked.status_code == 201
    with serving(empty_database_url, port, tmp_path) as output:
        assert f"http://127.0.0.1:{port}" in output
        assert KEY.search(output) is None


def test_logs_are_json_lines_without_terminal_escapes(
    empty_database_url: str, tmp_path: Path
) -> None:
    # its standard error is a pipe here, as under systemd or docker: JSON lines
    with serving(empty_database_url, free_port(), tmp_path) as output:
        logged = [line for line in output.splitlines() if line.startswith("{")]
    messages = [orjson.loads(line)["message"] for line in logged]
    assert any(message.startswith("Uvicorn running on") for message in messages), output
    # the key made at the first start is logged like the rest, not as a plain line
    assert any(message.startswith("created the server key") for message in messages), output
    for line in logged:
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", orjson.loads(line)["time"])
    for line in logged:
        assert "\\u001b" not in line, line
        assert "\x1b" not in line, line
        assert "color_message" not in line, line


def test_migrate_builds_an_empty_database_and_is_repeatable(empty_database_url: str) -> None:
    runner = CliRunner(env={"TRACKBOOK_DATABASE_URL": empty_database_url})
    assert "has the newest schema" in invoke(runner, "migrate")
    assert "has the newest schema" in invoke(runner, "migrate")
    assert "name: Fresh" in invoke(runner, "accounts", "create", "Fresh")
    listed = invoke(runner, "keys", "list")
    assert listed.split() == [
        *("prefix", "account", "kind", "origins", "name", "created", "last", "used", "revoked")
    ]


def test_lists_create_and_list(cli: CliRunner) -> None:
    account_id = re.search(r"id: (\d+)", invoke(cli, "accounts", "create", "Lists Co"))
    assert account_id is not None
    created = invoke(cli, "lists", "create", "Newsletter", "--account", account_id[1])
    list_id = re.search(r"id: (\d+)", created)
    assert list_id is not None
    listed = invoke(cli, "lists", "list", "--account", account_id[1])
    assert re.search(rf"^\s*{list_id[1]}\s+Newsletter\s+0\s*$", listed, re.M)
    duplicate = cli.invoke(app, ["lists", "create", "Newsletter", "--account", account_id[1]])
    assert duplicate.exit_code == 1


def test_lists_delete(cli: CliRunner) -> None:
    account_id = re.search(r"id: (\d+)", invoke(cli, "accounts", "create", "Lists Co"))
    other_id = re.search(r"id: (\d+)", invoke(cli, "accounts", "create", "Other Co"))
    assert account_id is not None
    assert other_id is not None
    created = invoke(cli, "lists", "create", "Old", "--account", account_id[1])
    list_id = re.search(r"id: (\d+)", created)
    assert list_id is not None
    elsewhere = cli.invoke(app, ["lists", "delete", list_id[1], "--account", other_id[1]])
    assert elsewhere.exit_code == 1
    assert f"list {list_id[1]} does not exist" in elsewhere.output
    assert f"deleted list {list_id[1]}" in invoke(
        cli, "lists", "delete", list_id[1], "--account", account_id[1]
    )
    listed = invoke(cli, "lists", "list", "--account", account_id[1])
    assert "Old" not in listed


def test_accounts_show_and_rotate_the_activecampaign_event_key(cli: CliRunner) -> None:
    created = invoke(cli, "accounts", "create", "Tracked")
    account_id = re.search(r"^id: (\d+)", created, re.M)
    actid = re.search(r"^activecampaign actid: (\d{9})$", created, re.M)
    key = re.search(r"^activecampaign event key: ([0-9a-f]{40})$", created, re.M)
    assert account_id is not None, created
    assert actid is not None, created
    assert key is not None, created
    shown = invoke(cli, "accounts", "show", account_id[1])
    assert f"activecampaign event key: {key[1]}" in shown
    rotated = invoke(cli, "accounts", "rotate-event-key", account_id[1])
    new_key = re.search(r"^activecampaign event key: ([0-9a-f]{40})$", rotated, re.M)
    assert new_key is not None
    assert new_key[1] != key[1]
    assert f"activecampaign actid: {actid[1]}" in rotated


class _Hook(BaseHTTPRequestHandler):
    received: ClassVar[list[str]] = []

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["content-length"]))
        self.received.append(self.headers["webhook-id"])
        self.send_response(204)
        self.end_headers()

    def log_message(self, *_: object) -> None:
        pass


def test_serve_runs_a_worker_unless_told_not_to(empty_database_url: str, tmp_path: Path) -> None:
    _Hook.received.clear()
    hook = ThreadingHTTPServer(("127.0.0.1", 0), _Hook)
    threading.Thread(target=hook.serve_forever, daemon=True).start()
    env = {"TRACKBOOK_WEBHOOK_ALLOW_PRIVATE": "true", "TRACKBOOK_WORKER_POLL_SECONDS": "0.1"}
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    try:
        with serving(empty_database_url, port, tmp_path, env=env) as output:
            key = KEY.search(output)
            assert key is not None, output
            headers = {"Authorization": f"Bearer {key[0]}"}
            endpoint = httpx.post(
                f"{base}/v1/webhooks",
                headers=headers,
                json={"url": f"http://127.0.0.1:{hook.server_port}/", "event_names": ["*"]},
                timeout=10,
            ).json()
            event = {"event": "signup", "contact": {"email": "w@example.com"}}
            httpx.post(f"{base}/v1/track", headers=headers, json=event, timeout=10)
            deadline = time.monotonic() + 30
            while not _Hook.received and time.monotonic() < deadline:
                time.sleep(0.05)
            assert len(_Hook.received) == 1
        with serving(empty_database_url, port, tmp_path, "--no-worker", env=env):
            httpx.post(f"{base}/v1/track", headers=headers, json=event, timeout=10)
            time.sleep(1)  # ten polls of a worker, were one running
            deliveries = httpx.get(
                f"{base}/v1/webhooks/{endpoint['id']}/deliveries", headers=headers, timeout=10
            ).json()["data"]
            assert [d["status"] for d in deliveries] == ["pending", "delivered"]
            assert len(_Hook.received) == 1
    finally:
        hook.shutdown()
        hook.server_close()


def test_users_create_with_a_prompted_or_generated_password_and_list(cli: CliRunner) -> None:
    account_id = re.search(r"id: (\d+)", invoke(cli, "accounts", "create", "Users Co"))
    assert account_id is not None
    prompted = cli.invoke(
        app,
        ["users", "create", "Mia@Example.com", "--account", account_id[1]],
        input="a long enough secret\na long enough secret\n",
    )
    assert prompted.exit_code == 0, prompted.output
    assert "a long enough secret" not in prompted.output
    generated = invoke(
        cli, "users", "create", "leo@example.com", "--account", account_id[1], "--generate"
    )
    password = re.search(r"password \(shown once\): (\S+)", generated)
    assert password is not None
    assert len(password[1]) >= 10
    listed = invoke(cli, "users", "list", "--account", account_id[1])
    assert re.search(r"^\s*leo@example\.com\s", listed, re.M)
    assert re.search(r"^\s*mia@example\.com\s", listed, re.M)
    short = cli.invoke(
        app,
        ["users", "create", "x@example.com", "--account", account_id[1]],
        input="short\nshort\n",
    )
    assert short.exit_code == 1
    assert "password must be at least 10 characters" in short.output
