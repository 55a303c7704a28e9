"""The worker: claims automation runs and webhook deliveries from the outbox and
carries them out, retrying with backoff and recording every attempt.

A claim is a lease: the row is the worker's until `claimed_until`. A worker killed
mid-step leaves the lease to expire, and the step is done again by whichever worker
claims it next, with the same webhook-id: delivery is at least once. Workers on
PostgreSQL claim with FOR UPDATE SKIP LOCKED, so two never hold the same row; every
update after the claim is conditional on still holding it.

Fair across accounts: a batch is claimed round-robin by account, and an account's email
steps beyond its first take only idle renderers (`_render_turn`); one account's slow
templates so cannot fill a batch, or every renderer, while another's email waits.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
import traceback
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import aiosmtplib
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from trackbook.accounts.service import get_account
from trackbook.automations.definition import check_recipient, wait_of
from trackbook.automations.service import Automation, get_automation
from trackbook.automations.triggers import new_webhook_id
from trackbook.clock import Clock
from trackbook.contacts import service as contacts
from trackbook.contacts.errors import ContactNotFound
from trackbook.contacts.identity import ContactRef, UnknownContact
from trackbook.db.engine import Database
from trackbook.db.partitions import ensure_partitions
from trackbook.db.tables import (
    automation_runs,
    deliveries,
    delivery_attempts,
    events,
    webhook_endpoints,
)
from trackbook.db.upsert import upsert
from trackbook.delivery.email import EmailNotConfigured, Mailer, build_message
from trackbook.delivery.personalise import RenderError, events_named, template_context
from trackbook.delivery.renderer import Renderer
from trackbook.delivery.webhooks import SendResult, WebhookSender
from trackbook.errors import DomainError, Invalid, NotFound, StorageUnavailable, bounded
from trackbook.events.model import Derivation, Event, TrackCommand
from trackbook.events.queries import get_event
from trackbook.events.service import EventService
from trackbook.keyring import Keyring, KeyringError
from trackbook.metrics import DELIVERIES, EMAILS
from trackbook.settings import Settings

log = logging.getLogger(__name__)
MAX_BACKOFF = timedelta(days=1)
CLAIM_BATCH = 10
PARTITION_CHECK = timedelta(hours=1)


class StepFailed(Exception):
    """Why a step or a delivery failed: every error kept (a run's or a delivery's
    last_error, an attempt's error) or logged about one is this text, so it is bounded
    here, once."""

    def __init__(self, error: str, *, permanent: bool = False) -> None:
        error = bounded(error)
        super().__init__(error)
        self.error = error
        self.permanent = permanent


class RenderDeferred(Exception):
    """The run's account has a render in hand and no renderer is idle: the run is
    released, as it was, to the next round."""


def _failure_text(error: BaseException) -> str:
    """An unexpected failure for the log: its bounded text, then where it was raised
    (the stack without the message, which a traceback would repeat in full)."""
    stack = "".join(traceback.format_tb(error.__traceback__))
    return f"{bounded(f'{type(error).__name__}: {error}')}\n{stack}"


def event_json(event: Event) -> dict[str, Any]:
    return {
        "id": str(event.id),
        "name": event.name,
        "title": event.title,
        "value": event.value,
        "properties": event.properties,
        "source": event.source,
        "message_id": event.message_id,
        "occurred_at": event.occurred_at.isoformat(),
        "received_at": event.received_at.isoformat(),
    }


def contact_json(contact: contacts.Contact) -> dict[str, Any]:
    return {
        "id": str(contact.id),
        "email": contact.email,
        "external_id": contact.external_id,
        "first_name": contact.first_name,
        "last_name": contact.last_name,
        "status": contact.status,
    }


@dataclass(frozen=True, slots=True)
class _Context:
    automation: Automation
    event: Event
    contact: contacts.Contact


class Worker:
    def __init__(
        self,
        db: Database,
        clock: Clock,
        settings: Settings,
        events_service: EventService,
        mailer: Mailer,
        keyring: Keyring,
    ) -> None:
        self._db = db
        self._clock = clock
        self._settings = settings
        self._events = events_service
        self._mailer = mailer
        self._keyring = keyring
        self._sender = WebhookSender(
            timeout=settings.webhook_timeout_seconds,
            allow_private=settings.webhook_allow_private,
        )
        self._renderer = Renderer()
        self._rendering: Counter[int] = Counter()
        """Email steps rendering (or waiting for a renderer) in this worker, per account."""
        self._lease = timedelta(seconds=settings.worker_lease_seconds)
        self.token = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False

    async def start(self) -> None:
        if self._task is None:
            self._stopping = False
            self._task = asyncio.create_task(self._loop(), name="trackbook-worker")

    async def stop(self) -> None:
        """Lets the step in hand finish (for a few seconds at most); an unfinished
        claim is taken over by a worker once its lease ends."""
        if self._task is not None:
            self._stopping = True
            self._wakeup.set()
            try:
                await asyncio.wait_for(asyncio.shield(self._task), timeout=5)
            except TimeoutError:
                self._task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._task
            self._task = None
        await self._sender.close()
        await self._renderer.close()

    def wake(self) -> None:
        self._wakeup.set()

    async def _loop(self) -> None:
        partitions_checked = self._clock.now()
        while not self._stopping:
            try:
                if self._clock.now() - partitions_checked > PARTITION_CHECK:
                    async with self._db.transaction() as conn:
                        await conn.run_sync(ensure_partitions, self._clock.now())
                    partitions_checked = self._clock.now()
                done = await self.run_once()
            except StorageUnavailable as error:
                log.warning("worker: storage unavailable (%s); trying again", error)
                done = 0
            except Exception:
                log.exception("worker: unexpected failure; trying again")
                done = 0
            if done == 0 and not self._stopping:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(
                        self._wakeup.wait(), timeout=self._settings.worker_poll_seconds
                    )
                self._wakeup.clear()

    async def run_once(self) -> int:
        """Claims what is due and carries it out; returns how many runs and deliveries
        it worked on (0: nothing was due)."""
        runs = await self._claim(automation_runs)
        queued = await self._claim(deliveries, deliveries.c.run_id.is_(None))
        # each step to its end, whatever another one does: a step left running after
        # its sibling failed would outlive the worker with a connection in hand
        outcomes = await asyncio.gather(
            *(self._run(run) for run in runs),
            *(self._deliver(item) for item in queued),
            return_exceptions=True,
        )
        for outcome in outcomes:
            if isinstance(outcome, StorageUnavailable):
                why = bounded(str(outcome))
                log.warning("worker: storage unavailable (%s); the step is taken again", why)
            elif isinstance(outcome, BaseException):
                log.error("worker: a step failed; it is taken again: %s", _failure_text(outcome))
        return len(runs) + len(queued)

    async def _claim(self, table: sa.Table, *where: sa.ColumnElement[bool]) -> list[sa.Row[Any]]:
        now = self._clock.now()
        due = sa.or_(
            sa.and_(table.c.status == "pending", table.c.next_attempt_at <= now),
            sa.and_(table.c.status == "running", table.c.claimed_until < now),
        )
        # round-robin across accounts: every account's oldest due row, then every
        # account's second, and so on, so that one account's backlog (of slow steps,
        # say) cannot fill each batch while another's waits behind it
        turn = sa.func.row_number().over(
            partition_by=table.c.account_id, order_by=(table.c.next_attempt_at, table.c.id)
        )
        turns = sa.select(table.c.id, turn.label("turn")).where(due, *where).subquery()
        async with self._db.transaction() as conn:
            ids = list(
                await conn.scalars(
                    sa.select(table.c.id)
                    .join(turns, turns.c.id == table.c.id)
                    .where(due, *where)
                    .order_by(turns.c.turn, table.c.next_attempt_at, table.c.id)
                    .limit(CLAIM_BATCH)
                    # only the rows claimed are locked: PostgreSQL locks no window
                    .with_for_update(skip_locked=True, of=table)
                )
            )
            if not ids:
                return []
            await conn.execute(
                table.update()
                .where(table.c.id.in_(ids))
                .values(status="running", claimed_by=self.token, claimed_until=now + self._lease)
            )
            rows = await conn.execute(sa.select(table).where(table.c.id.in_(ids)))
            return list(rows.all())

    def _backoff(self, attempts: int) -> timedelta:
        seconds = self._settings.worker_backoff_seconds * 2 ** (attempts - 1)
        return min(timedelta(seconds=seconds), MAX_BACKOFF)

    async def _update(
        self, conn: AsyncConnection, table: sa.Table, row: sa.Row[Any], /, **values: Any
    ) -> bool:
        """Updates a claimed row; False when the claim was lost to another worker."""
        if table is automation_runs:
            values.setdefault("updated_at", self._clock.now())
        result = await conn.execute(
            table.update()
            .where(
                table.c.account_id == row.account_id,
                table.c.id == row.id,
                table.c.claimed_by == self.token,
            )
            .values(**values)
        )
        return bool(result.rowcount)

    def _settled(self, attempts: int, failure: StepFailed | None) -> dict[str, Any]:
        """The state after a failed attempt: retried later, or failed for good."""
        now = self._clock.now()
        released = {"claimed_by": None, "claimed_until": None}
        if failure is None:
            return {"status": "done", "finished_at": now, "last_error": None, **released}
        if failure.permanent or attempts >= self._settings.worker_max_attempts:
            return {"status": "failed", "finished_at": now, "last_error": failure.error, **released}
        return {
            "status": "pending",
            "next_attempt_at": now + self._backoff(attempts),
            "last_error": failure.error,
            **released,
        }

    # automation runs

    async def _load(self, run: sa.Row[Any]) -> _Context:
        async with self._db.read() as conn:
            return _Context(
                await get_automation(conn, run.account_id, run.automation_id),
                await get_event(conn, run.account_id, run.event_id),
                await contacts.get_contact(conn, run.account_id, run.contact_id),
            )

    async def _run(self, run: sa.Row[Any]) -> None:
        try:
            context = await self._load(run)
        except NotFound as error:
            await self._finish_run(run, StepFailed(error.message, permanent=True))
            return
        if not context.automation.enabled:
            await self._finish_run(run, StepFailed("the automation is disabled"), "cancelled")
            return
        actions = context.automation.actions
        step, attempts = run.step, run.attempts
        while step < len(actions):
            action = actions[step]
            # each step starts with a fresh lease, so a long run is not taken over midway
            renewed = {"claimed_until": self._clock.now() + self._lease}
            if not await self._db.write(self._update, automation_runs, run, **renewed):
                log.warning("run %d was taken over by another worker", run.id)
                return
            if action["type"] == "wait":
                await self._db.write(
                    self._update,
                    automation_runs,
                    run,
                    status="pending",
                    step=step + 1,
                    attempts=0,
                    next_attempt_at=self._clock.now() + wait_of(action),
                    claimed_by=None,
                    claimed_until=None,
                )
                return
            try:
                await self._act(run, step, action, context)
            except RenderDeferred:
                # not an attempt: the run keeps its step, attempts and place in line
                released = {"status": "pending", "claimed_by": None, "claimed_until": None}
                await self._db.write(self._update, automation_runs, run, **released)
                return
            except StepFailed as failure:
                await self._finish_run(run, failure, step=step, attempts=attempts)
                return
            step, attempts = step + 1, 0
            attempts_reset = {"step": step, "attempts": 0, "last_error": None}
            if not await self._db.write(self._update, automation_runs, run, **attempts_reset):
                log.warning("run %d was taken over by another worker", run.id)
                return
        await self._db.write(self._update, automation_runs, run, **self._settled(0, None))

    async def _finish_run(
        self,
        run: sa.Row[Any],
        failure: StepFailed,
        status: str | None = None,
        *,
        step: int | None = None,
        attempts: int | None = None,
    ) -> None:
        """Records a failed step: retried later, or the run ends failed (or `status`).
        `step` and `attempts` (how often it was tried before) default to the claimed ones."""
        step = run.step if step is None else step
        attempts = (run.attempts if attempts is None else attempts) + 1
        values = self._settled(attempts, failure)
        if status is not None:
            values["status"] = status
        await self._db.write(self._update, automation_runs, run, attempts=attempts, **values)
        about = {
            "account_id": run.account_id,
            "automation_id": run.automation_id,
            "run_id": run.id,
            "step": step,
            "attempts": attempts,
            "reason": failure.error,
        }
        if values["status"] == "failed":
            log.warning(
                "automation %d: run %d failed at step %d: %s",
                run.automation_id,
                run.id,
                step,
                failure.error,
                extra=about,
            )
        elif values["status"] == "pending":
            log.info(
                "automation %d: run %d, step %d failed (attempt %d), retried later: %s",
                run.automation_id,
                run.id,
                step,
                attempts,
                failure.error,
                extra=about,
            )

    async def _act(
        self, run: sa.Row[Any], step: int, action: dict[str, Any], context: _Context
    ) -> None:
        try:
            match action["type"]:
                case "webhook":
                    await self._webhook_step(run, step, action, context)
                case "email":
                    await self._email_step(run, action, context)
                case "track":
                    await self._track_step(run, step, action, context)
                case _:
                    await self._db.write(self._contact_step, run, action)
        except (StepFailed, RenderDeferred):
            raise
        except StorageUnavailable as error:
            raise StepFailed(f"storage unavailable: {error}") from error
        except DomainError as error:
            raise StepFailed(error.message, permanent=True) from error
        except Exception as error:
            # not log.exception: its traceback would repeat the error's text in full
            log.error("automation run %d, step %d failed: %s", run.id, step, _failure_text(error))  # noqa: TRY400
            raise StepFailed(f"{type(error).__name__}: {error}") from error

    async def _contact_step(
        self, conn: AsyncConnection, run: sa.Row[Any], action: dict[str, Any]
    ) -> None:
        account_id, contact_id, now = run.account_id, run.contact_id, self._clock.now()
        match action["type"]:
            case "add_tag":
                await contacts.tag_contact(conn, account_id, contact_id, [action["tag"]], now=now)
            case "remove_tag":
                await contacts.untag_contact(conn, account_id, contact_id, [action["tag"]])
            case "add_to_list":
                await contacts.add_to_list(conn, account_id, action["list_id"], contact_id, now=now)
            case "remove_from_list":
                with contextlib.suppress(ContactNotFound):  # not a member: nothing to do
                    await contacts.remove_from_list(conn, account_id, action["list_id"], contact_id)

    async def _track_step(
        self, run: sa.Row[Any], step: int, action: dict[str, Any], context: _Context
    ) -> None:
        account = await self._db.query(get_account, run.account_id)
        value = action.get("value")
        await self._events.track(
            account,
            TrackCommand(
                name=action["event"],
                contact=ContactRef(id=context.contact.id),
                source="automation",
                unknown_contact=UnknownContact.REJECT,
                title=action.get("title"),
                value=None if value is None else str(value),
                properties=action.get("properties"),
                # a step done again after a crash is the same event, stored once
                message_id=f"automation-run:{run.id}:{step}",
                # counted against the fan-out limits of the incoming event it comes from
                derived_from=Derivation(run.origin_event_id, run.depth + 1),
            ),
        )

    async def _email_step(
        self, run: sa.Row[Any], action: dict[str, Any], context: _Context
    ) -> None:
        contact = context.contact
        to = action.get("to") or contact.email
        if action.get("to") is not None:
            # saved before `to` was held to one address: never sent to several
            try:
                check_recipient(action["to"], "to")
            except Invalid as error:
                raise StepFailed(error.message, permanent=True) from None
        if not to:
            raise StepFailed("the contact has no email address", permanent=True)
        templates = (action["subject"], action.get("text"), action.get("html"))
        latest = await self._db.query(
            _latest_values, run.account_id, contact.id, events_named(*templates)
        )

        template_values = template_context(contact, context.event)

        async def fill(template: str | None, *, as_html: bool = False) -> str | None:
            if template is None:
                return None
            return await self._renderer.render(
                template, context=template_values, latest_values=latest, as_html=as_html
            )

        try:
            async with self._render_turn(run.account_id):
                subject = " ".join((await fill(action["subject"]) or "").split())
                text = await fill(action.get("text"))
                html = await fill(action.get("html"), as_html=True)
            message = build_message(
                sender=self._settings.smtp_from, to=to, subject=subject, text=text, html=html
            )
            await self._mailer.send(message)
            EMAILS.labels("sent").inc()
        except (RenderError, EmailNotConfigured) as error:
            EMAILS.labels("failed").inc()
            raise StepFailed(str(error), permanent=True) from error
        except (aiosmtplib.SMTPRecipientsRefused, aiosmtplib.SMTPSenderRefused) as error:
            EMAILS.labels("failed").inc()
            raise StepFailed(f"refused by the mail server: {error}", permanent=True) from error
        except (aiosmtplib.SMTPException, OSError) as error:
            EMAILS.labels("failed").inc()
            raise StepFailed(f"{type(error).__name__}: {error}") from error

    @contextlib.asynccontextmanager
    async def _render_turn(self, account_id: int) -> AsyncIterator[None]:
        """An account's email step may always wait for a renderer; another of the same
        account's, while that one renders or waits, only takes a renderer that is idle,
        else RenderDeferred. One account's templates (each perhaps taking the whole
        deadline) so keep at most the idle renderers from other accounts, and each
        round ends after about one render of theirs, not after all of them."""
        if self._rendering[account_id] and not self._renderer.idle:
            raise RenderDeferred
        self._rendering[account_id] += 1
        try:
            yield
        finally:
            self._rendering[account_id] -= 1
            if not self._rendering[account_id]:
                del self._rendering[account_id]

    async def _webhook_step(
        self, run: sa.Row[Any], step: int, action: dict[str, Any], context: _Context
    ) -> None:
        now = self._clock.now()
        async with self._db.transaction() as conn:
            endpoint = (
                await conn.execute(
                    sa.select(webhook_endpoints).where(
                        webhook_endpoints.c.account_id == run.account_id,
                        webhook_endpoints.c.id == action["webhook_id"],
                    )
                )
            ).one_or_none()
            if endpoint is None:
                raise StepFailed(f"webhook {action['webhook_id']} does not exist", permanent=True)
            if not endpoint.enabled:
                raise StepFailed(f"webhook {endpoint.id} is disabled", permanent=True)
            payload = {
                "type": "automation.webhook",
                "timestamp": now.isoformat(),
                "data": {
                    "automation": {
                        "id": str(context.automation.id),
                        "name": context.automation.name,
                    },
                    "run_id": str(run.id),
                    "event": event_json(context.event),
                    "contact": contact_json(context.contact),
                },
            }
            # one delivery per (run, step): a retried step sends the same webhook-id
            await conn.execute(
                upsert(conn, deliveries)
                .values(
                    account_id=run.account_id,
                    endpoint_id=endpoint.id,
                    webhook_id=new_webhook_id(),
                    event_id=run.event_id,
                    run_id=run.id,
                    step=step,
                    payload=payload,
                    status="running",
                    attempts=0,
                    next_attempt_at=now,
                    created_at=now,
                )
                .on_conflict_do_nothing()
            )
            delivery = (
                await conn.execute(
                    sa.select(deliveries).where(
                        deliveries.c.account_id == run.account_id,
                        deliveries.c.run_id == run.id,
                        deliveries.c.step == step,
                    )
                )
            ).one()
        result = await self._send(endpoint, delivery.webhook_id, delivery.payload, now)
        async with self._db.transaction() as conn:
            attempts, failure = await self._record(conn, delivery, result)
            # the run retries this delivery, not the queue: it is updated without a claim
            await conn.execute(
                deliveries.update()
                .where(deliveries.c.account_id == run.account_id, deliveries.c.id == delivery.id)
                .values(attempts=attempts, **self._settled_delivery(attempts, failure))
            )
        if failure is not None:
            raise failure

    # deliveries of recorded events to the endpoints that subscribe to them

    async def _record(
        self, conn: AsyncConnection, delivery: sa.Row[Any], result: SendResult
    ) -> tuple[int, StepFailed | None]:
        """Records one attempt of a delivery; returns its attempts so far and, when it
        was not delivered, the failure."""
        _count_attempt(result)
        failure = (
            None
            if result.delivered
            else StepFailed(result.error or "not delivered", permanent=result.permanent)
        )
        await conn.execute(
            sa.insert(delivery_attempts).values(
                account_id=delivery.account_id,
                delivery_id=delivery.id,
                attempted_at=self._clock.now(),
                status_code=result.status_code,
                error=None if failure is None else failure.error,
                duration_ms=result.duration_ms,
            )
        )
        attempts = delivery.attempts + 1
        if failure is None:
            return attempts, None
        self._log_undelivered(delivery, attempts, failure)
        return attempts, failure

    def _log_undelivered(self, delivery: sa.Row[Any], attempts: int, failure: StepFailed) -> None:
        about = {
            "account_id": delivery.account_id,
            "webhook_endpoint_id": delivery.endpoint_id,
            "delivery_id": delivery.id,
            "run_id": delivery.run_id,
            "attempts": attempts,
            "reason": failure.error,
        }
        if failure.permanent:
            # a refused target: nothing was sent, and retrying cannot help
            log.warning(
                "webhook endpoint %d: delivery %d not sent: %s",
                delivery.endpoint_id,
                delivery.id,
                failure.error,
                extra=about,
            )
        elif attempts >= self._settings.worker_max_attempts:
            log.warning(
                "webhook endpoint %d: delivery %d failed for good after %d attempts: %s",
                delivery.endpoint_id,
                delivery.id,
                attempts,
                failure.error,
                extra=about,
            )
        else:
            log.info(
                "webhook endpoint %d: delivery %d failed (attempt %d), retried later: %s",
                delivery.endpoint_id,
                delivery.id,
                attempts,
                failure.error,
                extra=about,
            )

    async def _send(
        self, endpoint: sa.Row[Any], webhook_id: str, payload: Any, sent_at: datetime
    ) -> SendResult:
        try:
            secret = self._keyring.open(endpoint.secret)
        except KeyringError as error:
            # the operator can still set the key the secret was sealed with: an attempt
            # that failed, retried with backoff like any other
            return SendResult(delivered=False, status_code=None, error=str(error), duration_ms=0)
        return await self._sender.send(endpoint.url, secret, webhook_id, payload, sent_at=sent_at)

    async def _deliver(self, delivery: sa.Row[Any]) -> None:
        now = self._clock.now()
        async with self._db.transaction() as conn:
            endpoint = (
                await conn.execute(
                    sa.select(webhook_endpoints).where(
                        webhook_endpoints.c.account_id == delivery.account_id,
                        webhook_endpoints.c.id == delivery.endpoint_id,
                    )
                )
            ).one_or_none()
            if endpoint is None:
                return  # deleted with its deliveries while this one was claimed
            if not endpoint.enabled:
                refused = StepFailed("the endpoint is disabled", permanent=True)
                await self._update(conn, deliveries, delivery, **self._settled_delivery(1, refused))
                return
            payload = delivery.payload
            if payload is None:
                payload = await _event_payload(conn, delivery, now)
                if payload is None:
                    refused = StepFailed("the event no longer exists", permanent=True)
                    await self._update(
                        conn, deliveries, delivery, **self._settled_delivery(1, refused)
                    )
                    return
                await self._update(conn, deliveries, delivery, payload=payload)
        result = await self._send(endpoint, delivery.webhook_id, payload, now)
        async with self._db.transaction() as conn:
            attempts, failure = await self._record(conn, delivery, result)
            await self._update(
                conn,
                deliveries,
                delivery,
                attempts=attempts,
                **self._settled_delivery(attempts, failure),
            )

    def _settled_delivery(self, attempts: int, failure: StepFailed | None) -> dict[str, Any]:
        values = self._settled(attempts, failure)
        values.pop("finished_at", None)
        if failure is None:
            values |= {"status": "delivered", "delivered_at": self._clock.now()}
        return values


def _count_attempt(result: SendResult) -> None:
    outcome = "delivered" if result.delivered else "refused" if result.permanent else "failed"
    DELIVERIES.labels(outcome).inc()


async def _event_payload(
    conn: AsyncConnection, delivery: sa.Row[Any], now: datetime
) -> dict[str, Any] | None:
    try:
        event = await get_event(conn, delivery.account_id, delivery.event_id)
        contact = await contacts.get_contact(conn, delivery.account_id, event.contact_id)
    except NotFound:
        return None
    return {
        "type": "event.recorded",
        "timestamp": now.isoformat(),
        "data": {"event": event_json(event), "contact": contact_json(contact)},
    }


async def _latest_values(
    conn: AsyncConnection, account_id: int, contact_id: int, names: set[str]
) -> dict[str, str | None]:
    """The value of the contact's latest event of each name (names compared lower-cased,
    as %EVENT: name% tags are)."""
    latest: dict[str, str | None] = {}
    for name in names:
        latest[name] = await conn.scalar(
            sa.select(events.c.value)
            .where(
                events.c.account_id == account_id,
                events.c.contact_id == contact_id,
                sa.func.lower(events.c.name) == name,
            )
            .order_by(events.c.occurred_at.desc(), events.c.id.desc())
            .limit(1)
        )
    return latest


async def outbox_state(conn: AsyncConnection, *, now: datetime) -> dict[str, tuple[int, float]]:
    """Per kind (runs, deliveries): how many are not done, and how long the oldest due
    one has waited, in seconds. Across accounts: this is the operator's view."""
    state: dict[str, tuple[int, float]] = {}
    for kind, table in (("runs", automation_runs), ("deliveries", deliveries)):
        waiting = table.c.status.in_(("pending", "running"))
        depth = await conn.scalar(sa.select(sa.func.count()).where(waiting))
        oldest = await conn.scalar(
            sa.select(sa.func.min(table.c.next_attempt_at)).where(
                waiting, table.c.next_attempt_at <= now
            )
        )
        age = (now - oldest).total_seconds() if oldest is not None else 0.0
        state[kind] = (int(depth or 0), max(age, 0.0))
    return state
