"""Sending knocks: each TCP knock is exactly one SYN, each UDP knock one empty datagram."""

from __future__ import annotations

from .net import SOCK_DGRAM, SOCK_STREAM, RawSocket, with_port
from .peer import NOBODY

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable

    from rotator.scheme import Knock

    from .net import Sockaddr
    from .peer import Watch


def send_knocks(
    family: int,
    sockaddr: Sockaddr,
    knocks: Iterable[Knock],
    delay: float = 0.001,
    watch: Watch = NOBODY,
) -> int:
    """Knock ``knocks`` in order at ``sockaddr``'s address; return how many were sent.

    A TCP knock is a non-blocking connect closed at once: the kernel sends one SYN
    and, the socket being gone, never retransmits it later into the sequence.
    """
    sent = 0
    for knock in knocks:
        if sent and delay > 0:
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
        s.close()
        sent += 1
    return sent
