"""The events the benchmark sends: a fixed spread of contacts and event names,
pre-serialised as HTTP/1.1 requests so the load generator only copies bytes."""

from __future__ import annotations

import base64
import random
from typing import Any
from urllib.parse import urlencode

import orjson

CONTACTS = 1000
BATCH_SIZE = 100
# Every event name comes with the title a shop or a newsletter would give it, so the
# per-(contact, name, title) counters grow to a realistic 5 x CONTACTS rows.
EVENT_KINDS = (
    ("purchase", "Order"),
    ("page_view", "Pricing page"),
    ("cart_add", "Cart"),
    ("email_open", "Newsletter 47"),
    ("signup", "Trial"),
)
SKUS = ("A-1", "A-2", "B-7", "C-12", "D-3")


def email_of(contact: int) -> str:
    return f"user{contact:04d}@example.com"


def event_body(picker: random.Random, contact: int | None = None) -> dict[str, Any]:
    """One /v1/track body; a random contact unless `contact` is given."""
    name, title = picker.choice(EVENT_KINDS)
    who = picker.randrange(CONTACTS) if contact is None else contact
    return {
        "event": name,
        "contact": {"email": email_of(who)},
        "title": title,
        "value": f"{picker.randrange(500, 20000) / 100:.2f}",
        "properties": {"sku": picker.choice(SKUS), "qty": picker.randrange(1, 5)},
    }


def http_post(port: int, path: str, key: str, body: Any) -> bytes:
    """A complete keep-alive POST request with a JSON body."""
    return _request(port, path, orjson.dumps(body), "application/json", f"Bearer {key}")


def _request(
    port: int, path: str, payload: bytes, content_type: str, authorization: str | None = None
) -> bytes:
    head = f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
    if authorization is not None:
        head += f"Authorization: {authorization}\r\n"
    head += f"Content-Type: {content_type}\r\nContent-Length: {len(payload)}\r\n\r\n"
    return head.encode() + payload


# Each dialect's track route, as its vendor's clients call it, for the same event as a
# /v1/track body; every one answers 200.
DIALECT_ROUTES = ("fluentcrm", "octeth", "trackcmp", "v1", "segment")
SEGMENT_TRACK = "/segment/v1/track"
SEGMENT_BATCH = "/segment/v1/batch"
V1_PATH = "/admin/api.php?api_action=track_event_add&api_output=json"


def dialect_request(
    dialect: str, port: int, key: str, actid: str, event_key: str, body: dict[str, Any]
) -> bytes:
    email = body["contact"]["email"]
    if dialect == "fluentcrm":
        fields = {
            "event_key": body["event"],
            "title": body["title"],
            "email": email,
            "value": body["value"],
            "provider": "bench",
        }
        path = "/wp-json/fluent-crm/v2/subscribers/track-event"
        return _request(
            port, path, orjson.dumps(fields), "application/json", _basic("fcadmin", key)
        )
    if dialect == "octeth":
        fields = {
            "Command": "event.track",
            "APIKey": key,
            "Event": body["event"],
            "Email": email,
            "Properties": body["properties"],
        }
        return _request(port, "/api/v1/event", orjson.dumps(fields), "application/json")
    form = {
        "actid": actid,
        "key": event_key,
        "event": body["event"],
        "eventdata": body["value"],
        "visit": orjson.dumps({"email": email}).decode(),
    }
    if dialect == "trackcmp":
        path = "/event"
    else:
        form["api_key"] = key
        path = V1_PATH
    return _request(port, path, urlencode(form).encode(), "application/x-www-form-urlencoded")


def user_id_of(email: str) -> str:
    """The Segment userId the benchmark gives a contact: its email's local part."""
    return email.partition("@")[0]


def visitor_of(email: str) -> str:
    """The browser visitor id (Segment anonymousId, Octeth UUID) of a contact."""
    return f"visitor-{user_id_of(email)}"


def segment_request(port: int, key: str, body: dict[str, Any], message_id: str) -> bytes:
    """The /v1/track body as analytics-python sends it: a track call by userId."""
    message = {
        "userId": user_id_of(body["contact"]["email"]),
        "event": body["event"],
        "properties": {**body["properties"], "title": body["title"], "value": body["value"]},
        "messageId": message_id,
    }
    return _request(port, SEGMENT_TRACK, orjson.dumps(message), "application/json", _basic(key))


def segment_identify_batches(port: int, key: str) -> list[bytes]:
    """Batches of identify calls giving each contact a userId and a visitor id, as a
    shop's site does on sign-in: the steady state the Segment and Octeth phases see."""
    requests = []
    for start in range(0, CONTACTS, BATCH_SIZE):
        emails = [email_of(contact) for contact in range(start, start + BATCH_SIZE)]
        messages = [
            {
                "type": "identify",
                "userId": user_id_of(email),
                "anonymousId": visitor_of(email),
                "traits": {"email": email},
            }
            for email in emails
        ]
        payload = orjson.dumps({"batch": messages})
        requests.append(_request(port, SEGMENT_BATCH, payload, "application/json", _basic(key)))
    return requests


def _basic(user: str, password: str = "") -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def single_events(seed: int, count: int) -> list[dict[str, Any]]:
    picker = random.Random(seed)
    return [event_body(picker) for _ in range(count)]


def batches(seed: int, count: int) -> list[list[dict[str, Any]]]:
    picker = random.Random(seed)
    return [[event_body(picker) for _ in range(BATCH_SIZE)] for _ in range(count)]


def every_contact_batches() -> list[list[dict[str, Any]]]:
    """Batches naming each contact once: the warm-up that creates all contacts."""
    picker = random.Random(0)
    return [
        [event_body(picker, contact) for contact in range(start, start + BATCH_SIZE)]
        for start in range(0, CONTACTS, BATCH_SIZE)
    ]
