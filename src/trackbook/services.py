"""The long-lived objects one app instance works with, built once from Settings."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta

from starlette.requests import Request

from trackbook.accounts.auth import Authenticator
from trackbook.clock import Clock
from trackbook.contacts.linking import ContactService
from trackbook.db.engine import Database
from trackbook.db.partitions import ensure_partitions
from trackbook.db.tables import accounts, webhook_endpoints
from trackbook.delivery.email import SmtpMailer
from trackbook.delivery.worker import Worker
from trackbook.errors import StorageUnavailable
from trackbook.events.model import Limits
from trackbook.events.service import EventService
from trackbook.events.writer import EventWriter
from trackbook.keyring import Keyring, seal_stored
from trackbook.ratelimits import RateLimiter
from trackbook.settings import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Services:
    settings: Settings
    clock: Clock
    db: Database
    writer: EventWriter
    events: EventService
    auth: Authenticator
    worker: Worker
    limiter: RateLimiter
    keyring: Keyring
    contacts: ContactService

    @classmethod
    def build(cls, settings: Settings, clock: Clock) -> Services:
        db = Database(settings.database_url)
        limits = Limits(
            max_event_names=settings.catalog_max_event_names,
            max_property_names=settings.catalog_max_property_names,
            max_derived_events=settings.automation_max_derived_events,
            max_depth=settings.automation_max_depth,
        )
        writer = EventWriter(
            db,
            clock,
            max_events=settings.group_size(sqlite=db.is_sqlite),
            max_wait_ms=settings.group_commit_max_wait_ms,
            automation_cutoff=timedelta(hours=settings.automation_cutoff_hours),
            writers=settings.writers(sqlite=db.is_sqlite),
            limits=limits,
        )
        auth = Authenticator(db, clock, ttl_seconds=settings.auth_cache_seconds)
        events = EventService(writer, clock, limits)
        keyring = Keyring.from_settings(settings)
        worker = Worker(db, clock, settings, events, SmtpMailer(settings), keyring)
        writer.on_side_effects(worker.wake)
        return cls(
            settings,
            clock,
            db,
            writer,
            events,
            auth,
            worker,
            RateLimiter(settings),
            keyring,
            ContactService(db, clock),
        )

    async def start(self) -> None:
        """Makes sure this month's partitions exist and no secret is stored unsealed,
        then starts the event writer, and the worker when this process runs one."""
        try:
            async with self.db.transaction() as conn:
                await conn.run_sync(ensure_partitions, self.clock.now())
                for column in (webhook_endpoints.c.secret, accounts.c.event_key):
                    sealed = await seal_stored(conn, column, self.keyring)
                    if sealed:
                        log.info("sealed %d %s stored before sealing existed", sealed, column)
        except StorageUnavailable as error:
            # start anyway: requests get 503 until storage is back; the worker checks again
            log.warning("could not check the event partitions: %s", error)
        await self.writer.start()
        if self.settings.worker_in_process:
            await self.worker.start()

    async def stop(self) -> None:
        await self.worker.stop()
        await self.writer.stop()
        await self.db.dispose()


async def services_of(request: Request) -> Services:
    services: Services = request.app.state.services
    return services
