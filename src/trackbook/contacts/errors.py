"""Errors of the contacts domain."""

from __future__ import annotations

from trackbook.errors import Conflict, DomainError, NotFound


class ContactNotFound(NotFound):
    code = "contact_not_found"


class ContactConflict(Conflict):
    code = "contact_conflict"


class ContactExists(ContactConflict):
    """A contact was to be created, and one with its email (or another unique field)
    exists already: the create-only routes' duplicate answer."""

    code = "contact_exists"


class ListNotFound(NotFound):
    code = "list_not_found"


class ListConflict(Conflict):
    code = "list_conflict"


class ListInUse(Conflict):
    """An automation or a segment names the list: deleting it would leave them naming
    a list that is gone."""

    code = "list_in_use"


class NotAsNamed(DomainError):
    """The contact or visitor an identify names is not (yet) as it says: a new contact,
    visitor id, external id, field or list membership. Nothing was stored; the identify
    has to be written first."""

    code = "not_as_named"
