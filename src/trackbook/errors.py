"""The domain errors services raise; each dialect renders them in its own wire format.
And the bound on any error text kept or logged."""

from __future__ import annotations

ERROR_TEXT_MAX = 1000
"""The most characters of an error text kept or logged about a run or a delivery: what
went wrong can be a tenant's template's own words, megabytes of them."""


def bounded(text: str, limit: int = ERROR_TEXT_MAX) -> str:
    """`text` as it is, or, when longer than `limit`, its start and a note that it was cut,
    `limit` characters in all."""
    if len(text) <= limit:
        return text
    marker = f"... [cut: {len(text)} characters in all]"
    return text[: limit - len(marker)] + marker


class StorageUnavailable(Exception):
    """The database could not be reached or refused to work; a retry may succeed. Every
    dialect answers it 503 with Retry-After, so it lives here rather than in the store."""


class DomainError(Exception):
    """A request the domain refuses. `code` is stable and machine-readable."""

    code = "error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class Invalid(DomainError):
    """A value the domain cannot accept; `field` names it in the domain's terms."""

    code = "invalid"

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field} {reason}")
        self.field = field
        self.reason = reason


class NotFound(DomainError):
    """The thing does not exist in this account (another account's is not found either)."""

    code = "not_found"


class Conflict(DomainError):
    """The request clashes with what is stored (a duplicate unique value)."""

    code = "conflict"
