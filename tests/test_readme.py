"""The README is true when copy-pasted: its set-up commands are CI's, its examples run
against a live server, its commands and settings are the real ones, its links stay in
the repository."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import typer

from tests.support import KEY, free_port, serving
from trackbook.cli import app
from trackbook.settings import reference

ROOT = Path(__file__).parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")
FENCED = re.compile(r"^```(\w*)\n(.*?)^```$", re.M | re.S)
SHOWN_URL = "http://127.0.0.1:8000"
SHOWN_KEY = "tb_live_..."
CURL_FAILS_ON_4XX = 'curl() { command curl --silent --show-error --fail-with-body "$@"; }\n'


def _blocks(language: str) -> list[str]:
    return [body for lang, body in FENCED.findall(README) if lang == language]


def test_the_set_up_commands_are_what_ci_runs() -> None:
    first, second = (block.strip() for block in _blocks("sh")[:2])
    assert "-c constraints.txt -e ." in first
    assert first.endswith("trackbook serve")
    assert "-c constraints.txt -e '.[test]'" in second
    assert second.endswith("pytest")
    # both share one venv and one editable install, so the second never breaks the first
    assert first.split(" && pip ")[0] == second.split(" && pip ")[0]
    assert second in (ROOT / ".ci" / "run").read_text(encoding="utf-8")


def test_the_configuration_table_lists_every_setting() -> None:
    assert reference() in README, (
        "the README's configuration table differs from the settings: paste the output of "
        "`python -m trackbook.settings` under 'Configuration'"
    )


def test_links_stay_inside_the_repository() -> None:
    assert "../shared" not in README
    for target in re.findall(r"\]\(([^)]+)\)", README):
        assert "://" not in target, target
        assert (ROOT / target.split("#")[0]).exists(), target


def _commands_shown() -> list[list[str]]:
    """Every `trackbook …` the README shows, in code spans and shell blocks."""
    shown = list(re.findall(r"`(trackbook [^`]+)`", README))
    for block in _blocks("sh"):
        shown += [
            line.split(" && ")[-1] if "&&" in line else line
            for line in block.splitlines()
            if line.startswith("trackbook ") or "&& trackbook " in line
        ]
    return [
        re.sub(r"#.*", "", command).replace("[", " ").replace("]", " ").split()[1:]
        for command in shown
    ]


def test_every_command_shown_exists_with_its_required_options() -> None:
    # typer builds on a click of its own: its commands are read by their attributes
    group: Any = typer.main.get_command(app)
    shown = _commands_shown()
    assert len(shown) > 20
    for words in shown:
        command = group
        path = []
        while hasattr(command, "commands") and words and words[0] in command.commands:
            path.append(words[0])
            command = command.commands[words.pop(0)]
        assert path, f"trackbook {' '.join(words)}: no such command"
        known = {opt for param in command.params for opt in param.opts + param.secondary_opts}
        for word in words:
            if word.startswith("--"):
                assert word.split("=")[0] in known, f"trackbook {' '.join(path)}: {word}"
        if not words:  # the command named in prose, not an example of its use
            continue
        for param in command.params:
            if param.param_type_name == "option" and param.required:
                assert set(param.opts) & set(words), (
                    f"`trackbook {' '.join(path)}` is shown without {param.opts[0]}"
                )


def _run_shell(block: str, base_url: str, key: str) -> str:
    """One example, with `URL` and `KEY` as the first one sets them for those after it."""
    script = block.replace(SHOWN_URL, base_url).replace(SHOWN_KEY, key)
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", CURL_FAILS_ON_4XX + script],
        env={**os.environ, "URL": base_url, "KEY": key},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, f"{script}\n---\n{done.stdout}\n{done.stderr}"
    return done.stdout


def test_the_examples_run_against_a_live_server(empty_database_url: str, tmp_path: Path) -> None:
    port = free_port()
    with serving(empty_database_url, port, tmp_path) as output:
        key = KEY.search(output)
        assert key is not None, output
        base_url = f"http://127.0.0.1:{port}"
        examples = [block for block in _blocks("sh") if "curl " in block]
        assert len(examples) >= 4
        answers = [_run_shell(block, base_url, key[0]) for block in examples]
        assert '"duplicate":false' in answers[0].replace(" ", "")
        for block in _blocks("python"):
            script = block.replace(SHOWN_URL, base_url).replace(SHOWN_KEY, key[0])
            done = subprocess.run(
                [sys.executable, "-c", script],
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
            assert done.returncode == 0, done.stderr

        headers = {"Authorization": f"Bearer {key[0]}"}
        names = httpx.get(f"{base_url}/v1/event-names", headers=headers, timeout=10).json()
        recorded = {item["name"] for item in names["data"]}
        assert {"purchase", "Order Completed"} <= recorded, names
        automations = httpx.get(f"{base_url}/v1/automations", headers=headers, timeout=10)
        assert [a["name"] for a in automations.json()["data"]] == ["Send the download link"]
        segments = httpx.get(f"{base_url}/v1/segments", headers=headers, timeout=10).json()
        assert {s["name"] for s in segments["data"]} == {"Loyal buyers", "Subscribed"}
