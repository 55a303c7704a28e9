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
import string
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

import re2
from jinja2 import ChainableUndefined, DebugUndefined, TemplateError, pass_eval_context
from jinja2.exceptions import SecurityError
from jinja2.filters import FILTERS
from jinja2.nodes import EvalContext
from jinja2.runtime import Context
from jinja2.sandbox import SandboxedEnvironment

from trackbook.errors import Invalid

if TYPE_CHECKING:
    # only for annotations: the renderer's child process imports this module, and
    # stays small without the database layer these bring
    from trackbook.contacts.service import Contact
    from trackbook.events.model import Event

# RE2 matches in time linear in the text: Python's re backtracked through
# `\s*([^%]+?)\s*` cubically, and `%EVENT:` then 4,000 spaces took 86 s
_TAG = re2.compile(r"%(?:(?i:EVENT):([^%]+)|((?i:EMAIL|FIRSTNAME|LASTNAME)))%")
_PRINTF_SPEC = re2.compile(r"%%|%(?:\([^)]*\))?[-#0 +]*(\*|[0-9]+)?(?:\.(\*|[0-9]+))?")
_NUMBER = re2.compile(r"[0-9]+")


class _Visible(ChainableUndefined, DebugUndefined):
    """A missing name renders as itself, however deep the lookup chain goes."""

    __slots__ = ()


MAX_OUTPUT = 1_000_000
"""Characters a rendered part may have; rendering stops with RenderError beyond."""
MAX_REPEAT = 10_000
"""Repetitions, padding widths and format widths a template may ask for."""
MAX_TOKENS = 20_000
"""Jinja2 tokens a template may have: what bounds the time taken to check it when it
is saved (a 100,000-character HTML email with an expression every line has 12,000)."""
_PADDING = frozenset({"ljust", "rjust", "center", "zfill", "expandtabs"})


def _check_width(width: Any) -> None:
    if isinstance(width, int) and width > MAX_REPEAT:
        raise SecurityError(f"widths above {MAX_REPEAT} are not allowed in templates")


def _check_length(length: int) -> None:
    if length > MAX_OUTPUT:
        raise SecurityError(f"text longer than {MAX_OUTPUT} characters is not allowed")


def _check_numbers(spec: str) -> None:
    for number in _NUMBER.findall(spec):
        if len(number) > 5 or int(number) > MAX_REPEAT:
            raise SecurityError(f"widths above {MAX_REPEAT} are not allowed in templates")


def _check_printf(template: str) -> None:
    """`'%100000000s' % x` pads as far as the width says."""
    for match in _PRINTF_SPEC.finditer(template):
        for number in match.groups():
            if number == "*":
                raise SecurityError("widths taken from the arguments (*) are not allowed")
            if number is not None:
                _check_numbers(number)


def _check_str_format(template: str) -> None:
    for _, _, spec, _ in string.Formatter().parse(template):
        if spec and "{" in spec:
            raise SecurityError("widths taken from the arguments are not allowed")
        if spec:
            _check_numbers(spec)


def _joined_length(separator: str, items: Any) -> int | None:
    if not isinstance(items, str | list | tuple):
        return None
    parts = [len(item) if isinstance(item, str) else 0 for item in items]
    return sum(parts) + len(separator) * max(len(parts) - 1, 0)


