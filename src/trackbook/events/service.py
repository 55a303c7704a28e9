"""track(): the one way an event enters Trackbook, whichever dialect carries it."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from datetime import datetime

from trackbook.accounts.service import Account
from trackbook.clock import Clock
from trackbook.errors import DomainError, StorageUnavailable
from trackbook.events.errors import FanOutLimit, TrackingDisabled
from trackbook.events.model import Limits, PendingEvent, TrackCommand, TrackResult
from trackbook.events.validation import check_command
from trackbook.events.writer import EventWriter
from trackbook.metrics import EVENTS


class EventService:
    def __init__(self, writer: EventWriter, clock: Clock, limits: Limits) -> None:
        self._writer = writer
        self._clock = clock
        self._limits = limits

    def prepare(
        self, account: Account, command: TrackCommand, received_at: datetime | None = None
    ) -> PendingEvent:
        """Everything track() checks before storage: the account's switch and the limits
        (those that need the database are checked as the event is stored)."""
        if not account.tracking_enabled:
            raise TrackingDisabled
        if received_at is None:
            received_at = self._clock.now()
        occurred_at = check_command(command, received_at=received_at)
        derivation = command.derived_from
        if derivation is not None and derivation.depth > self._limits.max_depth:
            raise FanOutLimit(
                f"the event would be {derivation.depth} automation steps from event "
                f"{derivation.origin_event_id}, which started the chain; the most is "
                f"{self._limits.max_depth} (TRACKBOOK_AUTOMATION_MAX_DEPTH)"
            )
        return PendingEvent(account.id, command, occurred_at, received_at)

    async def track(self, account: Account, command: TrackCommand) -> TrackResult:
        """Stores one event and answers once it is committed. A replayed message id
        stores nothing and answers with the original event, marked duplicate."""
        result = await self._writer.write(self.prepare(account, command))
        EVENTS.labels(command.source, "duplicate" if result.duplicate else "accepted").inc()
        return result

    async def track_many(
        self, account: Account, commands: Sequence[TrackCommand | DomainError]
    ) -> list[TrackResult | Exception]:
        """Each command stored or refused on its own; all are queued at once so they
        share as few transactions as possible. An error given in place of a command
        (one the dialect could not even parse) is passed through in its place."""
        outcomes: list[TrackResult | Exception | None] = [None] * len(commands)
        pending: list[PendingEvent] = []
        positions: list[int] = []
        # the events of one call arrived together
        received_at = self._clock.now()
        for position, command in enumerate(commands):
            if isinstance(command, DomainError):
                outcomes[position] = command
                continue
            try:
                pending.append(self.prepare(account, command, received_at))
            except DomainError as error:
                outcomes[position] = error
                continue
            positions.append(position)
        if pending:
            try:
                answers = [
                    answer for queued in self._writer.submit(pending) for answer in await queued
                ]
            except StorageUnavailable as error:
                answers = [error] * len(pending)
            for position, answer in zip(positions, answers, strict=True):
                outcomes[position] = answer
        counted = Counter(
            (command.source, "duplicate" if outcome.duplicate else "accepted")
            for command, outcome in zip(commands, outcomes, strict=True)
            if isinstance(outcome, TrackResult) and isinstance(command, TrackCommand)
        )
        for labels, count in counted.items():
            EVENTS.labels(*labels).inc(count)
        return [outcome for outcome in outcomes if outcome is not None]
