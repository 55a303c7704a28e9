"""How a request names a contact, and how those names are normalised."""

from __future__ import annotations

import enum
import functools
from dataclasses import dataclass

from email_validator import EmailNotValidError, validate_email

from trackbook.errors import Invalid

MAX_ID = 2**63 - 1
"""The largest id either database stores (a signed 64-bit integer)."""


def is_id(number: int) -> bool:
    """Whether `number` could be an id Trackbook gave. Any other number names nothing and
    is never sent to a database, which fails on one beyond 64 bits (in the event writer,
    failing the events of the whole group with it)."""
    return 0 < number <= MAX_ID


class UnknownContact(enum.Enum):
    """What track() does when the named contact does not exist yet."""

    REJECT = "reject"
    CREATE_IDENTIFIED = "create_identified"
    """Create it when an email or external id names it; reject an unknown id or anonymous id."""
    CREATE_ALWAYS = "create_always"
    """As CREATE_IDENTIFIED, and an unknown anonymous id gets an anonymous contact."""


@dataclass(frozen=True, slots=True)
class Credential:
    """The powers of the key a contact change comes with, which the contacts core
    enforces whichever dialect carries it."""

    source: str
    """The dialect (or `dashboard`, `cli`) it came through, for what is recorded."""
    publishable: bool = False
    """A key that sits in web pages, so anyone may hold it: it may create contacts and
    link an anonymous visitor to one, but never changes a contact that exists (email,
    external id, names, phone, status), never moves an identity from one contact to
    another, and is never answered a visitor id it did not give or get made."""


def normalise_email(email: str, field: str = "email") -> str:
    """Trimmed and lower-cased; Invalid when it is no email address."""
    email = email.strip().lower()
    try:
        _check_email(email)
    except EmailNotValidError as error:
        raise Invalid(field, f"is not a valid email address: {error}") from None
    return email


@functools.lru_cache(maxsize=65_536)
def _check_email(email: str) -> None:
    # The same contacts come back all the time, and the check costs more than the
    # rest of parsing an event; only valid addresses are remembered.
    validate_email(email, check_deliverability=False, allow_smtputf8=True)


def _text(value: str, field: str, limit: int = 255) -> str:
    value = value.strip()
    if not 1 <= len(value) <= limit:
        raise Invalid(field, f"must be 1 to {limit} characters")
    return value


@dataclass(frozen=True, slots=True)
class IdentityLink:
    """Identifiers a sender says name the same person (Segment's identify and alias):
    an email or external id, an anonymous id, and traits for the contact."""

    email: str | None
    external_id: str | None
    anonymous_id: str | None
    traits: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class ContactRef:
    """One way of naming a contact. Lookup uses the first given of id, email,
    external_id, wp_user_id, anonymous_id; a new contact gets email and external id."""

    id: int | None = None
    email: str | None = None
    external_id: str | None = None
    wp_user_id: int | None = None
    anonymous_id: str | None = None

    @classmethod
    def build(
        cls,
        *,
        id: int | None = None,
        email: str | None = None,
        external_id: str | None = None,
        wp_user_id: int | None = None,
        anonymous_id: str | None = None,
        field: str = "contact",
    ) -> ContactRef:
        for name, number in (("id", id), ("wp_user_id", wp_user_id)):
            if number is not None and not is_id(number):
                raise Invalid(f"{field}.{name}", "is not an id Trackbook could have given")
        ref = cls(
            id=id,
            email=None if email is None else normalise_email(email, f"{field}.email"),
            external_id=None if external_id is None else _text(external_id, f"{field}.external_id"),
            wp_user_id=wp_user_id,
            anonymous_id=None
            if anonymous_id is None
            else _text(anonymous_id, f"{field}.anonymous_id"),
        )
        if ref.lookup is None:
            raise Invalid(field, "must name a contact by id, email, external_id or anonymous_id")
        return ref

    def __post_init__(self) -> None:
        # here, not only in build(): every ref reaches the database, however built
        for name, number in (("id", self.id), ("wp_user_id", self.wp_user_id)):
            if number is not None and not is_id(number):
                raise Invalid(f"contact.{name}", "is not an id Trackbook could have given")

    @property
    def lookup(self) -> tuple[str, int | str] | None:
        """The (kind, value) used to find the contact."""
        # an if per kind: this runs for every event the writer stores
        if self.id is not None:
            return "id", self.id
        if self.email is not None:
            return "email", self.email
        if self.external_id is not None:
            return "external_id", self.external_id
        if self.wp_user_id is not None:
            return "wp_user_id", self.wp_user_id
        if self.anonymous_id is not None:
            return "anonymous_id", self.anonymous_id
        return None

    @property
    def identified(self) -> bool:
        return self.email is not None or self.external_id is not None


@dataclass(frozen=True, slots=True)
class VisitorNaming:
    """What an identify says of a visitor: the contact its email or external id names
    (with both, the email's contact holds that external id), the visitor id linked to
    it (None: whichever it has first), a list it is a member of and contact fields it
    already has."""

    email: str | None
    external_id: str | None
    visitor_id: str | None = None
    list_id: int | None = None
    fields: tuple[tuple[str, str], ...] = ()
    publishable: bool = False
    """Said with a publishable key: without a visitor id, it is never as named (such a key
    is not told the visitor id a contact already has)."""
