"""ssh_config-style host patterns: ``*``, ``?`` and ``!negation``; case-insensitive."""

from __future__ import annotations

BAD_CHARS = frozenset(" \t\r\n,\"'\\")


def check_pattern(pattern: str) -> str | None:
    """Why ``pattern`` is unusable, or None."""
    body = pattern[1:] if pattern.startswith("!") else pattern
    if not body:
        return "empty pattern"
    if any(c in BAD_CHARS or ord(c) < 32 for c in body):
        return f"pattern {pattern!r} holds whitespace, a quote, a comma or a control character"
    if body.startswith("!"):
        return f"pattern {pattern!r} is negated twice"
    return None


def glob(pattern: str, name: str) -> bool:
    """``*`` matches any run of characters, ``?`` exactly one (iterative, no regex)."""
    p = n = 0
    star_p, star_n = -1, 0
    while n < len(name):
        if p < len(pattern) and (pattern[p] == "?" or pattern[p] == name[n]):
            p += 1
            n += 1
        elif p < len(pattern) and pattern[p] == "*":
            star_p, star_n = p, n
            p += 1
        elif star_p >= 0:
            p = star_p + 1
            star_n += 1
            n = star_n
        else:
            return False
    return all(c == "*" for c in pattern[p:])


def matches(patterns: tuple[str, ...], host: str) -> bool:
    """As ssh's Host line: no negated pattern matches and at least one plain one does."""
    host = host.lower()
    hit = False
    for pattern in patterns:
        if pattern.startswith("!"):
            if glob(pattern[1:], host):
                return False
        elif not hit and glob(pattern, host):
            hit = True
    return hit
