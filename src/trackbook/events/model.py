"""What a dialect asks of track(), and what it gets back."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from trackbook.contacts.identity import ContactRef, UnknownContact, VisitorNaming


@dataclass(frozen=True, slots=True)
class Derivation:
    """Where an event an automation records comes from: the incoming event that started
    the chain, and how many `track` steps away from it this event is (1: recorded by an
    automation that the incoming event started)."""

    origin_event_id: int
    depth: int


@dataclass(frozen=True, slots=True)
class Limits:
    """The limits of track() that are settings (Settings builds them)."""

    max_event_names: int = 1000
    """Distinct event names per account."""
    max_property_names: int = 500
    """Distinct property names per event name of an account."""
    max_derived_events: int = 100
    """Events automations may record from one incoming event."""
    max_depth: int = 3
    """Steps of `track` actions from one incoming event."""


@dataclass(frozen=True, slots=True)
class TrackCommand:
    """One event as every dialect hands it to the core, in the domain's terms."""

    name: str
    contact: ContactRef
    source: str
    unknown_contact: UnknownContact = UnknownContact.CREATE_IDENTIFIED
    title: str | None = None
    value: str | None = None
    properties: dict[str, Any] | None = None
    occurred_at: datetime | None = None
    """When it happened, from the client; None means when it was received."""
    message_id: str | None = None
    provider: str | None = None
    """The FluentCRM provider of the counter; defaults to the source."""
    list_id: int | None = None
    """The list the event was tracked with (Octeth's ListID); the dialect checks it."""
    repeatable: bool = True
    """Adds to the contact's one counter for (name, title); False gives the event a
    counter row of its own, as FluentCRM's repeatable=false does."""
    as_named: VisitorNaming | None = None
    """Store the event only if the visitor is already as this identify names it (the
    contact is then the one it names); otherwise the event is refused with NotAsNamed,
    checked in the transaction that would store it."""
    derived_from: Derivation | None = None
    """Set when an automation's `track` step records the event: it counts against the
    fan-out limits of the incoming event the chain started from."""


@dataclass(frozen=True, slots=True)
class Event:
    """A stored occurrence, as the core hands it back."""

    id: int
    contact_id: int
    name: str
    title: str | None
    value: str | None
    properties: dict[str, Any] | None
    source: str
    message_id: str | None
    occurred_at: datetime
    received_at: datetime


@dataclass(frozen=True, slots=True)
class TrackResult:
    event_id: int
    contact_id: int
    occurred_at: datetime
    received_at: datetime
    duplicate: bool
    summary_id: int | None = None
    """The counter row the event was counted in (None for a replay)."""
    visitor_id: str | None = None
    """The visitor id of a command stored as named (`as_named`)."""


@dataclass(frozen=True, slots=True)
class PendingEvent:
    """A validated command with the account it belongs to and when it arrived."""

    account_id: int
    command: TrackCommand
    occurred_at: datetime
    received_at: datetime
