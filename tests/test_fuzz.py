"""Schemathesis against the OpenAPI of /v1 and every dialect, on a served Trackbook:
no server errors, no answer that contradicts the schema. The example count is bounded
so the whole run fits in CI; the long variant (100 examples per operation) is marked
`long`: `pytest -m long tests/test_fuzz.py`."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Err
from schemathesis.specs.openapi.checks import response_schema_conformance

from tests.conftest import _new_database
from tests.support import KEY, UNLIMITED, free_port, serving


@pytest.fixture(scope="module")
def live_api(backend: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    url, remove = _new_database(backend, tmp_path_factory.mktemp(f"fuzz-{backend}"))
    port = free_port()
    env = {f"TRACKBOOK_{name.upper()}": value for name, value in UNLIMITED.items()}
    try:
        with serving(url, port, tmp_path_factory.mktemp("cwd"), env=env) as output:
            key = KEY.search(output)
            assert key is not None, output
            yield f"http://127.0.0.1:{port}", key[0]
    finally:
        remove()


DIALECTS = (
    ("/v1/", "native"),
    ("/wp-json/", "fluentcrm"),
    ("/api/3/", "activecampaign"),
    ("/event", "activecampaign"),
    ("/admin/api.php", "activecampaign"),
    ("/api/v1/", "octeth"),
    ("/api.php", "octeth"),
    ("/segment/", "segment"),
)
ANSWERS: Counter[tuple[str, str, int]] = Counter()
"""Answers per (backend, dialect, status) in this run: a fuzz whose cases all bounce
off authentication proves nothing about what lies behind it."""


def _dialect(path: str) -> str | None:
    return next((name for prefix, name in DIALECTS if path.startswith(prefix)), None)


def _credentials(path: str, key: str) -> tuple[dict[str, str], dict[str, str]]:
    """The key as each dialect's clients present it: (headers, query parameters)."""
    basic = httpx.BasicAuth
    match _dialect(path):
        case "fluentcrm":  # a WordPress application password
            return {"Authorization": basic("wp", key)._auth_header}, {}
        case "segment":  # the write key as the Basic user name
            return {"Authorization": basic(key, "")._auth_header}, {}
        case "octeth":
            return {}, {"APIKey": key}
        case "activecampaign" if path == "/admin/api.php":
            return {}, {"api_key": key}
        case "activecampaign":
            return {"Api-Token": key}, {}
    return {"Authorization": f"Bearer {key}"}, {}


def _check(case: schemathesis.Case, live_api: tuple[str, str], backend: str) -> None:
    base_url, key = live_api
    headers, params = _credentials(case.path, key)
    response = case.call_and_validate(
        base_url=base_url,
        headers=headers,
        params=params,
        checks=[not_a_server_error, response_schema_conformance],
    )
    dialect = _dialect(case.path)
    if dialect is not None:
        ANSWERS[backend, dialect, response.status_code] += 1


def _examples(count: int) -> settings:
    return settings(
        max_examples=count, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck)
    )


def _fuzz(live_api: tuple[str, str], backend: str, examples: int) -> None:
    """Every operation of the served schema, each with its own Hypothesis run. The
    cases come from the operations' strategies rather than schemathesis' pytest plugin,
    whose lazy fixture loader reaches into pytest's private attributes (it broke with
    pytest 9.2); failures of all operations are reported together."""
    api = schemathesis.openapi.from_url(f"{live_api[0]}/openapi.json")
    failures: list[str] = []
    for result in api.get_all_operations():
        if isinstance(result, Err):
            failures.append(f"schema: {result.err()}")
            continue
        operation = result.ok()

        @given(case=operation.as_strategy())
        @_examples(examples)
        def run(case: schemathesis.Case) -> None:
            _check(case, live_api, backend)

        try:
            run()
        except Exception as error:  # every operation runs; each failure is reported
            failures.append(f"{operation.label}: {error}")
    assert not failures, "\n\n".join(failures)


def test_no_server_error_and_answers_match_the_schema(
    live_api: tuple[str, str], backend: str
) -> None:
    _fuzz(live_api, backend, 6)


@pytest.mark.long
def test_no_server_error_and_answers_match_the_schema_long(
    live_api: tuple[str, str], backend: str
) -> None:
    _fuzz(live_api, backend, 100)


@pytest.mark.parametrize("variant", ["short", pytest.param("long", marks=pytest.mark.long)])
def test_every_dialect_got_past_authentication(backend: str, variant: str) -> None:
    """Runs after the cases above: pytest keeps a module's order within each backend."""
    answers = {(d, status): n for (b, d, status), n in ANSWERS.items() if b == backend}
    if not answers:
        pytest.skip(f"no fuzz case of the {variant} variant ran in this session")
    dialects = {name for _, name in DIALECTS}
    authenticated = {dialect for dialect, status in answers if status not in (401, 403)}
    assert authenticated == dialects, answers
    succeeded = {dialect for dialect, status in answers if 200 <= status < 300}
    # Octeth's routes document no parameters in the OpenAPI, so no generated case
    # names an event or a list: its answers are its own 4xx, past authentication.
    assert succeeded == dialects - {"octeth"}, answers
