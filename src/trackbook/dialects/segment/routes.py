"""Segment's HTTP tracking API under /segment/v1, so that a Segment library given the
host `https://<trackbook>/segment` sends its calls to Trackbook unchanged.

Each call type has its route and analytics.js's one-letter alias (`/t`, `/i`, `/p`,
`/s`, `/a`, `/g`, and `/b` for batches). The write key is a Trackbook key, secret or
publishable: the Basic user name (password empty), else `writeKey` in the body.

A single call that cannot be read is a 400. In a batch each message stands alone: the
readable ones are stored, the others are kept in the dropped events with the reason,
and the batch is answered `{"success": true}` (Segment's own API answers 200 and drops
them unseen). `group` calls, and `identify`/`alias` calls that would join two
identified contacts, are accepted and dropped with the reason too. Nothing is answered
before what was stored is committed: if storage fails for any message, the answer is
503 and the sender retries; messageIds keep the retry from storing anything twice.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any

import orjson
from fastapi import Depends, Header, Request

from trackbook.accounts.service import Account
from trackbook.contacts.errors import ContactNotFound
from trackbook.contacts.identity import ContactRef, Credential
from trackbook.dialects.cors import credential_of, ingest_account
from trackbook.dialects.params import basic_credentials
from trackbook.dialects.responses import JSON
from trackbook.dialects.segment.body import (
    BATCH_MAX_BYTES,
    EVENT_MAX_BYTES,
    json_body,
    too_large,
)
from trackbook.dialects.segment.errors import PREFIX, SegmentRefused
from trackbook.dialects.segment.messages import (
    SOURCE,
    BatchIn,
    Error,
    MessageIn,
    Plan,
    Success,
    as_message_error,
    moment,
    naming,
    plan,
)
from trackbook.errors import DomainError, Invalid, StorageUnavailable
from trackbook.events import dropped
from trackbook.events.errors import CatalogFull, TrackingDisabled
from trackbook.events.model import TrackCommand
from trackbook.events.validation import check_depth
from trackbook.ratelimits import key_identity
from trackbook.routing import PrefixRouter
from trackbook.services import Services, services_of

router = PrefixRouter(prefix=PREFIX + "/v1", tags=["Segment dialect"])
ServicesDep = Annotated[Services, Depends(services_of)]
AuthorizationHeader = Annotated[
    str | None,
    Header(description="Basic base64(<write key>:), the write key a Trackbook API key"),
]
SHORT = {"track": "t", "identify": "i", "page": "p", "screen": "s", "alias": "a", "group": "g"}
SUCCESS = {"success": True}
_ERRORS = {
    status: {"model": Error, "description": description}
    for status, description in (
        (400, "Malformed JSON, beyond the size limits, or (single calls) unreadable"),
        (401, "No write key, or not a live one"),
        (403, "A publishable key used from an origin it does not list"),
        (429, "Rate limited; retry after Retry-After seconds"),
        (503, "Storage unavailable: nothing acknowledged, retry after Retry-After seconds"),
    )
}


@dataclass(frozen=True, slots=True)
class Call:
    account: Account
    credential: Credential
    body: dict[str, Any]
    received_at: datetime


async def _call(
    request: Request, services: Services, authorization: str | None, limit: int
) -> Call:
    received_at = services.clock.now()
    body = await json_body(request, limit)
    credentials = basic_credentials(authorization)
    write_key = credentials[0] if credentials is not None else body.get("writeKey")
    secret = write_key if isinstance(write_key, str) else None
    account = await ingest_account(request, services, secret)
    await services.limiter.check(
        request, "segment", f"account:{account.id}", key_identity(secret or "")
    )
    return Call(account, credential_of(request, SOURCE), body, received_at)


async def single_call(
    request: Request, services: ServicesDep, authorization: AuthorizationHeader = None
) -> Call:
    return await _call(request, services, authorization, EVENT_MAX_BYTES)


async def batch_call(
    request: Request, services: ServicesDep, authorization: AuthorizationHeader = None
) -> Call:
    return await _call(request, services, authorization, BATCH_MAX_BYTES)


def _storable(message: Any) -> Any:
    """The message as a dropped event's payload, without the write key it may carry
    (keys are never stored in plaintext); text no database can keep (NUL, lone
    surrogates) leaves only its messageId."""
    if isinstance(message, dict):
        message = {name: value for name, value in message.items() if name.lower() != "writekey"}
    try:
        text = orjson.dumps(message).decode()
    except TypeError:
        text = "\\u0000"
    if "\\u0000" in text:
        return {"messageId": str(message.get("messageId")) if isinstance(message, dict) else None}
    return message


def _text_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) else None


@dataclass(slots=True)
class _Outcome:
    """What became of the messages of one request, as it is worked out."""

    plans: list[tuple[dict[str, Any], str, Plan]]
    drops: list[tuple[str, dict[str, Any], ContactRef]]

    def drop(self, reason: str, message: Any, kind: str, error: str | None = None) -> None:
        payload: dict[str, Any] = {"message": _storable(message)}
        if error is not None:
            payload["error"] = error
        self.drops.append((reason, payload, naming(message, kind)))


def _plan_all(
    messages: Sequence[tuple[Any, str]],
    *,
    strict: bool,
    sent_at: datetime | None,
    received_at: datetime,
) -> _Outcome:
    outcome = _Outcome([], [])
    for index, (message, kind) in enumerate(messages):
        message_id = message.get("messageId") if isinstance(message, dict) else None
        try:
            # before anything walks the message: each stands alone, as in Segment
            check_depth(message, "body" if strict else f"batch.{index}")
        except Invalid as too_deep:
            if strict:
                raise
            payload = {"messageId": _text_or_none(message_id)}
            outcome.drop(dropped.INVALID, payload, kind, too_deep.message)
            continue
        if not strict and len(orjson.dumps(message)) > EVENT_MAX_BYTES:
            error = too_large(f"batch.{index}", EVENT_MAX_BYTES).message
            outcome.drop(dropped.TOO_LARGE, {"messageId": message_id}, kind, error)
            continue
        try:
            planned = plan(message, kind, batch_sent_at=sent_at, received_at=received_at)
        except Invalid as error:
            if strict:
                raise
            outcome.drop(
                dropped.INVALID, message, kind, f"batch.{index}.{error.field} {error.reason}"
            )
            continue
        if planned.drop_reason is not None:
            outcome.drop(
                planned.drop_reason, message, kind, f"Trackbook does not store {kind} calls"
            )
            continue
        outcome.plans.append((message, kind, planned))
    return outcome


async def ingest(
    call: Call,
    services: Services,
    messages: Sequence[tuple[Any, str]],
    *,
    strict: bool,
    sent_at: datetime | None = None,
) -> JSON:
    """Links identities, then records events, each message on its own (strict: a single
    call, whose unreadable message is the answer's 400)."""
    outcome = _plan_all(messages, strict=strict, sent_at=sent_at, received_at=call.received_at)
    links = list(dict.fromkeys(p.link for _, _, p in outcome.plans if p.link is not None))
    linked = await services.contacts.link(call.account.id, links, credential=call.credential)
    conflicts = dict(zip(links, linked, strict=True))
    commands: list[tuple[dict[str, Any], str, TrackCommand]] = []
    for message, kind, planned in outcome.plans:
        conflict = conflicts.get(planned.link) if planned.link is not None else None
        if conflict is not None and planned.command is None:
            outcome.drop(dropped.IDENTITY_CONFLICT, message, kind, conflict.message)
        if planned.command is not None:
            commands.append((message, kind, planned.command))
    results = await services.events.track_many(call.account, [c for _, _, c in commands])
    unavailable: Exception | None = None
    for (message, kind, _), result in zip(commands, results, strict=True):
        match result:
            case StorageUnavailable():
                unavailable = result
            case TrackingDisabled():
                outcome.drop(dropped.TRACKING_DISABLED, message, kind)
            case ContactNotFound():
                outcome.drop(dropped.UNKNOWN_CONTACT, message, kind, result.message)
            case CatalogFull() if not strict:
                pass  # the core recorded it as dropped, with the reason
            case DomainError() if strict:
                raise as_message_error(result)
            case DomainError():
                outcome.drop(dropped.INVALID, message, kind, as_message_error(result).message)
    if unavailable is not None:
        raise unavailable
    if outcome.drops:
        await services.db.write(
            dropped.record_many,
            call.account.id,
            source=SOURCE,
            drops=outcome.drops,
            now=services.clock.now(),
        )
    return JSON(SUCCESS)


SingleDep = Annotated[Call, Depends(single_call)]
BatchDep = Annotated[Call, Depends(batch_call)]


def _documented(model: type[MessageIn | BatchIn]) -> dict[str, Any]:
    schema = model.model_json_schema(by_alias=True)
    return {
        "responses": {200: {"model": Success}, **_ERRORS},
        "openapi_extra": {
            "requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}
        },
    }


async def batch(call: BatchDep, services: ServicesDep) -> JSON:
    """Messages of every type (each with its `type`), at most 500 KB, 32 KB each."""
    body = call.body
    items = body.get("batch")
    if not isinstance(items, list):
        raise SegmentRefused("batch must be a list of messages")
    sent_at = moment(body.get("sentAt"), "sentAt") if body.get("sentAt") is not None else None
    context = body.get("context")
    messages = [
        (_with_context(item, context), str(item.get("type")) if isinstance(item, dict) else "")
        for item in items
    ]
    return await ingest(call, services, messages, strict=False, sent_at=sent_at)


def _with_context(message: Any, context: Any) -> Any:
    """The batch's context under the message's own (the message's keys win)."""
    if not isinstance(context, dict) or not isinstance(message, dict):
        return message
    own = message.get("context")
    return {**message, "context": {**context, **(own if isinstance(own, dict) else {})}}


def _single(kind: str) -> Callable[[Call, Services], Coroutine[Any, Any, JSON]]:
    async def endpoint(call: SingleDep, services: ServicesDep) -> JSON:
        return await ingest(call, services, [(call.body, kind)], strict=True)

    endpoint.__doc__ = f"One {kind} call, at most 32 KB."
    return endpoint


for _kind, _short in SHORT.items():
    for _path in (f"/{_kind}", f"/{_short}"):
        router.add_api_route(
            _path,
            _single(_kind),
            methods=["POST"],
            name=f"segment_{_path.strip('/')}",
            **_documented(MessageIn),
        )
for _path in ("/batch", "/b"):
    router.add_api_route(
        _path, batch, methods=["POST"], name=f"segment_{_path.strip('/')}", **_documented(BatchIn)
    )
