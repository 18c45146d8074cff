"""Sending knocks: each TCP knock is exactly one SYN, each UDP knock one empty datagram.

Timing the path with the server's answers to our own knocks: a knock goes to a
closed port, so the server's kernel answers each SYN with a reset. Leaving the
knocks' sockets open for a moment turns every knock into a round-trip sample at
no cost on the wire: the smallest is the round trip, the spread between them the
path's jitter (which decides how far apart knocks must be for none to overtake
another). Every socket is closed before the kernel would resend its SYN (1 s on
Linux), so a knock is still exactly one packet. Servers that drop closed ports
answer nothing: then nothing is learnt.
"""

from __future__ import annotations

import errno
import select
import time

from .net import SO_ERROR, SOCK_DGRAM, SOCK_STREAM, SOL_SOCKET, RawSocket, with_port
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


RETRANSMIT_AFTER = 0.9  # seconds: Linux resends an unanswered SYN after 1 s
MIN_SAMPLES = 3  # for a spread


class Timings:
    """Knock sockets left open, the round trips measured so far, and when each
    knock's answer arrived (to tell whether the path kept their order)."""

    __slots__ = ("answers", "open", "rtts", "sent")

    def __init__(self) -> None:
        self.open: dict[int, tuple[RawSocket, float, int]] = {}
        self.rtts: list[float] = []
        self.answers: list[tuple[float, int]] = []  # (arrival, index sent)
        self.sent = 0

    def add(self, sock: RawSocket, sent: float) -> None:
        self.open[sock.fileno()] = (sock, sent, self.sent)
        self.sent += 1

    def register(self, poller: select.poll) -> None:
        for fd in self.open:
            poller.register(fd, select.POLLOUT)

    def handle(self, fd: int, now: float, poller: select.poll | None = None) -> bool:
        """True if ``fd`` is one of ours (its answer, recorded and the socket closed).
        ``now``: when the poll that reported it returned (one instant per poll)."""
        found = self.open.pop(fd, None)
        if found is None:
            return False
        sock, sent, index = found
        if sock.getsockopt(SOL_SOCKET, SO_ERROR) in (0, errno.ECONNREFUSED):
            self.rtts.append(now - sent)
            self.answers.append((now, index))
        if poller is not None:
            poller.unregister(fd)
        sock.close()
        return True

    def expire(self, now: float, poller: select.poll | None = None) -> float:
        """Close the sockets due to close; the next instant one is due (inf if none)."""
        due = float("inf")
        for fd, (sock, sent, _) in list(self.open.items()):
            if now >= sent + RETRANSMIT_AFTER:
                del self.open[fd]
                if poller is not None:
                    poller.unregister(fd)
                sock.close()
            else:
                due = min(due, sent + RETRANSMIT_AFTER)
        return due

    def wait(self, seconds: float, watch: Watch) -> None:
        """Sleep ``seconds`` (between two knocks), taking answers as they come."""
        deadline = time.monotonic() + seconds
        poller = select.poll()
        watch.register(poller)
        self.register(poller)
        while True:
            now = time.monotonic()
            if now >= deadline:
                return
            wake = min(deadline, self.expire(now, poller))
            ready = poller.poll(max(0.0, wake - now) * 1000)
            arrived = time.monotonic()
            for fd, events in ready:
                if not watch.check(fd, events):
                    self.handle(fd, arrived, poller)

    def close(self) -> None:
        for sock, _, _ in self.open.values():
            sock.close()
        self.open.clear()

    def rtt(self) -> float | None:
        return min(self.rtts) if self.rtts else None

    def jitter(self) -> float | None:
        """The spread of the round trips, once there are enough of them."""
        return max(self.rtts) - min(self.rtts) if len(self.rtts) >= MIN_SAMPLES else None
