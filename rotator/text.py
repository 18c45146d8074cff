"""Untrusted text on its way to a terminal, a log or a message (pure)."""

from __future__ import annotations


def printable(text: str) -> str:
    """``text`` with control characters (newline, CR, ESC...) and undecodable bytes
    escaped: a value holding a newline must not write a second, forged line to a
    terminal or a log, nor an escape sequence reach a terminal raw."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else ascii(c)[1:-1] for c in text)


def shown(text: str, limit: int = 24) -> str:
    """A value as a message quotes it: escaped, and cut short when long."""
    text = text if len(text) <= limit else text[: limit - 4] + "..."
    return repr(printable(text))
