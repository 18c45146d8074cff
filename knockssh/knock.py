"""Sending knocks: each TCP knock is exactly one SYN, each UDP knock one empty datagram."""

from __future__ import annotations

import time

from .net import SOCK_DGRAM, SOCK_STREAM, RawSocket, with_port
from .peer import NOBODY

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable

    from rotator.scheme import Knock

    from .net import Sockaddr
    from .peer import Watch
    from .timing import Timings


def send_knocks(
    family: int,
    sockaddr: Sockaddr,
    knocks: Iterable[Knock],
    delay: float = 0.001,
    watch: Watch = NOBODY,
    timings: Timings | None = None,
) -> None:
    """Knock ``knocks`` in order at ``sockaddr``'s address, ``delay`` seconds apart.

    A TCP knock is a non-blocking connect closed at once: the kernel sends one SYN
    and, the socket being gone, never retransmits it later into the sequence.
    With ``timings``, TCP knocks are left open there instead, so the server's
    resets time the path (Timings closes each before the kernel would resend it).
    """
    sent = 0
    for knock in knocks:
        if sent and delay > 0:
            if timings is not None:
                timings.wait(delay, watch)
            else:
                watch.sleep(delay)
        target = with_port(sockaddr, knock.port)
        if knock.proto == "udp":
            s = RawSocket(family, SOCK_DGRAM)
            try:
                s.sendto(b"", target)
            except OSError:
                pass  # e.g. an ICMP error from an earlier datagram: the packet is out
        else:
            s = RawSocket(family, SOCK_STREAM)
            s.setblocking(False)
            s.connect_ex(target)  # EINPROGRESS: the SYN has left
            if timings is not None:
                timings.add(s, time.monotonic())
                sent += 1
                continue
        s.close()
        sent += 1
