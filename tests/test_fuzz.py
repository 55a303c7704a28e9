"""Schemathesis against the OpenAPI of /v1 and every dialect, on a served Trackbook:
no server errors, no answer that contradicts the schema. The example count is bounded
so the whole run fits in CI; the long variant (100 examples per operation) is marked
`long`: `pytest -m long tests/test_fuzz.py`."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance

from tests.conftest import _new_database
from tests.support import UNLIMITED, free_port
from tests.test_cli import serving

KEY = re.compile(r"tb_live_[A-Za-z0-9]{40}")


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


@pytest.fixture(scope="module")
def api_schema(live_api: tuple[str, str]) -> schemathesis.BaseSchema:
    return schemathesis.openapi.from_url(f"{live_api[0]}/openapi.json")


schema = schemathesis.pytest.from_fixture("api_schema")


def _check(case: schemathesis.Case, live_api: tuple[str, str]) -> None:
    base_url, key = live_api
    case.call_and_validate(
        base_url=base_url,
        headers={"Authorization": f"Bearer {key}", "Api-Token": key},
        checks=[not_a_server_error, response_schema_conformance],
    )


def _examples(count: int) -> settings:
    return settings(
        max_examples=count, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck)
    )


@schema.parametrize()
@_examples(6)
def test_no_server_error_and_answers_match_the_schema(
    case: schemathesis.Case, live_api: tuple[str, str]
) -> None:
    _check(case, live_api)


@pytest.mark.long
@schema.parametrize()
@_examples(100)
def test_no_server_error_and_answers_match_the_schema_long(
    case: schemathesis.Case, live_api: tuple[str, str]
) -> None:
    _check(case, live_api)
