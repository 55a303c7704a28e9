"""Errors of the segments domain."""

from __future__ import annotations

from trackbook.errors import Conflict, Invalid, NotFound


class SegmentNotFound(NotFound):
    code = "segment_not_found"


class SegmentConflict(Conflict):
    code = "segment_conflict"


class SegmentInUse(Conflict):
    """An automation's conditions name the segment: deleting it would leave the
    automation naming a segment that is gone, and never running."""

    code = "segment_in_use"


class SegmentBroken(Invalid):
    """A saved segment the database cannot evaluate: a pattern saved before patterns were
    checked as PostgreSQL reads them. Editing its definition mends it; a retry cannot."""

    code = "segment_broken"

    def __init__(self, segment_id: int, name: str, reason: str) -> None:
        super().__init__(
            "definition",
            f"of segment {segment_id} ({name!r}) cannot be evaluated: PostgreSQL refuses "
            f"its pattern ({reason}); edit the segment's definition",
        )
        self.segment_id = segment_id
