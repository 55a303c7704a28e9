"""Errors of the accounts domain."""

from __future__ import annotations

from trackbook.errors import DomainError, NotFound


class AccountNotFound(NotFound):
    code = "account_not_found"


class KeyNotFound(NotFound):
    code = "key_not_found"


class Unauthenticated(DomainError):
    code = "unauthenticated"


class Forbidden(DomainError):
    """A valid key that may not do this: a publishable key outside the routes that
    record events, or used from an origin it does not list."""

    code = "forbidden"
