"""Errors of the segments domain."""

from __future__ import annotations

from trackbook.errors import Conflict, NotFound


class SegmentNotFound(NotFound):
    code = "segment_not_found"


class SegmentConflict(Conflict):
    code = "segment_conflict"
