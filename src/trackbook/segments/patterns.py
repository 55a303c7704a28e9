"""The regular expressions segments take: a subset RE2 (SQLite) and PostgreSQL's ARE
engine read alike, and how it is written for both.

The subset: literal characters; `.`; `^` and `$`; `|`; groups `(...)` and `(?:...)`;
classes `[...]`/`[^...]` of characters, ranges of characters and `\\d`, `\\w`, `\\s`;
`\\d \\D \\w \\W \\s \\S`; the escapes `\\n \\t \\r \\f \\v` and a backslash before any
punctuation; the quantifiers `* + ? {n} {n,} {n,m}` (n, m at most 255), each optionally
lazy (`*?`); and `(?i)` at the very start, which ignores the case of ASCII letters.

Everything else one of the engines refuses or reads differently, so it is refused by
name: `\\b` is a word boundary in RE2 and a backspace in PostgreSQL, `\\p{L}`, `\\z`,
`\\Q...\\E`, `\\x{...}` and named or flag groups are RE2's alone, and so on. What is
run is a rewrite meaning the same on both: `\\d`, `\\w`, `\\s` and `.` as explicit ASCII
classes (PostgreSQL's follow the locale and its `.` matches a newline) and `(?i)` as
explicit classes of both cases (PostgreSQL folds by the locale, RE2 by Unicode).
"""

from __future__ import annotations

import re
import string

import re2

from trackbook.errors import Invalid

REGEX_MAX = 256
REPEAT_MAX = 255
"""The largest count in {n,m} that PostgreSQL's regular expressions take (RE_DUP_MAX);
RE2 takes up to 1000."""

_BOUND = re.compile(r"\{([0-9]+)(,([0-9]*))?\}")
_CLASSES = {"d": "0-9", "w": "0-9A-Za-z_", "s": "\\t\\n\\f\\r "}
"""RE2's ASCII meaning of \\d, \\w and \\s, as class items both engines read alike."""
_CONTROLS = "ntrfv"
_CONTROL_CHARS = {"n": "\n", "t": "\t", "r": "\r", "f": "\f", "v": "\v"}
_PUNCTUATION = frozenset(string.punctuation)
_REFUSED_ESCAPES = {
    "b": "\\b (a word boundary in RE2, a backspace in PostgreSQL)",
    "B": "\\B (a word boundary test in RE2 only)",
    "p": "\\p (Unicode classes, RE2 only)",
    "P": "\\P (Unicode classes, RE2 only)",
    "A": "\\A (use ^)",
    "z": "\\z (RE2 only; use $)",
    "Z": "\\Z (PostgreSQL only; use $)",
    "Q": "\\Q...\\E (RE2 only; escape each character with \\ instead)",
    "E": "\\E (RE2 only)",
    "C": "\\C (RE2 only)",
    "x": "\\x (hexadecimal escapes read differently; write the character itself)",
}


class _Refused(Exception):
    """The construct a pattern uses outside the subset."""


def _escape_name(escaped: str) -> str:
    if escaped in _REFUSED_ESCAPES:
        return _REFUSED_ESCAPES[escaped]
    if escaped.isdigit():
        return f"\\{escaped} (backreferences and octal escapes)"
    return f"\\{escaped}"


def _cased(char: str) -> str:
    """A character as class items matching both its ASCII cases."""
    if char.isascii() and char.isalpha():
        return char.lower() + char.upper()
    return _item(char)


def _item(char: str) -> str:
    """One character as a class item, escaped where a class would read it otherwise."""
    return "\\" + char if char in "\\]^-[" else char


def _folded_range(low: str, high: str) -> str:
    """The range low-high and, for its ASCII letters, the same letters of the other case."""
    items = f"{_item(low)}-{_item(high)}"
    for first, last, shift in (("a", "z", -32), ("A", "Z", 32)):
        start, end = max(ord(low), ord(first)), min(ord(high), ord(last))
        if start <= end:
            items += f"{chr(start + shift)}-{chr(end + shift)}"
    return items


