"""Connecting the moment the door opens.

After the last knock the firewall opens only once knockd has seen the knocks and
run its command. knockd 0.8 reads its capture in batches (a 50 ms pcap timeout),
then forks the firewall command, so the door opens anywhere from a few to about
60 ms later; a dropped SYN would be retried by the kernel only after a second.
Instead we start a fresh attempt every 5 ms over that window, then at growing
intervals, and keep the earlier attempts pending: the first to complete wins.
"""

from __future__ import annotations

import errno
import os
import select
import time

from .net import SO_ERROR, SOCK_STREAM, SOL_SOCKET, RawSocket

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator

    from .net import Sockaddr

FAST_INTERVAL = 0.005  # seconds between attempts while the door is most likely to open
FAST_ATTEMPTS = 20  # ... that is, for the first 100 ms
MAX_RETRY_INTERVAL = 0.5
MAX_PENDING = 16  # beyond this the oldest attempt is dropped (a socket, a SYN resent after 1 s)


def retry_intervals() -> Iterator[float]:
    """Pauses between attempts: FAST_INTERVAL for FAST_ATTEMPTS, then doubling to the cap."""
    for _ in range(FAST_ATTEMPTS):
        yield FAST_INTERVAL
    interval = FAST_INTERVAL
    while True:
        interval = min(interval * 2, MAX_RETRY_INTERVAL)
        yield interval


def _start(family: int, sockaddr: Sockaddr) -> tuple[RawSocket | None, int]:
    """A non-blocking connect under way, or None and the errno that ended it at once."""
    s = RawSocket(family, SOCK_STREAM)
    s.setblocking(False)
    code = s.connect_ex(sockaddr)
    if code in (0, errno.EINPROGRESS):
        return s, 0
    s.close()
    return None, code


def dial(family: int, sockaddr: Sockaddr, timeout: float, retry: bool = True) -> RawSocket:
    """Connect to ``sockaddr`` within ``timeout`` seconds; raise OSError on failure.

    With ``retry``, new attempts start at the intervals of retry_intervals() and
    refused attempts are retried, so a door that opens a little later is used at once.
    """
    deadline = time.monotonic() + timeout
    pending: dict[int, RawSocket] = {}  # oldest first
    poller = select.poll()
    pauses = retry_intervals()
    next_start = time.monotonic()
    last_error: OSError = TimeoutError(errno.ETIMEDOUT, "connection timed out")
    try:
        while True:
            now = time.monotonic()
            if now >= deadline:
                raise last_error
            if now >= next_start:
                if len(pending) >= MAX_PENDING:
                    oldest = next(iter(pending))
                    poller.unregister(oldest)
                    pending.pop(oldest).close()
                s, code = _start(family, sockaddr)
                if s is not None:
                    pending[s.fileno()] = s
                    poller.register(s, select.POLLOUT)
                else:
                    last_error = OSError(code, os.strerror(code))
                    if not retry:
                        raise last_error
                next_start = now + next(pauses) if retry else deadline
            wait = max(0.0, min(next_start, deadline) - time.monotonic())
            for fd, _ in poller.poll(wait * 1000):
                s = pending.pop(fd)
                poller.unregister(fd)
                code = s.getsockopt(SOL_SOCKET, SO_ERROR)
                if code == 0:
                    s.setblocking(True)
                    return s
                s.close()
                last_error = OSError(code, os.strerror(code))
                if not retry:
                    raise last_error
    finally:
        for s in pending.values():
            s.close()
