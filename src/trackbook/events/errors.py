"""Errors of the events domain."""

from __future__ import annotations

from trackbook.errors import DomainError


class TrackingDisabled(DomainError):
    code = "tracking_disabled"

    def __init__(self) -> None:
        super().__init__("event tracking is turned off for this account")
