"""Errors of the accounts domain."""

from __future__ import annotations

from trackbook.errors import DomainError, NotFound


class AccountNotFound(NotFound):
    code = "account_not_found"


class KeyNotFound(NotFound):
    code = "key_not_found"


class Unauthenticated(DomainError):
    code = "unauthenticated"
