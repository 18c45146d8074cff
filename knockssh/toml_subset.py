"""The plain part of TOML that mapping files use, read without importing tomllib.

tomllib brings re, typing and datetime with it: about 25 ms before the first knock
on every ssh connection (bench/). A mapping file is almost always plain: ``[table]``
and ``[[array]]`` headers, ``key = value`` lines with strings, whole and decimal
numbers, booleans and one-line arrays of those, comments. ``loads()`` reads
exactly that and returns None for anything else, or anything it is unsure of
(escapes, multi-line strings or arrays, dotted or quoted keys, inline tables,
dates, duplicate keys...): tomllib then decides, with its own error messages. So
it never accepts a document tomllib refuses nor reads one differently; the tests
hold it to that on generated documents.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

BARE_KEY_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-")
BLANK = " \t"
TOKEN_END = " \t,]#"


class _Unsure(Exception):
    """Outside the subset: let tomllib read the document."""


def loads(text: str) -> dict[str, Any] | None:
    """The document as tomllib would return it, or None to leave it to tomllib."""
    try:
        return _document(text)
    except _Unsure:
        return None


def _document(text: str) -> dict[str, Any]:
    root: dict[str, Any] = {}
    table = root
    arrays: set[str] = set()  # names made by [[name]]
    lines = text.split("\n")
    last = len(lines) - 1
    for number, raw in enumerate(lines):
        if number < last and raw.endswith("\r"):
            raw = raw[:-1]  # CRLF; a lone CR stays and is refused below
        if not raw.isprintable():
            _check_controls(raw)
        line = raw.strip(BLANK)
        if not line or line[0] == "#":
            continue
        if line[0] == "[":
            table = _header(line, root, arrays)
            continue
        eq = line.find("=")
        key = _bare_key(line[:eq].rstrip(BLANK) if eq > 0 else "")
        value, rest = _value(line[eq + 1 :].lstrip(BLANK))
        _end_of_line(rest)
        if key in table:
            raise _Unsure  # a duplicate: tomllib's error
        table[key] = value
    return root


def _check_controls(line: str) -> None:
    """TOML allows no control character but tab outside line ends."""
    for c in line:
        if (c < " " and c != "\t") or c == "\x7f":
            raise _Unsure


def _bare_key(key: str) -> str:
    if not key or not BARE_KEY_CHARS.issuperset(key):
        raise _Unsure
    return key


def _end_of_line(rest: str) -> None:
    rest = rest.lstrip(BLANK)
    if rest and rest[0] != "#":
        raise _Unsure


def _header(line: str, root: dict[str, Any], arrays: set[str]) -> dict[str, Any]:
    is_array = line.startswith("[[")
    close = line.find("]]" if is_array else "]")
    if close < 0:
        raise _Unsure
    name = _bare_key(line[2 if is_array else 1 : close])
    _end_of_line(line[close + (2 if is_array else 1) :])
    table: dict[str, Any] = {}
    if is_array and name in arrays:
        root[name].append(table)
    elif name in root:
        raise _Unsure  # a table defined twice, or over a key
    else:
        root[name] = [table] if is_array else table
        if is_array:
            arrays.add(name)
    return table


def _value(s: str) -> tuple[Any, str]:
    """The value at the start of ``s`` and what follows it."""
    if not s:
        raise _Unsure
    first = s[0]
    if first in "\"'":
        if s.startswith(first * 3):
            raise _Unsure  # multi-line string
        close = s.find(first, 1)
        body = s[1:close]
        if close < 0 or (first == '"' and "\\" in body):
            raise _Unsure  # unclosed, or escapes
        return body, s[close + 1 :]
    if first == "[":
        return _array(s[1:])
    end = len(s)
    for c in TOKEN_END:
        found = s.find(c)
        if 0 <= found < end:
            end = found
    return _scalar(s[:end]), s[end:]


def _array(s: str) -> tuple[list[Any], str]:
    items: list[Any] = []
    while True:
        s = s.lstrip(BLANK)
        if s.startswith("]"):
            return items, s[1:]
        if not s or s[0] in "[#{":
            raise _Unsure  # multi-line, nested, or inline tables
        item, s = _value(s)
        items.append(item)
        s = s.lstrip(BLANK)
        if s.startswith(","):
            s = s[1:]
        elif not s.startswith("]"):
            raise _Unsure


def _scalar(token: str) -> bool | int | float:
    if token == "true":
        return True
    if token == "false":
        return False
    body = token[1:] if token[:1] in ("+", "-") else token
    whole, dot, fraction = body.partition(".")
    if not _decimal(whole) or (dot and not _digits(fraction)):
        raise _Unsure  # hex, underscores, exponents, inf, dates, ...
    return float(token) if dot else int(token, 10)


def _digits(text: str) -> bool:
    return text.isdigit() and text.isascii()


def _decimal(text: str) -> bool:
    """A TOML integer's digits: no leading zero."""
    return _digits(text) and (text == "0" or text[0] != "0")
