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
from .peer import NOBODY

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator

    from .knock import Timings
    from .net import Sockaddr
    from .peer import Watch

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


class Refused(OSError):
    """The door opened and nothing listens (or a rejecting firewall had long enough)."""


class Unreachable(OSError):
    """No route to the address: no knock can help."""


class Reordered(OSError):
    """The server's answers to our knocks came back out of order (``hasty``)."""


UNREACHABLE = (errno.ENETUNREACH, errno.EHOSTUNREACH, errno.EADDRNOTAVAIL, errno.EAFNOSUPPORT)
SETTLE = 0.5  # seconds after which a refusal is final: the door had ample time to open


def _start(family: int, sockaddr: Sockaddr) -> tuple[RawSocket | None, int]:
    """A non-blocking connect under way, or None and the errno that ended it at once."""
    s = RawSocket(family, SOCK_STREAM)
    s.setblocking(False)
    code = s.connect_ex(sockaddr)
    if code in (0, errno.EINPROGRESS):
        return s, 0
    s.close()
    return None, code


def _final_refusal(started: float, now: float, begun: float, pending: dict[int, float]) -> bool:
    """Is a refusal of the attempt started at ``started`` the door's answer?

    Behind a DROP firewall, attempts made before the door opened stay unanswered;
    one refused while an attempt much older than its round trip still waits means
    the door opened and nothing listens. Behind a REJECT firewall every attempt is
    refused until the door opens, so a refusal counts only after SETTLE.
    """
    if now - begun >= SETTLE:
        return True
    answered_in = now - started
    return any(now - t > 2 * answered_in + 0.005 for t in pending.values())


def _out_of_order(timings: Timings) -> bool:
    from .plan import out_of_order  # knocking brought it in already

    return len(timings.answers) > 1 and out_of_order(timings.answers)


def dial(
    family: int,
    sockaddr: Sockaddr,
    timeout: float,
    retry: bool = True,
    watch: Watch = NOBODY,
    refusal_ends: bool = True,
    timings: Timings | None = None,
    hasty: bool = False,
) -> RawSocket:
    """Connect to ``sockaddr`` within ``timeout`` seconds; raise OSError on failure.

    With ``retry``, new attempts start at the intervals of retry_intervals() and
    refused attempts are retried, so a door that opens a little later is used at
    once; with ``refusal_ends``, a refusal that means "open, nothing listens"
    raises Refused at once. No route raises Unreachable. ``watch`` hanging up
    raises PeerGone. ``timings``' knocks left open are watched for the server's
    answers meanwhile, and closed in time; with ``hasty``, answers that came back
    out of order (plan.out_of_order) raise Reordered at once: the knocks most
    likely reached knockd out of order too, and waiting longer would be wasted.
    """
    begun = time.monotonic()
    deadline = begun + timeout
    pending: dict[int, RawSocket] = {}  # oldest first
    started: dict[int, float] = {}
    poller = select.poll()
    watch.register(poller)
    if timings is not None:
        timings.register(poller)
    pauses = retry_intervals()
    next_start = begun
    last_error: OSError = TimeoutError(errno.ETIMEDOUT, "connection timed out")

    def refused(code: int, at: float, now: float) -> None:
        nonlocal last_error
        if code in UNREACHABLE:
            raise Unreachable(code, os.strerror(code))
        last_error = OSError(code, os.strerror(code))
        if not retry:
            raise last_error
        if code == errno.ECONNREFUSED and refusal_ends and _final_refusal(at, now, begun, started):
            raise Refused(code, os.strerror(code))

    try:
        while True:
            now = time.monotonic()
            if now >= deadline:
                refused_all_along = retry and last_error.errno == errno.ECONNREFUSED
                if refusal_ends and refused_all_along and now - begun >= SETTLE:
                    raise Refused(last_error.errno, last_error.strerror)
                raise last_error
            if now >= next_start:
                if len(pending) >= MAX_PENDING:
                    oldest = next(iter(pending))
                    poller.unregister(oldest)
                    pending.pop(oldest).close()
                    del started[oldest]
                s, code = _start(family, sockaddr)
                if s is not None:
                    pending[s.fileno()] = s
                    started[s.fileno()] = now
                    poller.register(s, select.POLLOUT)
                else:
                    refused(code, now, now)
                next_start = now + next(pauses) if retry else deadline
            wake = min(next_start, deadline)
            if timings is not None:
                wake = min(wake, timings.expire(now, poller))
            wait = max(0.0, wake - time.monotonic())
            ready = poller.poll(wait * 1000)
            arrived = time.monotonic()
            for fd, events in ready:
                if watch.check(fd, events):
                    continue
                if timings is not None and timings.handle(fd, arrived, poller):
                    continue
                s = pending.pop(fd)
                at = started.pop(fd)
                poller.unregister(fd)
                code = s.getsockopt(SOL_SOCKET, SO_ERROR)
                if code == 0:
                    s.setblocking(True)
                    return s
                s.close()
                refused(code, at, time.monotonic())
            if hasty and timings is not None and _out_of_order(timings):
                raise Reordered(errno.ETIMEDOUT, "the answers to our knocks came out of order")
    finally:
        for s in pending.values():
            s.close()
        if timings is not None:
            timings.close()
