"""Noticing that ssh went away while we wait, knock or dial.

ssh sends its ProxyCommand SIGHUP when it exits, but not when it is killed. Our
stdout then reports it: the pipe to ssh has no reader left (POLLERR), or the
socketpair of ProxyUseFdpass is closed (POLLHUP). Every wait of the ProxyCommand
path polls that descriptor, so knockssh stops within a millisecond or so instead
of knocking on for seconds. stdin is not watched: a caller may close it early.
"""

from __future__ import annotations

import select
import time

from .errors import KnocksshError

GONE = select.POLLERR | select.POLLHUP | select.POLLNVAL


class PeerGone(KnocksshError):
    """ssh is gone: nobody is left to tell, so the message is never shown."""


class Watch:
    """The descriptors whose hang-up ends our work (none for the Python API)."""

    __slots__ = ("fds",)

    def __init__(self, fds: tuple[int, ...] = ()) -> None:
        self.fds = fds

    def register(self, poller: select.poll) -> None:
        for fd in self.fds:
            poller.register(fd, 0)  # no events asked: only hang-ups and errors come back

    def check(self, fd: int, events: int) -> bool:
        """True when (fd, events) from a poll is one of ours, and fine; raises PeerGone
        when it reports ssh gone."""
        if fd not in self.fds:
            return False
        if events & GONE:
            raise PeerGone("ssh went away")
        return True

    def sleep(self, seconds: float) -> None:
        """Wait ``seconds``, or raise PeerGone as soon as ssh is gone."""
        if seconds <= 0:
            return
        if not self.fds:
            time.sleep(seconds)
            return
        poller = select.poll()
        self.register(poller)
        deadline = time.monotonic() + seconds
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return
            for fd, events in poller.poll(left * 1000):
                self.check(fd, events)


NOBODY = Watch()
