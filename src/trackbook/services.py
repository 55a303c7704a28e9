"""The long-lived objects one app instance works with, built once from Settings."""

from __future__ import annotations

from dataclasses import dataclass

from starlette.requests import Request

from trackbook.accounts.auth import Authenticator
from trackbook.clock import Clock
from trackbook.db.engine import Database
from trackbook.events.service import EventService
from trackbook.events.writer import EventWriter
from trackbook.settings import Settings


@dataclass(frozen=True, slots=True)
class Services:
    settings: Settings
    clock: Clock
    db: Database
    writer: EventWriter
    events: EventService
    auth: Authenticator

    @classmethod
    def build(cls, settings: Settings, clock: Clock) -> Services:
        db = Database(settings.database_url)
        writer = EventWriter(
            db,
            clock,
            max_events=settings.group_commit_max_events,
            max_wait_ms=settings.group_commit_max_wait_ms,
        )
        auth = Authenticator(db, clock, ttl_seconds=settings.auth_cache_seconds)
        return cls(settings, clock, db, writer, EventService(writer, clock), auth)

    async def start(self) -> None:
        await self.writer.start()

    async def stop(self) -> None:
        await self.writer.stop()
        await self.db.dispose()


async def services_of(request: Request) -> Services:
    services: Services = request.app.state.services
    return services
