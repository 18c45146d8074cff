"""Errors that end a command with a one-line message (never a traceback)."""

from __future__ import annotations


class KnocksshError(Exception):
    """A failure the user can act on; ``str()`` is the whole message."""

    exit_code = 1


class UsageError(KnocksshError):
    exit_code = 2
