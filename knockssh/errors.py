"""Errors that end a command with a one-line message (never a traceback)."""

from __future__ import annotations

import errno  # built in: nothing to load on the ProxyCommand path


class KnocksshError(Exception):
    """A failure the user can act on; ``str()`` is the whole message."""

    exit_code = 1


class UsageError(KnocksshError):
    exit_code = 2


class ConnectFailure(KnocksshError):
    """No connection to the destination; ``reason`` says what a proxy tells its
    client: unresolved, unreachable, network, refused or timeout."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


UNREACHABLE_ERRNOS = {
    errno.EHOSTUNREACH: "unreachable",
    errno.ENETUNREACH: "network",
    errno.ECONNREFUSED: "refused",
    errno.ETIMEDOUT: "timeout",
}


def reason_of(error: OSError) -> str:
    """What an OSError from a connect means to a proxy's client."""
    if isinstance(error, TimeoutError):
        return "timeout"
    return UNREACHABLE_ERRNOS.get(error.errno or 0, "unreachable")
