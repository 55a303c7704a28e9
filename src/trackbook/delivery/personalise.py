"""Email personalisation: ActiveCampaign-style %TAGS% and sandboxed Jinja2 expressions.

    %EVENT: file download request%   the value of the contact's latest event of that name
    %EMAIL% %FIRSTNAME% %LASTNAME%    the contact's fields
    {{ event.properties.plan }}      the triggering event and {{ contact.email }}

Jinja2 runs first, in a sandbox, so that nothing a contact sent (event values fill the
%TAGS%) is ever evaluated as a template. A tag or expression Trackbook does not know
is left visible in the message rather than failing the send.
"""

from __future__ import annotations

import html
import re
from collections.abc import Mapping
from typing import Any

from jinja2 import ChainableUndefined, DebugUndefined, TemplateError
from jinja2.sandbox import SandboxedEnvironment

from trackbook.contacts.service import Contact
from trackbook.errors import Invalid
from trackbook.events.model import Event

_TAG = re.compile(r"%(?:(EVENT):\s*([^%]+?)\s*|(EMAIL|FIRSTNAME|LASTNAME))%", re.IGNORECASE)


class _Visible(ChainableUndefined, DebugUndefined):
    """A missing name renders as itself, however deep the lookup chain goes."""

    __slots__ = ()


_text = SandboxedEnvironment(undefined=_Visible, autoescape=False)
_html = SandboxedEnvironment(undefined=_Visible, autoescape=True)


class RenderError(Exception):
    """The template cannot be rendered; sending again will not help."""


def check(template: str, field: str) -> None:
    try:
        _text.parse(template)
    except TemplateError as error:
        raise Invalid(field, f"is not a valid template: {error.message}") from None


def events_named(*templates: str | None) -> set[str]:
    """The event names %EVENT: name% tags of these templates ask for."""
    return {
        match.group(2).lower()
        for template in templates
        if template
        for match in _TAG.finditer(template)
        if match.group(1)
    }


def render(
    template: str,
    *,
    contact: Contact,
    event: Event,
    latest_values: Mapping[str, str | None],
    as_html: bool = False,
) -> str:
    """`latest_values` maps lower-cased event names to the value of the contact's latest
    event of that name."""
    context: dict[str, Any] = {
        "contact": {
            "id": contact.id,
            "email": contact.email,
            "first_name": contact.first_name,
            "last_name": contact.last_name,
            "external_id": contact.external_id,
            "status": contact.status,
        },
        "event": {
            "id": event.id,
            "name": event.name,
            "title": event.title,
            "value": event.value,
            "properties": event.properties or {},
            "occurred_at": event.occurred_at.isoformat(),
        },
    }
    try:
        expanded = (_html if as_html else _text).from_string(template).render(context)
    except TemplateError as error:
        raise RenderError(f"the template cannot be rendered: {error}") from error
    fields = {
        "email": contact.email,
        "firstname": contact.first_name,
        "lastname": contact.last_name,
    }

    def tag(match: re.Match[str]) -> str:
        if match.group(1):
            value = latest_values.get(match.group(2).lower())
        else:
            value = fields[match.group(3).lower()]
        text = value or ""
        return html.escape(text) if as_html else text

    return _TAG.sub(tag, expanded)
