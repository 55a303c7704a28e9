"""Group commit: concurrent track() calls share one transaction, written by one task.

Every caller waits on a future that is answered only after the transaction holding
its event has committed. While a group is being written, new events queue up and
form the next group, so the group size follows the load with no added wait. On
PostgreSQL two groups are written at once, each on its own connection, so that one is
prepared in Python while the database works on the other.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta

import sqlalchemy as sa

from trackbook.clock import Clock
from trackbook.contacts.errors import ContactConflict, ContactNotFound, NotAsNamed
from trackbook.db.engine import Database, SerialWriter, StorageUnavailable
from trackbook.events.model import PendingEvent, TrackResult
from trackbook.events.store import write_group
from trackbook.metrics import GROUP_SIZE

log = logging.getLogger(__name__)


@dataclass(slots=True)
class _Waiting:
    event: PendingEvent
    answer: asyncio.Future[TrackResult] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


class EventWriter:
    def __init__(
        self,
        db: Database,
        clock: Clock,
        *,
        max_events: int = 1000,
        max_wait_ms: float = 0.0,
        automation_cutoff: timedelta = timedelta(hours=72),
        concurrency: int = 1,
    ) -> None:
        self._connections = [SerialWriter(db) for _ in range(concurrency)]
        self._automation_cutoff = automation_cutoff
        self._listeners: list[Callable[[], None]] = []
        self._clock = clock
        self._max_events = max_events
        self._max_wait = max_wait_ms / 1000
        self._queue: asyncio.Queue[_Waiting | None] = asyncio.Queue()
        self._tasks: list[asyncio.Task[None]] = []
        self.groups_written = 0

    async def start(self) -> None:
        if not self._tasks:
            self._tasks = [
                asyncio.create_task(self._run(connection), name=f"trackbook-event-writer-{n}")
                for n, connection in enumerate(self._connections)
            ]

    async def stop(self) -> None:
        """Writes what is already queued, then stops."""
        if not self._tasks:
            return
        for _ in self._tasks:
            self._queue.put_nowait(None)
        await asyncio.gather(*self._tasks)
        self._tasks = []

    def on_side_effects(self, listener: Callable[[], None]) -> None:
        """Calls `listener` after a group that started automation runs or deliveries
        commits: an in-process worker picks them up without waiting for its next poll."""
        self._listeners.append(listener)

    def submit(self, event: PendingEvent) -> asyncio.Future[TrackResult]:
        """Queues the event; the future is answered once its group has committed."""
        if not self._tasks or any(task.done() for task in self._tasks):
            raise StorageUnavailable("the event writer is not running")
        waiting = _Waiting(event)
        self._queue.put_nowait(waiting)
        return waiting.answer

    async def write(self, event: PendingEvent) -> TrackResult:
        return await self.submit(event)

    async def _run(self, connection: SerialWriter) -> None:
        stopping = False
        while not stopping:
            if self._queue.empty():
                await connection.release()
            first = await self._queue.get()
            if first is None:
                break
            group = [first]
            deadline = time.monotonic() + self._max_wait
            while len(group) < self._max_events:
                try:
                    item = self._queue.get_nowait()
                except asyncio.QueueEmpty:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        break
                    try:
                        item = await asyncio.wait_for(self._queue.get(), remaining)
                    except TimeoutError:
                        break
                if item is None:
                    stopping = True
                    break
                group.append(item)
            await self._write(connection, group)
        await connection.release()

    async def _write(
        self, connection: SerialWriter, group: list[_Waiting], *, retried: bool = False
    ) -> None:
        try:
            await self._commit(connection, group)
        except StorageUnavailable as error:
            self._fail(group, error)
        except sa.exc.IntegrityError as error:
            if not retried:
                # A unique clash with another transaction (this process's other writer
                # or another node creating the same new contact or storing the same
                # message id): it has committed by now, so the group written again
                # finds what it made.
                log.info("group of %d clashed (%s); writing it again", len(group), error.orig)
                await self._write(connection, group, retried=True)
            elif len(group) > 1:
                # Still clashing, so with another event of this group: write each event
                # alone, so each sees what the others committed and only a real
                # conflict fails.
                log.info("group of %d clashed (%s); writing one by one", len(group), error.orig)
                for waiting in group:
                    await self._write(connection, [waiting], retried=True)
            else:
                self._fail(group, ContactConflict("the contact clashes with another contact"))
        except Exception as error:
            if len(group) > 1:
                for waiting in group:
                    await self._write(connection, [waiting], retried=True)
            else:
                log.exception("event could not be written")
                self._fail(group, StorageUnavailable(str(error)))
        finally:
            self.groups_written += 1

    async def _commit(self, connection: SerialWriter, group: list[_Waiting]) -> None:
        GROUP_SIZE.observe(len(group))
        outcomes, side_effects = await connection.run(
            write_group,
            [waiting.event for waiting in group],
            now=self._clock.now(),
            automation_cutoff=self._automation_cutoff,
        )
        if side_effects:
            for listener in self._listeners:
                listener()
        for waiting, outcome in zip(group, outcomes, strict=True):
            if waiting.answer.done():
                continue
            if isinstance(outcome, ContactNotFound | NotAsNamed):
                waiting.answer.set_exception(outcome)
            else:
                waiting.answer.set_result(outcome)

    @staticmethod
    def _fail(group: list[_Waiting], error: BaseException) -> None:
        for waiting in group:
            if not waiting.answer.done():
                waiting.answer.set_exception(error)
