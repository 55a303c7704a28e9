"""Time as a dependency, so tests can backfill, expire and pin `received_at`."""

from __future__ import annotations

import functools
from datetime import UTC, datetime
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime:
        """The current time, timezone-aware, in UTC."""
        ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


@functools.lru_cache(maxsize=4096)
def iso(moment: datetime) -> str:
    """UTC, ISO 8601, with a Z. Remembered: the events of one group or batch mostly
    share their time."""
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")
