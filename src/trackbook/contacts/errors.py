"""Errors of the contacts domain."""

from __future__ import annotations

from trackbook.errors import Conflict, NotFound


class ContactNotFound(NotFound):
    code = "contact_not_found"


class ContactConflict(Conflict):
    code = "contact_conflict"


class ListNotFound(NotFound):
    code = "list_not_found"


class ListConflict(Conflict):
    code = "list_conflict"
