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
from jinja2.exceptions import SecurityError
from jinja2.sandbox import SandboxedEnvironment

from trackbook.contacts.service import Contact
from trackbook.errors import Invalid
from trackbook.events.model import Event

_TAG = re.compile(r"%(?:(EVENT):\s*([^%]+?)\s*|(EMAIL|FIRSTNAME|LASTNAME))%", re.IGNORECASE)


class _Visible(ChainableUndefined, DebugUndefined):
    """A missing name renders as itself, however deep the lookup chain goes."""

    __slots__ = ()


MAX_OUTPUT = 1_000_000
"""Characters a rendered part may have; rendering stops with RenderError beyond."""
MAX_REPEAT = 10_000


class _Bounded(SandboxedEnvironment):
    """The sandbox, plus limits on what a template can make the worker do: no `range`,
    no repeating a string or list past MAX_REPEAT, no large powers."""

    intercepted_binops = frozenset({"*", "**"})

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        if operator == "**" and isinstance(right, int | float) and abs(right) > 64:
            raise SecurityError("powers above 64 are not allowed in templates")
        if operator == "*":
            for count, other in ((left, right), (right, left)):
                repeated = isinstance(count, int) and isinstance(other, str | list | tuple)
                if repeated and count * max(len(other), 1) > MAX_REPEAT:
                    raise SecurityError("repeating beyond 10000 items is not allowed")
        return super().call_binop(context, operator, left, right)


def _environment(*, autoescape: bool) -> _Bounded:
    environment = _Bounded(undefined=_Visible, autoescape=autoescape)
    environment.globals.pop("range", None)
    return environment


_text = _environment(autoescape=False)
_html = _environment(autoescape=True)


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
        parts: list[str] = []
        size = 0
        for part in (_html if as_html else _text).from_string(template).generate(context):
            size += len(part)
            if size > MAX_OUTPUT:
                raise RenderError(f"the template renders more than {MAX_OUTPUT} characters")
            parts.append(part)
        expanded = "".join(parts)
    except (TemplateError, ArithmeticError, TypeError, ValueError) as error:
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
