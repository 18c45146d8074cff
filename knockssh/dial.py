"""Connecting the moment the door opens.

After the last knock the firewall opens only once knockd has run its command, so
the first SYN is often dropped and the kernel would retry it only after a second.
Instead we start a fresh connection attempt at growing intervals and keep the
earlier ones pending: whichever completes first wins, the others are closed.
"""

from __future__ import annotations

import errno
import os
import select
import socket
import time

from .knock import Sockaddr

FIRST_RETRY = 0.02  # seconds after the first attempt
MAX_RETRY_INTERVAL = 0.5


def dial(family: int, sockaddr: Sockaddr, timeout: float, retry: bool = True) -> socket.socket:
    """Connect to ``sockaddr`` within ``timeout`` seconds; raise OSError on failure.

    With ``retry``, new attempts start at intervals growing from FIRST_RETRY and
    refused attempts are retried, so a door that opens a little later is used at once.
    """
    deadline = time.monotonic() + timeout
    pending: dict[int, socket.socket] = {}
    poller = select.poll()
    interval = FIRST_RETRY
    next_start = time.monotonic()
    last_error: OSError = TimeoutError(errno.ETIMEDOUT, "connection timed out")
    try:
        while True:
            now = time.monotonic()
            if now >= deadline:
                raise last_error
            if now >= next_start:
                s = socket.socket(family, socket.SOCK_STREAM)
                s.setblocking(False)
                code = s.connect_ex(sockaddr)
                if code in (0, errno.EINPROGRESS):
                    pending[s.fileno()] = s
                    poller.register(s, select.POLLOUT)
                else:
                    s.close()
                    last_error = OSError(code, os.strerror(code))
                    if not retry:
                        raise last_error
                next_start = now + interval if retry else deadline
                interval = min(interval * 2, MAX_RETRY_INTERVAL)
            wait = max(0.0, min(next_start, deadline) - time.monotonic())
            for fd, _ in poller.poll(wait * 1000):
                s = pending.pop(fd)
                poller.unregister(fd)
                code = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
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