def _check_str_call(method: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    """Refuses a str method call whose result would be larger than a template may make."""
    text: str = method.__self__
    match method.__name__:
        case name if name in _PADDING:
            for width in (*args[:1], *kwargs.values()):
                _check_width(width)
        case "replace" if len(args) >= 2 and isinstance(args[0], str) and isinstance(args[1], str):
            count = text.count(args[0]) if args[0] else len(text) + 1
            _check_length(len(text) + count * (len(args[1]) - len(args[0])))
        case "join" if args:
            length = _joined_length(text, args[0])
            if length is not None:
                _check_length(length)


def _center(value: Any, width: int = 80) -> str:
    _check_width(width)
    return FILTERS["center"](value, width)  # type: ignore[no-any-return]


def _format(value: Any, *args: Any, **kwargs: Any) -> str:
    _check_printf(str(value))
    return FILTERS["format"](value, *args, **kwargs)  # type: ignore[no-any-return]


def _indent(value: Any, width: int | str = 4, first: bool = False, blank: bool = False) -> str:
    text = str(value)
    indent = width if isinstance(width, str) else " " * min(width, MAX_REPEAT + 1)
    _check_width(len(indent))
    _check_length(len(text) + (text.count("\n") + 1) * len(indent))
    return FILTERS["indent"](value, width, first, blank)  # type: ignore[no-any-return]


@pass_eval_context
def _join(eval_ctx: EvalContext, value: Iterable[Any], d: str = "", attribute: Any = None) -> str:
    items = value if isinstance(value, str | list | tuple) else list(value)
    if attribute is None:
        length = _joined_length(str(d), items)
        if length is not None:
            _check_length(length)
    return FILTERS["join"](eval_ctx, items, d, attribute)  # type: ignore[no-any-return]


@pass_eval_context
def _replace(
    eval_ctx: EvalContext, value: Any, old: str, new: str, count: int | None = None
) -> str:
    text, old, new = str(value), str(old), str(new)
    found = text.count(old) if old else len(text) + 1
    _check_length(len(text) + found * (len(new) - len(old)))
    return FILTERS["replace"](eval_ctx, value, old, new, count)  # type: ignore[no-any-return]


class _Bounded(SandboxedEnvironment):
    """The sandbox, plus limits on what a template can make the worker do: no `range`,
    no repeating a string or list past MAX_REPEAT, no padding or format widths past it,
    no large powers, no text past MAX_OUTPUT by replace, join or indent. The renderer's
    process limits (memory, CPU, a deadline) stop whatever these do not foresee."""

    intercepted_binops = frozenset({"*", "**", "%"})

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        if operator == "**" and isinstance(right, int | float) and abs(right) > 64:
            raise SecurityError("powers above 64 are not allowed in templates")
        if operator == "*":
            for count, other in ((left, right), (right, left)):
                repeated = isinstance(count, int) and isinstance(other, str | list | tuple)
                if repeated and count * max(len(other), 1) > MAX_REPEAT:
                    raise SecurityError("repeating beyond 10000 items is not allowed")
        if operator == "%" and isinstance(left, str):
            _check_printf(left)
        return super().call_binop(context, operator, left, right)

    def call(__self, __context: Context, __obj: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: N805 - jinja2's signature, so a keyword named self passes through
        if isinstance(getattr(__obj, "__self__", None), str):
            _check_str_call(__obj, args, kwargs)
        return super().call(__context, __obj, *args, **kwargs)

    def wrap_str_format(self, value: Any) -> Any:
        wrapped = super().wrap_str_format(value)
        if wrapped is not None:
            _check_str_format(value.__self__)
        return wrapped


def _environment(*, autoescape: bool) -> _Bounded:
    environment = _Bounded(undefined=_Visible, autoescape=autoescape)
    environment.globals.pop("range", None)
    environment.filters |= {
        "center": _center,
        "format": _format,
        "indent": _indent,
        "join": _join,
        "replace": _replace,
    }
    return environment


_text = _environment(autoescape=False)
_html = _environment(autoescape=True)


class RenderError(Exception):
    """The template cannot be rendered; sending again will not help."""


def check(template: str, field: str) -> None:
    """Refuses a template that does not parse, or is too large to parse safely: its
    tokens are counted before it is parsed, so a hostile one costs little to refuse."""
    try:
        for count, _ in enumerate(_text.lex(template), start=1):
            if count > MAX_TOKENS:
                raise Invalid(field, f"is a template of more than {MAX_TOKENS} Jinja2 tokens")
        _text.parse(template)
    except TemplateError as error:
        raise Invalid(field, f"is not a valid template: {error.message}") from None
    except RecursionError:
        raise Invalid(field, "is not a valid template: it nests too deeply") from None


def events_named(*templates: str | None) -> set[str]:
    """The event names %EVENT: name% tags of these templates ask for."""
    return {
        name
        for template in templates
        if template
        for match in _TAG.finditer(template)
        if match.group(1) is not None and (name := match.group(1).strip().lower())
    }


def template_context(contact: Contact, event: Event) -> dict[str, Any]:
    """What a template sees as `contact` and `event`, plain JSON values."""
    return {
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


def render(
    template: str,
    *,
    context: Mapping[str, Any],
    latest_values: Mapping[str, str | None],
    as_html: bool = False,
) -> str:
    """Renders one part in this process: the worker calls it through the renderer's
    child processes (trackbook.delivery.renderer), never on its own. `latest_values`
    maps lower-cased event names to the value of the contact's latest event of that name."""
    try:
        parts: list[str] = []
        size = 0
        for part in (_html if as_html else _text).from_string(template).generate(context):
            size += len(part)
            if size > MAX_OUTPUT:
                raise RenderError(f"the template renders more than {MAX_OUTPUT} characters")
            parts.append(part)
        expanded = "".join(parts)
    except (TemplateError, ArithmeticError, LookupError, TypeError, ValueError) as error:
        raise RenderError(f"the template cannot be rendered: {error}") from error
    except RecursionError:
        raise RenderError("the template cannot be rendered: it nests too deeply") from None
    contact = context["contact"]
    fields = {
        "email": contact["email"],
        "firstname": contact["first_name"],
        "lastname": contact["last_name"],
    }

    def tag(match: Any) -> str:
        if match.group(1) is not None:
            name = match.group(1).strip().lower()
            if not name:
                return str(match.group(0))  # %EVENT: % names no event: left visible
            value = latest_values.get(name)
        else:
            value = fields[match.group(2).lower()]
        text = value or ""
        return html.escape(text) if as_html else text

    return str(_TAG.sub(tag, expanded))