class _Writer:
    """Reads a pattern RE2 has parsed and writes it in the common form."""

    def __init__(self, pattern: str) -> None:
        self.pattern = pattern
        self.position = 0
        self.fold = pattern.startswith("(?i)")
        if self.fold:
            self.position = 4

    def peek(self, offset: int = 0) -> str:
        return self.pattern[self.position + offset : self.position + offset + 1]

    def write(self) -> str:
        written: list[str] = []
        repeatable = False  # whether the last thing written may take a quantifier
        while self.position < len(self.pattern):
            char = self.peek()
            if char == "\\":
                written.append(self.escape())
                repeatable = True
            elif char == "[":
                written.append(self.char_class())
                repeatable = True
            elif char == "(":
                written.append(self.group_start())
                repeatable = False
            elif char == "{" and _BOUND.match(self.pattern, self.position) is None:
                raise _Refused(
                    "a { that starts no {n}, {n,} or {n,m} (write \\{ for the character)"
                )
            elif char in "*+?{":
                if not repeatable:
                    raise _Refused(
                        f"a quantifier {char} that repeats nothing or a repetition "
                        "(possessive a*+ and a** are not supported)"
                    )
                written.append(self.quantifier())
                repeatable = False
            elif char in "}]":
                raise _Refused(f"a bare {char} (write \\{char} for the character)")
            else:
                written.append(self.single(char))
                repeatable = char not in "^$|"
        return "".join(written)

    def single(self, char: str) -> str:
        """A character outside classes that is not an escape, group or quantifier."""
        self.position += 1
        if char == ".":
            return "[^\\n]"
        if self.fold and char.isascii() and char.isalpha():
            return f"[{_cased(char)}]"
        return char

    def escape(self) -> str:
        escaped = self.peek(1)
        self.position += 2
        if escaped.lower() in _CLASSES:
            negated = "^" if escaped.isupper() else ""
            return f"[{negated}{_CLASSES[escaped.lower()]}]"
        if escaped in _CONTROLS or escaped in _PUNCTUATION:
            return "\\" + escaped
        raise _Refused(_escape_name(escaped))

    def group_start(self) -> str:
        if self.peek(1) != "?":
            self.position += 1
            return "("
        if self.peek(2) == ":":
            self.position += 3
            return "(?:"
        rest = self.pattern[self.position :]
        if rest.startswith(("(?P<", "(?<")):
            raise _Refused("a named group (?P<name>...) (write (...))")
        raise _Refused("a flag group such as (?i:...), (?s) or (?U) (only a leading (?i) is taken)")

    def quantifier(self) -> str:
        char = self.peek()
        if char == "{":
            bound = _BOUND.match(self.pattern, self.position)
            assert bound is not None  # noqa: S101 - checked by write()
            counts = [int(n) for n in (bound.group(1), bound.group(3)) if n]
            if any(count > REPEAT_MAX for count in counts):
                raise _Refused(f"a repetition of more than {REPEAT_MAX} (PostgreSQL's limit)")
            written = bound.group(0)
            self.position = bound.end()
        else:
            written = char
            self.position += 1
        if self.peek() == "?":
            written += "?"
            self.position += 1
        return written

    def class_char(self) -> tuple[str | None, str]:
        """One item of a class: (the character, or None for \\d \\w \\s; how it is written)."""
        char = self.peek()
        if char == "[":
            raise _Refused(
                "a [ inside a class ([:alpha:] and the like; write \\[ for the character)"
            )
        if char != "\\":
            self.position += 1
            return char, _cased(char) if self.fold else _item(char)
        escaped = self.peek(1)
        self.position += 2
        if escaped in _CLASSES:
            return None, _CLASSES[escaped]
        if escaped.lower() in _CLASSES:
            raise _Refused(f"\\{escaped} inside a class")
        if escaped in _CONTROLS:
            return _CONTROL_CHARS[escaped], "\\" + escaped
        if escaped in _PUNCTUATION:
            return escaped, _cased(escaped) if self.fold else _item(escaped)
        raise _Refused(_escape_name(escaped))

    def char_class(self) -> str:
        self.position += 1
        written = "["
        if self.peek() == "^":
            written += "^"
            self.position += 1
        if self.peek() == "]":
            raise _Refused("a ] first in a class (write \\] for the character)")
        while self.peek() != "]":
            if not self.peek():
                raise _Refused("an unclosed [")
            low, item = self.class_char()
            if self.peek() == "-" and self.peek(1) not in ("]", ""):
                self.position += 1
                high, _ = self.class_char()
                if low is None or high is None:
                    raise _Refused("a range with a class escape such as [\\d-z]")
                if ord(low) > ord(high):
                    raise _Refused(f"a range {low}-{high} that runs backwards")
                if self.peek() == "-" and self.peek(1) not in ("]", ""):
                    raise _Refused("a range followed by - (write \\- for the character)")
                item = _folded_range(low, high) if self.fold else f"{_item(low)}-{_item(high)}"
            written += item
        self.position += 1
        return written + "]"


def portable(pattern: str, path: str) -> str:
    """The pattern as run on either database; Invalid, naming the construct, for one
    outside the subset or not valid at all."""
    if len(pattern) > REGEX_MAX:
        raise Invalid(path, f"must be a pattern of at most {REGEX_MAX} characters")
    try:
        re2.compile(pattern)
    except re2.error as error:
        raise Invalid(path, f"is not a valid regular expression: {error}") from None
    try:
        return _Writer(pattern).write()
    except _Refused as refused:
        raise Invalid(
            path,
            f"uses {refused}, which segments do not take: SQLite's and PostgreSQL's "
            "regular expressions read it differently or one refuses it (the README's "
            "Segments section lists what both read alike)",
        ) from None
