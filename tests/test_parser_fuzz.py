"""Hypothesis against every dialect's body parsing: random bytes, JSON and PHP-style
forms under random content types, Segment's messages and batches plain or gzipped,
each with the credentials its dialect takes, never get a 5xx, and always get a JSON
answer."""

from __future__ import annotations

import gzip
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
    "/segment/v1/track",
    "/segment/v1/identify",
    "/segment/v1/batch",
    "/segment/v1/t",
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
        "APIKey", "ListID", "Command", "subscriber_id", "repeatable", "anonymous_id",
        "writeKey", "userId", "anonymousId", "type", "batch", "traits", "properties",
        "messageId", "timestamp", "context", "sentAt"]  # fmt: skip
SEGMENT_TYPES = ["track", "identify", "page", "screen", "alias", "group", "Track", "other"]
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
segment_messages = st.fixed_dictionaries(
    {"type": st.one_of(st.sampled_from(SEGMENT_TYPES), scalars)},
    optional={
        "userId": scalars,
        "anonymousId": scalars,
        "event": scalars,
        "name": scalars,
        "previousId": scalars,
        "groupId": scalars,
        "messageId": scalars,
        "timestamp": st.one_of(scalars, st.datetimes().map(lambda moment: moment.isoformat())),
        "properties": json_values,
        "traits": json_values,
        "context": json_values,
    },
)


def _credentials(route: str, secret: str, actid: str, event_key: str) -> dict[str, str]:
    """What each dialect takes as credentials in the body (or the query)."""
    if route.startswith(("/api/v1/", "/api.php")):
        return {"APIKey": secret}
    if route == "/event":
        return {"actid": actid, "key": event_key}
    if route.startswith("/admin/api.php"):
        return {"api_key": secret, "actid": actid, "key": event_key}
    return {}


def bodies(credentials: dict[str, Any], segment: bool) -> st.SearchStrategy[bytes]:
    def encoded(body: Any) -> bytes:
        return json.dumps(body, ensure_ascii=False).encode("utf-8", "replace")

    as_json = st.dictionaries(st.sampled_from(KEYS), json_values, max_size=6).map(
        lambda body: encoded(credentials | body)
    )
    as_form = st.lists(st.tuples(st.sampled_from(KEYS), st.text(max_size=20)), max_size=8).map(
        lambda pairs: urlencode(list(credentials.items()) + pairs).encode()
    )
    if not segment:
        return st.one_of(as_json, as_form, st.binary(max_size=200))
    as_message = segment_messages.map(lambda message: encoded(credentials | message))
    as_batch = st.fixed_dictionaries(
        {"batch": st.lists(segment_messages, max_size=3)},
        optional={"context": json_values, "sentAt": json_values},
    ).map(lambda batch: encoded(credentials | batch))
    return st.one_of(as_message, as_batch, as_json, st.binary(max_size=200))


def _authorizations(route: str, key: str) -> list[str | None]:
    """The header each dialect's clients send first, then others it must refuse cleanly."""
    bearer = f"Bearer {key}"
    if route.startswith("/segment/"):  # the write key as the Basic user name, or in the body
        return [httpx.BasicAuth(key, "")._auth_header, None, bearer]
    if route.startswith("/wp-json/"):  # a WordPress application password
        return [httpx.BasicAuth("wp", key)._auth_header, bearer]
    return [bearer, None]


@settings(
    max_examples=400,
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
    segment = route.startswith("/segment/")
    credentials = _credentials(
        route, tenant.key, account.actid, services.keyring.open(account.sealed_event_key)
    )
    if segment and data.draw(st.booleans()):
        credentials = {"writeKey": tenant.key}
    body = data.draw(bodies(credentials, segment))
    content_type = data.draw(st.sampled_from(CONTENT_TYPES))
    headers: dict[str, Any] = {"Api-Token": tenant.key}
    authorization = data.draw(st.sampled_from(_authorizations(route, tenant.key)))
    if authorization is not None:
        headers["Authorization"] = authorization
    if content_type is not None:
        headers["Content-Type"] = content_type
    if segment:
        encoding = data.draw(st.sampled_from(["identity", "gzip", "gzip, not compressed"]))
        if encoding == "gzip":
            body = gzip.compress(body)
        if encoding != "identity":
            headers["Content-Encoding"] = "gzip"
    response = await client.post(route, content=body, headers=headers)
    assert response.status_code < 500, (route, headers, body, response.text)
    response.json()  # every dialect answers JSON, errors included
