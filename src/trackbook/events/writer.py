"""Group commit: concurrent track() calls share one transaction, written by one task.

Every caller waits on a future that is answered only after the transaction holding
its events has committed. While a group is being written, new events queue up and
form the next group, so the group size follows the load with no added wait. On
PostgreSQL two groups are written at once, each on its own connection, so that one is
prepared in Python while the database writes the other.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta

import sqlalchemy as sa

from trackbook.clock import Clock
from trackbook.contacts.errors import ContactConflict
from trackbook.db.engine import Database, SerialWriter
from trackbook.errors import StorageUnavailable
from trackbook.events.limits import KnownCatalog
from trackbook.events.model import Limits, PendingEvent, TrackResult
from trackbook.events.store import Outcome, write_group
from trackbook.metrics import GROUP_SIZE

log = logging.getLogger(__name__)

Answer = TrackResult | Exception
"""What each event of a submission gets: its result, or why it was not stored."""


@dataclass(slots=True)
class _Submission:
    """Events that arrived together (one request, one import batch): one future for
    all of them, as a request waits for all of its events anyway."""

    events: Sequence[PendingEvent]
    answer: asyncio.Future[list[Answer]] = field(
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
        writers: int = 1,
        limits: Limits = Limits(),  # noqa: B008 - frozen: the same limits every call
    ) -> None:
        self._connections = [SerialWriter(db) for _ in range(writers)]
        self._automation_cutoff = automation_cutoff
        self._limits = limits
        self._known = KnownCatalog()
        self._listeners: list[Callable[[], None]] = []
        self._clock = clock
        self._max_events = max_events
        self._max_wait = max_wait_ms / 1000
        self._queue: asyncio.Queue[_Submission | None] = asyncio.Queue()
        self._carried: _Submission | None = None
        """Taken off the queue but left for the next group, which it would have overfilled."""
        self._forming = asyncio.Lock()
        """One writer at a time forms its group, so that no two carry a submission over."""
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

    def submit(self, events: Sequence[PendingEvent]) -> list[asyncio.Future[list[Answer]]]:
        """Queues the events, in submissions of at most a group each; every future is
        answered, event by event, once the group holding its events has committed."""
        if not self._tasks or any(task.done() for task in self._tasks):
            raise StorageUnavailable("the event writer is not running")
        submissions = [
            _Submission(events[start : start + self._max_events])
            for start in range(0, len(events), self._max_events)
        ]
        for submission in submissions:
            self._queue.put_nowait(submission)
        return [submission.answer for submission in submissions]

    async def write(self, event: PendingEvent) -> TrackResult:
        [answer] = self.submit([event])
        [outcome] = await answer
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    async def _run(self, connection: SerialWriter) -> None:
        stopping = False
        while not stopping:
            if self._carried is None and self._queue.empty():
                await connection.release()
            async with self._forming:
                group, stopping = await self._next_group()
            if group:
                await self._write(connection, group)
        await connection.release()

    async def _next_group(self) -> tuple[list[_Submission], bool]:
        """The submissions of the next group, and whether this writer stops after it."""
        first, self._carried = self._carried, None
        if first is None:
            first = await self._queue.get()
        if first is None:
            return [], True
        group, size = [first], len(first.events)
        deadline = time.monotonic() + self._max_wait
        while size < self._max_events:
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
                return group, True
            if size + len(item.events) > self._max_events:
                self._carried = item
                break
            group.append(item)
            size += len(item.events)
        return group, False

    async def _write(self, connection: SerialWriter, group: list[_Submission]) -> None:
        answers = await self._store(connection, [e for item in group for e in item.events])
        start = 0
        for submission in group:
            end = start + len(submission.events)
            # a caller that went away (its request cancelled) has nobody to answer
            if not submission.answer.done():
                submission.answer.set_result(answers[start:end])
            start = end

    async def _store(
        self, connection: SerialWriter, events: list[PendingEvent], *, retried: bool = False
    ) -> list[Answer]:
        try:
            return await self._commit(connection, events)
        except StorageUnavailable as error:
            return [error] * len(events)
        except sa.exc.IntegrityError as error:
            if not retried:
                # A unique clash with another transaction (this process's other writer
                # or another node creating the same new contact or storing the same
                # message id): it has committed by now, so the group written again
                # finds what it made.
                log.info("group of %d clashed (%s); writing it again", len(events), error.orig)
                return await self._store(connection, events, retried=True)
            if len(events) > 1:
                # Still clashing, so with another event of this group: write each event
                # alone, so each sees what the others committed and only a real
                # conflict fails.
                log.info("group of %d clashed (%s); writing one by one", len(events), error.orig)
                return await self._one_by_one(connection, events)
            return [ContactConflict("the contact clashes with another contact")]
        except Exception as error:
            if len(events) > 1:
                return await self._one_by_one(connection, events)
            log.exception("event could not be written")
            return [StorageUnavailable(str(error))]
        finally:
            self.groups_written += 1

    async def _one_by_one(
        self, connection: SerialWriter, events: list[PendingEvent]
    ) -> list[Answer]:
        answers: list[Answer] = []
        for event in events:
            answers += await self._store(connection, [event], retried=True)
        return answers

    async def _commit(self, connection: SerialWriter, events: list[PendingEvent]) -> list[Answer]:
        GROUP_SIZE.observe(len(events))
        outcomes: list[Outcome]
        outcomes, side_effects = await connection.run(
            write_group,
            events,
            now=self._clock.now(),
            automation_cutoff=self._automation_cutoff,
            limits=self._limits,
            known=self._known,
        )
        if side_effects:
            for listener in self._listeners:
                listener()
        return list(outcomes)
