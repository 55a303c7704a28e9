"""Errors of the events domain."""

from __future__ import annotations

from trackbook.errors import DomainError, Invalid


class TrackingDisabled(DomainError):
    code = "tracking_disabled"

    def __init__(self) -> None:
        super().__init__("event tracking is turned off for this account")


class CatalogFull(Invalid):
    """The event would bring a new event or property name into an account's catalog
    beyond its limit (a flood of names slows every page and query that lists them)."""

    code = "catalog_full"


class FanOutLimit(DomainError):
    """An automation's `track` step would record more events, or a longer chain of
    them, than one incoming event may start."""

    code = "fan_out_limit"
