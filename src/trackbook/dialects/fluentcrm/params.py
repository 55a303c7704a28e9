"""How WordPress reads request values: sanitised text, PHP truthiness, Basic auth."""

from __future__ import annotations

import re
from typing import Any

from trackbook.dialects.params import basic_credentials

_TAG = re.compile(r"<[^>]*>")
_SPACE = re.compile(r"\s+")


def sanitize_text(value: Any) -> str:
    """WordPress's sanitize_text_field: no tags, no line breaks or runs of spaces, trimmed."""
    if value is None or isinstance(value, dict | list):
        return ""
    if isinstance(value, bool):
        return "1" if value else ""
    return _SPACE.sub(" ", _TAG.sub("", str(value))).strip()


def php_truthy(value: Any) -> bool:
    """PHP's truthiness: false, 0, "", "0", null and [] are false; the string "false" is true."""
    if isinstance(value, str):
        return value not in ("", "0")
    return bool(value)


def php_int(value: Any) -> int | None:
    """An id as PHP's intval would accept it, or None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    return None


def basic_password(authorization: str | None) -> str | None:
    """The password of an HTTP Basic header; WordPress application passwords may be
    pasted with the spaces they are displayed with."""
    credentials = basic_credentials(authorization)
    return None if credentials is None else credentials[1].replace(" ", "")
