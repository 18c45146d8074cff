#!/usr/bin/env python3
"""An impaired link between two network namespaces, in userspace (no netem here).

Each namespace has a TUN device; this one process holds both and forwards every
packet after its own delay: ``delay`` ± uniform ``jitter`` (per packet, so packets
overtake each other unless ``order=keep``), dropping ``loss`` of them, duplicating
``dup``, and pacing to ``rate`` bits per second. Each direction has its own
settings. Standard library only.

    linkbridge.py --ready FILE NS_A DEV_A NS_B DEV_B A_TO_B B_TO_A

A_TO_B and B_TO_A are specs such as ``delay=40ms,jitter=20ms,loss=0.02`` (see
``parse_spec``). The process lives in NS_B, so killing that namespace's processes
(as the lab's teardown does) ends it; it also ends within a second once either
namespace is deleted, and on SIGTERM: it never outlives the lab.

On SIGHUP it reads FILE.next (two lines, A_TO_B and B_TO_A), applies them to the
packets read from then on, and rewrites FILE as "PID GENERATION": a laptop moving
from one network to another, without tearing the lab down.
"""

from __future__ import annotations

import ctypes
import fcntl
import heapq
import os
import random
import select
import signal
import struct
import sys
import time

TUNSETIFF = 0x400454CA
IFF_TUN, IFF_NO_PI = 0x0001, 0x1000
CLONE_NEWNET = 0x40000000
UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0}
RATE_UNITS = {"kbit": 1e3, "mbit": 1e6, "gbit": 1e9, "bit": 1.0}


class Direction:
    """The impairment of one direction of the link."""

    __slots__ = ("delay", "dup", "free_at", "jitter", "keep_order", "last_due", "loss", "rate")

    def __init__(
        self,
        delay: float = 0.0,
        jitter: float = 0.0,
        loss: float = 0.0,
        dup: float = 0.0,
        rate: float = 0.0,
        keep_order: bool = False,
    ) -> None:
        self.delay, self.jitter, self.loss, self.dup = delay, jitter, loss, dup
        self.rate, self.keep_order = rate, keep_order
        self.last_due = 0.0
        self.free_at = 0.0

    def __repr__(self) -> str:
        return (
            f"Direction(delay={self.delay}, jitter={self.jitter}, loss={self.loss}, "
            f"dup={self.dup}, rate={self.rate}, keep_order={self.keep_order})"
        )

    def due_times(self, now: float, size: int, rng: random.Random) -> list[float]:
        """When a packet of ``size`` bytes read at ``now`` leaves: none if lost, two
        if duplicated."""
        if self.loss and rng.random() < self.loss:
            return []
        copies = 2 if self.dup and rng.random() < self.dup else 1
        found = []
        for _ in range(copies):
            due = now + max(0.0, self.delay + rng.uniform(-self.jitter, self.jitter))
            if self.rate:
                start = max(now, self.free_at)
                self.free_at = start + size * 8 / self.rate
                due = max(due, self.free_at)
            if self.keep_order:
                due = max(due, self.last_due)
                self.last_due = due
            found.append(due)
        return found


def _seconds(text: str) -> float:
    for unit in sorted(UNITS, key=len, reverse=True):
        if text.endswith(unit):
            return float(text[: -len(unit)]) * UNITS[unit]
    return float(text) * 1e-3  # plain numbers are milliseconds


def _rate(text: str) -> float:
    for unit in sorted(RATE_UNITS, key=len, reverse=True):
        if text.lower().endswith(unit):
            return float(text[: -len(unit)]) * RATE_UNITS[unit]
    return float(text)


def _fraction(text: str) -> float:
    value = float(text[:-1]) / 100 if text.endswith("%") else float(text)
    if not 0 <= value <= 1:
        raise ValueError("a fraction from 0 to 1 (or 0% to 100%)")
    return value


def parse_spec(spec: str) -> Direction:
    """``delay=25ms,jitter=5ms,loss=2%,dup=0.1%,rate=100mbit,order=keep``; empty: none."""
    found = Direction()
    for item in filter(None, spec.split(",")):
        key, _, value = item.partition("=")
        try:
            _set(found, key, value)
        except ValueError as exc:
            raise ValueError(f"{item}: {exc}") from None
    return found


