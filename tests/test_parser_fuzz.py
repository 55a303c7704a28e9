"""Hypothesis against every dialect's body parsing: random bytes, JSON and PHP-style
forms under random content types never get a 5xx, and always get a JSON answer."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlencode

import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support import Tenant
from trackbook.accounts import service as accounts
from trackbook.services import Services

ROUTES = [
    "/v1/track",
    "/v1/batch",
    "/v1/identify",
    "/wp-json/fluent-crm/v2/subscribers/track-event",
    "/wp-json/fluent-crm/v2/subscribers",
    "/api/v1/event",
    "/api.php",
    "/event",
    "/admin/api.php?api_action=track_event_add",
    "/api/3/eventTrackingEvents",
    "/api/3/contacts",
]
CONTENT_TYPES = [
    "application/json",
    "application/x-www-form-urlencoded",
    "text/plain",
    "multipart/form-data; boundary=x",
    "application/json; charset=latin-1",
    None,
]
KEYS = ["event", "Event", "email", "Email", "event_key", "title", "value", "Properties",
        "Properties[a]", "visit[email]", "eventdata", "contact", "events", "actid", "key",
        "APIKey", "ListID", "Command", "subscriber_id", "repeatable", "anonymous_id"]  # fmt: skip
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False),
    st.text(max_size=30),
)
json_values = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(
            st.one_of(st.sampled_from(KEYS), st.text(max_size=8)), children, max_size=5
        ),
    ),
    max_leaves=12,
)


def bodies(secret: str, actid: str, event_key: str) -> st.SearchStrategy[bytes]:
    credentials = {"APIKey": secret, "actid": actid, "key": event_key, "api_key": secret}
    as_json = st.dictionaries(st.sampled_from(KEYS), json_values, max_size=6).map(
        lambda body: json.dumps(credentials | body, ensure_ascii=False).encode("utf-8", "replace")
    )
    as_form = st.lists(st.tuples(st.sampled_from(KEYS), st.text(max_size=20)), max_size=8).map(
        lambda pairs: urlencode(list(credentials.items()) + pairs).encode()
    )
    return st.one_of(as_json, as_form, st.binary(max_size=200))


@settings(
    max_examples=300,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
async def test_no_body_makes_any_dialect_fail_with_a_server_error(
    data: st.DataObject, client: httpx.AsyncClient, tenant: Tenant, services: Services
) -> None:
    account = await services.db.query(accounts.get_account, tenant.id)
    route = data.draw(st.sampled_from(ROUTES))
    body = data.draw(
        bodies(tenant.key, account.actid, services.keyring.open(account.sealed_event_key))
    )
    content_type = data.draw(st.sampled_from(CONTENT_TYPES))
    basic = httpx.BasicAuth("wp", tenant.key)._auth_header  # WordPress application password
    authorization = data.draw(st.sampled_from([f"Bearer {tenant.key}", basic]))
    headers: dict[str, Any] = {"Authorization": authorization, "Api-Token": tenant.key}
    if content_type is not None:
        headers["Content-Type"] = content_type
    response = await client.post(route, content=body, headers=headers)
    assert response.status_code < 500, (route, content_type, body, response.text)
    response.json()  # every dialect answers JSON, errors included