def _set(found: Direction, key: str, value: str) -> None:
    if key == "delay":
        found.delay = _seconds(value)
    elif key == "jitter":
        found.jitter = _seconds(value)
    elif key == "loss":
        found.loss = _fraction(value)
    elif key == "dup":
        found.dup = _fraction(value)
    elif key == "rate":
        found.rate = _rate(value)
    elif key == "order" and value in ("keep", "any"):
        found.keep_order = value == "keep"
    elif key == "order":
        raise ValueError("keep or any")
    else:
        raise ValueError("unknown key (delay, jitter, loss, dup, rate, order)")


def _enter(ns: str) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(f"/run/netns/{ns}", os.O_RDONLY)
    try:
        if libc.setns(fd, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), f"setns {ns}")
    finally:
        os.close(fd)


def _attach(ns: str, dev: str) -> int:
    """Open the TUN device ``dev`` (made beforehand with ``ip tuntap``) in ``ns``."""
    _enter(ns)
    fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK)
    fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", dev.encode(), IFF_TUN | IFF_NO_PI))
    return fd


def forward(fds: tuple[int, int], directions: list[Direction], namespaces: tuple[str, str]) -> None:
    """Forward between the two devices until SIGTERM or a namespace is gone;
    ``directions`` is read for every packet, so replacing its items re-impairs."""
    rng = random.Random()
    queue: list[tuple[float, int, int, bytes]] = []  # (due, order, out fd, packet)
    order = 0
    poller = select.poll()
    for fd in fds:
        poller.register(fd, select.POLLIN)
    peer = {fds[0]: (fds[1], 0), fds[1]: (fds[0], 1)}
    next_check = time.monotonic() + 1
    while True:
        now = time.monotonic()
        while queue and queue[0][0] <= now:
            _, _, out, packet = heapq.heappop(queue)
            try:
                os.write(out, packet)
            except OSError:
                pass  # the device's queue is full, or it went down: the packet is lost
        timeout = max(0.0, queue[0][0] - now) * 1000 if queue else 1000
        for fd, _ in poller.poll(min(timeout, 1000)):
            out, which = peer[fd]
            direction = directions[which]
            for _ in range(64):  # a burst at a time, then the due packets again
                try:
                    packet = os.read(fd, 65536)
                except BlockingIOError:
                    break
                now = time.monotonic()
                for due in direction.due_times(now, len(packet), rng):
                    order += 1
                    heapq.heappush(queue, (due, order, out, packet))
        if now >= next_check:
            next_check = now + 1
            if not all(os.path.exists(f"/run/netns/{ns}") for ns in namespaces):
                return  # the lab is gone


def main(argv: list[str]) -> int:
    if len(argv) != 8 or argv[0] != "--ready":
        print(__doc__, file=sys.stderr)
        return 2
    ready, ns_a, dev_a, ns_b, dev_b, a_to_b, b_to_a = argv[1:]
    try:
        directions = (parse_spec(a_to_b), parse_spec(b_to_a))
    except ValueError as exc:
        print(f"linkbridge: {exc}", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    current = list(directions)
    generation = [0]

    def respec(*_: object) -> None:
        try:
            with open(ready + ".next") as f:
                a, b = f.read().splitlines()[:2]
            current[:] = [parse_spec(a), parse_spec(b)]
        except (OSError, ValueError) as exc:
            print(f"linkbridge: SIGHUP: {exc}", file=sys.stderr)
            return
        generation[0] += 1
        _announce(ready, generation[0])

    fds = (_attach(ns_a, dev_a), _attach(ns_b, dev_b))  # ends in ns_b: its teardown kills us
    signal.signal(signal.SIGHUP, respec)
    _announce(ready, 0)
    forward(fds, current, (ns_a, ns_b))
    return 0


def _announce(ready: str, generation: int) -> None:
    """Write "PID GENERATION" to ``ready`` in one step (readers never see half)."""
    with open(ready + ".tmp", "w") as f:
        f.write(f"{os.getpid()} {generation}\n")
    os.replace(ready + ".tmp", ready)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
